#include "endpoint_impl.h"

#include <roost/core/lead_scope.h>

namespace roost::broker {

Endpoint::Impl::Impl(Router& r, EndpointOptions o)
    : router(r),
      options(std::move(o)),
      auth(options.auth_secret),
      log(module_logger(options.mesh != nullptr ? "mesh" : "endpoint")) {
  outbox = std::make_shared<Outbox>();
  std::random_device rd;
  instance = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ static_cast<std::uint64_t>(steady_ms());
  if (instance == 0) instance = 1;
}

std::size_t Endpoint::Impl::frames_bytes(const std::vector<zmq::message_t>& frames) {
  std::size_t n = 0;
  for (const auto& f : frames) n += f.size();
  return n;
}

bool Endpoint::Impl::send(Session& s, std::vector<zmq::message_t>& frames, bool droppable) {
  if (!s.backlog.empty()) {
    if (droppable) return false;
    if (s.backlog.size() >= options.max_backlog || s.backlog_bytes >= options.max_backlog_bytes) {
      if (!s.doomed) {
        log->warn("client {} does not read its answers ({} waiting): forgetting it", printable(s.identity),
                  s.backlog.size());
      }
      s.doomed = true;  // ended by the loop, not under callers holding the session
      return false;
    }
    s.backlog_bytes += frames_bytes(frames);
    s.backlog.push_back(std::move(frames));
    return true;
  }
  switch (try_send(s.identity, frames)) {
    case SendResult::kSent: return true;
    case SendResult::kGone: return false;
    case SendResult::kFull:
      if (droppable) return false;
      s.backlog_bytes += frames_bytes(frames);
      s.backlog.push_back(std::move(frames));
      return true;
  }
  return false;
}

Endpoint::Impl::SendResult Endpoint::Impl::try_send(const std::string& identity,
                                                    std::vector<zmq::message_t>& frames) {
  try {
    zmq::message_t id(identity.data(), identity.size());
    if (!sock.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return SendResult::kFull;
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return SendResult::kGone;
    throw;
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    (void)sock.send(frames[i], flags);
  }
  return SendResult::kSent;
}

void Endpoint::Impl::flush_backlogs() {
  for (auto& [id, s] : sessions) {
    while (!s.backlog.empty()) {
      auto r = try_send(s.identity, s.backlog.front());
      if (r == SendResult::kFull) break;
      s.backlog_bytes -= frames_bytes(s.backlog.front());
      s.backlog.pop_front();
    }
  }
}

void Endpoint::Impl::send_raw(const std::string& identity, std::vector<zmq::message_t>& frames) {
  (void)try_send(identity, frames);
}

void Endpoint::Impl::reply(const std::string& identity, capnp::MallocMessageBuilder& b,
                           std::vector<zmq::message_t> payloads) {
  std::vector<zmq::message_t> frames;
  frames.reserve(1 + payloads.size());
  frames.push_back(to_frame(b));
  for (auto& p : payloads) frames.push_back(std::move(p));
  auto it = sessions.find(identity);
  if (it != sessions.end()) {
    send(it->second, frames, false);
  } else {
    send_raw(identity, frames);
  }
}

void Endpoint::Impl::send_error(const std::string& identity, std::uint64_t id, ErrorCode code,
                                std::string_view message) {
  capnp::MallocMessageBuilder b(64);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(id);
  auto e = env.initError();
  e.setCode(code);
  e.setMessage(text(message));
  reply(identity, b);
}

void Endpoint::Impl::reply_error(const std::string& identity, std::uint64_t id, ErrorCode code,
                                 std::string_view message) {
  if (id == 0) return;  // fire-and-forget requests get no answers
  send_error(identity, id, code, message);
}

void Endpoint::Impl::reply_error(const std::string& identity, std::uint64_t id, const Error& e) {
  reply_error(identity, id, e.code, e.message);
}

void Endpoint::Impl::reply_ok(const std::string& identity, std::uint64_t id) {
  if (id == 0) return;
  capnp::MallocMessageBuilder b(16);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(id);
  env.setOk();
  reply(identity, b);
}

std::string Endpoint::Impl::printable(std::string_view identity) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : identity.substr(0, 16)) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

void Endpoint::Impl::end_session(const std::string& identity) {
  auto it = sessions.find(identity);
  if (it == sessions.end()) return;
  Session& s = it->second;
  for (auto& [stream, sink] : s.subscriptions) {
    sink->closed = true;
    router.unsubscribe(sink->hub_id);
  }
  release_leases(s.leases);
  close_sockets(s);
  s.gone->store(true);
  sessions.erase(it);
  session_count.store(sessions.size());
  trim_due = true;
}

std::string Endpoint::Impl::peer_of(int fd) {
  if (fd < 0) return {};
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin6_port));
  }
  if (ss.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t clen = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
      return "pid " + std::to_string(cred.pid);
  }
  return "?";
}

void Endpoint::Impl::end_sessions_of_fd(int fd, const char* why) {
  if (fd < 0) return;
  std::vector<std::string> ids;
  std::string now_there;
  bool looked = false;
  for (auto& [id, s] : sessions) {
    if (s.fd != fd) continue;
    if (!looked) {
      now_there = peer_of(fd);
      looked = true;
    }
    if (now_there.empty() || now_there != s.peer) ids.push_back(id);
  }
  for (const auto& id : ids) {
    log->debug("client {}: connection {}; session ended", printable(id), why);
    sessions_disconnected.fetch_add(1, std::memory_order_relaxed);
    end_session(id);
  }
}

void Endpoint::Impl::drain_monitor() {
  if (!monitor) return;
  for (;;) {
    zmq::message_t ev, addr;
    if (!monitor.recv(ev, zmq::recv_flags::dontwait)) return;
    if (ev.more()) (void)monitor.recv(addr, zmq::recv_flags::dontwait);
    if (ev.size() < 6) continue;
    std::uint16_t event;
    std::int32_t value;
    std::memcpy(&event, ev.data(), 2);
    std::memcpy(&value, static_cast<const char*>(ev.data()) + 2, 4);
    if (event == ZMQ_EVENT_DISCONNECTED) {
      // ZeroMQ may report the disconnect before it closes the fd: look again shortly.
      end_sessions_of_fd(value, "closed");
      recheck_fds.emplace_back(value, steady_ms() + 50);
    }
    if (event == ZMQ_EVENT_ACCEPTED) end_sessions_of_fd(value, "number reused by a new connection");
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
        event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      // A client retries every few hundred ms: one line now, then one every 10 s at most.
      handshake_failures.fetch_add(1, std::memory_order_relaxed);
      std::int64_t now = steady_ms();
      if (now - last_handshake_log >= 10'000) {
        log->info(
            "native handshake failed on {} ({} so far; a client without the endpoint's CURVE key, or "
            "not a ZeroMQ client?)",
            bound, handshake_failures.load());
        last_handshake_log = now;
      }
    }
  }
}

int Endpoint::Impl::source_fd(const zmq::message_t& m) {
  return zmq_msg_get(const_cast<zmq_msg_t*>(m.handle()), ZMQ_SRCFD);
}

void Endpoint::Impl::end_doomed() {
  std::vector<std::string> doomed;
  for (auto& [id, s] : sessions) {
    if (s.doomed) doomed.push_back(id);
  }
  for (const auto& id : doomed) end_session(id);
}

void Endpoint::Impl::sweep() {
  std::int64_t now = steady_ms();
  std::vector<std::string> gone;
  for (auto& [id, s] : sessions) {
    if (now - s.last_seen > 3 * static_cast<std::int64_t>(s.heartbeat_ms)) gone.push_back(id);
  }
  for (const auto& id : gone) {
    log->info("client {} silent for 3 heartbeats: ending its session", printable(id));
    sessions_expired.fetch_add(1);
    end_session(id);
  }
  // Leases that ran out free their consumer's window (the queue redelivers them).
  for (auto& [id, s] : sessions) {
    std::vector<std::uint64_t> refill;
    for (auto it = s.leases.begin(); it != s.leases.end();) {
      if (it->second.expires_at > now) {
        ++it;
        continue;
      }
      if (auto c = s.consumers.find(it->second.stream); c != s.consumers.end()) {
        if (c->second.in_flight > 0) c->second.in_flight -= 1;
        refill.push_back(it->second.stream);
      }
      it = s.leases.erase(it);
    }
    for (auto stream : refill) pump(s, stream);
  }
}

void Endpoint::Impl::handle(std::vector<zmq::message_t>& parts) {
  if (parts.size() < 2) return;  // ROUTER always adds the identity; nothing to answer
  const std::string identity(frame_view(parts[0]));
  requests.fetch_add(1, std::memory_order_relaxed);
  std::optional<wire::EnvelopeReader> reader;
  proto::Envelope::Reader env;
  try {
    reader.emplace(parts[1].data(), parts[1].size());
    env = reader->get();
  } catch (const kj::Exception& e) {
    malformed.fetch_add(1, std::memory_order_relaxed);
    // No id can be read: answer with id 0 so the client can log it.
    return send_error(identity, 0, ErrorCode::MALFORMED, "frame 1 is not a Cap'n Proto Envelope");
  }
  std::uint64_t id = 0;
  try {
    id = env.getId();
    dispatch(identity, parts, env);
  } catch (const kj::Exception& e) {
    malformed.fetch_add(1, std::memory_order_relaxed);
    reply_error(identity, id, ErrorCode::MALFORMED,
                std::string("malformed envelope: ") + e.getDescription().cStr());
  }
}

void Endpoint::Impl::hello_required(const std::string& identity, std::uint64_t id, std::string_view why) {
  send_error(identity, id, ErrorCode::HELLO_REQUIRED, std::string(why) + ": send hello first");
}

void Endpoint::Impl::dispatch(const std::string& identity, std::vector<zmq::message_t>& parts,
                              proto::Envelope::Reader env) {
  std::uint64_t id = env.getId();
  using W = proto::Envelope::Which;
  auto which = env.which();
  if (which == W::HELLO) return on_hello(identity, parts[1], id, env.getHello());
  auto it = sessions.find(identity);
  if (it == sessions.end()) return hello_required(identity, id, "this node does not know the connection");
  Session& s = it->second;
  if (int fd = source_fd(parts[1]); fd != s.fd) {
    // Another connection with this routing id: the one that said hello is gone. The session
    // is not handed over; the newcomer must say hello (and be authenticated) itself.
    rebound_refused.fetch_add(1, std::memory_order_relaxed);
    end_session(identity);
    return hello_required(identity, id, "this connection has not said hello");
  }
  s.last_seen = steady_ms();
  std::span<zmq::message_t> payloads(parts.data() + 2, parts.size() - 2);
  if (options.mesh != nullptr && which != W::HEARTBEAT) {
    if (auto refused = check_route(env)) return reply_error(identity, id, *refused);
  }
  switch (which) {
    case W::HEARTBEAT: {
      capnp::MallocMessageBuilder b(32);
      auto out = b.initRoot<proto::Envelope>();
      out.setId(id);
      out.initHeartbeat().setInstance(instance);
      return reply(identity, b);
    }
    case W::ENQUEUE: return on_enqueue(s, id, env.getEnqueue(), payloads, start_trace(env));
    case W::PULL: return on_pull(s, id, env.getPull());
    case W::ACK: return on_ack(s, id, env.getAck());
    case W::EXTEND: return on_extend(s, id, env.getExtend());
    case W::CONSUME: return on_consume(s, id, env.getConsume());
    case W::CREDIT: {
      auto c = env.getCredit();
      auto cit = s.consumers.find(c.getStream());
      if (cit == s.consumers.end())
        return reply_error(identity, id, ErrorCode::NOT_FOUND, "no such consumer");
      cit->second.window += c.getMessages();
      pump(s, c.getStream());
      return;
    }
    case W::CANCEL: return on_cancel(s, id, env.getCancel().getStream());
    case W::PUBLISH: return on_publish(s, id, env.getPublish(), payloads);
    case W::PUBLISH_BATCH: return on_publish_batch(s, id, env.getPublishBatch(), payloads);
    case W::SUBSCRIBE: return on_subscribe(s, id, env.getSubscribe());
    case W::PUT_QUEUE: return on_put_queue(s, id, env.getPutQueue());
    case W::DELETE_QUEUE: return on_delete_queue(s, id, env.getDeleteQueue());
    case W::GET_QUEUE: {
      std::string name(view(env.getGetQueue().getName()));
      if (!allowed_queue(s, id, name)) return;
      return router.get_queue_async(
          name, answer<QueueInfo>(s, id, [](proto::Envelope::Builder out, const QueueInfo& info) {
            wire::to_wire(out.initQueue(), info);
          }));
    }
    case W::LIST_QUEUES: {
      // A peer asks for this node's own queues; a client for the whole mesh's.
      auto encode = [who = s.who](proto::Envelope::Builder out, std::vector<QueueInfo> all) {
        std::erase_if(all, [&](const QueueInfo& q) { return !who.may_use_queue(q.name); });
        auto list = out.initQueues(static_cast<unsigned>(all.size()));
        for (unsigned i = 0; i < all.size(); ++i) wire::to_wire(list[i], all[i]);
      };
      if (options.mesh != nullptr) {
        capnp::MallocMessageBuilder b(512);
        auto out = b.initRoot<proto::Envelope>();
        out.setId(id);
        encode(out, router.list_queues());
        return reply(identity, b);
      }
      return router.list_queues_async(answer<std::vector<QueueInfo>>(s, id, encode));
    }
    case W::REDRIVE: return on_redrive(s, id, env.getRedrive());
    case W::PURGE_QUEUE: return on_purge(s, id, env.getPurgeQueue());
    case W::PEEK: return on_peek(s, id, env.getPeek());
    case W::OBJECT_SEND: return on_object_send(s, id, env.getObjectSend(), payloads);
    case W::OBJECT_CALL: return on_object_call(s, id, env.getObjectCall(), payloads);
    case W::OBJECT_FETCH: return on_object_fetch(s, id, env.getObjectFetch(), payloads);
    case W::OBJECT_CONNECT: return on_object_connect(s, id, env.getObjectConnect());
    case W::PRESENCE_EVENT: return on_presence_event(s, id, env.getPresenceEvent());
    case W::PRESENCE: {
      std::string channel(view(env.getPresence()));
      if (!s.who.may_subscribe(channel)) {
        return reply_error(identity, id, ErrorCode::FORBIDDEN, "not allowed to see " + channel);
      }
      if (auto e = channels::validate_subject(channel)) return reply_error(identity, id, *e);
      return router.presence_async(
          std::move(channel),
          answer<channels::Presence>(s, id, [](proto::Envelope::Builder out, const channels::Presence& p) {
            auto c = out.initPresenceCount();
            c.setSubscribers(p.subscribers);
            c.setDirect(p.direct);
          }));
    }
    case W::SOCKET_FRAME: return on_socket_frame(s, env.getSocketFrame(), payloads);
    case W::SOCKET_CLOSE: return on_socket_close(s, env.getSocketClose());
    case W::SHARD_COPY: return on_shard_copy(s, id, env.getShardCopy(), payloads);
    case W::MESH_EFFECTS: return on_mesh_effects(s, id, env.getMeshEffects(), payloads);
    default:
      return reply_error(identity, id, ErrorCode::INVALID_ARGUMENT,
                         "not a request this node understands (variant " +
                             std::to_string(static_cast<unsigned>(which)) + ")");
  }
}

void Endpoint::Impl::on_hello(const std::string& identity, zmq::message_t& first, std::uint64_t id,
                              proto::Hello::Reader hello) {
  if (hello.getProtocolVersion() != proto::PROTOCOL_VERSION) {
    return reply_error(identity, id, ErrorCode::INVALID_ARGUMENT,
                       "protocol version " + std::to_string(hello.getProtocolVersion()) +
                           " is not supported; this node speaks " + std::to_string(proto::PROTOCOL_VERSION));
  }
  // Without a secret only loopback and ipc:// clients are served, as by the gateway. Over tcp://
  // the frame's Peer-Address says who it is; without one the client counts as remote.
  boost::asio::ip::address remote = boost::asio::ip::address_v4::loopback();
  if (!ipc) {
    remote = boost::asio::ip::address_v4::any();
    if (const char* peer = zmq_msg_gets(first.handle(), "Peer-Address")) {
      boost::system::error_code ec;
      auto a = boost::asio::ip::make_address(peer, ec);
      if (!ec) remote = a;
    }
  }
  auto who = auth.authenticate(view(hello.getToken()), remote,
                               options.mesh != nullptr ? Audience::kMesh : Audience::kClient);
  if (who && options.mesh != nullptr && !who->mesh) {
    who = std::unexpected(
        Error{ErrorCode::FORBIDDEN, "this is a mesh socket: only peer nodes (the mesh grant)"});
  }
  if (!who) {
    log->info("hello refused from {}: {}", remote.to_string(), who.error().message);
    return reply_error(identity, id, who.error());
  }
  end_session(identity);  // a second hello starts over
  Session s;
  s.identity = identity;
  s.serial = next_serial++;
  s.who = std::move(*who);
  s.fd = source_fd(first);
  s.peer = peer_of(s.fd);
  s.heartbeat_ms = hello.getHeartbeatMs() != 0
                       ? std::clamp<std::uint32_t>(hello.getHeartbeatMs(), 50,
                                                   std::max(options.max_heartbeat_ms, options.heartbeat_ms))
                       : options.heartbeat_ms;
  s.last_seen = steady_ms();
  log->debug("hello from {} ({}), heartbeat {} ms", printable(identity), std::string(view(hello.getClient())),
             s.heartbeat_ms);
  std::uint32_t hb = s.heartbeat_ms;
  sessions.emplace(identity, std::move(s));
  session_count.store(sessions.size());
  capnp::MallocMessageBuilder b(128);
  auto out = b.initRoot<proto::Envelope>();
  out.setId(id);
  auto ok = out.initHelloOk();
  ok.setProtocolVersion(proto::PROTOCOL_VERSION);
  ok.setNode(text("roost/" + options.version));
  ok.setInstance(instance);
  ok.setHeartbeatMs(hb);
  ok.setMaxMessageBytes(options.max_message_bytes);
  reply(identity, b);
}

bool Endpoint::Impl::valid_json(std::string_view s) {
  boost::system::error_code ec;
  (void)boost::json::parse(s, ec);
  return !ec;
}

bool Endpoint::Impl::stream_room(Session& s, std::uint64_t id) {
  if (s.subscriptions.size() + s.consumers.size() < options.max_subscriptions) return true;
  reply_error(s.identity, id, ErrorCode::TOO_MANY_REQUESTS,
              "this client already holds " + std::to_string(s.subscriptions.size() + s.consumers.size()) +
                  " subscriptions and consumers (max_subscriptions_per_connection)");
  return false;
}

// Every link this thread drives does a round of its work (answers in, requests out); the ones
// that ended are dropped. `items` from `first` hold their poll results in links order (each link's
// wake fd last), or nothing when `polled` is false.
void Endpoint::Impl::turn_links(const std::vector<zmq::pollitem_t>& items, std::size_t first,
                                const std::vector<std::size_t>& counts, bool polled) {
  std::size_t at = first;
  for (std::size_t i = 0; i < links.size(); ++i) {
    bool woke = false;
    if (polled && i < counts.size() && counts[i] > 0) {
      woke = (items[at + counts[i] - 1].revents & ZMQ_POLLIN) != 0;
      at += counts[i];
    }
    if (!links[i]->turn(woke)) links[i] = nullptr;
  }
  std::erase(links, nullptr);
}

void Endpoint::Impl::end_links() {
  {
    MutexLock lock(links_mu);
    loop_id.reset();
    for (auto& l : adopted) links.push_back(std::move(l));
    adopted.clear();
  }
  for (auto& l : links) l->end();
  links.clear();
}

void Endpoint::Impl::run() {
  std::vector<zmq::pollitem_t> items;
  std::vector<std::size_t> link_items;  // poll items of each link, in links order
  std::vector<std::move_only_function<void()>> tasks;
  Outbox::Deliveries deliveries;
  std::vector<zmq::message_t> parts;
  while (!stopping.load()) {
    {
      MutexLock lock(links_mu);
      for (auto& l : adopted) links.push_back(std::move(l));
      adopted.clear();
    }
    items.assign({{sock.handle(), 0, ZMQ_POLLIN, 0},
                  {nullptr, outbox->wake_fd, ZMQ_POLLIN, 0},
                  {monitor.handle(), 0, ZMQ_POLLIN, 0}});
    link_items.clear();
    for (auto& l : links) {
      zmq::pollitem_t mine[2];
      auto n = l->poll_items(mine);
      link_items.push_back(n);
      items.insert(items.end(), mine, mine + n);
    }
    std::int64_t now = steady_ms();
    // Links keep their heartbeats and request deadlines at this pace.
    long most = !recheck_fds.empty() ? 10 : !links.empty() ? 20 : 100;
    long timeout = std::clamp<long>(static_cast<long>(next_sweep - now), 0, most);
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] auto r = ::read(outbox->wake_fd, &n, sizeof n);
    }
    // Answers from peers first: their completions go out with this round's.
    turn_links(items, 3, link_items, true);
    drain_monitor();
    // Requests in rounds of kRound, each followed by what they produced, so that a burst of
    // publishes does not fill subscriber buffers before they are flushed.
    for (int round = 0; round < 16; ++round) {
      int n = 0;
      round_messages = 0;
      if (round > 0) drain_monitor();  // connection events before the requests that follow them
      {
        // The round's writes commit on this thread when the committer is idle (leader/follower:
        // no hand-off there and back), as one group; their answers go out just below. This
        // thread may wait for the group's flush (inline_commits = endpoint): what arrives
        // meanwhile queues in ZeroMQ and makes the next group.
        LeadScope lead(LeadScope::kMayBlock);
        for (; n < kRound && round_messages < kRound; ++n) {
          parts.clear();
          if (!zmq::recv_multipart(sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
          handle(parts);
        }
      }
      {
        MutexLock lock(outbox->mu);
        tasks.swap(outbox->tasks);
        deliveries.swap(outbox->deliveries);
        outbox->wake_pending = false;
      }
      for (auto& t : tasks) t();
      tasks.clear();
      flush_deliveries(deliveries);
      if (n < kRound && round_messages < kRound) break;
    }
    // What these requests forwarded to peers leaves now.
    if (!links.empty()) turn_links(items, 3, link_items, false);
    flush_backlogs();
    end_doomed();
    now = steady_ms();
    if (!recheck_fds.empty()) {
      std::erase_if(recheck_fds, [&](const std::pair<int, std::int64_t>& r) {
        if (r.second > now) return false;
        end_sessions_of_fd(r.first, "closed");
        return true;
      });
    }
    if (now >= next_sweep) {
      sweep();
      next_sweep = now + 100;
      if (trim_due && now - last_trim >= kTrimIntervalMs) {
        // Ended sessions freed what their deliveries held; give it back to the OS.
        ::malloc_trim(0);
        trim_due = false;
        last_trim = now;
      }
    }
  }
}

Endpoint::Endpoint(Router& router, EndpointOptions options)
    : impl_(std::make_unique<Impl>(router, std::move(options))) {}

Endpoint::~Endpoint() { stop(); }

void Endpoint::start() {
  auto& d = *impl_;
  d.sock = zmq::socket_t(d.ctx, zmq::socket_type::router);
  d.sock.set(zmq::sockopt::router_mandatory, 1);
  // No handover: a second connection with a connected client's routing id is refused, and a
  // session belongs to the connection that said hello (see dispatch).
  d.sock.set(zmq::sockopt::router_handover, 0);
  d.sock.set(zmq::sockopt::sndhwm, static_cast<int>(d.options.send_hwm));
  d.sock.set(zmq::sockopt::rcvhwm, 1000);
  d.sock.set(zmq::sockopt::linger, 0);
  d.sock.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(d.options.max_message_bytes + (1u << 20)));
  if (!d.options.curve_secret_key.empty()) {
    if (!zmq_has("curve")) throw std::runtime_error("this libzmq has no CURVE support");
    if (d.options.curve_secret_key.size() != 40) {
      throw std::runtime_error("endpoint_curve_secret must be a 40-character Z85 key (roost keygen)");
    }
    d.sock.set(zmq::sockopt::curve_server, 1);
    d.sock.set(zmq::sockopt::curve_secretkey, d.options.curve_secret_key);
  }
  try {
    d.sock.bind(d.options.bind);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind the endpoint to " + d.options.bind + ": " + e.what());
  }
  d.bound = d.sock.get(zmq::sockopt::last_endpoint);
  {
    auto address = "inproc://roost-endpoint-monitor-" + std::to_string(reinterpret_cast<std::uintptr_t>(&d));
    if (zmq_socket_monitor(d.sock.handle(), address.c_str(),
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      throw std::runtime_error(std::string("cannot monitor the endpoint socket: ") +
                               zmq_strerror(zmq_errno()));
    }
    d.monitor = zmq::socket_t(d.ctx, zmq::socket_type::pair);
    d.monitor.set(zmq::sockopt::linger, 0);
    d.monitor.connect(address);
  }
  MutexLock links_lock(d.links_mu);  // adopt() waits for loop_id
  d.thread = std::thread([&d] {
    roost::name_this_thread(d.options.mesh != nullptr ? "roost-mesh-sock" : "roost-endpoint");
    try {
      d.run();
    } catch (const std::exception& e) {
      d.log->critical("endpoint thread failed: {}", e.what());
    }
    // The links it drove end here: what waits on them fails, and their closers return.
    d.end_links();
  });
  d.loop_id = d.thread.get_id();
  links_lock.unlock();
  d.log->info("{} listening on {}{}", d.options.mesh != nullptr ? "mesh socket" : "endpoint", d.bound,
              d.options.curve_secret_key.empty() ? "" : " (CURVE encryption)");
}

std::string Endpoint::bound() const { return impl_->bound; }

std::optional<std::thread::id> Endpoint::loop_thread() {
  MutexLock lock(impl_->links_mu);
  return impl_->loop_id;
}

zmq::context_t* Endpoint::zmq_context() { return &impl_->ctx; }

bool Endpoint::adopt(std::shared_ptr<PeerLink> link) {
  auto& d = *impl_;
  {
    MutexLock lock(d.links_mu);
    if (!d.loop_id) return false;
    d.adopted.push_back(std::move(link));
  }
  MutexLock lock(d.outbox->mu);
  d.outbox->wake_locked();
  return true;
}

void Endpoint::stop() {
  auto& d = *impl_;
  if (!d.thread.joinable()) return;
  d.stopping = true;
  {
    MutexLock lock(d.outbox->mu);
    d.outbox->wake_locked();
  }
  d.thread.join();
  // The endpoint thread has exited (join is the barrier ZeroMQ asks for): the socket is this
  // thread's now. Run what completed meanwhile (its answers still go out, leases of gone sessions
  // are released), then end every session.
  std::vector<std::move_only_function<void()>> tasks;
  {
    MutexLock lock(d.outbox->mu);
    tasks.swap(d.outbox->tasks);
    d.outbox->deliveries.clear();
    d.outbox->closed = true;
  }
  for (auto& t : tasks) t();
  std::vector<std::string> ids;
  for (auto& [id, s] : d.sessions) ids.push_back(id);
  for (const auto& id : ids) d.end_session(id);
  zmq_socket_monitor(d.sock.handle(), nullptr, 0);
  d.monitor.close();
  d.sock.close();
}

std::size_t Endpoint::sessions() const { return impl_->session_count.load(); }

std::string Endpoint::metrics_text() const {
  const auto& d = *impl_;
  MetricsWriter w;
  if (d.options.mesh != nullptr) {
    w.gauge("roost_mesh_peer_sessions", "Peer nodes with a session on this node's mesh socket.",
            std::uint64_t{d.session_count.load()});
    w.counter("roost_mesh_requests_received_total", "Requests peers forwarded to this node.",
              d.requests.load());
    w.counter("roost_mesh_route_refused_total",
              "Forwarded requests refused: this node does not own their shard under their epoch.",
              d.route_refused.load());
    w.gauge("roost_mesh_peer_object_sockets",
            "WebSockets peers attached to objects of this node (the browser is on the peer).",
            d.peer_sockets.load());
    return std::move(w).text();
  }
  w.gauge("roost_endpoint_sessions", "Native protocol clients with a session.",
          std::uint64_t{d.session_count.load()});
  w.counter("roost_endpoint_requests_total", "Native protocol requests received.", d.requests.load());
  w.counter("roost_endpoint_malformed_total", "Native frames that could not be decoded.", d.malformed.load());
  w.counter("roost_endpoint_sessions_expired_total", "Sessions ended because the client went silent.",
            d.sessions_expired.load());
  w.counter("roost_endpoint_sessions_disconnected_total", "Sessions ended because their connection closed.",
            d.sessions_disconnected.load());
  w.counter("roost_endpoint_handshake_failures_total",
            "Connections whose ZeroMQ handshake failed (CURVE key, protocol).", d.handshake_failures.load());
  w.counter("roost_endpoint_rebound_refused_total",
            "Requests refused: their routing id's session belongs to another connection.",
            d.rebound_refused.load());
  w.counter("roost_endpoint_channel_dropped_total",
            "Channel messages dropped for native subscribers that fell behind.",
            d.outbox->dropped_total.load());
  return std::move(w).text();
}

}  // namespace roost::broker
