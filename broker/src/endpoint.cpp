#include "roost/broker/endpoint.h"

#include <roost/core/auth.h>
#include <roost/core/subject.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/thread_name.h>
#include <roost/wire/codec.h>
#include <roost/core/utf8.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>

#include <capnp/message.h>
#include <kj/exception.h>
#include <sys/eventfd.h>
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
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
using wire::text;
using wire::view;

namespace {

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr std::uint64_t kMaxWaitMs = 20'000;      // longest long poll, as over HTTP
constexpr std::uint64_t kConsumerWaitMs = 10'000;  // push consumers re-poll after this
constexpr std::size_t kMaxEventMessages = 256;     // channel messages per `message` event
constexpr std::size_t kMaxEventBytes = 64 * 1024;  // payload bytes per event (one larger message travels alone)
constexpr std::int64_t kTrimIntervalMs = 1000;     // at most this often, freed memory goes back to the OS
constexpr std::uint32_t kDefaultWindow = 100;
constexpr int kRound = 256;
constexpr std::size_t kPackLimit = 4096;  // channel payloads up to this size are packed in one frame  // requests handled between two flushes of their results

zmq::message_t to_frame(capnp::MessageBuilder& b) {
  zmq::message_t frame(wire::encoded_size(b));
  wire::encode_to(b, frame.data(), frame.size());
  return frame;
}

zmq::message_t payload_frame(const std::string& s) { return zmq::message_t(s.data(), s.size()); }

std::string_view frame_view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

}  // namespace

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
  std::mutex mu;
  std::vector<std::move_only_function<void()>> tasks;  // GUARDED_BY(mu)
  Deliveries deliveries;                                 // GUARDED_BY(mu)
  bool wake_pending = false;                             // GUARDED_BY(mu)
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

  void wake_locked() {
    if (wake_pending) return;
    wake_pending = true;
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }
  void post(std::move_only_function<void()> task) {
    std::lock_guard lock(mu);
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
  std::size_t limit = 1024;          // messages waiting for the endpoint thread, at most
  std::size_t limit_bytes = 1u << 20;  // and their bytes
  channels::SlowPolicy policy = channels::SlowPolicy::kDrop;
  std::atomic<std::size_t> pending{0};
  std::atomic<std::size_t> pending_bytes{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<bool> closed{false};

  void deliver_many(const std::vector<channels::MessagePtr>& ms) override {
    if (closed.load(std::memory_order_relaxed)) return;
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
    std::lock_guard lock(outbox->mu);
    add_run_locked(take);
    auto& out = outbox->deliveries.messages;
    out.insert(out.end(), ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(take));
    outbox->wake_locked();
  }

  void deliver(const channels::MessagePtr& m) override {
    if (closed.load(std::memory_order_relaxed)) return;
    if (pending.load(std::memory_order_relaxed) >= limit ||
        pending_bytes.load(std::memory_order_relaxed) + m->data.size() > limit_bytes) {
      drop(1);
      return;
    }
    pending.fetch_add(1, std::memory_order_relaxed);
    pending_bytes.fetch_add(m->data.size(), std::memory_order_relaxed);
    std::lock_guard lock(outbox->mu);
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
  // REQUIRES: outbox->mu held.
  void add_run_locked(std::size_t n) {
    auto& runs = outbox->deliveries.runs;
    if (!runs.empty() && runs.back().sink.get() == this) {
      runs.back().count += n;
    } else {
      runs.push_back({shared_from_this(), n});
    }
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
    std::uint64_t stream = 0;  // the push consumer's (0 once it was cancelled)
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
    std::unordered_map<std::string, Lease> leases;  // pushed, unsettled; by lease id
    std::deque<std::vector<zmq::message_t>> backlog;  // answers ZeroMQ refused (HWM)
    std::size_t backlog_bytes = 0;
    int fd = -1;  // the connection that said hello (ZeroMQ's source fd); only it may use the session
    std::string peer;  // who was at the other end of fd at hello (peer_of)
    // Set when the session ends: its long polls and push pulls lease nothing more.
    std::shared_ptr<std::atomic<bool>> gone = std::make_shared<std::atomic<bool>>(false);
    bool doomed = false;
  };

  Impl(Router& r, EndpointOptions o)
      : router(r), options(std::move(o)), auth(options.auth_secret), log(module_logger("endpoint")) {
    outbox = std::make_shared<Outbox>();
    std::random_device rd;
    instance = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ static_cast<std::uint64_t>(steady_ms());
    if (instance == 0) instance = 1;
  }

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
  std::int64_t last_handshake_log = -10'000;
  zmq::socket_t monitor;  // connection events of `sock`: accepted / disconnected, with the fd
  bool trim_due = false;
  std::int64_t last_trim = 0;
  std::vector<std::pair<int, std::int64_t>> recheck_fds;  // fds reported closed, and when to look again

  // Endpoint thread only.
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
  static std::size_t frames_bytes(const std::vector<zmq::message_t>& frames) {
    std::size_t n = 0;
    for (const auto& f : frames) n += f.size();
    return n;
  }
  bool send(Session& s, std::vector<zmq::message_t>& frames, bool droppable) {
    if (!s.backlog.empty()) {
      if (droppable) return false;
      if (s.backlog.size() >= options.max_backlog || s.backlog_bytes >= options.max_backlog_bytes) {
        if (!s.doomed) {
          log->warn("client {} does not read its answers ({} waiting): forgetting it",
                    printable(s.identity), s.backlog.size());
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

  enum class SendResult { kSent, kFull, kGone };
  SendResult try_send(const std::string& identity, std::vector<zmq::message_t>& frames) {
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

  void flush_backlogs() {
    for (auto& [id, s] : sessions) {
      while (!s.backlog.empty()) {
        auto r = try_send(s.identity, s.backlog.front());
        if (r == SendResult::kFull) break;
        s.backlog_bytes -= frames_bytes(s.backlog.front());
        s.backlog.pop_front();
      }
    }
  }

  // Answers to clients the node has no session for (errors, hello_required).
  void send_raw(const std::string& identity, std::vector<zmq::message_t>& frames) {
    (void)try_send(identity, frames);
  }

  void reply(const std::string& identity, capnp::MallocMessageBuilder& b,
             std::vector<zmq::message_t> payloads = {}) {
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

  void reply_error(const std::string& identity, std::uint64_t id, ErrorCode code,
                   std::string_view message) {
    if (id == 0) return;  // fire-and-forget requests get no answers
    capnp::MallocMessageBuilder b(64);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(id);
    auto e = env.initError();
    e.setCode(code);
    e.setMessage(text(message));
    reply(identity, b);
  }
  void reply_error(const std::string& identity, std::uint64_t id, const Error& e) {
    reply_error(identity, id, e.code, e.message);
  }
  void reply_ok(const std::string& identity, std::uint64_t id) {
    if (id == 0) return;
    capnp::MallocMessageBuilder b(16);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(id);
    env.setOk();
    reply(identity, b);
  }

  static std::string printable(std::string_view identity) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : identity.substr(0, 16)) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    return out;
  }

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
    return [this, identity = s.identity, serial = s.serial, id, encode = std::move(encode)](Result<T> r) mutable {
      later(identity, serial, [this, identity, id, encode = std::move(encode), r = std::move(r)](Session* cur) mutable {
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

  void end_session(const std::string& identity) {
    auto it = sessions.find(identity);
    if (it == sessions.end()) return;
    Session& s = it->second;
    for (auto& [stream, sink] : s.subscriptions) {
      sink->closed = true;
      router.unsubscribe(sink->hub_id);
    }
    release_leases(s.leases);
    s.gone->store(true);
    sessions.erase(it);
    session_count.store(sessions.size());
    trim_due = true;
  }

  // Who is at the other end of `fd` now: "ip:port" (TCP) or "pid N" (ipc://); "" when it is
  // not a connected socket any more. The ZeroMQ I/O thread owns the fd; reading its peer is
  // harmless.
  static std::string peer_of(int fd) {
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
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) return "pid " + std::to_string(cred.pid);
    }
    return "?";
  }

  // A connection on `fd` closed, or a new one got its number: the sessions said hello on that fd
  // by another peer than the one there now are over (nobody else may continue them). Monitor
  // events can arrive after the next connection's first requests, so the peer decides, not the
  // fd alone.
  void end_sessions_of_fd(int fd, const char* why) {
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

  // Reads the socket monitor's events (two frames: 16-bit event + 32-bit value, then the address).
  void drain_monitor() {
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
          log->info("native handshake failed on {} ({} so far; a client without the endpoint's CURVE key, or "
                    "not a ZeroMQ client?)",
                    bound, handshake_failures.load());
          last_handshake_log = now;
        }
      }
    }
  }

  static int source_fd(const zmq::message_t& m) {
    return zmq_msg_get(const_cast<zmq_msg_t*>(m.handle()), ZMQ_SRCFD);
  }

  // Makes leased messages visible again at once (a retry with no delay).
  void release_leases(const std::unordered_map<std::string, Lease>& leases) {
    std::unordered_map<std::string, std::vector<RetryRequest>> by_queue;
    for (const auto& [lease, rec] : leases) by_queue[rec.queue].push_back(RetryRequest{lease, 0});
    for (auto& [queue, retries] : by_queue) {
      log->debug("releasing {} leases on {}", retries.size(), queue);
      router.ack(queue, {}, std::move(retries), [](Result<AckResult>) {});
    }
  }
  void release_messages(const std::string& queue, const std::vector<LeasedMessage>& messages) {
    std::vector<RetryRequest> retries;
    for (const auto& m : messages) retries.push_back(RetryRequest{m.lease_id, 0});
    if (!retries.empty()) router.ack(queue, {}, std::move(retries), [](Result<AckResult>) {});
  }

  void end_doomed() {
    std::vector<std::string> doomed;
    for (auto& [id, s] : sessions) {
      if (s.doomed) doomed.push_back(id);
    }
    for (const auto& id : doomed) end_session(id);
  }

  void sweep() {
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

  // ---- push consumers --------------------------------------------------------------------------

  void pump(Session& s, std::uint64_t stream) {
    auto it = s.consumers.find(stream);
    if (it == s.consumers.end()) return;
    Consumer& c = it->second;
    if (c.pulling || c.in_flight >= c.window) return;
    c.pulling = true;
    PullOptions opts;
    opts.batch_size = std::min<std::uint32_t>(c.window - c.in_flight, options.max_batch);
    if (c.visibility_ms != 0) opts.visibility_timeout_ms = c.visibility_ms;
    router.pull(c.queue, opts, kConsumerWaitMs,
                [this, identity = s.identity, serial = s.serial, stream, queue = c.queue,
                 vis = c.visibility_ms](Result<std::vector<LeasedMessage>> r) mutable {
                  later(identity, serial, [this, stream, queue, vis, r = std::move(r)](Session* cur) {
                    on_pushed(cur, stream, queue, vis, r);
                  });
                },
                s.gone);
  }

  void on_pushed(Session* s, std::uint64_t stream, const std::string& queue, std::uint64_t vis,
                 const Result<std::vector<LeasedMessage>>& r) {
    if (s == nullptr || !s->consumers.contains(stream)) {
      if (r) release_messages(queue, *r);  // the consumer went away meanwhile
      return;
    }
    auto it = s->consumers.find(stream);
    Consumer& c = it->second;
    c.pulling = false;
    if (!r) {
      // The queue was deleted, or the node is stopping: end the stream with the error.
      capnp::MallocMessageBuilder b(64);
      auto env = b.initRoot<proto::Envelope>();
      env.setId(stream);
      auto e = env.initError();
      e.setCode(r.error().code);
      e.setMessage(text(r.error().message));
      s->consumers.erase(it);
      reply(s->identity, b);
      return;
    }
    if (!r->empty()) {
      std::int64_t expires = steady_ms() + static_cast<std::int64_t>(vis_or_default(queue, vis));
      for (const auto& m : *r) s->leases[m.lease_id] = Lease{queue, stream, expires};
      c.in_flight += static_cast<std::uint32_t>(r->size());
      send_messages(*s, stream, queue, *r, /*event=*/true);
    }
    pump(*s, stream);
  }

  std::uint64_t vis_or_default(const std::string& queue, std::uint64_t vis) {
    if (vis != 0) return vis;
    auto info = router.get_queue(queue);
    return info ? info->config.visibility_timeout_ms : 30'000;
  }

  void send_messages(Session& s, std::uint64_t id, const std::string& queue,
                     const std::vector<LeasedMessage>& msgs, bool event) {
    capnp::MallocMessageBuilder b(256 + msgs.size() * 16);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(id);
    auto qm = event ? env.initDelivery() : env.initMessages();
    qm.setQueue(text(queue));
    auto list = qm.initMessages(static_cast<unsigned>(msgs.size()));
    std::vector<zmq::message_t> frames;
    frames.reserve(msgs.size() + 1);
    frames.emplace_back();
    for (unsigned i = 0; i < msgs.size(); ++i) {
      const auto& m = msgs[i];
      auto l = list[i];
      l.setId(text(m.id));
      l.setLeaseId(text(m.lease_id));
      l.setContentType(wire::to_wire(m.content_type));
      l.setAttempts(m.attempts);
      l.setTimestampMs(m.timestamp_ms);
      if (!m.key.empty()) l.setKey(text(m.key));
      frames.push_back(payload_frame(m.body));
    }
    frames[0] = to_frame(b);
    send(s, frames, false);
  }

  // ---- channel deliveries ----------------------------------------------------------------------

  // Sends what the hub handed the sinks since the last flush: each subscription's messages in
  // order, in as few events as kMaxEventMessages allows (runs of one sink spread over the batch
  // are gathered first).
  void flush_deliveries(Outbox::Deliveries& d) {
    if (d.empty()) return;
    if (d.runs.size() == 1) {  // one subscription: no grouping to do
      send_to_sink(*d.runs[0].sink, d.messages);
      d.clear();
      return;
    }
    constexpr std::size_t kNone = ~std::size_t{0};
    // For each sink its first run; for each run the next run of the same sink.
    flush_first_.clear();
    flush_next_.assign(d.runs.size(), kNone);
    flush_starts_.resize(d.runs.size());
    std::vector<std::size_t>& last = flush_last_;
    last.clear();
    std::size_t start = 0;
    for (std::size_t r = 0; r < d.runs.size(); ++r) {
      flush_starts_[r] = start;
      start += d.runs[r].count;
      auto [it, fresh] = flush_first_.try_emplace(d.runs[r].sink.get(), last.size());
      if (fresh) {
        last.push_back(r);
        flush_order_.push_back(r);
      } else {
        flush_next_[last[it->second]] = r;
        last[it->second] = r;
      }
    }
    for (std::size_t first : flush_order_) {
      Sink& sink = *d.runs[first].sink;
      std::span<const channels::MessagePtr> msgs;
      if (flush_next_[first] == kNone) {
        msgs = std::span(d.messages).subspan(flush_starts_[first], d.runs[first].count);
      } else {
        flush_gather_.clear();
        for (std::size_t r = first; r != kNone; r = flush_next_[r]) {
          auto from = d.messages.begin() + static_cast<std::ptrdiff_t>(flush_starts_[r]);
          flush_gather_.insert(flush_gather_.end(), std::make_move_iterator(from),
                               std::make_move_iterator(from + static_cast<std::ptrdiff_t>(d.runs[r].count)));
        }
        msgs = flush_gather_;
      }
      send_to_sink(sink, msgs);
    }
    flush_order_.clear();
    flush_gather_.clear();
    d.clear();
  }

  void send_to_sink(Sink& sink, std::span<const channels::MessagePtr> msgs) {
    std::size_t bytes = 0;
    for (const auto& m : msgs) bytes += m->data.size();
    sink.pending.fetch_sub(msgs.size(), std::memory_order_relaxed);
    sink.pending_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    if (sink.closed.load()) return;
    auto it = sessions.find(sink.identity);
    if (it == sessions.end() || it->second.serial != sink.serial) return;
    Session& s = it->second;
    for (std::size_t at = 0; at < msgs.size();) {
      // An event: up to kMaxEventMessages messages and kMaxEventBytes (at least one message).
      std::size_t n = 0, event_bytes = 0;
      while (at + n < msgs.size() && n < kMaxEventMessages &&
             (n == 0 || event_bytes + msgs[at + n]->data.size() <= kMaxEventBytes)) {
        event_bytes += msgs[at + n]->data.size();
        ++n;
      }
      auto part = msgs.subspan(at, n);
      at += n;
      if (auto lost = sink.dropped.exchange(0)) {
        if (!lagged(s, sink, lost)) {
          sink.drop(part.size());
          if (sink.closed.load()) break;
          continue;
        }
      }
      if (!send_channel_messages(s, sink, part)) {
        sink.drop(part.size());
        if (sink.policy == channels::SlowPolicy::kDisconnect) close_slow(s, sink);
      }
      if (sink.closed.load()) break;
    }
  }

  bool send_channel_messages(Session& s, const Sink& sink, std::span<const channels::MessagePtr> msgs) {
    const std::size_t n = msgs.size();
    capnp::MallocMessageBuilder b(64 + n * 24);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(sink.stream);
    auto event = env.initMessage();
    auto list = event.initMessages(static_cast<unsigned>(n));
    // Small payloads travel packed in one frame (sizes say where each ends); large ones each in
    // their own frame.
    std::size_t total = 0;
    bool pack = true;
    for (std::size_t i = 0; i < n; ++i) {
      total += msgs[i]->data.size();
      pack = pack && msgs[i]->data.size() <= kPackLimit;
    }
    std::vector<zmq::message_t> frames;
    frames.reserve(pack ? 2 : n + 1);
    frames.emplace_back();
    zmq::message_t packed;
    char* out = nullptr;
    capnp::List<std::uint32_t>::Builder sizes;
    if (pack) {
      packed.rebuild(total);
      out = static_cast<char*>(packed.data());
      sizes = event.initSizes(static_cast<unsigned>(n));
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto& m = *msgs[i];
      auto l = list[static_cast<unsigned>(i)];
      l.setChannel(text(m.channel));
      l.setOffset(m.offset);
      l.setEpoch(text(m.epoch));
      l.setContentType(wire::to_wire(m.content_type));
      l.setTimestampMs(m.timestamp_ms);
      if (m.kind != channels::MessageKind::kData) {
        l.setKind(static_cast<proto::MessageKind>(m.kind));
        l.setSubscribers(m.subscribers);
      }
      if (pack) {
        std::memcpy(out, m.data.data(), m.data.size());
        out += m.data.size();
        sizes.set(static_cast<unsigned>(i), static_cast<std::uint32_t>(m.data.size()));
      } else {
        frames.push_back(payload_frame(m.data));
      }
    }
    if (pack) frames.push_back(std::move(packed));
    frames[0] = to_frame(b);
    return send(s, frames, true);
  }

  bool lagged(Session& s, Sink& sink, std::uint64_t lost) {
    if (sink.policy == channels::SlowPolicy::kDisconnect) {
      close_slow(s, sink);
      return false;
    }
    capnp::MallocMessageBuilder b(32);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(sink.stream);
    env.initLagged().setDropped(lost);
    std::vector<zmq::message_t> frames;
    frames.push_back(to_frame(b));
    if (!send(s, frames, true)) {
      sink.dropped.fetch_add(lost);  // already counted in the total; told later
      return false;
    }
    return true;
  }

  // The `disconnect` policy: the subscription ends with an error event.
  void close_slow(Session& s, Sink& sink) {
    if (sink.closed.exchange(true)) return;
    router.unsubscribe(sink.hub_id);
    std::uint64_t stream = sink.stream;
    s.subscriptions.erase(stream);
    capnp::MallocMessageBuilder b(64);
    auto env = b.initRoot<proto::Envelope>();
    env.setId(stream);
    auto e = env.initError();
    e.setCode(ErrorCode::TOO_MANY_REQUESTS);
    e.setMessage("subscriber too slow: its buffer filled up (policy disconnect)");
    reply(s.identity, b);
  }

  // ---- requests --------------------------------------------------------------------------------

  void handle(std::vector<zmq::message_t>& parts) {
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
      capnp::MallocMessageBuilder b(64);
      auto out = b.initRoot<proto::Envelope>();
      auto err = out.initError();
      err.setCode(ErrorCode::MALFORMED);
      err.setMessage("frame 1 is not a Cap'n Proto Envelope");
      std::vector<zmq::message_t> frames;
      frames.push_back(to_frame(b));
      send_raw(identity, frames);
      return;
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

  // Even a fire-and-forget request learns it was not served.
  void hello_required(const std::string& identity, std::uint64_t id, std::string_view why) {
    capnp::MallocMessageBuilder b(64);
    auto out = b.initRoot<proto::Envelope>();
    out.setId(id);
    auto e = out.initError();
    e.setCode(ErrorCode::HELLO_REQUIRED);
    e.setMessage(text(std::string(why) + ": send hello first"));
    std::vector<zmq::message_t> frames;
    frames.push_back(to_frame(b));
    send_raw(identity, frames);
  }

  void dispatch(const std::string& identity, std::vector<zmq::message_t>& parts,
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
    switch (which) {
      case W::HEARTBEAT: {
        capnp::MallocMessageBuilder b(32);
        auto out = b.initRoot<proto::Envelope>();
        out.setId(id);
        out.initHeartbeat().setInstance(instance);
        return reply(identity, b);
      }
      case W::ENQUEUE: return on_enqueue(s, id, env.getEnqueue(), payloads);
      case W::PULL: return on_pull(s, id, env.getPull());
      case W::ACK: return on_ack(s, id, env.getAck());
      case W::EXTEND: return on_extend(s, id, env.getExtend());
      case W::CONSUME: return on_consume(s, id, env.getConsume());
      case W::CREDIT: {
        auto c = env.getCredit();
        auto cit = s.consumers.find(c.getStream());
        if (cit == s.consumers.end()) return reply_error(identity, id, ErrorCode::NOT_FOUND, "no such consumer");
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
        auto info = router.get_queue(name);
        if (!info) return reply_error(identity, id, info.error());
        capnp::MallocMessageBuilder b(512);
        auto out = b.initRoot<proto::Envelope>();
        out.setId(id);
        wire::to_wire(out.initQueue(), *info);
        return reply(identity, b);
      }
      case W::LIST_QUEUES: {
        auto all = router.list_queues();
        std::erase_if(all, [&](const QueueInfo& q) { return !s.who.may_use_queue(q.name); });
        capnp::MallocMessageBuilder b(512);
        auto out = b.initRoot<proto::Envelope>();
        out.setId(id);
        auto list = out.initQueues(static_cast<unsigned>(all.size()));
        for (unsigned i = 0; i < all.size(); ++i) wire::to_wire(list[i], all[i]);
        return reply(identity, b);
      }
      case W::REDRIVE: return on_redrive(s, id, env.getRedrive());
      case W::OBJECT_SEND: return on_object_send(s, id, env.getObjectSend(), payloads);
      case W::OBJECT_CALL: return on_object_call(s, id, env.getObjectCall(), payloads);
      default:
        return reply_error(identity, id, ErrorCode::INVALID_ARGUMENT,
                           "not a request this node understands (variant " +
                               std::to_string(static_cast<unsigned>(which)) + ")");
    }
  }

  void on_hello(const std::string& identity, zmq::message_t& first, std::uint64_t id,
                proto::Hello::Reader hello) {
    if (hello.getProtocolVersion() != proto::PROTOCOL_VERSION) {
      return reply_error(identity, id, ErrorCode::INVALID_ARGUMENT,
                         "protocol version " + std::to_string(hello.getProtocolVersion()) +
                             " is not supported; this node speaks " +
                             std::to_string(proto::PROTOCOL_VERSION));
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
    auto who = auth.authenticate(view(hello.getToken()), remote);
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
    log->debug("hello from {} ({}), heartbeat {} ms", printable(identity),
               std::string(view(hello.getClient())), s.heartbeat_ms);
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

  bool allowed_queue(Session& s, std::uint64_t id, std::string_view queue) {
    if (s.who.may_use_queue(queue)) return true;
    reply_error(s.identity, id, ErrorCode::FORBIDDEN, "the token does not grant queue " + std::string(queue));
    return false;
  }

  void on_enqueue(Session& s, std::uint64_t id, proto::Enqueue::Reader req,
                  std::span<zmq::message_t> payloads) {
    std::string queue(view(req.getQueue()));
    if (!allowed_queue(s, id, queue)) return;
    auto metas = req.getMessages();
    if (metas.size() != payloads.size()) {
      return reply_error(s.identity, id, ErrorCode::MALFORMED,
                         std::to_string(metas.size()) + " messages described but " +
                             std::to_string(payloads.size()) + " payload frames sent");
    }
    if (metas.size() == 0 || metas.size() > options.max_batch) {
      return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT,
                         "an enqueue carries 1.." + std::to_string(options.max_batch) + " messages");
    }
    std::vector<NewMessage> msgs;
    msgs.reserve(metas.size());
    for (unsigned i = 0; i < metas.size(); ++i) {
      auto m = metas[i];
      if (payloads[i].size() > options.max_message_bytes) {
        return reply_error(s.identity, id, ErrorCode::MESSAGE_TOO_LARGE,
                           "message " + std::to_string(i) + " has " + std::to_string(payloads[i].size()) +
                               " bytes; the limit is " + std::to_string(options.max_message_bytes));
      }
      NewMessage nm;
      nm.body.assign(frame_view(payloads[i]));
      nm.content_type = wire::from_wire(m.getContentType());
      if (nm.content_type == ContentType::kJson && !valid_json(nm.body)) {
        return reply_error(s.identity, id, ErrorCode::MALFORMED,
                           "message " + std::to_string(i) + " is not valid JSON (content type json)");
      }
      if (nm.content_type == ContentType::kText && !valid_utf8(nm.body)) {
        return reply_error(s.identity, id, ErrorCode::MALFORMED,
                           "message " + std::to_string(i) + " is not valid UTF-8 (content type text)");
      }
      nm.delay_ms = m.getDelayMs();
      nm.id = std::string(view(m.getId()));
      nm.key = std::string(view(m.getKey()));
      msgs.push_back(std::move(nm));
    }
    router.enqueue(std::move(queue), std::move(msgs),
                   answer<std::vector<std::string>>(s, id, [](proto::Envelope::Builder out, const auto& ids) {
                     wire::set_texts(out.initEnqueued().initIds(static_cast<unsigned>(ids.size())), ids);
                   }));
  }

  static bool valid_json(std::string_view s) {
    boost::system::error_code ec;
    (void)boost::json::parse(s, ec);
    return !ec;
  }

  void on_pull(Session& s, std::uint64_t id, proto::Pull::Reader req) {
    std::string queue(view(req.getQueue()));
    if (!allowed_queue(s, id, queue)) return;
    PullOptions opts;
    opts.batch_size = req.getBatchSize() == 0 ? 10 : req.getBatchSize();
    if (req.getVisibilityTimeoutMs() != 0) opts.visibility_timeout_ms = req.getVisibilityTimeoutMs();
    std::uint64_t wait = std::min(req.getWaitMs(), kMaxWaitMs);
    router.pull(queue, opts, wait,
                [this, identity = s.identity, serial = s.serial, id, queue](
                    Result<std::vector<LeasedMessage>> r) mutable {
                  later(identity, serial, [this, identity, id, queue, r = std::move(r)](Session* cur) {
                    if (cur == nullptr) {
                      if (r) release_messages(queue, *r);
                      return;
                    }
                    if (!r) return reply_error(identity, id, r.error());
                    // A pulled lease is the client's until its visibility timeout, as over HTTP
                    // (another process may ack it); only push deliveries are tied to the session.
                    send_messages(*cur, id, queue, *r, false);
                  });
                },
                s.gone);
  }

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

  void on_ack(Session& s, std::uint64_t id, proto::Ack::Reader req) {
    std::string queue(view(req.getQueue()));
    if (!allowed_queue(s, id, queue)) return;
    std::vector<std::string> acks;
    for (auto a : req.getAcks()) acks.emplace_back(view(a));
    std::vector<RetryRequest> retries;
    for (auto r : req.getRetries()) {
      RetryRequest rr{std::string(view(r.getLeaseId())), std::nullopt};
      if (r.hasDelayMs()) rr.delay_ms = r.getDelayMs().getValue();
      retries.push_back(std::move(rr));
    }
    settle(s, acks, [](const std::string& l) -> std::string_view { return l; });
    settle(s, retries, [](const RetryRequest& r) -> std::string_view { return r.lease_id; });
    router.ack(std::move(queue), std::move(acks), std::move(retries),
               answer<AckResult>(s, id, [](proto::Envelope::Builder out, const AckResult& r) {
                 auto a = out.initAcked();
                 a.setAcked(r.acked);
                 a.setRetried(r.retried);
                 wire::set_texts(a.initUnknown(static_cast<unsigned>(r.unknown.size())), r.unknown);
               }));
  }

  void on_extend(Session& s, std::uint64_t id, proto::Extend::Reader req) {
    std::string queue(view(req.getQueue()));
    if (!allowed_queue(s, id, queue)) return;
    std::vector<std::string> leases;
    for (auto l : req.getLeaseIds()) leases.emplace_back(view(l));
    std::uint64_t vis = req.getVisibilityTimeoutMs();
    router.extend(queue, leases, vis,
                  [this, identity = s.identity, serial = s.serial, id, queue, vis, leases](
                      Result<ExtendResult> r) mutable {
                    later(identity, serial, [this, identity, id, queue, vis, leases, r = std::move(r)](Session* cur) {
                      if (cur == nullptr) return;
                      if (!r) return reply_error(identity, id, r.error());
                      std::int64_t expires = steady_ms() + static_cast<std::int64_t>(vis_or_default(queue, vis));
                      for (const auto& l : leases) {
                        if (auto it = cur->leases.find(l); it != cur->leases.end()) it->second.expires_at = expires;
                      }
                      if (id == 0) return;
                      capnp::MallocMessageBuilder b(64);
                      auto out = b.initRoot<proto::Envelope>();
                      out.setId(id);
                      auto e = out.initExtended();
                      e.setExtended(r->extended);
                      wire::set_texts(e.initUnknown(static_cast<unsigned>(r->unknown.size())), r->unknown);
                      reply(identity, b);
                    });
                  });
  }

  void on_consume(Session& s, std::uint64_t id, proto::Consume::Reader req) {
    std::string queue(view(req.getQueue()));
    if (!allowed_queue(s, id, queue)) return;
    if (id == 0) return;  // a stream needs an id
    if (s.consumers.contains(id) || s.subscriptions.contains(id)) {
      return reply_error(s.identity, id, ErrorCode::CONFLICT, "stream id already in use");
    }
    if (!stream_room(s, id)) return;
    auto info = router.get_queue(queue);
    if (!info) return reply_error(s.identity, id, info.error());
    Consumer c;
    c.queue = queue;
    c.window = req.getMaxInFlight() == 0 ? kDefaultWindow : req.getMaxInFlight();
    c.visibility_ms = req.getVisibilityTimeoutMs();
    s.consumers.emplace(id, std::move(c));
    reply_ok(s.identity, id);
    pump(s, id);
  }

  void on_cancel(Session& s, std::uint64_t id, std::uint64_t stream) {
    if (auto it = s.subscriptions.find(stream); it != s.subscriptions.end()) {
      it->second->closed = true;
      router.unsubscribe(it->second->hub_id);
      s.subscriptions.erase(it);
      return reply_ok(s.identity, id);
    }
    if (auto it = s.consumers.find(stream); it != s.consumers.end()) {
      // Leases already delivered stay with the client until it settles them or they expire.
      s.consumers.erase(it);
      for (auto& [lease, rec] : s.leases) {
        if (rec.stream == stream) rec.stream = 0;
      }
      return reply_ok(s.identity, id);
    }
    reply_error(s.identity, id, ErrorCode::NOT_FOUND, "no stream " + std::to_string(stream));
  }

  // Checks and publishes one message; the error a client would be told.
  Result<channels::PublishResult> publish_one(Session& s, const std::string& channel, ContentType type,
                                              std::string_view data) {
    if (!s.who.may_publish(channel)) {
      return std::unexpected(Error{ErrorCode::FORBIDDEN, "the token does not grant publishing to " + channel});
    }
    if (data.size() > options.max_message_bytes) {
      return std::unexpected(Error{ErrorCode::MESSAGE_TOO_LARGE,
                                   "the message has " + std::to_string(data.size()) + " bytes; the limit is " +
                                       std::to_string(options.max_message_bytes)});
    }
    if (type == ContentType::kJson && !valid_json(data)) {
      return std::unexpected(Error{ErrorCode::MALFORMED, "the message is not valid JSON (content type json)"});
    }
    if (type == ContentType::kText && !valid_utf8(data)) {
      return std::unexpected(Error{ErrorCode::MALFORMED, "the message is not valid UTF-8 (content type text)"});
    }
    ++round_messages;
    return router.publish(channel, std::string(data), type);
  }

  void on_publish(Session& s, std::uint64_t id, proto::Publish::Reader req,
                  std::span<zmq::message_t> payloads) {
    if (payloads.size() != 1) {
      return reply_error(s.identity, id, ErrorCode::MALFORMED, "publish carries exactly one payload frame");
    }
    auto r = publish_one(s, std::string(view(req.getChannel())), wire::from_wire(req.getContentType()),
                         frame_view(payloads[0]));
    if (id == 0) return;
    if (!r) return reply_error(s.identity, id, r.error());
    capnp::MallocMessageBuilder b(64);
    auto out = b.initRoot<proto::Envelope>();
    out.setId(id);
    auto p = out.initPublished();
    p.setOffset(r->offset);
    p.setEpoch(text(r->epoch));
    p.setSubscribers(r->subscribers);
    reply(s.identity, b);
  }

  void on_publish_batch(Session& s, std::uint64_t id, proto::PublishBatch::Reader req,
                        std::span<zmq::message_t> payloads) {
    auto items = req.getItems();
    auto sizes = req.getSizes();
    std::uint64_t total = 0;
    for (auto n : sizes) total += n;
    if (payloads.size() != 1 || items.size() != sizes.size() || total != payloads[0].size()) {
      return reply_error(s.identity, id, ErrorCode::MALFORMED,
                         "publishBatch carries one payload frame of sum(sizes) bytes, one size per item");
    }
    std::string_view all = frame_view(payloads[0]);
    std::uint64_t accepted = 0;
    std::size_t at = 0;
    // Runs of items on one channel go to the hub together (one lock, one subscriber lookup).
    std::vector<channels::Payload> run;
    run.reserve(items.size());
    for (unsigned i = 0; i < items.size();) {
      std::string_view channel = view(items[i].getChannel());
      bool allowed = s.who.may_publish(channel);
      run.clear();
      for (; i < items.size() && view(items[i].getChannel()) == channel; ++i) {
        std::string_view data = all.substr(at, sizes[i]);
        at += sizes[i];
        auto type = wire::from_wire(items[i].getContentType());
        if (!allowed || data.size() > options.max_message_bytes) continue;
        if (type == ContentType::kJson && !valid_json(data)) continue;
        if (type == ContentType::kText && !valid_utf8(data)) continue;
        run.emplace_back(std::string(data), type);
      }
      round_messages += static_cast<int>(run.size());
      if (auto r = router.publish_many(std::string(channel), run)) accepted += *r;
    }
    if (id == 0) return;
    capnp::MallocMessageBuilder b(32);
    auto out = b.initRoot<proto::Envelope>();
    out.setId(id);
    out.setCount(accepted);
    reply(s.identity, b);
  }

  // Streams (subscriptions and push consumers) one client may hold; answers the error when full.
  bool stream_room(Session& s, std::uint64_t id) {
    if (s.subscriptions.size() + s.consumers.size() < options.max_subscriptions) return true;
    reply_error(s.identity, id, ErrorCode::TOO_MANY_REQUESTS,
                "this client already holds " + std::to_string(s.subscriptions.size() + s.consumers.size()) +
                    " subscriptions and consumers (max_subscriptions_per_connection)");
    return false;
  }

  void on_subscribe(Session& s, std::uint64_t id, proto::Subscribe::Reader req) {
    std::string pattern(view(req.getPattern()));
    if (id == 0) return;
    if (s.consumers.contains(id) || s.subscriptions.contains(id)) {
      return reply_error(s.identity, id, ErrorCode::CONFLICT, "stream id already in use");
    }
    if (!stream_room(s, id)) return;
    if (auto e = channels::validate_pattern(pattern)) return reply_error(s.identity, id, *e);
    if (!s.who.may_subscribe(pattern)) {
      return reply_error(s.identity, id, ErrorCode::FORBIDDEN, "the token does not grant subscribing to " + pattern);
    }
    std::optional<channels::Since> since;
    switch (req.which()) {
      case proto::Subscribe::SINCE: {
        auto p = req.getSince();
        since = channels::Since{std::string(view(p.getEpoch())), p.getOffset(), 0};
        break;
      }
      case proto::Subscribe::RECENT:
        if (req.getRecent() > 0) since = channels::Since{"", 0, req.getRecent()};
        break;
      default: break;
    }
    auto sink = std::make_shared<Sink>();
    sink->outbox = outbox;
    sink->identity = s.identity;
    sink->serial = s.serial;
    sink->stream = id;
    const auto& ns = router.channel_namespace(pattern);
    sink->limit = ns.buffer_messages;
    sink->limit_bytes = ns.buffer_bytes;
    sink->policy = ns.policy;
    auto r = router.subscribe(pattern, sink, since);
    if (!r) return reply_error(s.identity, id, r.error());
    sink->hub_id = r->id;
    s.subscriptions.emplace(id, sink);
    capnp::MallocMessageBuilder b(64);
    auto out = b.initRoot<proto::Envelope>();
    out.setId(id);
    auto sub = out.initSubscribed();
    sub.setEpoch(text(r->epoch));
    sub.setOffset(r->offset);
    sub.setRecovered(r->recovered);
    sub.setReset(r->reset);
    reply(s.identity, b);
  }

  void on_put_queue(Session& s, std::uint64_t id, proto::PutQueue::Reader req) {
    std::string name(view(req.getName()));
    if (!allowed_queue(s, id, name)) return;
    auto patch = wire::from_wire(req.getConfig());
    // Every queue a request names must be granted: a dead-letter queue receives messages.
    if (patch.dead_letter_queue && !patch.dead_letter_queue->empty() &&
        !allowed_queue(s, id, *patch.dead_letter_queue)) {
      return;
    }
    router.put_queue(name, patch, answer<QueueInfo>(s, id, [](proto::Envelope::Builder out, const QueueInfo& q) {
                       wire::to_wire(out.initQueue(), q);
                     }));
  }

  void on_delete_queue(Session& s, std::uint64_t id, proto::QueueName::Reader req) {
    std::string name(view(req.getName()));
    if (!allowed_queue(s, id, name)) return;
    router.delete_queue(name, answer<bool>(s, id, [](proto::Envelope::Builder out, bool) { out.setOk(); }));
  }

  void on_redrive(Session& s, std::uint64_t id, proto::Redrive::Reader req) {
    std::string from(view(req.getFrom())), to(view(req.getTo()));
    if (!allowed_queue(s, id, from) || !allowed_queue(s, id, to)) return;
    router.redrive(from, to, req.getMax(), answer<std::uint64_t>(s, id, [](proto::Envelope::Builder out, std::uint64_t n) {
                     out.setCount(n);
                   }));
  }

  // Checks an object request; answers the error and returns false when it cannot go on.
  bool allowed_object(Session& s, std::uint64_t id, const std::string& cls, const std::string& name,
                      ContentType type, std::span<zmq::message_t> payloads) {
    if (payloads.size() != 1) {
      reply_error(s.identity, id, ErrorCode::MALFORMED, "an object request carries exactly one payload frame");
      return false;
    }
    if (payloads[0].size() > options.max_message_bytes) {
      reply_error(s.identity, id, ErrorCode::MESSAGE_TOO_LARGE,
                  "message of " + std::to_string(payloads[0].size()) + " bytes exceeds max_message_bytes");
      return false;
    }
    if (type == ContentType::kText && !valid_utf8(frame_view(payloads[0]))) {
      reply_error(s.identity, id, ErrorCode::MALFORMED, "the message is not valid UTF-8 (content type text)");
      return false;
    }
    if (type == ContentType::kJson && payloads[0].size() > 0 && !valid_json(frame_view(payloads[0]))) {
      reply_error(s.identity, id, ErrorCode::MALFORMED, "the message is not valid JSON (content type json)");
      return false;
    }
    if (auto e = router.object_check(cls, name)) {
      reply_error(s.identity, id, *e);
      return false;
    }
    if (!s.who.may_use_object(cls, name)) {
      reply_error(s.identity, id, ErrorCode::FORBIDDEN, "not allowed to use object " + cls + "/" + name);
      return false;
    }
    return true;
  }

  void on_object_send(Session& s, std::uint64_t id, proto::ObjectSend::Reader req,
                      std::span<zmq::message_t> payloads) {
    std::string cls(view(req.getClass())), name(view(req.getName()));
    if (!allowed_object(s, id, cls, name, wire::from_wire(req.getContentType()), payloads)) return;
    router.object_tell(std::move(cls), std::move(name), std::string(frame_view(payloads[0])),
                       wire::from_wire(req.getContentType()),
                       answer<std::uint64_t>(s, id, [](proto::Envelope::Builder out, std::uint64_t seq) {
                         out.setCount(seq);
                       }));
  }

  void on_object_call(Session& s, std::uint64_t id, proto::ObjectCall::Reader req,
                      std::span<zmq::message_t> payloads) {
    std::string cls(view(req.getClass())), name(view(req.getName()));
    if (!allowed_object(s, id, cls, name, wire::from_wire(req.getContentType()), payloads)) return;
    router.object_call(std::move(cls), std::move(name), std::string(frame_view(payloads[0])),
                       wire::from_wire(req.getContentType()), req.getTimeoutMs(),
                       [this, identity = s.identity, serial = s.serial, id](Result<ObjectReply> r) mutable {
                         later(identity, serial, [this, identity, id, r = std::move(r)](Session* cur) mutable {
                           if (cur == nullptr || id == 0) return;
                           if (!r) return reply_error(identity, id, r.error());
                           capnp::MallocMessageBuilder b(64);
                           auto out = b.initRoot<proto::Envelope>();
                           out.setId(id);
                           out.initObjectReply().setContentType(wire::to_wire(r->content_type));
                           std::vector<zmq::message_t> payload;
                           payload.emplace_back(r->data.data(), r->data.size());
                           reply(identity, b, std::move(payload));
                         });
                       });
  }

  // ---- the loop --------------------------------------------------------------------------------

  void run() {
    zmq::pollitem_t items[3] = {{sock.handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, outbox->wake_fd, ZMQ_POLLIN, 0},
                                {monitor.handle(), 0, ZMQ_POLLIN, 0}};
    std::vector<std::move_only_function<void()>> tasks;
    Outbox::Deliveries deliveries;
    std::vector<zmq::message_t> parts;
    while (!stopping.load()) {
      std::int64_t now = steady_ms();
      long timeout = std::clamp<long>(static_cast<long>(next_sweep - now), 0, recheck_fds.empty() ? 100 : 10);
      try {
        zmq::poll(items, 3, std::chrono::milliseconds(timeout));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        [[maybe_unused]] auto r = ::read(outbox->wake_fd, &n, sizeof n);
      }
      drain_monitor();
      // Requests in rounds of kRound, each followed by what they produced, so that a burst of
      // publishes does not fill subscriber buffers before they are flushed.
      for (int round = 0; round < 16; ++round) {
        int n = 0;
        round_messages = 0;
        if (round > 0) drain_monitor();  // connection events before the requests that follow them
        for (; n < kRound && round_messages < kRound; ++n) {
          parts.clear();
          if (!zmq::recv_multipart(sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
          handle(parts);
        }
        {
          std::lock_guard lock(outbox->mu);
          tasks.swap(outbox->tasks);
          deliveries.swap(outbox->deliveries);
          outbox->wake_pending = false;
        }
        for (auto& t : tasks) t();
        tasks.clear();
        flush_deliveries(deliveries);
        if (n < kRound && round_messages < kRound) break;
      }
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
};

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
      throw std::runtime_error(std::string("cannot monitor the endpoint socket: ") + zmq_strerror(zmq_errno()));
    }
    d.monitor = zmq::socket_t(d.ctx, zmq::socket_type::pair);
    d.monitor.set(zmq::sockopt::linger, 0);
    d.monitor.connect(address);
  }
  d.thread = std::thread([&d] {
    roost::name_this_thread("roost-endpoint");
    try {
      d.run();
    } catch (const std::exception& e) {
      d.log->critical("endpoint thread failed: {}", e.what());
    }
  });
  d.log->info("endpoint listening on {}{}", d.bound,
              d.options.curve_secret_key.empty() ? "" : " (CURVE encryption)");
}

std::string Endpoint::bound() const { return impl_->bound; }

void Endpoint::stop() {
  auto& d = *impl_;
  if (!d.thread.joinable()) return;
  d.stopping = true;
  {
    std::lock_guard lock(d.outbox->mu);
    d.outbox->wake_locked();
  }
  d.thread.join();
  // The endpoint thread has exited (join is the barrier ZeroMQ asks for): the socket is this
  // thread's now. Run what completed meanwhile (its answers still go out, leases of gone sessions
  // are released), then end every session.
  std::vector<std::move_only_function<void()>> tasks;
  {
    std::lock_guard lock(d.outbox->mu);
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
  w.gauge("roost_endpoint_sessions", "Native protocol clients with a session.", std::uint64_t{d.session_count.load()});
  w.counter("roost_endpoint_requests_total", "Native protocol requests received.", d.requests.load());
  w.counter("roost_endpoint_malformed_total", "Native frames that could not be decoded.", d.malformed.load());
  w.counter("roost_endpoint_sessions_expired_total", "Sessions ended because the client went silent.",
            d.sessions_expired.load());
  w.counter("roost_endpoint_sessions_disconnected_total", "Sessions ended because their connection closed.",
            d.sessions_disconnected.load());
  w.counter("roost_endpoint_handshake_failures_total",
            "Connections whose ZeroMQ handshake failed (CURVE key, protocol).", d.handshake_failures.load());
  w.counter("roost_endpoint_rebound_refused_total",
            "Requests refused: their routing id's session belongs to another connection.", d.rebound_refused.load());
  w.counter("roost_endpoint_channel_dropped_total",
            "Channel messages dropped for native subscribers that fell behind.", d.outbox->dropped_total.load());
  return std::move(w).text();
}

}  // namespace roost::broker
