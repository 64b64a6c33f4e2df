#include <roost/client/client.h>

#include <roost/core/thread_name.h>
#include <roost/wire/codec.h>

#include <capnp/message.h>
#include <kj/exception.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <thread>
#include <tuple>
#include <unordered_map>

namespace roost {

namespace proto = roost::proto;
using wire::text;
using wire::view;
using Clock = std::chrono::steady_clock;

namespace {

zmq::message_t to_frame(capnp::MessageBuilder& b) {
  zmq::message_t frame(wire::encoded_size(b));
  wire::encode_to(b, frame.data(), frame.size());
  return frame;
}

std::string_view frame_view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

// The steady clock at its coarse resolution (a few ms, a fraction of the cost): for deadlines of
// seconds taken on every fire-and-forget publish.
Clock::time_point coarse_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return Clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

// Walks the payloads of a ChannelMessages event in order: slices of the one packed frame (when
// `sizes` is set) or one frame each. nullopt when the frames do not match the event.
class PayloadCursor {
 public:
  PayloadCursor(proto::ChannelMessages::Reader event, std::span<zmq::message_t> frames)
      : sizes_(event.getSizes()), frames_(frames),
        packed_(frames.empty() ? std::string_view() : frame_view(frames[0])) {}
  std::optional<std::string_view> next(unsigned i) {
    if (sizes_.size() != 0) {
      if (i >= sizes_.size() || at_ + sizes_[i] > packed_.size()) return std::nullopt;
      auto d = packed_.substr(at_, sizes_[i]);
      at_ += sizes_[i];
      return d;
    }
    if (i >= frames_.size()) return std::nullopt;
    return frame_view(frames_[i]);
  }

 private:
  capnp::List<std::uint32_t>::Reader sizes_;
  std::span<zmq::message_t> frames_;
  std::string_view packed_;
  std::size_t at_ = 0;
};

// Overwrites `cm` with message `m` (its strings keep their capacity).
void fill(ChannelMessage& cm, proto::ChannelMessage::Reader m, std::string_view data) {
  cm.channel.assign(view(m.getChannel()));
  cm.data.assign(data);
  cm.content_type = wire::from_wire(m.getContentType());
  cm.offset = m.getOffset();
  cm.epoch.assign(view(m.getEpoch()));
  cm.timestamp_ms = m.getTimestampMs();
  switch (m.getKind()) {
    case proto::MessageKind::JOIN: cm.kind = ChannelEventKind::kJoin; break;
    case proto::MessageKind::LEAVE: cm.kind = ChannelEventKind::kLeave; break;
    default: cm.kind = ChannelEventKind::kMessage; break;
  }
  cm.subscribers = cm.kind == ChannelEventKind::kMessage ? 0 : m.getSubscribers();
}

Error unavailable(std::string msg) { return Error{ErrorCode::UNAVAILABLE, std::move(msg)}; }

void build_ack(proto::Envelope::Builder env, const std::string& queue, const std::vector<std::string>& acks,
               const std::vector<RetryRequest>& retries) {
  auto a = env.initAck();
  a.setQueue(text(queue));
  wire::set_texts(a.initAcks(static_cast<unsigned>(acks.size())), acks);
  auto rl = a.initRetries(static_cast<unsigned>(retries.size()));
  for (unsigned i = 0; i < retries.size(); ++i) {
    rl[i].setLeaseId(text(retries[i].lease_id));
    if (retries[i].delay_ms) rl[i].initDelayMs().setValue(*retries[i].delay_ms);
  }
}

}  // namespace

// An answer (or event) as the I/O thread hands it to a completion: the envelope, its payload
// frames, or the error that ended the request.
struct Reply {
  std::optional<Error> failure;  // set: timeout, connection lost, closed
  proto::Envelope::Reader env;
  std::span<zmq::message_t> payloads;
  // The received frames (envelope first), for a handler that keeps them past the call by moving
  // them out (the frames stay where they are, so `env` stays valid until the call returns).
  std::vector<zmq::message_t>* frames = nullptr;

  // The node's error, or the local failure.
  std::optional<Error> error() const {
    if (failure) return failure;
    if (env.isError()) {
      auto e = env.getError();
      return Error{e.getCode(), std::string(view(e.getMessage()))};
    }
    return std::nullopt;
  }
};
using ReplyFn = std::move_only_function<void(Reply&)>;

struct ClientCore : std::enable_shared_from_this<ClientCore> {
  // Fire-and-forget publishes in a row, packed as they come: their payloads one after another
  // in one buffer, their channel names in another (NUL-terminated; a name repeated from the item
  // before is stored once). A publish costs a copy into these, no allocation of its own; the I/O
  // thread sends the run as one publishBatch message.
  struct PublishRun {
    struct Item {
      std::uint32_t name_at, name_size, size;
      ContentType type;
    };
    static constexpr std::size_t kMaxItems = 256;
    static constexpr std::size_t kMaxBytes = 256u << 10;
    std::string names;
    std::string data;
    std::vector<Item> items;

    std::string_view name(const Item& it) const {
      return std::string_view(names).substr(it.name_at, it.name_size);
    }
    bool has_room(std::size_t bytes) const {
      return items.size() < kMaxItems && (items.empty() || data.size() + bytes <= kMaxBytes);
    }
    void add(std::string_view channel, std::string_view payload, ContentType type) {
      Item it{0, static_cast<std::uint32_t>(channel.size()),
              static_cast<std::uint32_t>(payload.size()), type};
      if (!items.empty() && name(items.back()) == channel) {
        it.name_at = items.back().name_at;
      } else {
        it.name_at = static_cast<std::uint32_t>(names.size());
        names.append(channel);
        names.push_back('\0');  // text() wants its terminator
      }
      data.append(payload);
      items.push_back(it);
    }
  };
  // A request on its way to the I/O thread.
  struct Outgoing {
    std::uint64_t id = 0;
    std::vector<zmq::message_t> frames;
    ReplyFn done;  // empty for fire-and-forget
    Clock::time_point deadline;
    // Fire-and-forget publishes, not encoded yet (see PublishRun).
    std::unique_ptr<PublishRun> run;
    // A request made up when it is sent: called on the I/O thread just before, it sets id,
    // frames and done, or returns false when there is nothing to send after all. Lets a producer
    // put everything that queued up meanwhile into one request.
    std::function<bool(Outgoing&)> build;
  };
  struct Pending {
    ReplyFn done;
    Clock::time_point deadline;
    std::vector<zmq::message_t> frames;  // shared copies, resent if the node had forgotten us
  };
  // A subscription or consumer, re-opened after a reconnect.
  struct StreamState {
    bool consumer = false;
    std::string target;  // pattern or queue
    std::function<void(const ChannelMessage&)> on_message;
    std::function<void(const Delivery&)> on_delivery;
    SubscribeOptions sub;
    ConsumeOptions cons;
    std::string epoch;          // last seen (concrete channels resume from it)
    std::uint64_t offset = 0;
    std::promise<Result<void>>* first = nullptr;  // the opener waits on this
  };

  explicit ClientCore(ClientOptions o) : options(std::move(o)) {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) throw std::runtime_error("eventfd failed");
  }
  ~ClientCore() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  ClientOptions options;
  static constexpr std::chrono::milliseconds kCloseClearance{1000};
  zmq::context_t ctx{1};
  std::thread io;
  std::thread dispatch;
  std::thread::id io_id;
  int wake_fd = -1;
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<bool> closing{false};
  std::mutex close_mu;  // one close() at a time
  std::atomic<bool> ready{false};
  std::atomic<std::uint64_t> reconnect_count{0};
  std::atomic<std::size_t> queued_messages{0};  // channel messages waiting for their handler
  std::atomic<std::size_t> queued_bytes{0};

  std::mutex mu;
  std::vector<Outgoing> outbox;           // GUARDED_BY(mu)
  bool wake_pending = false;              // GUARDED_BY(mu): the eventfd was written since the last swap
  std::vector<std::uint64_t> cancels;     // GUARDED_BY(mu): streams to cancel
  std::vector<std::uint64_t> to_open;     // GUARDED_BY(mu): streams to open
  std::map<std::uint64_t, StreamState> streams;  // GUARDED_BY(mu)
  std::promise<Result<void>> connected_once;
  bool connected_once_set = false;        // io thread

  std::mutex dmu;
  std::condition_variable dcv;
  std::deque<std::function<void()>> dqueue;  // GUARDED_BY(dmu)
  bool dstop = false;                        // GUARDED_BY(dmu)

  // ---- I/O thread state ----
  std::optional<zmq::socket_t> sock;
  std::unordered_map<std::uint64_t, Pending> pending;
  std::vector<Outgoing> waiting;  // made while not connected
  std::uint64_t hello_id = 0;
  Clock::time_point hello_deadline;
  std::uint64_t instance = 0;
  Clock::time_point last_heard;
  Clock::time_point next_heartbeat;
  Clock::time_point reconnect_at;
  std::chrono::milliseconds backoff{0};
  std::mt19937_64 rng{std::random_device{}()};

  void wake() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }

  void submit(capnp::MallocMessageBuilder& b, std::uint64_t id, std::vector<zmq::message_t> payloads,
              ReplyFn done, std::chrono::milliseconds timeout) {
    Outgoing o;
    o.id = id;
    o.frames.reserve(payloads.size() + 1);
    o.frames.push_back(to_frame(b));
    for (auto& p : payloads) o.frames.push_back(std::move(p));
    o.done = std::move(done);
    o.deadline = Clock::now() + timeout;
    enqueue_outgoing(std::move(o));
  }

  // Answers an unsent request with `why` (building it first if it is built late).
  void fail_outgoing(Outgoing& o, const Error& why) {
    if (o.build && !o.done && !o.build(o)) return;
    Reply r{why, {}, {}};
    if (o.done) o.done(r);
  }

  // A fire-and-forget publish joins the run at the end of the outbox when it has room.
  void enqueue_publish(std::string_view channel, std::string_view data, ContentType type) {
    auto deadline = coarse_now() + options.request_timeout;
    {
      std::unique_lock lock(mu);
      if (closing.load()) return;  // fire and forget: nothing to tell
      if (outbox.empty() || !outbox.back().run || !outbox.back().run->has_room(data.size())) {
        Outgoing o;
        o.run = std::make_unique<PublishRun>();
        outbox.push_back(std::move(o));
      }
      auto& back = outbox.back();
      back.deadline = deadline;
      back.run->add(channel, data, type);
      if (wake_pending) return;
      wake_pending = true;
    }
    wake();
  }

  void enqueue_outgoing(Outgoing o) {
    {
      std::unique_lock lock(mu);
      if (closing.load()) {
        lock.unlock();  // the failure's callbacks may queue more
        fail_outgoing(o, unavailable("the client is closed"));
        return;
      }
      outbox.push_back(std::move(o));
      if (wake_pending) return;  // the I/O thread was told already and has not looked yet
      wake_pending = true;
    }
    wake();
  }

  // Sends a request and blocks for its answer, decoded by `decode`.
  template <class T, class Build, class Decode>
  Result<T> call(Build build, Decode decode, std::vector<zmq::message_t> payloads = {},
                 std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    if (std::this_thread::get_id() == io_id) {
      return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT,
                                   "blocking call from a completion callback (use the _async form)"});
    }
    std::promise<Result<T>> p;
    auto f = p.get_future();
    async<T>(build, decode, std::move(payloads),
             [&p](Result<T> r) { p.set_value(std::move(r)); }, timeout);
    return f.get();
  }

  template <class T, class Build, class Decode>
  void async(Build build, Decode decode, std::vector<zmq::message_t> payloads, Callback<T> done,
             std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    capnp::MallocMessageBuilder b(256);
    auto env = b.initRoot<proto::Envelope>();
    std::uint64_t id = next_id.fetch_add(1);
    env.setId(id);
    build(env);
    submit(b, id, std::move(payloads),
           [done = std::move(done), decode](Reply& r) mutable {
             if (auto e = r.error()) return done(std::unexpected(*e));
             try {
               done(decode(r));
             } catch (const kj::Exception& ex) {
               done(std::unexpected(Error{ErrorCode::MALFORMED,
                                          std::string("unexpected answer: ") + ex.getDescription().cStr()}));
             }
           },
           timeout.value_or(options.request_timeout));
  }

  void to_dispatch(std::function<void()> fn) {
    {
      std::lock_guard lock(dmu);
      dqueue.push_back(std::move(fn));
    }
    dcv.notify_one();
  }

  void dispatch_loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(dmu);
        dcv.wait(lock, [&] { return dstop || !dqueue.empty(); });
        if (dqueue.empty()) return;
        fn = std::move(dqueue.front());
        dqueue.pop_front();
      }
      fn();
    }
  }

  // ---- connection ----

  void open_socket() {
    sock.emplace(ctx, zmq::socket_type::dealer);
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

  void send_hello() {
    capnp::MallocMessageBuilder b(128);
    auto env = b.initRoot<proto::Envelope>();
    hello_id = next_id.fetch_add(1);
    env.setId(hello_id);
    auto h = env.initHello();
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    h.setToken(text(options.token));
    h.setClient(text(options.name));
    h.setHeartbeatMs(static_cast<std::uint32_t>(options.heartbeat.count()));
    auto f = to_frame(b);
    (void)sock->send(f, zmq::send_flags::dontwait);
    hello_deadline = Clock::now() + options.connect_timeout;
    last_heard = Clock::now();
  }

  void lose_connection(const std::string& why) {
    bool was_ready = ready.exchange(false);
    // Requests in flight may or may not have been applied: fail them.
    auto failing = std::move(pending);
    pending.clear();
    for (auto& [id, p] : failing) {
      Reply r{unavailable("connection to " + options.url + " lost (" + why + "); the request may or may not have been applied"), {}, {}};
      if (p.done) p.done(r);
    }
    sock.reset();
    hello_id = 0;
    instance = 0;
    if (was_ready) reconnect_count.fetch_add(1);
    backoff = backoff.count() == 0 ? options.reconnect_min
                                   : std::min(backoff * 2, options.reconnect_max);
    auto jitter = std::uniform_int_distribution<long>(0, backoff.count() / 2)(rng);
    reconnect_at = Clock::now() + backoff + std::chrono::milliseconds(jitter);
  }

  // Sends in order; runs of fire-and-forget publishes go as publishBatch messages.
  void send_all(std::vector<Outgoing>& items) {
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

  void send_publish_batch(const PublishRun& run) {
    auto n = static_cast<unsigned>(run.items.size());
    capnp::MallocMessageBuilder b(64 + n * 8);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(0);
    auto pb = env.initPublishBatch();
    auto list = pb.initItems(n);
    auto sizes = pb.initSizes(n);
    for (unsigned k = 0; k < n; ++k) {
      const auto& it = run.items[k];
      list[k].setChannel(text(run.name(it)));
      list[k].setContentType(wire::to_wire(it.type));
      sizes.set(k, it.size);
    }
    auto f = to_frame(b);
    zmq::message_t payload(run.data.data(), run.data.size());
    (void)sock->send(f, zmq::send_flags::sndmore);
    (void)sock->send(payload, zmq::send_flags::none);
  }

  void send_now(Outgoing& o) {
    if (o.done) {
      std::vector<zmq::message_t> copies(o.frames.size());
      for (std::size_t i = 0; i < o.frames.size(); ++i) copies[i].copy(o.frames[i]);
      pending.emplace(o.id, Pending{std::move(o.done), o.deadline, std::move(copies)});
    }
    for (std::size_t i = 0; i < o.frames.size(); ++i) {
      auto flags = i + 1 < o.frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      (void)sock->send(o.frames[i], flags);
    }
  }

  // The node accepted our hello: send what waited, re-open streams.
  void on_ready(proto::HelloOk::Reader ok) {
    instance = ok.getInstance();
    ready = true;
    backoff = std::chrono::milliseconds(0);
    if (!connected_once_set) {
      connected_once_set = true;
      connected_once.set_value({});
    }
    {
      std::lock_guard lock(mu);
      for (auto& [id, s] : streams) open_stream(id, s);
      to_open.clear();
    }
    auto w = std::move(waiting);
    waiting.clear();
    send_all(w);
  }

  // REQUIRES: mu held.
  void open_stream(std::uint64_t id, StreamState& s) {
    capnp::MallocMessageBuilder b(128);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(id);
    if (s.consumer) {
      auto c = env.initConsume();
      c.setQueue(text(s.target));
      c.setMaxInFlight(s.cons.max_in_flight);
      if (s.cons.visibility) c.setVisibilityTimeoutMs(static_cast<std::uint64_t>(s.cons.visibility->count()));
    } else {
      auto sub = env.initSubscribe();
      sub.setPattern(text(s.target));
      if (!s.epoch.empty() && s.target.find_first_of("*>") == std::string::npos) {
        auto pos = sub.initSince();
        pos.setEpoch(text(s.epoch));
        pos.setOffset(s.offset);
      } else if (s.epoch.empty() && s.sub.since) {
        auto pos = sub.initSince();
        pos.setEpoch(text(s.sub.since->first));
        pos.setOffset(s.sub.since->second);
      } else if (s.epoch.empty() && s.sub.recent > 0) {
        sub.setRecent(static_cast<std::uint32_t>(s.sub.recent));
      } else {
        sub.setLive();
      }
    }
    auto f = to_frame(b);
    (void)sock->send(f, zmq::send_flags::none);
  }

  void on_stream_event(std::uint64_t id, Reply& r) {
    std::function<void()> now;  // handlers that run on this thread, after the lock is released
    {
      std::lock_guard lock(mu);
      stream_event_locked(id, r, now);
    }
    if (now) now();
  }

  // REQUIRES: mu held.
  void stream_event_locked(std::uint64_t id, Reply& r, std::function<void()>& now) {
    auto it = streams.find(id);
    if (it == streams.end()) return;
    StreamState& s = it->second;
    const auto& env = r.env;
    using W = proto::Envelope::Which;
    switch (env.which()) {
      case W::OK:
      case W::SUBSCRIBED: {
        if (env.isSubscribed()) {
          // Recovered messages (if any) follow and move the position on.
          auto sub = env.getSubscribed();
          s.epoch = std::string(view(sub.getEpoch()));
          s.offset = sub.getOffset();
        }
        if (s.first) {
          s.first->set_value({});
          s.first = nullptr;
        }
        return;
      }
      case W::MESSAGE: {
        auto event = env.getMessage();
        auto list = event.getMessages();
        // Here: presence events, the resume position and the backlog count. The data messages
        // are read from the frames where the handler runs, into one reused ChannelMessage, so
        // that a message costs no allocation once the batch's first has sized its strings.
        std::size_t count = 0;
        std::size_t bytes = 0;
        std::optional<proto::ChannelMessage::Reader> last;
        PayloadCursor cursor(event, r.payloads);
        for (unsigned i = 0; i < list.size(); ++i) {
          auto m = list[i];
          auto data = cursor.next(i);
          if (!data) break;
          if (m.getKind() != proto::MessageKind::DATA) {
            if (s.sub.on_presence) {
              ChannelMessage cm;
              fill(cm, m, *data);
              to_dispatch([f = s.sub.on_presence, cm = std::move(cm)] { f(cm); });
            }
            continue;
          }
          last = m;
          ++count;
          bytes += data->size();
        }
        if (last) {  // the resume position: the last data message's
          s.epoch.assign(view(last->getEpoch()));
          s.offset = last->getOffset();
        }
        if (count == 0 || r.frames == nullptr) return;
        if (queued_messages.load() + count > options.max_queued_messages ||
            queued_bytes.load() + bytes > options.max_queued_bytes) {
          // The handler is behind: drop, and say so once it catches up.
          if (s.sub.on_lag) to_dispatch([f = s.sub.on_lag, count] { f(count); });
          return;
        }
        queued_messages += count;
        queued_bytes += bytes;
        auto frames = std::make_shared<std::vector<zmq::message_t>>(std::move(*r.frames));
        auto run = [this, handler = s.on_message, frames, count, bytes] {
          try {
            wire::EnvelopeReader reader((*frames)[0].data(), (*frames)[0].size());
            auto ev = reader.get().getMessage();
            auto msgs = ev.getMessages();
            PayloadCursor payloads(ev, std::span<zmq::message_t>(frames->data() + 1, frames->size() - 1));
            ChannelMessage cm;
            for (unsigned i = 0; i < msgs.size(); ++i) {
              auto data = payloads.next(i);
              if (!data) break;
              if (msgs[i].getKind() != proto::MessageKind::DATA) continue;
              fill(cm, msgs[i], *data);
              handler(cm);
            }
          } catch (const kj::Exception&) {
            // Read once already on the I/O thread: cannot fail here.
          }
          queued_messages -= count;
          queued_bytes -= bytes;
        };
        if (s.sub.on_io_thread) {
          now = std::move(run);
        } else {
          to_dispatch(std::move(run));
        }
        return;
      }
      case W::LAGGED: {
        if (s.sub.on_lag) to_dispatch([f = s.sub.on_lag, n = env.getLagged().getDropped()] { f(n); });
        return;
      }
      case W::RESET:
        s.epoch = std::string(view(env.getReset().getEpoch()));
        s.offset = env.getReset().getOffset();
        return;
      case W::DELIVERY: {
        auto qm = env.getDelivery();
        std::string queue(view(qm.getQueue()));
        auto list = qm.getMessages();
        auto batch = std::make_shared<std::vector<Delivery>>();
        batch->reserve(list.size());
        for (unsigned i = 0; i < list.size() && i < r.payloads.size(); ++i) {
          auto m = list[i];
          Delivery d;
          d.queue = queue;
          d.message = LeasedMessage{std::string(view(m.getId())), std::string(view(m.getLeaseId())),
                                    std::string(frame_view(r.payloads[i])), wire::from_wire(m.getContentType()),
                                    m.getAttempts(), m.getTimestampMs(), std::string(view(m.getKey()))};
          d.core_ = weak_from_this();
          batch->push_back(std::move(d));
        }
        auto handler = s.on_delivery;
        to_dispatch([handler, batch] {
          for (const auto& d : *batch) handler(d);
        });
        return;
      }
      case W::ERROR: {
        Error e{env.getError().getCode(), std::string(view(env.getError().getMessage()))};
        if (e.code == ErrorCode::HELLO_REQUIRED) return;  // handled by the reconnect path
        if (s.first) {
          s.first->set_value(std::unexpected(e));
          s.first = nullptr;
          streams.erase(it);
          return;
        }
        auto on_error = s.consumer ? s.cons.on_error : s.sub.on_error;
        streams.erase(it);
        if (on_error) to_dispatch([on_error, e] { on_error(e); });
        return;
      }
      default: return;
    }
  }

  void handle(std::vector<zmq::message_t>& parts) {
    if (parts.empty()) return;
    std::optional<wire::EnvelopeReader> reader;
    try {
      reader.emplace(parts[0].data(), parts[0].size());
    } catch (const kj::Exception&) {
      return;  // not from a Roost node; ignore
    }
    Reply r{std::nullopt, reader->get(), std::span<zmq::message_t>(parts.data() + 1, parts.size() - 1), &parts};
    last_heard = Clock::now();
    std::uint64_t id = r.env.getId();
    try {
      if (id != 0 && id == hello_id) {
        hello_id = 0;
        if (r.env.isHelloOk()) return on_ready(r.env.getHelloOk());
        auto e = r.error().value_or(Error{ErrorCode::INTERNAL, "unexpected answer to hello"});
        if (!connected_once_set) {
          connected_once_set = true;
          connected_once.set_value(std::unexpected(e));
        }
        return lose_connection(e.message);
      }
      if (r.env.isHeartbeat()) {
        auto inst = r.env.getHeartbeat().getInstance();
        if (ready && instance != 0 && inst != instance) {
          // The node restarted and does not know us: start over.
          ready = false;
          send_hello();
        }
        return;
      }
      if (r.env.isError() && r.env.getError().getCode() == ErrorCode::HELLO_REQUIRED) {
        // The node forgot this connection (restart, or we were silent too long). The request
        // was not applied: say hello again and resend it then.
        if (auto it = pending.find(id); it != pending.end()) {
          waiting.push_back(Outgoing{id, std::move(it->second.frames), std::move(it->second.done),
                                     it->second.deadline});
          pending.erase(it);
        }
        if (hello_id == 0) {
          ready = false;
          send_hello();
        }
        return;
      }
      {
        std::unique_lock lock(mu);
        if (streams.contains(id)) {
          lock.unlock();
          return on_stream_event(id, r);
        }
      }
      if (r.env.isDelivery()) {
        // A consumer we cancelled: hand its messages straight back.
        auto qm = r.env.getDelivery();
        std::vector<RetryRequest> back;
        for (auto m : qm.getMessages()) back.push_back(RetryRequest{std::string(view(m.getLeaseId())), 0});
        settle(std::string(view(qm.getQueue())), {}, std::move(back));
        return;
      }
      auto it = pending.find(id);
      if (it == pending.end()) return;  // timed out already, or fire-and-forget
      auto done = std::move(it->second.done);
      pending.erase(it);
      done(r);
    } catch (const kj::Exception&) {
      // A malformed answer: treat as unavailable for that request.
      if (auto it = pending.find(id); it != pending.end()) {
        auto done = std::move(it->second.done);
        pending.erase(it);
        Reply bad{Error{ErrorCode::MALFORMED, "malformed answer from the node"}, {}, {}};
        done(bad);
      }
    }
  }

  void expire(Clock::time_point now) {
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      auto done = std::move(it->second.done);
      it = pending.erase(it);
      Reply r{Error{ErrorCode::TIMEOUT, "no answer from the node in time"}, {}, {}};
      done(r);
    }
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (it->deadline > now) {
        ++it;
        continue;
      }
      auto o = std::move(*it);
      it = waiting.erase(it);
      Reply r{unavailable("not connected to " + options.url), {}, {}};
      if (o.done) o.done(r);
    }
  }

  void run() {
    io_id = std::this_thread::get_id();
    open_socket();
    std::vector<zmq::message_t> parts;
    std::vector<Outgoing> batch;
    std::vector<std::uint64_t> cancel_batch;
    while (!closing.load()) {
      auto now = Clock::now();
      if (!sock && now >= reconnect_at) open_socket();
      zmq::pollitem_t items[2] = {{sock ? sock->handle() : nullptr, 0, ZMQ_POLLIN, 0},
                                  {nullptr, wake_fd, ZMQ_POLLIN, 0}};
      int n = sock ? 2 : 1;
      zmq::pollitem_t* first = sock ? &items[0] : &items[1];
      try {
        zmq::poll(first, static_cast<std::size_t>(n), std::chrono::milliseconds(20));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (items[1].revents & ZMQ_POLLIN || !sock) {
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
      {
        std::lock_guard lock(mu);
        batch.swap(outbox);
        cancel_batch.swap(cancels);
        wake_pending = false;
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
      std::lock_guard lock(mu);
      left.swap(outbox);
    }
    for (auto& o : waiting) left.push_back(std::move(o));
    for (auto& o : left) {
      bool fire_and_forget = o.run || (!o.done && !o.build);
      if (sock && ready && fire_and_forget) {
        if (o.run) send_publish_batch(*o.run);
        else send_now(o);
      } else {
        fail_outgoing(o, unavailable("the client is closed"));
      }
    }
    // What the loop above sent may still sit in ZeroMQ's queue too.
    if (sock && ready) await_clearance();
    {
      std::lock_guard lock(mu);
      for (auto& [id, s] : streams) {
        if (s.first) s.first->set_value(std::unexpected(unavailable("the client is closed")));
        s.first = nullptr;
      }
    }
    sock.reset();
  }

  // Sends a heartbeat and reads until the node answers it or kCloseClearance passes.
  void await_clearance() {
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

  // The I/O thread ended on an exception: report it to connect() or to whoever waits.
  void fail_fatally(const std::string& why) {
    ready = false;
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
      std::lock_guard lock(mu);
      left.swap(outbox);
      for (auto& [id, s] : streams) {
        if (s.first) s.first->set_value(std::unexpected(unavailable("the client failed: " + why)));
        s.first = nullptr;
      }
    }
    for (auto& o : waiting) left.push_back(std::move(o));
    waiting.clear();
    for (auto& o : left) fail_outgoing(o, unavailable("the client failed: " + why));
  }

  void close() {
    std::lock_guard close_lock(close_mu);
    closing = true;
    wake();
    if (io.joinable()) io.join();
    {
      std::lock_guard lock(dmu);
      dstop = true;
    }
    dcv.notify_all();
    if (dispatch.joinable() && dispatch.get_id() != std::this_thread::get_id()) dispatch.join();
    else if (dispatch.joinable()) dispatch.detach();
  }

  Result<std::unique_ptr<Stream>> open(StreamState state) {
    if (std::this_thread::get_id() == io_id) {
      return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "blocking call from a completion callback"});
    }
    std::uint64_t id = next_id.fetch_add(1);
    std::promise<Result<void>> first;
    auto f = first.get_future();
    state.first = &first;
    {
      std::lock_guard lock(mu);
      if (closing) return std::unexpected(unavailable("the client is closed"));
      streams.emplace(id, std::move(state));
      to_open.push_back(id);  // opened by the I/O thread: now if connected, else after hello
    }
    wake();
    if (f.wait_for(options.request_timeout) != std::future_status::ready) {
      bool timed_out = false;
      {
        std::lock_guard lock(mu);
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
    return std::make_unique<Stream>(weak_from_this(), id);
  }

  void cancel(std::uint64_t id) {
    {
      std::lock_guard lock(mu);
      if (streams.erase(id) == 0) return;
      cancels.push_back(id);
    }
    wake();
  }

  void settle(std::string queue, std::vector<std::string> acks, std::vector<RetryRequest> retries) {
    capnp::MallocMessageBuilder b(128);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(0);
    build_ack(env, queue, acks, retries);
    submit(b, 0, {}, nullptr, options.request_timeout);
  }
};

// ---- Stream, Delivery ----------------------------------------------------------------------------

Stream::Stream(std::weak_ptr<ClientCore> core, std::uint64_t id) : core_(std::move(core)), id_(id) {}
Stream::~Stream() { cancel(); }
void Stream::cancel() {
  if (auto c = core_.lock()) c->cancel(id_);
  core_.reset();
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

Client::Client(std::shared_ptr<ClientCore> core) : core_(std::move(core)) {}
Client::~Client() { close(); }

Result<std::shared_ptr<Client>> Client::connect(ClientOptions options) {
  if (!options.url.starts_with("tcp://") && !options.url.starts_with("ipc://")) {
    return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "url must be tcp://HOST:PORT or ipc://PATH"});
  }
  auto core = std::make_shared<ClientCore>(std::move(options));
  auto first = core->connected_once.get_future();
  core->dispatch = std::thread([c = core.get()] {
    roost::name_this_thread("roost-dispatch");
    c->dispatch_loop();
  });
  core->io = std::thread([c = core.get()] {
    roost::name_this_thread("roost-client-io");
    try {
      c->run();
    } catch (const std::exception& e) {
      // A bad address (zmq refuses it) or a ZeroMQ failure: the client is unusable.
      c->fail_fatally(e.what());
    }
  });
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

namespace {
std::vector<zmq::message_t> payloads_of(const std::vector<NewMessage>& msgs) {
  std::vector<zmq::message_t> out;
  out.reserve(msgs.size());
  for (const auto& m : msgs) out.emplace_back(m.body.data(), m.body.size());
  return out;
}
void build_enqueue(proto::Envelope::Builder env, const std::string& queue, const std::vector<NewMessage>& msgs) {
  auto e = env.initEnqueue();
  e.setQueue(text(queue));
  auto list = e.initMessages(static_cast<unsigned>(msgs.size()));
  for (unsigned i = 0; i < msgs.size(); ++i) {
    list[i].setContentType(wire::to_wire(msgs[i].content_type));
    list[i].setDelayMs(msgs[i].delay_ms);
    if (!msgs[i].id.empty()) list[i].setId(text(msgs[i].id));
    if (!msgs[i].key.empty()) list[i].setKey(text(msgs[i].key));
  }
}
std::vector<std::string> decode_ids(Reply& r) {
  std::vector<std::string> ids;
  for (auto id : r.env.getEnqueued().getIds()) ids.emplace_back(view(id));
  return ids;
}
AckResult decode_acked(Reply& r) {
  auto a = r.env.getAcked();
  AckResult out{a.getAcked(), a.getRetried(), {}};
  for (auto u : a.getUnknown()) out.unknown.emplace_back(view(u));
  return out;
}
}  // namespace

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

Result<std::vector<LeasedMessage>> Client::pull(const std::string& queue, PullOptions options,
                                                std::chrono::milliseconds wait) {
  return core_->call<std::vector<LeasedMessage>>(
      [&](proto::Envelope::Builder env) {
        auto p = env.initPull();
        p.setQueue(text(queue));
        p.setBatchSize(options.batch_size);
        if (options.visibility_timeout_ms) p.setVisibilityTimeoutMs(*options.visibility_timeout_ms);
        p.setWaitMs(static_cast<std::uint64_t>(wait.count()));
      },
      [](Reply& r) {
        std::vector<LeasedMessage> out;
        auto list = r.env.getMessages().getMessages();
        for (unsigned i = 0; i < list.size() && i < r.payloads.size(); ++i) {
          auto m = list[i];
          out.push_back(LeasedMessage{std::string(view(m.getId())), std::string(view(m.getLeaseId())),
                                      std::string(frame_view(r.payloads[i])), wire::from_wire(m.getContentType()),
                                      m.getAttempts(), m.getTimestampMs(), std::string(view(m.getKey()))});
        }
        return out;
      },
      {}, core_->options.request_timeout + wait);
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
        auto e = env.initExtend();
        e.setQueue(text(queue));
        wire::set_texts(e.initLeaseIds(static_cast<unsigned>(leases.size())), leases);
        e.setVisibilityTimeoutMs(static_cast<std::uint64_t>(visibility.count()));
      },
      [](Reply& r) {
        auto e = r.env.getExtended();
        ExtendResult out{e.getExtended(), {}};
        for (auto u : e.getUnknown()) out.unknown.emplace_back(view(u));
        return out;
      });
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

namespace {
QueueInfo decode_queue(Reply& r) { return wire::from_wire(r.env.getQueue()); }
}  // namespace

Result<QueueInfo> Client::put_queue(const std::string& name, const QueueConfigPatch& patch) {
  return core_->call<QueueInfo>(
      [&](proto::Envelope::Builder env) {
        auto p = env.initPutQueue();
        p.setName(text(name));
        wire::to_wire(p.initConfig(), patch);
      },
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
                                             [](Reply& r) {
                                               std::vector<QueueInfo> out;
                                               for (auto q : r.env.getQueues()) out.push_back(wire::from_wire(q));
                                               return out;
                                             });
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

Result<std::uint64_t> Client::tell(const std::string& object_class, const std::string& name,
                                   std::string data, ContentType type) {
  std::promise<Result<std::uint64_t>> p;
  auto f = p.get_future();
  tell_async(object_class, name, std::move(data), type,
             [&p](Result<std::uint64_t> r) { p.set_value(std::move(r)); });
  return f.get();
}

void Client::tell_async(const std::string& object_class, const std::string& name, std::string data,
                        ContentType type, Callback<std::uint64_t> done) {
  std::vector<zmq::message_t> payloads;
  payloads.emplace_back(data.data(), data.size());
  core_->async<std::uint64_t>(
      [&](proto::Envelope::Builder env) {
        auto t = env.initObjectSend();
        t.setClass(text(object_class));
        t.setName(text(name));
        t.setContentType(wire::to_wire(type));
      },
      [](Reply& r) { return r.env.getCount(); }, std::move(payloads), std::move(done));
}

Result<ObjectReply> Client::call(const std::string& object_class, const std::string& name,
                                 std::string data, std::chrono::milliseconds timeout, ContentType type) {
  std::vector<zmq::message_t> payloads;
  payloads.emplace_back(data.data(), data.size());
  // The node answers call_timeout itself; the request's own deadline is a little longer.
  auto wait = (timeout.count() > 0 ? timeout : std::chrono::milliseconds(10'000)) + std::chrono::seconds(2);
  return core_->call<ObjectReply>(
      [&](proto::Envelope::Builder env) {
        auto c = env.initObjectCall();
        c.setClass(text(object_class));
        c.setName(text(name));
        c.setTimeoutMs(static_cast<std::uint64_t>(timeout.count()));
        c.setContentType(wire::to_wire(type));
      },
      [](Reply& r) {
        if (!r.env.isObjectReply() || r.payloads.size() != 1) {
          throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("objectReply without its payload"));
        }
        return ObjectReply{std::string(static_cast<const char*>(r.payloads[0].data()), r.payloads[0].size()),
                           wire::from_wire(r.env.getObjectReply().getContentType())};
      },
      std::move(payloads), std::max(wait, core_->options.request_timeout));
}

void Client::publish(std::string_view channel, std::string_view data, ContentType type) {
  core_->enqueue_publish(channel, data, type);
}

Result<PublishAck> Client::publish_sync(const std::string& channel, std::string data, ContentType type) {
  std::vector<zmq::message_t> payloads;
  payloads.emplace_back(data.data(), data.size());
  return core_->call<PublishAck>(
      [&](proto::Envelope::Builder env) {
        auto p = env.initPublish();
        p.setChannel(text(channel));
        p.setContentType(wire::to_wire(type));
      },
      [](Reply& r) {
        auto p = r.env.getPublished();
        return PublishAck{p.getOffset(), std::string(view(p.getEpoch())), p.getSubscribers()};
      },
      std::move(payloads));
}

Result<std::unique_ptr<Stream>> Client::subscribe(const std::string& pattern,
                                                  std::function<void(const ChannelMessage&)> handler,
                                                  SubscribeOptions options) {
  ClientCore::StreamState s;
  s.target = pattern;
  s.on_message = std::move(handler);
  s.sub = std::move(options);
  return core_->open(std::move(s));
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

  std::mutex mu;
  std::condition_variable cv;
  std::size_t outstanding = 0;  // accepted by send_async, not completed; GUARDED_BY(mu)
  std::size_t window = 1000;
  std::size_t requests = 0;                    // enqueue requests in flight; GUARDED_BY(mu)
  std::vector<NewMessage> waiting;             // accepted, not sent yet; GUARDED_BY(mu)
  std::vector<Callback<std::string>> waiting_done;  // GUARDED_BY(mu)

  // REQUIRES: mu held. Moves up to kMaxBatch waiting messages into a request of their own.
  std::pair<std::vector<NewMessage>, std::vector<Callback<std::string>>> take_locked() {
    std::size_t n = std::min(waiting.size(), kMaxBatch);
    std::vector<NewMessage> msgs(std::make_move_iterator(waiting.begin()),
                                 std::make_move_iterator(waiting.begin() + static_cast<std::ptrdiff_t>(n)));
    std::vector<Callback<std::string>> dones(std::make_move_iterator(waiting_done.begin()),
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
        std::lock_guard lock(st->mu);
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
            ids = std::unexpected(Error{ErrorCode::MALFORMED, std::string("unexpected answer: ") + ex.getDescription().cStr()});
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
          std::lock_guard lock(st->mu);
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
    std::unique_lock lock(state_->mu);
    state_->cv.wait(lock, [&] { return state_->outstanding < state_->window; });
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
  std::unique_lock lock(state_->mu);
  state_->cv.wait(lock, [&] { return state_->outstanding == 0; });
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
Result<AckResult> Consumer::retry(const std::string& lease_id, std::optional<std::chrono::milliseconds> delay) {
  RetryRequest r{lease_id, std::nullopt};
  if (delay) r.delay_ms = static_cast<std::uint64_t>(delay->count());
  return client_.ack(queue_, {}, {r});
}
Result<ExtendResult> Consumer::extend(const std::string& lease_id, std::chrono::milliseconds visibility) {
  return client_.extend(queue_, {lease_id}, visibility);
}

}  // namespace roost
