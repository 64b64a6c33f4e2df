#include "client_core.h"

namespace roost {

ClientCore::ClientCore(ClientOptions o) : options(std::move(o)) {
  wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) throw std::runtime_error("eventfd failed");
}

ClientCore::~ClientCore() {
  if (wake_fd >= 0) ::close(wake_fd);
}

void ClientCore::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
}

void ClientCore::to_dispatch(std::function<void()> fn) {
  {
    MutexLock lock(dmu);
    dqueue.push_back(std::move(fn));
  }
  dcv.notify_one();
}

void ClientCore::dispatch_loop() {
  for (;;) {
    std::function<void()> fn;
    {
      MutexLock lock(dmu);
      while (!dstop && dqueue.empty()) dcv.wait(lock.native());
      if (dqueue.empty()) return;
      fn = std::move(dqueue.front());
      dqueue.pop_front();
    }
    fn();
  }
}

void ClientCore::open_socket() {
  sock.emplace(loop_ctx != nullptr ? *loop_ctx : ctx, zmq::socket_type::dealer);
  sock->set(zmq::sockopt::linger, 0);
  sock->set(zmq::sockopt::sndhwm, 100'000);
  sock->set(zmq::sockopt::rcvhwm, 100'000);
  sock->set(zmq::sockopt::reconnect_ivl, 100);
  sock->set(zmq::sockopt::reconnect_ivl_max, 2000);
  // The routing id names this connection to the node: 128 bits from the OS's generator, so
  // that nobody can guess it (the node also binds a session to the connection that said hello).
  char id[16];
  std::random_device os_random;
  for (std::size_t i = 0; i < sizeof id; i += 4) {
    auto r = os_random();
    std::memcpy(id + i, &r, 4);
  }
  sock->set(zmq::sockopt::routing_id, zmq::const_buffer(id, sizeof id));
  if (!options.curve_server_key.empty()) {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) throw std::runtime_error("no CURVE support in libzmq");
    sock->set(zmq::sockopt::curve_serverkey, options.curve_server_key);
    sock->set(zmq::sockopt::curve_publickey, std::string(pub, 40));
    sock->set(zmq::sockopt::curve_secretkey, std::string(sec, 40));
  }
  sock->connect(options.url);
  send_hello();
}

void ClientCore::send_hello() {
  end_sockets("the link to the owner node was re-established; the socket's session is over");
  capnp::MallocMessageBuilder b(128);
  auto env = b.initRoot<proto::Envelope>();
  hello_id = next_id.fetch_add(1);
  env.setId(hello_id);
  auto h = env.initHello();
  h.setProtocolVersion(proto::PROTOCOL_VERSION);
  h.setToken(text(options.token_source ? options.token_source() : options.token));
  h.setClient(text(options.name));
  h.setHeartbeatMs(static_cast<std::uint32_t>(options.heartbeat.count()));
  auto f = to_frame(b);
  (void)sock->send(f, zmq::send_flags::dontwait);
  hello_deadline = Clock::now() + options.connect_timeout;
  last_heard = Clock::now();
}

void ClientCore::lose_connection(const std::string& why) {
  bool was_ready = ready.exchange(false);
  // Requests in flight may or may not have been applied: fail them.
  auto failing = std::move(pending);
  pending.clear();
  for (auto& [id, p] : failing) {
    Reply r{unavailable("connection to " + options.url + " lost (" + why +
                        "); the request may or may not have been applied"),
            {},
            {}};
    if (p.done) p.done(r);
  }
  sock.reset();
  hello_id = 0;
  instance = 0;
  end_sockets("the link to the owner node was lost (" + why + ")");
  if (was_ready) reconnect_count.fetch_add(1);
  backoff = backoff.count() == 0 ? options.reconnect_min : std::min(backoff * 2, options.reconnect_max);
  auto jitter = std::uniform_int_distribution<long>(0, backoff.count() / 2)(rng);
  reconnect_at = Clock::now() + backoff + std::chrono::milliseconds(jitter);
}

void ClientCore::send_all(std::vector<Outgoing>& items) {
  for (auto& o : items) {
    if (o.run) {
      send_publish_batch(*o.run);
      continue;
    }
    if (o.build) {
      auto build = std::move(o.build);
      if (!build(o)) continue;
    }
    send_now(o);
  }
}

void ClientCore::send_now(Outgoing& o) {
  if (o.done) {
    std::vector<zmq::message_t> copies(o.frames.size());
    for (std::size_t i = 0; i < o.frames.size(); ++i) copies[i].copy(o.frames[i]);
    auto first = o.first_sent == Clock::time_point{} ? Clock::now() : o.first_sent;
    pending.emplace(o.id, Pending{std::move(o.done), o.deadline, std::move(copies), first, o.retry_delay});
  }
  for (std::size_t i = 0; i < o.frames.size(); ++i) {
    auto flags = i + 1 < o.frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    (void)sock->send(o.frames[i], flags);
  }
}

void ClientCore::on_ready(proto::HelloOk::Reader ok) {
  instance = ok.getInstance();
  ready = true;
  backoff = std::chrono::milliseconds(0);
  if (!connected_once_set) {
    connected_once_set = true;
    connected_once.set_value({});
  }
  {
    MutexLock lock(mu);
    for (auto& [id, s] : streams) open_stream(id, s);
    to_open.clear();
  }
  auto w = std::move(waiting);
  waiting.clear();
  send_all(w);
}

void ClientCore::run() {
  io_id = std::this_thread::get_id();
  open_socket();
  while (!closing.load()) {
    if (!sock && Clock::now() >= reconnect_at) open_socket();
    zmq::pollitem_t items[2] = {{sock ? sock->handle() : nullptr, 0, ZMQ_POLLIN, 0},
                                {nullptr, wake_fd, ZMQ_POLLIN, 0}};
    int n = sock ? 2 : 1;
    zmq::pollitem_t* first = sock ? &items[0] : &items[1];
    try {
      zmq::poll(first, static_cast<std::size_t>(n), std::chrono::milliseconds(20));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    turn((items[1].revents & ZMQ_POLLIN) != 0 || !sock);
  }
  end_io();
}

std::size_t ClientCore::poll_items(zmq::pollitem_t* items) {
  if (!sock && Clock::now() >= reconnect_at) open_socket();
  std::size_t n = 0;
  if (sock) items[n++] = {sock->handle(), 0, ZMQ_POLLIN, 0};
  items[n++] = {nullptr, wake_fd, ZMQ_POLLIN, 0};
  return n;
}

void ClientCore::turn(bool woke) {
  auto now = Clock::now();
  auto& parts = io_parts;
  auto& batch = io_batch;
  auto& cancel_batch = io_cancels;
  if (woke) {
    std::uint64_t v;
    [[maybe_unused]] auto rr = ::read(wake_fd, &v, sizeof v);
  }
  if (sock) {
    for (int i = 0; i < 4096; ++i) {
      parts.clear();
      if (!zmq::recv_multipart(*sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
      handle(parts);
      if (!sock) break;
    }
  }
  if (ended) return;  // (driven) a callback closed the link
  {
    MutexLock lock(mu);
    batch.swap(outbox);
    cancel_batch.swap(cancels);
    wake_pending = false;
    for (auto it = reopen.begin(); it != reopen.end();) {
      if (it->first > now) {
        ++it;
        continue;
      }
      to_open.push_back(it->second);
      it = reopen.erase(it);
    }
    if (sock && ready) {
      for (auto id : to_open) {
        if (auto it = streams.find(id); it != streams.end()) open_stream(id, it->second);
      }
      to_open.clear();
    }
  }
  if (sock && ready) {
    send_all(batch);
  } else {
    for (auto& o : batch) waiting.push_back(std::move(o));
  }
  batch.clear();
  for (auto id : cancel_batch) {
    if (!sock || !ready) continue;
    capnp::MallocMessageBuilder b(32);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(0);
    env.initCancel().setStream(id);
    auto f = to_frame(b);
    (void)sock->send(f, zmq::send_flags::none);
  }
  cancel_batch.clear();
  now = Clock::now();
  for (auto it = retries.begin(); it != retries.end();) {
    if (it->first > now) {
      ++it;
      continue;
    }
    if (sock && ready) {
      send_now(it->second);
    } else {
      waiting.push_back(std::move(it->second));
    }
    it = retries.erase(it);
  }
  expire(now);
  if (sock) {
    if (hello_id != 0 && now > hello_deadline) {
      if (!connected_once_set) {
        connected_once_set = true;
        connected_once.set_value(std::unexpected(unavailable(
            "no answer from " + options.url +
            (options.curve_server_key.empty()
                 ? " (if the endpoint requires CURVE encryption, give its public key: --server-key / curve_server_key)"
                 : " (is --server-key the endpoint's public key?)"))));
      }
      lose_connection("no answer to hello");
    } else if (ready && now - last_heard > 3 * options.heartbeat) {
      lose_connection("no heartbeat");
    } else if (ready && now >= next_heartbeat) {
      capnp::MallocMessageBuilder b(32);
      auto env = b.initRoot<proto::Envelope>();
      env.setId(0);
      env.initHeartbeat();
      auto f = to_frame(b);
      (void)sock->send(f, zmq::send_flags::dontwait);
      next_heartbeat = now + options.heartbeat;
    }
  }
}

void ClientCore::end_io() {
  // Closing: requests that wait for an answer fail. What the application made fire and forget
  // before close() — publishes, acks, retries — still leaves when connected (in order), and a
  // heartbeat behind it is waited for (up to kCloseClearance): the node answers it once it
  // has read all of it. A worker that acks its last job and exits must not see that job
  // delivered again. (The socket's linger is 0: closing it drops what ZeroMQ has not written.)
  auto failing = std::move(pending);
  for (auto& [id, p] : failing) {
    Reply r{unavailable("the client is closed"), {}, {}};
    p.done(r);
  }
  std::vector<Outgoing> left;
  {
    MutexLock lock(mu);
    left.swap(outbox);
  }
  for (auto& o : waiting) left.push_back(std::move(o));
  for (auto& [at, o] : retries) left.push_back(std::move(o));
  retries.clear();
  for (auto& o : left) {
    bool fire_and_forget = o.run || (!o.done && !o.build);
    if (sock && ready && fire_and_forget) {
      if (o.run)
        send_publish_batch(*o.run);
      else
        send_now(o);
    } else {
      fail_outgoing(o, unavailable("the client is closed"));
    }
  }
  // What the loop above sent may still sit in ZeroMQ's queue too. (Not on a loop that drives
  // other work too: a driven link's fire-and-forget leaves as far as ZeroMQ takes it.)
  if (sock && ready && !driven) await_clearance();
  {
    MutexLock lock(mu);
    for (auto& [id, s] : streams) {
      if (s.first) s.first->set_value(std::unexpected(unavailable("the client is closed")));
      s.first = nullptr;
    }
  }
  end_sockets("the link to the owner node is closed");
  sock.reset();
  set_ended();
}

void ClientCore::set_ended() {
  {
    std::lock_guard lock(end_mu);
    ended = true;
  }
  end_cv.notify_all();
}

void ClientCore::await_clearance() {
  std::uint64_t id = next_id.fetch_add(1);
  capnp::MallocMessageBuilder b(32);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(id);
  env.initHeartbeat();
  auto f = to_frame(b);
  if (!sock->send(f, zmq::send_flags::dontwait)) return;
  auto until = Clock::now() + kCloseClearance;
  std::vector<zmq::message_t> parts;
  for (auto now = Clock::now(); now < until; now = Clock::now()) {
    zmq::pollitem_t item{sock->handle(), 0, ZMQ_POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
    try {
      zmq::poll(&item, 1, std::max(left, std::chrono::milliseconds(1)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return;
    }
    parts.clear();
    while (zmq::recv_multipart(*sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      try {
        if (wire::EnvelopeReader(parts[0].data(), parts[0].size()).get().getId() == id) return;
      } catch (const kj::Exception&) {
      }
      parts.clear();
    }
  }
}

void ClientCore::fail_fatally(const std::string& why) {
  ready = false;
  end_sockets("the link to the owner node failed: " + why);
  if (!connected_once_set) {
    connected_once_set = true;
    connected_once.set_value(std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "cannot connect: " + why}));
  }
  closing = true;
  auto failing = std::move(pending);
  for (auto& [id, p] : failing) {
    Reply r{unavailable("the client failed: " + why), {}, {}};
    p.done(r);
  }
  std::vector<Outgoing> left;
  {
    MutexLock lock(mu);
    left.swap(outbox);
    for (auto& [id, s] : streams) {
      if (s.first) s.first->set_value(std::unexpected(unavailable("the client failed: " + why)));
      s.first = nullptr;
    }
  }
  for (auto& o : waiting) left.push_back(std::move(o));
  waiting.clear();
  for (auto& [at, o] : retries) left.push_back(std::move(o));
  retries.clear();
  for (auto& o : left) fail_outgoing(o, unavailable("the client failed: " + why));
}

void ClientCore::close() {
  std::lock_guard close_lock(close_mu);
  closing = true;
  wake();
  if (io.joinable()) io.join();
  if (driven && std::this_thread::get_id() != io_id) {
    // The loop that drives it ends it at its next turn, or when the loop stops. (Closed on the
    // loop's own thread — from one of its callbacks — it ends at that next turn too.)
    std::unique_lock lock(end_mu);
    end_cv.wait(lock, [this] { return ended; });
  }
  {
    MutexLock lock(dmu);
    dstop = true;
  }
  dcv.notify_all();
  if (dispatch.joinable() && dispatch.get_id() != std::this_thread::get_id())
    dispatch.join();
  else if (dispatch.joinable())
    dispatch.detach();
}

std::unique_ptr<Stream> ClientCore::open_detached(StreamState state) {
  std::uint64_t id = next_id.fetch_add(1);
  auto gate = state.gate;
  {
    MutexLock lock(mu);
    if (!closing) {
      streams.emplace(id, std::move(state));
      to_open.push_back(id);  // opened by the I/O thread: now if connected, else after hello
    }
  }
  wake();
  return std::make_unique<Stream>(weak_from_this(), id, std::move(gate));
}

Result<std::unique_ptr<Stream>> ClientCore::open(StreamState state) {
  if (std::this_thread::get_id() == io_id) {
    return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "blocking call from a completion callback"});
  }
  std::uint64_t id = next_id.fetch_add(1);
  std::promise<Result<void>> first;
  auto f = first.get_future();
  state.first = &first;
  auto gate = state.gate;
  {
    MutexLock lock(mu);
    if (closing) return std::unexpected(unavailable("the client is closed"));
    streams.emplace(id, std::move(state));
    to_open.push_back(id);  // opened by the I/O thread: now if connected, else after hello
  }
  wake();
  if (f.wait_for(options.request_timeout) != std::future_status::ready) {
    bool timed_out = false;
    {
      MutexLock lock(mu);
      auto it = streams.find(id);
      if (it != streams.end() && it->second.first == &first) {
        streams.erase(it);
        // The node may open it still (the request is on its way, or queued to be sent): the
        // cancel follows it on the same connection, so it does not outlive this answer.
        cancels.push_back(id);
        timed_out = true;
      }
    }
    if (timed_out) {
      wake();
      return std::unexpected(Error{ErrorCode::TIMEOUT, "no answer from the node in time"});
    }
  }
  auto r = f.get();
  if (!r) return std::unexpected(r.error());
  return std::make_unique<Stream>(weak_from_this(), id, std::move(gate));
}

}  // namespace roost
