// The native endpoint's insides, shared by its files: endpoint.cpp (the socket loop, sessions,
// sending, request dispatch), endpoint_queues.cpp, endpoint_push.cpp (push consumers),
// endpoint_channels.cpp (publish, subscribe, channel deliveries) and endpoint_objects.cpp.
// Everything here runs on the endpoint thread unless it says otherwise.
#pragma once

#include <roost/broker/endpoint.h>
#include <roost/core/mesh_view.h>

#include <roost/core/auth.h>
#include <roost/core/hop_trace.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/subject.h>
#include <roost/core/thread_annotations.h>
#include <roost/core/thread_name.h>
#include <roost/core/utf8.h>
#include <roost/wire/codec.h>
#include <roost/wire/zmq_frames.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>

#include <arpa/inet.h>
#include <capnp/message.h>
#include <kj/exception.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <span>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

namespace roost::broker {

namespace proto = roost::proto;
using wire::frame_view;
using wire::payload_frame;
using wire::text;
using wire::to_frame;
using wire::view;

inline std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr std::uint64_t kConsumerWaitMs = 10'000;  // push consumers re-poll after this
constexpr std::size_t kMaxEventMessages = 256;     // channel messages per `message` event
constexpr std::size_t kMaxEventBytes =
    64 * 1024;                                  // payload bytes per event (one larger message travels alone)
constexpr std::int64_t kTrimIntervalMs = 1000;  // at most this often, freed memory goes back to the OS
constexpr std::uint32_t kDefaultWindow = 100;
constexpr std::size_t kPeerBufferFactor = 16;  // a peer node's channel buffer, in client buffers
constexpr int kRound = 256;
constexpr std::size_t kPackLimit = 4096;  // channel payloads up to this size are packed in one frame  //
                                          // requests handled between two flushes of their results

// Stream events cross threads through this box; it outlives the endpoint while a publisher thread
// may still hold one of its sinks.
struct Outbox {
  // Messages for subscriptions, in arrival order: `count` messages of `messages` in a row are
  // for `sink` (consecutive deliveries to one sink share a run).
  struct Run {
    std::shared_ptr<struct Sink> sink;
    std::size_t count = 0;
  };
  struct Deliveries {
    std::vector<Run> runs;
    std::vector<channels::MessagePtr> messages;
    bool empty() const { return runs.empty(); }
    void clear() {
      runs.clear();
      messages.clear();
    }
    void swap(Deliveries& other) {
      runs.swap(other.runs);
      messages.swap(other.messages);
    }
  };
  Mutex mu;
  std::vector<std::move_only_function<void()>> tasks ROOST_GUARDED_BY(mu);
  Deliveries deliveries ROOST_GUARDED_BY(mu);
  bool wake_pending ROOST_GUARDED_BY(mu) = false;
  int wake_fd = -1;  // owned: a sink may outlive the endpoint, so the fd lives as long as this
  std::atomic<bool> closed{false};
  std::atomic<std::uint64_t> dropped_total{0};  // channel messages native subscribers lost

  Outbox() {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) throw std::runtime_error("eventfd failed");
  }
  ~Outbox() { ::close(wake_fd); }
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  void wake_locked() ROOST_REQUIRES(mu) {
    if (wake_pending) return;
    wake_pending = true;
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }
  void post(std::move_only_function<void()> task) {
    MutexLock lock(mu);
    if (closed.load()) return;
    tasks.push_back(std::move(task));
    wake_locked();
  }
};

// A channel subscription of one client: the hub hands it messages on the publisher's thread.
struct Sink final : channels::Subscriber, std::enable_shared_from_this<Sink> {
  std::shared_ptr<Outbox> outbox;
  std::string identity;
  std::uint64_t serial = 0;  // the session's
  std::uint64_t stream = 0;  // the subscribe request's id
  std::uint64_t hub_id = 0;
  std::size_t limit = 1024;            // messages waiting for the endpoint thread, at most
  std::size_t limit_bytes = 1u << 20;  // and their bytes
  channels::SlowPolicy policy = channels::SlowPolicy::kDrop;
  std::atomic<std::size_t> pending{0};
  std::atomic<std::size_t> pending_bytes{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<bool> closed{false};
  bool peer = false;  // a peer node's interest (mesh socket): relayed messages are not for it

  bool watcher() const override { return peer; }

  void deliver_many(const std::vector<channels::MessagePtr>& all) override {
    if (closed.load(std::memory_order_relaxed)) return;
    std::vector<channels::MessagePtr> own;
    if (peer && std::any_of(all.begin(), all.end(), [](const auto& m) { return m->relayed; })) {
      for (const auto& m : all)
        if (!m->relayed) own.push_back(m);
    }
    const auto& ms = own.empty() ? all : own;
    if (ms.empty() || (peer && ms[0]->relayed)) return;
    std::size_t have = pending.load(std::memory_order_relaxed);
    std::size_t room = have >= limit ? 0 : limit - have;
    std::size_t take = std::min(room, ms.size());
    std::size_t bytes = pending_bytes.load(std::memory_order_relaxed);
    std::size_t added = 0;
    for (std::size_t i = 0; i < take; ++i) {
      if (bytes + added + ms[i]->data.size() > limit_bytes) {
        take = i;
        break;
      }
      added += ms[i]->data.size();
    }
    if (take < ms.size()) drop(ms.size() - take);
    if (take == 0) return;
    pending.fetch_add(take, std::memory_order_relaxed);
    pending_bytes.fetch_add(added, std::memory_order_relaxed);
    MutexLock lock(outbox->mu);
    add_run_locked(take);
    auto& out = outbox->deliveries.messages;
    out.insert(out.end(), ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(take));
    outbox->wake_locked();
  }

  void deliver(const channels::MessagePtr& m) override {
    if (closed.load(std::memory_order_relaxed) || (peer && m->relayed)) return;
    if (pending.load(std::memory_order_relaxed) >= limit ||
        pending_bytes.load(std::memory_order_relaxed) + m->data.size() > limit_bytes) {
      drop(1);
      return;
    }
    pending.fetch_add(1, std::memory_order_relaxed);
    pending_bytes.fetch_add(m->data.size(), std::memory_order_relaxed);
    MutexLock lock(outbox->mu);
    add_run_locked(1);
    outbox->deliveries.messages.push_back(m);
    outbox->wake_locked();
  }

  // Counts `n` messages this subscriber lost; it is told with the next event it gets.
  void drop(std::size_t n) {
    dropped.fetch_add(n, std::memory_order_relaxed);
    outbox->dropped_total.fetch_add(n, std::memory_order_relaxed);
  }

 private:
  void add_run_locked(std::size_t n) ROOST_REQUIRES(outbox->mu) {
    auto& runs = outbox->deliveries.runs;
    if (!runs.empty() && runs.back().sink.get() == this) {
      runs.back().count += n;
    } else {
      runs.push_back({shared_from_this(), n});
    }
  }
};

// (mesh socket) A WebSocket a peer node attached to an object of this node: the runtime's frames
// and close go back to that peer as events of its objectConnect stream, through the endpoint
// thread. Bounded: a socket whose frames the endpoint thread has not sent yet exceed
// kPeerSocketBytes is closed (1008), as the gateway closes a slow browser.
struct PeerSocket final : ObjectSocket, std::enable_shared_from_this<PeerSocket> {
  static constexpr std::size_t kPeerSocketBytes = 8u << 20;
  std::shared_ptr<Outbox> outbox;
  std::string identity;
  std::uint64_t serial = 0;  // the session's
  std::uint64_t stream = 0;  // the objectConnect request's id
  std::uint64_t local = 0;   // the runtime's socket id, once attached (endpoint thread)
  std::atomic<std::size_t> pending_bytes{0};
  std::atomic<bool> closing{false};  // the object closed it (or it was too slow): no more frames
  std::function<void(PeerSocket&, std::string)> on_send;  // set by the endpoint
  std::function<void(PeerSocket&, std::uint16_t, std::string)> on_close;

  void send(std::string text) override {
    if (closing.load()) return;
    if (pending_bytes.fetch_add(text.size()) + text.size() > kPeerSocketBytes) {
      return close(1008, "slow consumer");
    }
    on_send(*this, std::move(text));
  }
  void close(std::uint16_t code, std::string reason) override {
    if (closing.exchange(true)) return;
    on_close(*this, code, std::move(reason));
  }
};

struct Endpoint::Impl {
  struct Consumer {
    std::string queue;
    std::uint32_t window = kDefaultWindow;
    std::uint32_t in_flight = 0;
    std::uint64_t visibility_ms = 0;
    bool pulling = false;
  };
  // A message pushed to a consumer of this session, not yet settled.
  struct Lease {
    std::string queue;
    std::uint64_t stream = 0;     // the push consumer's (0 once it was cancelled)
    std::int64_t expires_at = 0;  // steady ms
  };
  struct Session {
    std::string identity;
    std::uint64_t serial = 0;
    Principal who;
    std::uint32_t heartbeat_ms = 1000;
    std::int64_t last_seen = 0;
    std::unordered_map<std::uint64_t, std::shared_ptr<Sink>> subscriptions;  // by stream id
    std::unordered_map<std::uint64_t, Consumer> consumers;                   // by stream id
    std::unordered_map<std::string, Lease> leases;                           // pushed, unsettled; by lease id
    std::unordered_map<std::uint64_t, std::shared_ptr<PeerSocket>> sockets;  // (mesh) by objectConnect id
    std::deque<std::vector<zmq::message_t>> backlog;                         // answers ZeroMQ refused (HWM)
    std::size_t backlog_bytes = 0;
    int fd = -1;       // the connection that said hello (ZeroMQ's source fd); only it may use the session
    std::string peer;  // who was at the other end of fd at hello (peer_of)
    // Set when the session ends: its long polls and push pulls lease nothing more.
    std::shared_ptr<std::atomic<bool>> gone = std::make_shared<std::atomic<bool>>(false);
    bool doomed = false;
  };

  Impl(Router& r, EndpointOptions o);

  Router& router;
  EndpointOptions options;
  const bool ipc = options.bind.starts_with("ipc://");  // every peer is on this machine
  Authenticator auth;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<Outbox> outbox;
  std::uint64_t instance = 0;

  zmq::context_t ctx{1};
  zmq::socket_t sock;
  std::string bound;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> session_count{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::uint64_t> sessions_expired{0};
  std::atomic<std::uint64_t> sessions_disconnected{0};
  std::atomic<std::uint64_t> rebound_refused{0};
  std::atomic<std::uint64_t> handshake_failures{0};
  std::atomic<std::uint64_t> route_refused{0};  // (mesh socket) requests for a shard not owned here
  std::int64_t last_handshake_log = -10'000;
  zmq::socket_t monitor;  // connection events of `sock`: accepted / disconnected, with the fd
  bool trim_due = false;
  std::int64_t last_trim = 0;
  std::vector<std::pair<int, std::int64_t>> recheck_fds;  // fds reported closed, and when to look again

  // Peer links this thread drives (LinkLoop): adopted from any thread, taken in by the loop.
  Mutex links_mu;
  std::optional<std::thread::id> loop_id ROOST_GUARDED_BY(links_mu);  // set while the thread runs
  std::vector<std::shared_ptr<PeerLink>> adopted ROOST_GUARDED_BY(links_mu);

  // Endpoint thread only.
  std::vector<std::shared_ptr<PeerLink>> links;
  std::unordered_map<std::string, Session> sessions;
  std::uint64_t next_serial = 1;
  std::int64_t next_sweep = 0;
  int round_messages = 0;  // channel messages published in this round of requests
  // flush_deliveries' working space, kept between flushes for its capacity.
  std::unordered_map<Sink*, std::size_t> flush_first_;
  std::vector<std::size_t> flush_next_, flush_starts_, flush_last_, flush_order_;
  std::vector<channels::MessagePtr> flush_gather_;

  // ---- sending -------------------------------------------------------------------------------

  // Sends [identity, frames...]. `droppable` frames (stream events) are dropped when ZeroMQ's
  // queue for the client is full; answers wait in the session's backlog instead.
  static std::size_t frames_bytes(const std::vector<zmq::message_t>& frames);
  bool send(Session& s, std::vector<zmq::message_t>& frames, bool droppable);

  enum class SendResult { kSent, kFull, kGone };
  SendResult try_send(const std::string& identity, std::vector<zmq::message_t>& frames);

  void flush_backlogs();

  // Answers to clients the node has no session for (errors, hello_required).
  void send_raw(const std::string& identity, std::vector<zmq::message_t>& frames);

  void reply(const std::string& identity, capnp::MallocMessageBuilder& b,
             std::vector<zmq::message_t> payloads = {});

  // Every error leaves through these. send_error: an Error envelope with id `id` (a request's or
  // a stream's), through the session's backlog when it has one. reply_error: the answer to
  // request `id`, none for a fire-and-forget request (id 0).
  void send_error(const std::string& identity, std::uint64_t id, ErrorCode code, std::string_view message);
  void reply_error(const std::string& identity, std::uint64_t id, ErrorCode code, std::string_view message);
  void reply_error(const std::string& identity, std::uint64_t id, const Error& e);
  void reply_ok(const std::string& identity, std::uint64_t id);

  static std::string printable(std::string_view identity);

  // ---- completions from other threads ------------------------------------------------------

  // Runs `fn(session)` on the endpoint thread if the session that asked still exists.
  template <class F>
  void later(const std::string& identity, std::uint64_t serial, F fn) {
    outbox->post([this, identity, serial, fn = std::move(fn)]() mutable {
      auto it = sessions.find(identity);
      Session* s = (it != sessions.end() && it->second.serial == serial) ? &it->second : nullptr;
      fn(s);
    });
  }

  // A Router callback that answers request `id` on the endpoint thread: the error, or the answer
  // `encode(envelope, value)` builds. Nothing when the session is gone or the request wants no
  // answer (id 0).
  template <class T, class Encode>
  Callback<T> answer(const Session& s, std::uint64_t id, Encode encode) {
    if (id == 0) return [](Result<T>) {};
    return [this, identity = s.identity, serial = s.serial, id,
            encode = std::move(encode)](Result<T> r) mutable {
      later(identity, serial,
            [this, identity, id, encode = std::move(encode), r = std::move(r)](Session* cur) mutable {
              if (cur == nullptr) return;
              if (!r) return reply_error(identity, id, r.error());
              capnp::MallocMessageBuilder b(256);
              auto out = b.initRoot<proto::Envelope>();
              out.setId(id);
              encode(out, *r);
              reply(identity, b);
            });
    };
  }

  // ---- sessions --------------------------------------------------------------------------------

  void end_session(const std::string& identity);

  // Who is at the other end of `fd` now: "ip:port" (TCP) or "pid N" (ipc://); "" when it is
  // not a connected socket any more. The ZeroMQ I/O thread owns the fd; reading its peer is
  // harmless.
  static std::string peer_of(int fd);

  // A connection on `fd` closed, or a new one got its number: the sessions said hello on that fd
  // by another peer than the one there now are over (nobody else may continue them). Monitor
  // events can arrive after the next connection's first requests, so the peer decides, not the
  // fd alone.
  void end_sessions_of_fd(int fd, const char* why);

  // Reads the socket monitor's events (two frames: 16-bit event + 32-bit value, then the address).
  void drain_monitor();

  static int source_fd(const zmq::message_t& m);

  // Makes leased messages visible again at once (a retry with no delay).
  void release_leases(const std::unordered_map<std::string, Lease>& leases);
  void release_messages(const std::string& queue, const std::vector<LeasedMessage>& messages);

  void end_doomed();

  void sweep();

  // ---- push consumers --------------------------------------------------------------------------

  void pump(Session& s, std::uint64_t stream);

  void on_pushed(Session* s, std::uint64_t stream, const std::string& queue, std::uint64_t vis,
                 const Result<std::vector<LeasedMessage>>& r);

  std::uint64_t vis_or_default(const std::string& queue, std::uint64_t vis);

  void send_messages(Session& s, std::uint64_t id, const std::string& queue,
                     const std::vector<LeasedMessage>& msgs, bool event);

  // ---- channel deliveries ----------------------------------------------------------------------

  // Sends what the hub handed the sinks since the last flush: each subscription's messages in
  // order, in as few events as kMaxEventMessages allows (runs of one sink spread over the batch
  // are gathered first).
  void flush_deliveries(Outbox::Deliveries& d);

  void send_to_sink(Sink& sink, std::span<const channels::MessagePtr> msgs);

  bool send_channel_messages(Session& s, const Sink& sink, std::span<const channels::MessagePtr> msgs);

  bool lagged(Session& s, Sink& sink, std::uint64_t lost);

  // The `disconnect` policy: the subscription ends with an error event.
  void close_slow(Session& s, Sink& sink);

  // ---- requests --------------------------------------------------------------------------------

  void handle(std::vector<zmq::message_t>& parts);

  // Even a fire-and-forget request learns it was not served.
  void hello_required(const std::string& identity, std::uint64_t id, std::string_view why);

  void dispatch(const std::string& identity, std::vector<zmq::message_t>& parts, proto::Envelope::Reader env);

  // (mesh socket) Whether a peer's request may be served here: its route names the shard of what it
  // asks for, and this node owns that shard under that epoch now.
  // Mesh requests (endpoint_mesh.cpp).
  std::optional<Error> check_route(proto::Envelope::Reader env);
  void on_presence_event(Session& s, std::uint64_t id, proto::PresenceEvent::Reader e);
  void on_shard_copy(Session& s, std::uint64_t id, proto::ShardCopy::Reader c,
                     std::span<zmq::message_t> payloads);
  void on_mesh_effects(Session& s, std::uint64_t id, proto::MeshEffects::Reader req,
                       std::span<zmq::message_t> payloads);

  void on_hello(const std::string& identity, zmq::message_t& first, std::uint64_t id,
                proto::Hello::Reader hello);

  bool allowed_queue(Session& s, std::uint64_t id, std::string_view queue);

  // (diagnostics) A traced request's instants (core/hop_trace.h): the client's, then this node's.
  struct Trace {
    std::vector<std::int64_t> client;
    hop_trace::NodeStamps node;
    std::shared_ptr<hop_trace::Forward> forward;  // (mesh) filled when the request was forwarded
  };
  // The trace a request asks for (nullptr: none, or more client stamps than a trace may carry).
  static std::shared_ptr<Trace> start_trace(proto::Envelope::Reader env);
  // Stamps the answer's instant and writes the whole trace into the answer.
  static void finish_trace(Trace& t, proto::Envelope::Builder out);

  void on_enqueue(Session& s, std::uint64_t id, proto::Enqueue::Reader req,
                  std::span<zmq::message_t> payloads, std::shared_ptr<Trace> trace = nullptr);

  static bool valid_json(std::string_view s);

  void on_pull(Session& s, std::uint64_t id, proto::Pull::Reader req);

  // Forgets the leases a client settled; frees their consumers' windows.
  template <class Range, class Lease_of>
  void settle(Session& s, const Range& leases, Lease_of lease_of) {
    std::vector<std::uint64_t> refill;
    for (const auto& l : leases) {
      auto it = s.leases.find(std::string(lease_of(l)));
      if (it == s.leases.end()) continue;
      if (auto c = s.consumers.find(it->second.stream); c != s.consumers.end()) {
        if (c->second.in_flight > 0) c->second.in_flight -= 1;
        refill.push_back(it->second.stream);
      }
      s.leases.erase(it);
    }
    std::sort(refill.begin(), refill.end());
    refill.erase(std::unique(refill.begin(), refill.end()), refill.end());
    for (auto stream : refill) pump(s, stream);
  }

  void on_ack(Session& s, std::uint64_t id, proto::Ack::Reader req);

  void on_extend(Session& s, std::uint64_t id, proto::Extend::Reader req);

  void on_consume(Session& s, std::uint64_t id, proto::Consume::Reader req);

  void on_cancel(Session& s, std::uint64_t id, std::uint64_t stream);

  // Whether a client may publish this message; the error it would be told.
  std::optional<Error> publish_check(Session& s, const std::string& channel, ContentType type,
                                     std::string_view data);

  void on_publish(Session& s, std::uint64_t id, proto::Publish::Reader req,
                  std::span<zmq::message_t> payloads);

  void on_publish_batch(Session& s, std::uint64_t id, proto::PublishBatch::Reader req,
                        std::span<zmq::message_t> payloads);

  // Streams (subscriptions and push consumers) one client may hold; answers the error when full.
  bool stream_room(Session& s, std::uint64_t id);

  void on_subscribe(Session& s, std::uint64_t id, proto::Subscribe::Reader req);

  void on_put_queue(Session& s, std::uint64_t id, proto::PutQueue::Reader req);

  void on_delete_queue(Session& s, std::uint64_t id, proto::QueueName::Reader req);

  void on_redrive(Session& s, std::uint64_t id, proto::Redrive::Reader req);
  void on_purge(Session& s, std::uint64_t id, proto::QueueName::Reader req);
  void on_peek(Session& s, std::uint64_t id, proto::Pull::Reader req);

  // Checks an object request; answers the error and returns false when it cannot go on.
  bool allowed_object(Session& s, std::uint64_t id, const std::string& cls, const std::string& name,
                      ContentType type, std::span<zmq::message_t> payloads);

  void on_object_send(Session& s, std::uint64_t id, proto::ObjectSend::Reader req,
                      std::span<zmq::message_t> payloads);

  void on_object_call(Session& s, std::uint64_t id, proto::ObjectCall::Reader req,
                      std::span<zmq::message_t> payloads);

  // (mesh socket) An HTTP request a peer forwards to an object of this node.
  void on_object_fetch(Session& s, std::uint64_t id, proto::ObjectFetch::Reader req,
                       std::span<zmq::message_t> payloads);

  // (mesh socket) A WebSocket a peer attaches to an object of this node, its frames, its end.
  void on_object_connect(Session& s, std::uint64_t id, proto::ObjectConnect::Reader req);
  void on_socket_frame(Session& s, proto::SocketFrame::Reader req, std::span<zmq::message_t> payloads);
  void on_socket_close(Session& s, proto::SocketClose::Reader req);
  // The session's attached sockets are over (it ended): the objects hear a 1006 close.
  void close_sockets(Session& s);
  std::atomic<std::uint64_t> peer_sockets{0};  // attached now

  // Answers request `id` with an object's reply (content type, status, headers; the data in its
  // own frame) or the error, on the endpoint thread.
  Callback<ObjectReply> object_answer(const Session& s, std::uint64_t id);

  // ---- the loop --------------------------------------------------------------------------------

  void turn_links(const std::vector<zmq::pollitem_t>& items, std::size_t first,
                  const std::vector<std::size_t>& counts, bool polled);
  void end_links();
  void run();
};

}  // namespace roost::broker
