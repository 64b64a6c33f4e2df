// The C++ client's insides, shared by its files: client_io.cpp (the I/O thread: socket,
// connection, hello, heartbeats, the loop), client_requests.cpp (the request table: submit,
// answers, deadlines), client_streams.cpp (subscriptions and push consumers) and
// client_publish.cpp (publish runs). client.cpp holds the public classes on top.
#pragma once

#include <roost/client/client.h>
#include <roost/core/thread_annotations.h>

#include <roost/core/thread_name.h>
#include <roost/wire/codec.h>
#include <roost/wire/zmq_frames.h>

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

using wire::frame_view;
using wire::text;
using wire::to_frame;
using wire::view;
using Clock = std::chrono::steady_clock;

// The steady clock at its coarse resolution (a few ms, a fraction of the cost): for deadlines of
// seconds taken on every fire-and-forget publish.
inline Clock::time_point coarse_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return Clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

// Walks the payloads of a ChannelMessages event in order: slices of the one packed frame (when
// `sizes` is set) or one frame each. nullopt when the frames do not match the event.
class PayloadCursor {
 public:
  PayloadCursor(proto::ChannelMessages::Reader event, std::span<zmq::message_t> frames)
      : sizes_(event.getSizes()),
        frames_(frames),
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
inline void fill(ChannelMessage& cm, proto::ChannelMessage::Reader m, std::string_view data) {
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
  if (cm.kind != ChannelEventKind::kMessage) {
    cm.origin.assign(view(m.getOrigin()));
    cm.origin_subscription = m.getOriginSubscription();
  }
}

inline Error unavailable(std::string msg) { return Error{ErrorCode::UNAVAILABLE, std::move(msg)}; }

inline void build_ack(proto::Envelope::Builder env, const std::string& queue,
                      const std::vector<std::string>& acks, const std::vector<RetryRequest>& retries) {
  auto a = env.initAck();
  a.setQueue(text(queue));
  wire::set_texts(a.initAcks(static_cast<unsigned>(acks.size())), acks);
  auto rl = a.initRetries(static_cast<unsigned>(retries.size()));
  for (unsigned i = 0; i < retries.size(); ++i) {
    rl[i].setLeaseId(text(retries[i].lease_id));
    if (retries[i].delay_ms) rl[i].initDelayMs().setValue(*retries[i].delay_ms);
  }
}

// An answer (or event) as the I/O thread hands it to a completion: the envelope, its payload
// frames, or the error that ended the request.
struct Reply {
  std::optional<Error> failure;  // set: timeout, connection lost, closed
  proto::Envelope::Reader env;
  std::span<zmq::message_t> payloads;
  // The received frames (envelope first), for a handler that keeps them past the call by moving
  // them out (the frames stay where they are, so `env` stays valid until the call returns).
  std::vector<zmq::message_t>* frames = nullptr;
  // When the I/O thread first sent the request, and received this answer.
  Clock::time_point sent{}, received{};

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

// Between a stream's handlers and whoever owns its Stream: once Stream::cancel() (or its
// destructor) returns, none of the stream's handlers runs again and none is still running — so a
// handler may use what its owner destroys right after (captured by reference) — unless the
// cancel comes from inside one of the stream's own handlers. Every handler call goes through
// run(), on whichever thread it runs (dispatch, or the I/O thread for on_io_thread handlers).
struct StreamGate {
  std::mutex m;
  std::atomic<bool> live{true};

  // Calls `f` unless the stream was cancelled; false when it was.
  template <class F>
  bool run(F&& f) {
    std::lock_guard lock(m);
    if (!live.load()) return false;
    const StreamGate* outer = running();
    running() = this;
    struct Restore {
      const StreamGate* outer;
      ~Restore() { running() = outer; }
    } restore{outer};
    f();
    return true;
  }
  // No handler runs after this returns; one running now (on another thread) is waited for.
  void close() {
    live = false;
    if (running() == this) return;  // from within its own handler: it is this thread
    std::lock_guard lock(m);
  }
  static const StreamGate*& running() {
    thread_local const StreamGate* gate = nullptr;
    return gate;
  }
};

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
      Item it{0, static_cast<std::uint32_t>(channel.size()), static_cast<std::uint32_t>(payload.size()),
              type};
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
    // Sent again after owner_unavailable: when first sent, and the next wait.
    Clock::time_point first_sent{};
    std::chrono::milliseconds retry_delay{0};
  };
  struct Pending {
    ReplyFn done;
    Clock::time_point deadline;
    std::vector<zmq::message_t> frames;  // shared copies, resent if the node had forgotten us
    Clock::time_point first_sent{};
    std::chrono::milliseconds retry_delay{0};
  };
  // A subscription or consumer, re-opened after a reconnect.
  struct StreamState {
    // Shared with its Stream and with every handler call queued for it (StreamGate).
    std::shared_ptr<StreamGate> gate = std::make_shared<StreamGate>();
    bool consumer = false;
    std::string target;  // pattern or queue
    std::function<void(const ChannelMessage&)> on_message;
    std::function<void(const Delivery&)> on_delivery;
    SubscribeOptions sub;
    ConsumeOptions cons;
    std::string epoch;  // last seen (concrete channels resume from it)
    std::uint64_t offset = 0;
    std::promise<Result<void>>* first = nullptr;  // the opener waits on this
    // (consumer) Ended by owner_unavailable (a mesh: its queue's shard moved, or its owner went):
    // opened again after this delay (doubling to 1 s), within the owner_retry budget from `since`.
    std::chrono::milliseconds reopen_delay{0};
    Clock::time_point reopen_since{};
  };

  explicit ClientCore(ClientOptions o);
  ~ClientCore();

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

  Mutex mu;
  std::vector<Outgoing> outbox ROOST_GUARDED_BY(mu);
  bool wake_pending ROOST_GUARDED_BY(mu) = false;           // the eventfd was written since the last swap
  std::vector<std::uint64_t> cancels ROOST_GUARDED_BY(mu);  // streams to cancel
  std::vector<std::uint64_t> to_open ROOST_GUARDED_BY(mu);  // streams to open
  std::vector<std::pair<Clock::time_point, std::uint64_t>> reopen ROOST_GUARDED_BY(mu);  // consumers, when
  std::map<std::uint64_t, StreamState> streams ROOST_GUARDED_BY(mu);
  // (PeerLink) WebSockets attached to objects of the node at the other end, by the objectConnect
  // id: the node's socketFrame / socketClose events for them. A socket lives as long as the
  // session it was attached in; handlers run on the I/O thread.
  struct SocketState {
    std::function<void(std::string_view)> on_frame;
    std::function<void(std::uint16_t, std::string)> on_close;  // once
    bool attached = false;
  };
  std::unordered_map<std::uint64_t, SocketState> sockets ROOST_GUARDED_BY(mu);
  std::promise<Result<void>> connected_once;
  bool connected_once_set = false;  // io thread

  Mutex dmu;
  std::condition_variable dcv;
  std::deque<std::function<void()>> dqueue ROOST_GUARDED_BY(dmu);
  bool dstop ROOST_GUARDED_BY(dmu) = false;

  // Driven (PeerLink::open with a LinkLoop): no I/O thread of its own; the loop that adopted it
  // calls poll_items() and turn() on its thread (io_id), and end_io() when it stops.
  bool driven = false;
  zmq::context_t* loop_ctx = nullptr;  // (driven) the loop's ZeroMQ context: one I/O thread for both
  std::mutex end_mu;
  std::condition_variable end_cv;
  bool ended = false;  // end_io ran (guarded by end_mu)

  // ---- I/O thread state ----
  std::optional<zmq::socket_t> sock;
  std::vector<zmq::message_t> io_parts;
  std::vector<Outgoing> io_batch;
  std::vector<std::uint64_t> io_cancels;
  std::unordered_map<std::uint64_t, Pending> pending;
  std::vector<Outgoing> waiting;                                // made while not connected
  std::vector<std::pair<Clock::time_point, Outgoing>> retries;  // owner_unavailable: sent again then
  std::uint64_t hello_id = 0;
  Clock::time_point hello_deadline;
  std::uint64_t instance = 0;
  Clock::time_point last_heard;
  Clock::time_point next_heartbeat;
  Clock::time_point reconnect_at;
  std::chrono::milliseconds backoff{0};
  std::mt19937_64 rng{std::random_device{}()};

  void wake();

  void submit(capnp::MallocMessageBuilder& b, std::uint64_t id, std::vector<zmq::message_t> payloads,
              ReplyFn done, std::chrono::milliseconds timeout);

  // Answers an unsent request with `why` (building it first if it is built late).
  void fail_outgoing(Outgoing& o, const Error& why);

  // A fire-and-forget publish joins the run at the end of the outbox when it has room.
  void enqueue_publish(std::string_view channel, std::string_view data, ContentType type);

  void enqueue_outgoing(Outgoing o);

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
    async<T>(
        build, decode, std::move(payloads), [&p](Result<T> r) { p.set_value(std::move(r)); }, timeout);
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
    submit(
        b, id, std::move(payloads),
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

  void to_dispatch(std::function<void()> fn);

  void dispatch_loop();

  // ---- connection ----

  void open_socket();

  void send_hello();

  void lose_connection(const std::string& why);

  // Sends in order; runs of fire-and-forget publishes go as publishBatch messages.
  void send_all(std::vector<Outgoing>& items);

  void send_publish_batch(const PublishRun& run);

  void send_now(Outgoing& o);

  // The node accepted our hello: send what waited, re-open streams.
  void on_ready(proto::HelloOk::Reader ok);

  void open_stream(std::uint64_t id, StreamState& s) ROOST_REQUIRES(mu);

  void on_stream_event(std::uint64_t id, Reply& r);

  // A socketFrame / socketClose event of an attached socket.
  void on_socket_event(std::uint64_t id, Reply& r);
  // The session the sockets were attached in is over (connection lost, the node restarted, a new
  // hello, closing): each attached socket hears on_close(1012, why).
  void end_sockets(const std::string& why);

  void stream_event_locked(std::uint64_t id, Reply& r, std::function<void()>& now) ROOST_REQUIRES(mu);

  void handle(std::vector<zmq::message_t>& parts);

  void expire(Clock::time_point now);

  // An owner_unavailable answer: schedules the request again (ClientOptions::owner_retry); false
  // when its budget or deadline is spent (the answer goes to the caller).
  bool retry_owner(std::uint64_t id, Pending& p);

  void run();
  // One round of the I/O loop after a poll (`woke`: the wake fd was readable) / what to poll next
  // (its socket when open, the wake fd; up to 2) / the end (what waits fails) — on the I/O thread.
  void turn(bool woke);
  std::size_t poll_items(zmq::pollitem_t* items);
  void end_io();
  void set_ended();

  // Sends a heartbeat and reads until the node answers it or kCloseClearance passes.
  void await_clearance();

  // The I/O thread ended on an exception: report it to connect() or to whoever waits.
  void fail_fatally(const std::string& why);

  void close();

  Result<std::unique_ptr<Stream>> open(StreamState state);
  // Opens a stream without waiting for the node's answer (it is opened when connected, and again
  // after every reconnect); an error ends it through its on_error.
  std::unique_ptr<Stream> open_detached(StreamState state);

  void cancel(std::uint64_t id);

  void settle(std::string queue, std::vector<std::string> acks, std::vector<RetryRequest> retries);
};

// Starts a core's I/O and dispatch threads (it connects in the background); io_name null: the
// dispatch thread only (a driven core).
void start_core(const std::shared_ptr<ClientCore>& core, const char* io_name);

}  // namespace roost
