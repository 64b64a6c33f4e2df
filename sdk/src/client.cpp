#include "client_codec.h"

#include <roost/core/hop_trace.h>

namespace roost {

// ---- Stream, Delivery ----------------------------------------------------------------------------

Stream::Stream(std::weak_ptr<ClientCore> core, std::uint64_t id, std::shared_ptr<StreamGate> gate)
    : core_(std::move(core)), id_(id), gate_(std::move(gate)) {}
Stream::~Stream() { cancel(); }
void Stream::cancel() {
  if (auto c = core_.lock()) c->cancel(id_);
  core_.reset();
  if (gate_) gate_->close();  // (issue 27 §3: a handler ran after its owner was gone)
  gate_.reset();
}

void Delivery::ack() const {
  if (auto c = core_.lock()) c->settle(queue, {message.lease_id}, {});
}
void Delivery::retry(std::optional<std::chrono::milliseconds> delay) const {
  RetryRequest r{message.lease_id, std::nullopt};
  if (delay) r.delay_ms = static_cast<std::uint64_t>(delay->count());
  if (auto c = core_.lock()) c->settle(queue, {}, {r});
}
void Delivery::extend(std::chrono::milliseconds visibility) const {
  auto c = core_.lock();
  if (!c) return;
  capnp::MallocMessageBuilder b(128);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(0);
  auto e = env.initExtend();
  e.setQueue(text(queue));
  e.initLeaseIds(1).set(0, text(message.lease_id));
  e.setVisibilityTimeoutMs(static_cast<std::uint64_t>(visibility.count()));
  c->submit(b, 0, {}, nullptr, c->options.request_timeout);
}

// ---- Client --------------------------------------------------------------------------------------

void start_core(const std::shared_ptr<ClientCore>& core, const char* io_name) {
  core->dispatch = std::thread([c = core.get()] {
    roost::name_this_thread("roost-dispatch");
    c->dispatch_loop();
  });
  if (io_name == nullptr) return;
  core->io = std::thread([c = core.get(), io_name] {
    roost::name_this_thread(io_name);
    try {
      c->run();
    } catch (const std::exception& e) {
      // A bad address (zmq refuses it) or a ZeroMQ failure: the client is unusable.
      c->fail_fatally(e.what());
    }
  });
}

Client::Client(std::shared_ptr<ClientCore> core) : core_(std::move(core)) {}
Client::~Client() { close(); }

Result<std::shared_ptr<Client>> Client::connect(ClientOptions options) {
  if (!options.url.starts_with("tcp://") && !options.url.starts_with("ipc://")) {
    return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "url must be tcp://HOST:PORT or ipc://PATH"});
  }
  auto core = std::make_shared<ClientCore>(std::move(options));
  auto first = core->connected_once.get_future();
  start_core(core, "roost-client-io");
  std::shared_ptr<Client> client(new Client(core));
  auto status = first.wait_for(core->options.connect_timeout + std::chrono::milliseconds(500));
  if (status != std::future_status::ready) {
    return std::unexpected(unavailable("no answer from " + core->options.url));
  }
  auto r = first.get();
  if (!r) return std::unexpected(r.error());
  return client;
}

void Client::close() { core_->close(); }
bool Client::connected() const { return core_->ready.load(); }
std::uint64_t Client::reconnects() const { return core_->reconnect_count.load(); }

using namespace codec;

Result<std::vector<std::string>> Client::enqueue(const std::string& queue, std::vector<NewMessage> messages) {
  auto payloads = payloads_of(messages);
  return core_->call<std::vector<std::string>>(
      [&](proto::Envelope::Builder env) { build_enqueue(env, queue, messages); }, decode_ids,
      std::move(payloads));
}

void Client::enqueue_async(const std::string& queue, std::vector<NewMessage> messages,
                           Callback<std::vector<std::string>> done) {
  auto payloads = payloads_of(messages);
  core_->async<std::vector<std::string>>(
      [&](proto::Envelope::Builder env) { build_enqueue(env, queue, messages); }, decode_ids,
      std::move(payloads), std::move(done));
}

Result<std::vector<std::int64_t>> Client::trace_enqueue(const std::string& queue, NewMessage message) {
  const auto called = hop_trace::now_ns();
  std::vector<NewMessage> messages{std::move(message)};
  auto payloads = payloads_of(messages);
  auto ns = [](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  auto r = core_->call<std::vector<std::int64_t>>(
      [&](proto::Envelope::Builder env) {
        build_enqueue(env, queue, messages);
        env.initTrace(1).set(0, called);
      },
      [ns](Reply& reply) {
        std::vector<std::int64_t> stamps;
        auto trace = reply.env.getTrace();
        const unsigned node = 1 + hop_trace::kNodeStamps;
        if (trace.size() != node && trace.size() != node + hop_trace::kForwardStamps) {
          throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                              kj::str("no trace in the answer"));
        }
        stamps.push_back(trace[0]);
        stamps.push_back(ns(reply.sent));
        for (unsigned i = 1; i < node; ++i) stamps.push_back(trace[i]);
        stamps.push_back(ns(reply.received));
        for (unsigned i = node; i < trace.size(); ++i) stamps.push_back(trace[i]);  // (forwarded)
        return stamps;
      },
      std::move(payloads));
  if (r) r->insert(r->begin() + 2 + hop_trace::kNodeStamps + 1, hop_trace::now_ns());
  return r;
}

Result<std::vector<LeasedMessage>> Client::pull(const std::string& queue, PullOptions options,
                                                std::chrono::milliseconds wait) {
  return core_->call<std::vector<LeasedMessage>>(
      [&](proto::Envelope::Builder env) {
        build_pull(env, queue, options, static_cast<std::uint64_t>(wait.count()));
      },
      decode_messages, {}, core_->options.request_timeout + wait);
}

Result<AckResult> Client::ack(const std::string& queue, std::vector<std::string> acks,
                              std::vector<RetryRequest> retries) {
  return core_->call<AckResult>([&](proto::Envelope::Builder env) { build_ack(env, queue, acks, retries); },
                                decode_acked);
}

void Client::ack_async(const std::string& queue, std::vector<std::string> acks,
                       std::vector<RetryRequest> retries, Callback<AckResult> done) {
  core_->async<AckResult>([&](proto::Envelope::Builder env) { build_ack(env, queue, acks, retries); },
                          decode_acked, {}, std::move(done));
}

Result<ExtendResult> Client::extend(const std::string& queue, std::vector<std::string> leases,
                                    std::chrono::milliseconds visibility) {
  return core_->call<ExtendResult>(
      [&](proto::Envelope::Builder env) {
        build_extend(env, queue, leases, static_cast<std::uint64_t>(visibility.count()));
      },
      decode_extended);
}

Result<std::unique_ptr<Stream>> Client::consume(const std::string& queue,
                                                std::function<void(const Delivery&)> handler,
                                                ConsumeOptions options) {
  ClientCore::StreamState s;
  s.consumer = true;
  s.target = queue;
  s.on_delivery = std::move(handler);
  s.cons = std::move(options);
  return core_->open(std::move(s));
}

Result<QueueInfo> Client::put_queue(const std::string& name, const QueueConfigPatch& patch) {
  return core_->call<QueueInfo>([&](proto::Envelope::Builder env) { build_put_queue(env, name, patch); },
                                decode_queue);
}

Result<void> Client::delete_queue(const std::string& name) {
  auto r = core_->call<bool>([&](proto::Envelope::Builder env) { env.initDeleteQueue().setName(text(name)); },
                             [](Reply&) { return true; });
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<QueueInfo> Client::get_queue(const std::string& name) {
  return core_->call<QueueInfo>([&](proto::Envelope::Builder env) { env.initGetQueue().setName(text(name)); },
                                decode_queue);
}

Result<std::vector<QueueInfo>> Client::list_queues() {
  return core_->call<std::vector<QueueInfo>>([](proto::Envelope::Builder env) { env.setListQueues(); },
                                             decode_queue_list);
}

Result<std::uint64_t> Client::redrive(const std::string& from, const std::string& to, std::uint64_t max) {
  return core_->call<std::uint64_t>(
      [&](proto::Envelope::Builder env) {
        auto r = env.initRedrive();
        r.setFrom(text(from));
        r.setTo(text(to));
        r.setMax(max);
      },
      [](Reply& r) { return r.env.getCount(); });
}

Result<std::uint64_t> Client::purge_queue(const std::string& name) {
  return core_->call<std::uint64_t>(
      [&](proto::Envelope::Builder env) { env.initPurgeQueue().setName(text(name)); }, decode_count);
}

Result<std::vector<LeasedMessage>> Client::peek(const std::string& queue, std::uint32_t max) {
  return core_->call<std::vector<LeasedMessage>>(
      [&](proto::Envelope::Builder env) {
        auto p = env.initPeek();
        p.setQueue(text(queue));
        p.setBatchSize(max);
      },
      decode_messages);
}

Result<std::uint64_t> Client::tell(const std::string& object_class, const std::string& name, std::string data,
                                   ContentType type) {
  std::promise<Result<std::uint64_t>> p;
  auto f = p.get_future();
  tell_async(object_class, name, std::move(data), type,
             [&p](Result<std::uint64_t> r) { p.set_value(std::move(r)); });
  return f.get();
}

void Client::tell_async(const std::string& object_class, const std::string& name, std::string data,
                        ContentType type, Callback<std::uint64_t> done) {
  core_->async<std::uint64_t>(
      [&](proto::Envelope::Builder env) { build_object_send(env, object_class, name, type); }, decode_count,
      one_payload(data), std::move(done));
}

Result<ObjectReply> Client::call(const std::string& object_class, const std::string& name, std::string data,
                                 std::chrono::milliseconds timeout, ContentType type) {
  return core_->call<ObjectReply>(
      [&](proto::Envelope::Builder env) {
        build_object_call(env, object_class, name, static_cast<std::uint64_t>(timeout.count()), type);
      },
      decode_object_reply, one_payload(data), call_deadline(timeout, core_->options.request_timeout));
}

void Client::publish(std::string_view channel, std::string_view data, ContentType type) {
  core_->enqueue_publish(channel, data, type);
}

Result<PublishAck> Client::publish_sync(const std::string& channel, std::string data, ContentType type) {
  return core_->call<PublishAck>([&](proto::Envelope::Builder env) { build_publish(env, channel, type); },
                                 decode_published, one_payload(data));
}

Result<Client::Presence> Client::presence(const std::string& channel) {
  return core_->call<Presence>([&](proto::Envelope::Builder env) { env.setPresence(text(channel)); },
                               [](Reply& r) {
                                 auto p = r.env.getPresenceCount();
                                 return Presence{p.getSubscribers(), p.getDirect()};
                               });
}

Result<std::unique_ptr<Stream>> Client::subscribe(const std::string& pattern,
                                                  std::function<void(const ChannelMessage&)> handler,
                                                  SubscribeOptions options) {
  return core_->open(subscription(pattern, std::move(handler), std::move(options)));
}

// ---- Producer, Consumer --------------------------------------------------------------------------

// Asynchronous sends coalesce: at most kRequestsInFlight enqueue requests are on the wire. A
// request takes its messages only when the I/O thread sends it, so a burst of sends leaves as one
// batch; messages accepted while the requests are out wait here and leave with the next one.
// Few requests per message means few envelopes, Ops and answers per commit. A second request
// goes out only once kSecondRequestMin messages wait: then it keeps the committer busy while the
// first one's answer travels back and the next batch is encoded; with fewer, splitting the window
// in two only made two commits (each a fixed ~400 µs of flushes) of what one commit holds —
// measured, 64 in flight: 65-80k/s with one request against 60-62k with two; 1000 in flight: two
// requests ahead.
struct Producer::State {
  static constexpr std::size_t kRequestsInFlight = 2;
  static constexpr std::size_t kSecondRequestMin = 256;
  static constexpr std::size_t kMaxBatch = 1000;  // the node's max_batch

  Mutex mu;
  std::condition_variable cv;
  std::size_t outstanding ROOST_GUARDED_BY(mu) = 0;  // accepted by send_async, not completed
  std::size_t window = 1000;
  std::size_t requests ROOST_GUARDED_BY(mu) = 0;         // enqueue requests in flight
  std::vector<NewMessage> waiting ROOST_GUARDED_BY(mu);  // accepted, not sent yet
  std::vector<Callback<std::string>> waiting_done ROOST_GUARDED_BY(mu);

  // Moves up to kMaxBatch waiting messages into a request of their own.
  std::pair<std::vector<NewMessage>, std::vector<Callback<std::string>>> take_locked() ROOST_REQUIRES(mu) {
    std::size_t n = std::min(waiting.size(), kMaxBatch);
    std::vector<NewMessage> msgs(std::make_move_iterator(waiting.begin()),
                                 std::make_move_iterator(waiting.begin() + static_cast<std::ptrdiff_t>(n)));
    std::vector<Callback<std::string>> dones(
        std::make_move_iterator(waiting_done.begin()),
        std::make_move_iterator(waiting_done.begin() + static_cast<std::ptrdiff_t>(n)));
    waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(n));
    waiting_done.erase(waiting_done.begin(), waiting_done.begin() + static_cast<std::ptrdiff_t>(n));
    return {std::move(msgs), std::move(dones)};
  }

  // Queues a request that takes what is waiting when the I/O thread sends it: messages the
  // application adds until then leave with it. Its completion answers each message, and queues
  // the next request if more waited meanwhile.
  static void send(const std::shared_ptr<State>& st, ClientCore& core, const std::string& queue) {
    ClientCore::Outgoing o;
    o.build = [st, &c = core, queue](ClientCore::Outgoing& out) {
      std::vector<NewMessage> msgs;
      std::vector<Callback<std::string>> dones;
      {
        MutexLock lock(st->mu);
        if (st->waiting.empty()) {
          --st->requests;
          return false;
        }
        std::tie(msgs, dones) = st->take_locked();
      }
      capnp::MallocMessageBuilder b(256);
      auto env = b.initRoot<proto::Envelope>();
      out.id = c.next_id.fetch_add(1);
      env.setId(out.id);
      build_enqueue(env, queue, msgs);
      out.frames.clear();
      out.frames.push_back(to_frame(b));
      for (auto& p : payloads_of(msgs)) out.frames.push_back(std::move(p));
      out.deadline = Clock::now() + c.options.request_timeout;
      out.done = [st, &c, queue, dones = std::move(dones)](Reply& r) mutable {
        Result<std::vector<std::string>> ids = std::unexpected(Error{ErrorCode::INTERNAL, "no answer"});
        if (auto e = r.error()) {
          ids = std::unexpected(*e);
        } else {
          try {
            ids = decode_ids(r);
          } catch (const kj::Exception& ex) {
            ids = std::unexpected(
                Error{ErrorCode::MALFORMED, std::string("unexpected answer: ") + ex.getDescription().cStr()});
          }
        }
        // The callbacks run before the sends count as done, so flush() sees their effects.
        for (std::size_t i = 0; i < dones.size(); ++i) {
          if (!ids) {
            dones[i](std::unexpected(ids.error()));
          } else if (i < ids->size()) {
            dones[i](std::move((*ids)[i]));
          } else {
            dones[i](std::unexpected(Error{ErrorCode::MALFORMED, "fewer ids than messages"}));
          }
        }
        bool more = false;
        {
          MutexLock lock(st->mu);
          st->outstanding -= dones.size();
          more = !st->waiting.empty();
          if (!more) --st->requests;
        }
        st->cv.notify_all();
        if (more) send(st, c, queue);  // the request slot passes on
      };
      return true;
    };
    core.enqueue_outgoing(std::move(o));
  }
};

Producer::Producer(Client& client, std::string queue, std::size_t window)
    : client_(client), queue_(std::move(queue)), state_(std::make_shared<State>()) {
  state_->window = std::max<std::size_t>(1, window);
}
Producer::~Producer() { flush(); }

Result<std::string> Producer::send(std::string body, ContentType type) {
  NewMessage m;
  m.body = std::move(body);
  m.content_type = type;
  return send(std::move(m));
}

Result<std::string> Producer::send(NewMessage message) {
  std::vector<NewMessage> one;
  one.push_back(std::move(message));
  auto r = client_.enqueue(queue_, std::move(one));
  if (!r) return std::unexpected(r.error());
  return std::move(r->front());
}

Result<std::vector<std::string>> Producer::send_batch(std::vector<NewMessage> messages) {
  return client_.enqueue(queue_, std::move(messages));
}

void Producer::send_async(NewMessage message, Callback<std::string> done) {
  {
    MutexLock lock(state_->mu);
    while (state_->outstanding >= state_->window) state_->cv.wait(lock.native());
    ++state_->outstanding;
    state_->waiting.push_back(std::move(message));
    state_->waiting_done.push_back(std::move(done));
    // Otherwise it leaves with a request queued or in flight already.
    if (state_->requests >= State::kRequestsInFlight) return;
    if (state_->requests > 0 && state_->waiting.size() < State::kSecondRequestMin) return;
    ++state_->requests;
  }
  State::send(state_, *client_.core_, queue_);
}

std::future<Result<std::string>> Producer::send_async(NewMessage message) {
  auto p = std::make_shared<std::promise<Result<std::string>>>();
  auto f = p->get_future();
  send_async(std::move(message), [p](Result<std::string> r) { p->set_value(std::move(r)); });
  return f;
}

void Producer::flush() {
  MutexLock lock(state_->mu);
  while (state_->outstanding != 0) state_->cv.wait(lock.native());
}

Result<std::vector<LeasedMessage>> Consumer::pull(std::uint32_t batch, std::chrono::milliseconds wait) {
  PullOptions o;
  o.batch_size = batch;
  return client_.pull(queue_, o, wait);
}
Result<std::unique_ptr<Stream>> Consumer::consume(std::function<void(const Delivery&)> handler,
                                                  std::uint32_t max_in_flight) {
  ConsumeOptions o;
  o.max_in_flight = max_in_flight;
  return client_.consume(queue_, std::move(handler), std::move(o));
}
Result<AckResult> Consumer::ack(const std::string& lease_id) { return client_.ack(queue_, {lease_id}); }
Result<AckResult> Consumer::ack(std::vector<std::string> lease_ids) {
  return client_.ack(queue_, std::move(lease_ids));
}
Result<AckResult> Consumer::retry(const std::string& lease_id,
                                  std::optional<std::chrono::milliseconds> delay) {
  RetryRequest r{lease_id, std::nullopt};
  if (delay) r.delay_ms = static_cast<std::uint64_t>(delay->count());
  return client_.ack(queue_, {}, {r});
}
Result<ExtendResult> Consumer::extend(const std::string& lease_id, std::chrono::milliseconds visibility) {
  return client_.extend(queue_, {lease_id}, visibility);
}

}  // namespace roost
