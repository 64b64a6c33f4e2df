#include "roost/client/peer.h"

#include "client_codec.h"

#include <roost/core/auth.h>
#include <roost/core/hop_trace.h>

#include <zmq.h>

namespace roost {

using namespace codec;

CurveKeyPair mesh_curve_keys(std::string_view cluster_secret) {
  // 32 bytes no one without the secret can know: a Curve25519 secret key (any 32 bytes are one).
  auto seed = hmac_sha256(cluster_secret, "roost mesh curve key v1");
  char secret[41] = {}, pub[41] = {};
  if (zmq_z85_encode(secret, reinterpret_cast<const std::uint8_t*>(seed.data()), 32) == nullptr ||
      zmq_curve_public(pub, secret) != 0) {
    throw std::runtime_error("no CURVE support in libzmq (a mesh with auth_secret needs it)");
  }
  return CurveKeyPair{std::string(pub, 40), std::string(secret, 40)};
}

namespace {
void set_route(proto::Envelope::Builder env, Route r) {
  auto out = env.initRoute();
  out.setShard(r.shard);
  out.setEpoch(r.epoch);
}
}  // namespace

PeerLink::PeerLink(ClientOptions options) : core_(std::make_shared<ClientCore>(std::move(options))) {
  start_core(core_, "roost-peer-io");
}

PeerLink::PeerLink(ClientOptions options, Driven) : core_(std::make_shared<ClientCore>(std::move(options))) {}

std::shared_ptr<PeerLink> PeerLink::open(ClientOptions options, LinkLoop* loop) {
  if (loop == nullptr) return std::make_shared<PeerLink>(std::move(options));
  auto link = std::shared_ptr<PeerLink>(new PeerLink(std::move(options), Driven{}));
  if (auto thread = loop->loop_thread()) {
    link->core_->driven = true;
    link->core_->io_id = *thread;
    link->core_->loop_ctx = loop->zmq_context();
    if (loop->adopt(link)) {
      start_core(link->core_, nullptr);
      return link;
    }
    link->core_->driven = false;  // the loop stopped meanwhile: its own thread and context
    link->core_->loop_ctx = nullptr;
  }
  start_core(link->core_, "roost-peer-io");
  return link;
}

std::size_t PeerLink::poll_items(zmq_pollitem_t* items) {
  auto& c = *core_;
  if (c.ended) return 0;
  try {
    return c.poll_items(items);
  } catch (const std::exception& e) {
    c.fail_fatally(e.what());
    c.set_ended();
    return 0;
  }
}

bool PeerLink::turn(bool woke) {
  auto& c = *core_;
  if (c.ended) return false;
  try {
    if (c.closing.load()) {
      c.end_io();
      return false;
    }
    c.turn(woke);
  } catch (const std::exception& e) {
    // A ZeroMQ failure: the link is unusable (as when its own thread ends on one).
    c.fail_fatally(e.what());
    c.set_ended();
    return false;
  }
  return !c.ended;
}

void PeerLink::end() {
  auto& c = *core_;
  if (c.ended) return;
  c.closing = true;
  try {
    c.end_io();
  } catch (const std::exception& e) {
    c.fail_fatally(e.what());
    c.set_ended();
  }
}

PeerLink::~PeerLink() { close(); }

void PeerLink::close() { core_->close(); }
bool PeerLink::connected() const { return core_->ready.load(); }
bool PeerLink::down() const {
  if (core_->ready.load()) return false;
  return core_->reconnect_count.load() > 0 ||
         std::chrono::steady_clock::now() - created_ > core_->options.connect_timeout;
}
const std::string& PeerLink::url() const { return core_->options.url; }

void PeerLink::enqueue(Route route, const std::string& queue, const std::vector<NewMessage>& messages,
                       Callback<std::vector<std::string>> done) {
  // A traced request forwarded from this thread (hop_trace.h): the owner's stamps come back in
  // the answer.
  auto forward = hop_trace::forwarding();
  core_->async<std::vector<std::string>>(
      [&](proto::Envelope::Builder env) {
        build_enqueue(env, queue, messages);
        set_route(env, route);
        if (forward) env.initTrace(1).set(0, forward->sent = hop_trace::now_ns());
      },
      [forward](Reply& r) {
        if (forward) {
          auto trace = r.env.getTrace();
          if (trace.size() == 1 + hop_trace::kNodeStamps) {
            for (unsigned i = 1; i < trace.size(); ++i) forward->owner.push_back(trace[i]);
            forward->received =
                std::chrono::duration_cast<std::chrono::nanoseconds>(r.received.time_since_epoch()).count();
          }
        }
        return decode_ids(r);
      },
      payloads_of(messages), std::move(done));
}

void PeerLink::pull(Route route, const std::string& queue, const PullOptions& options, std::uint64_t wait_ms,
                    Callback<std::vector<LeasedMessage>> done) {
  core_->async<std::vector<LeasedMessage>>(
      [&](proto::Envelope::Builder env) {
        build_pull(env, queue, options, wait_ms);
        set_route(env, route);
      },
      decode_messages, {}, std::move(done),
      core_->options.request_timeout + std::chrono::milliseconds(wait_ms));
}

void PeerLink::ack(Route route, const std::string& queue, const std::vector<std::string>& acks,
                   const std::vector<RetryRequest>& retries, Callback<AckResult> done) {
  core_->async<AckResult>(
      [&](proto::Envelope::Builder env) {
        build_ack(env, queue, acks, retries);
        set_route(env, route);
      },
      decode_acked, {}, std::move(done));
}

void PeerLink::extend(Route route, const std::string& queue, const std::vector<std::string>& leases,
                      std::uint64_t visibility_ms, Callback<ExtendResult> done) {
  core_->async<ExtendResult>(
      [&](proto::Envelope::Builder env) {
        build_extend(env, queue, leases, visibility_ms);
        set_route(env, route);
      },
      decode_extended, {}, std::move(done));
}

void PeerLink::put_queue(Route route, const std::string& name, const QueueConfigPatch& patch,
                         Callback<QueueInfo> done) {
  core_->async<QueueInfo>(
      [&](proto::Envelope::Builder env) {
        build_put_queue(env, name, patch);
        set_route(env, route);
      },
      decode_queue, {}, std::move(done));
}

void PeerLink::delete_queue(Route route, const std::string& name, Callback<bool> done) {
  core_->async<bool>(
      [&](proto::Envelope::Builder env) {
        env.initDeleteQueue().setName(text(name));
        set_route(env, route);
      },
      [](Reply&) { return true; }, {}, std::move(done));
}

void PeerLink::purge_queue(Route route, const std::string& name, Callback<std::uint64_t> done) {
  core_->async<std::uint64_t>(
      [&](proto::Envelope::Builder env) {
        env.initPurgeQueue().setName(text(name));
        set_route(env, route);
      },
      decode_count, {}, std::move(done));
}

void PeerLink::peek(Route route, const std::string& queue, std::uint32_t max,
                    Callback<std::vector<LeasedMessage>> done) {
  core_->async<std::vector<LeasedMessage>>(
      [&](proto::Envelope::Builder env) {
        auto p = env.initPeek();
        p.setQueue(text(queue));
        p.setBatchSize(max);
        set_route(env, route);
      },
      decode_messages, {}, std::move(done));
}

void PeerLink::get_queue(Route route, const std::string& name, Callback<QueueInfo> done) {
  core_->async<QueueInfo>(
      [&](proto::Envelope::Builder env) {
        env.initGetQueue().setName(text(name));
        set_route(env, route);
      },
      decode_queue, {}, std::move(done));
}

void PeerLink::tell(Route route, const std::string& object_class, const std::string& name,
                    std::string_view data, ContentType type, Callback<std::uint64_t> done) {
  core_->async<std::uint64_t>(
      [&](proto::Envelope::Builder env) {
        build_object_send(env, object_class, name, type);
        set_route(env, route);
      },
      decode_count, one_payload(data), std::move(done));
}

void PeerLink::call(Route route, const std::string& object_class, const std::string& name,
                    std::string_view data, ContentType type, std::uint64_t timeout_ms,
                    Callback<ObjectReply> done) {
  core_->async<ObjectReply>(
      [&](proto::Envelope::Builder env) {
        build_object_call(env, object_class, name, timeout_ms, type);
        set_route(env, route);
      },
      decode_object_reply, one_payload(data), std::move(done),
      call_deadline(std::chrono::milliseconds(timeout_ms), core_->options.request_timeout));
}

void PeerLink::effects(Route route, const std::string& origin, const std::vector<MeshEffect>& effects,
                       Callback<std::uint64_t> done) {
  std::vector<zmq::message_t> payloads;
  payloads.reserve(effects.size());
  for (const auto& e : effects) payloads.emplace_back(e.message.body.data(), e.message.body.size());
  core_->async<std::uint64_t>(
      [&](proto::Envelope::Builder env) {
        auto m = env.initMeshEffects();
        m.setOrigin(text(origin));
        m.setShard(route.shard);
        auto list = m.initEffects(static_cast<unsigned>(effects.size()));
        for (unsigned i = 0; i < effects.size(); ++i) {
          const auto& e = effects[i];
          list[i].setSeq(e.seq);
          list[i].setQueue(text(e.queue));
          list[i].setClass(text(e.object_class));
          list[i].setName(text(e.name));
          list[i].setContentType(wire::to_wire(e.message.content_type));
          list[i].setDelayMs(e.message.delay_ms);
          list[i].setId(text(e.message.id));
          list[i].setKey(text(e.message.key));
        }
        set_route(env, route);
      },
      decode_count, std::move(payloads), std::move(done));
}

void PeerLink::fetch(Route route, const std::string& object_class, const std::string& name,
                     const ObjectHttpRequest& request, std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  core_->async<ObjectReply>(
      [&](proto::Envelope::Builder env) {
        auto f = env.initObjectFetch();
        f.setClass(text(object_class));
        f.setName(text(name));
        f.setTimeoutMs(timeout_ms);
        f.setMethod(text(request.method));
        f.setPath(text(request.path));
        f.setQuery(text(request.query));
        auto hs = f.initHeaders(static_cast<unsigned>(request.headers.size()));
        for (unsigned i = 0; i < request.headers.size(); ++i) {
          hs[i].setName(text(request.headers[i].first));
          hs[i].setValue(text(request.headers[i].second));
        }
        f.setClientAddress(text(request.client_address));
        f.setClaims(text(request.claims));
        set_route(env, route);
      },
      [](Reply& r) {
        auto out = decode_object_reply(r);
        auto rep = r.env.getObjectReply();
        out.status = rep.getStatus() == 0 ? 200 : rep.getStatus();
        for (auto h : rep.getHeaders()) out.headers.emplace_back(view(h.getName()), view(h.getValue()));
        return out;
      },
      one_payload(request.body), std::move(done),
      call_deadline(std::chrono::milliseconds(timeout_ms), core_->options.request_timeout));
}

void PeerLink::connect_socket(Route route, const std::string& object_class, const std::string& name,
                              const ObjectConnectRequest& request, SocketHandlers handlers,
                              std::uint64_t timeout_ms, Callback<std::uint64_t> attached) {
  auto& core = *core_;
  const std::uint64_t id = core.next_id.fetch_add(1);
  {
    MutexLock lock(core.mu);
    core.sockets[id] =
        ClientCore::SocketState{std::move(handlers.on_frame), std::move(handlers.on_close), false};
  }
  capnp::MallocMessageBuilder b(512);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(id);
  auto c = env.initObjectConnect();
  c.setClass(text(object_class));
  c.setName(text(name));
  c.setPath(text(request.path));
  c.setQuery(text(request.query));
  c.setOrigin(text(request.origin));
  c.setProtocol(text(request.protocol));
  auto hs = c.initHeaders(static_cast<unsigned>(request.headers.size()));
  for (unsigned i = 0; i < request.headers.size(); ++i) {
    hs[i].setName(text(request.headers[i].first));
    hs[i].setValue(text(request.headers[i].second));
  }
  c.setClientAddress(text(request.client_address));
  c.setClaims(text(request.claims));
  set_route(env, route);
  std::weak_ptr<ClientCore> weak = core_;
  core.submit(
      b, id, {},
      [weak, id, attached = std::move(attached)](Reply& r) mutable {
        auto link = weak.lock();
        auto e = r.error();
        if (!e && !r.env.isCount()) e = Error{ErrorCode::MALFORMED, "unexpected answer to objectConnect"};
        bool open = false;
        if (link) {
          MutexLock lock(link->mu);
          auto it = link->sockets.find(id);
          if (it != link->sockets.end()) {
            if (e) {
              link->sockets.erase(it);
            } else {
              it->second.attached = true;
              open = true;
            }
          }
        }
        if (e) {
          // The owner may have attached it after all (the answer came too late): end it there.
          if (link && r.failure && r.failure->code == ErrorCode::TIMEOUT) {
            capnp::MallocMessageBuilder cb(64);
            auto ce = cb.initRoot<proto::Envelope>();
            ce.setId(0);
            auto sc = ce.initSocketClose();
            sc.setStream(id);
            sc.setCode(1006);
            link->submit(cb, 0, {}, nullptr, link->options.request_timeout);
          }
          return attached(std::unexpected(*e));
        }
        if (!open) return attached(std::unexpected(unavailable("the link's session ended while attaching")));
        attached(id);
      },
      call_deadline(std::chrono::milliseconds(timeout_ms), core.options.request_timeout));
}

void PeerLink::socket_send(std::uint64_t stream, std::string_view data) {
  auto& core = *core_;
  {
    MutexLock lock(core.mu);
    auto it = core.sockets.find(stream);
    if (it == core.sockets.end() || !it->second.attached || !it->second.on_close) return;
  }
  capnp::MallocMessageBuilder b(64);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(0);
  env.initSocketFrame().setStream(stream);
  core.submit(b, 0, one_payload(data), nullptr, core.options.request_timeout);
}

void PeerLink::socket_close(std::uint64_t stream, std::uint16_t code, std::string_view reason) {
  auto& core = *core_;
  {
    MutexLock lock(core.mu);
    if (core.sockets.erase(stream) == 0) return;  // its session ended: the owner closed it already
  }
  capnp::MallocMessageBuilder b(64);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(0);
  auto sc = env.initSocketClose();
  sc.setStream(stream);
  sc.setCode(code);
  sc.setReason(text(reason));
  core.submit(b, 0, {}, nullptr, core.options.request_timeout);
}

void PeerLink::publish(std::string_view channel, std::string_view data, ContentType type) {
  core_->enqueue_publish(channel, data, type);
}

void PeerLink::publish_async(const std::string& channel, std::string_view data, ContentType type,
                             Callback<PublishAck> done) {
  core_->async<PublishAck>([&](proto::Envelope::Builder env) { build_publish(env, channel, type); },
                           decode_published, one_payload(data), std::move(done));
}

void PeerLink::presence_event(const std::string& channel, channels::MessageKind kind,
                              const std::string& origin, std::uint64_t direct, std::uint64_t subscription) {
  capnp::MallocMessageBuilder b(128);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(0);
  auto e = env.initPresenceEvent();
  e.setChannel(text(channel));
  e.setKind(static_cast<proto::MessageKind>(kind));
  e.setOrigin(text(origin));
  e.setDirect(direct);
  e.setSubscription(subscription);
  core_->submit(b, 0, {}, nullptr, core_->options.request_timeout);
}

void PeerLink::presence(const std::string& channel, Callback<channels::Presence> done) {
  core_->async<channels::Presence>([&](proto::Envelope::Builder env) { env.setPresence(text(channel)); },
                                   [](Reply& r) {
                                     auto p = r.env.getPresenceCount();
                                     return channels::Presence{static_cast<std::size_t>(p.getSubscribers()),
                                                               static_cast<std::size_t>(p.getDirect())};
                                   },
                                   {}, std::move(done));
}

void PeerLink::shard_copy(const ShardCopy& step, std::string payload, Callback<std::uint64_t> done) {
  std::vector<zmq::message_t> payloads;
  payloads.emplace_back(payload.data(), payload.size());
  core_->async<std::uint64_t>(
      [&](proto::Envelope::Builder env) {
        auto c = env.initShardCopy();
        c.setMove(step.move);
        c.setShard(step.shard);
        c.setPhase(static_cast<proto::ShardCopyPhase>(step.phase));
        c.setOrigin(text(step.origin));
        c.setEpoch(step.epoch);
      },
      decode_count, std::move(payloads), std::move(done));
}

void PeerLink::list_queues(Callback<std::vector<QueueInfo>> done) {
  core_->async<std::vector<QueueInfo>>([](proto::Envelope::Builder env) { env.setListQueues(); },
                                       decode_queue_list, {}, std::move(done));
}

std::unique_ptr<Stream> PeerLink::subscribe(const std::string& pattern,
                                            std::function<void(const ChannelMessage&)> handler,
                                            SubscribeOptions options) {
  return core_->open_detached(subscription(pattern, std::move(handler), std::move(options)));
}

}  // namespace roost
