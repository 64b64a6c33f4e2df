#include <roost/broker/push_delivery.h>

#include <roost/core/base64.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/thread_name.h>
#include <roost/gateway/json_codec.h>

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace roost::broker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

constexpr std::array<double, 12> kLatencyBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

// What one target did (Prometheus families roost_push_*), read by /metrics from any thread.
struct TargetStats {
  std::string queue;
  std::string url;
  std::atomic<std::uint64_t> delivered{0};  // messages acked after a 2xx
  std::atomic<std::uint64_t> retried{0};    // messages given back after a failure
  std::atomic<std::uint64_t> failed_status{0}, failed_timeout{0}, failed_connect{0}, failed_other{0};
  std::atomic<std::uint64_t> in_flight{0};  // requests
  std::array<std::atomic<std::uint64_t>, kLatencyBounds.size() + 1> buckets{};
  std::atomic<std::uint64_t> latency_us{0}, requests{0};

  void observe(std::chrono::steady_clock::duration d) {
    double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < kLatencyBounds.size() && s > kLatencyBounds[i]) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    latency_us.fetch_add(static_cast<std::uint64_t>(s * 1e6), std::memory_order_relaxed);
    requests.fetch_add(1, std::memory_order_relaxed);
  }
};

struct Pusher {
  std::string queue;
  PushTarget target;
  HttpUrl url;
  std::shared_ptr<std::atomic<bool>> stopped = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<TargetStats> stats;
};

struct Outcome {
  bool ok = false;
  unsigned status = 0;
  std::optional<std::uint64_t> retry_after_ms;
  std::string reason;  // "status", "timeout", "connect", "error"
};

// One keep-alive connection to a target (a slot's own).
struct Connection {
  explicit Connection(asio::any_io_executor ex) : stream(ex), resolver(ex) {}
  beast::tcp_stream stream;
  tcp::resolver resolver;
  bool open = false;
};

std::optional<std::uint64_t> retry_after(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  std::uint64_t secs = 0;
  if (v.empty() || v.size() > 9) return std::nullopt;
  for (char c : v) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;  // an HTTP-date: not honoured
    secs = secs * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return std::min<std::uint64_t>(secs, 43'200) * 1000;
}

void append_json_string(std::string& out, std::string_view s) {
  out += boost::json::serialize(boost::json::string_view(s.data(), s.size()));
}

std::string host_header(const HttpUrl& u) {
  std::string h = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  return u.port == "80" ? h : h + ":" + u.port;
}

// What one exchange may read of an answer besides its body: the header block, and what the body's
// framing adds (chunk lines, trailers). The read buffer never holds more than this.
constexpr std::size_t kMaxAnswerFraming = 16 * 1024;

// POSTs `req` on `c` (connecting first if needed, and once more on a fresh connection when a
// kept-alive one turns out closed) within `timeout`. The answer's body is read up to `max_body`;
// every other byte of it (headers, chunk lines, trailers) is bounded by kMaxAnswerFraming. An
// address in `forbidden` (the node's own listeners, etcd) is never connected to.
awaitable<Outcome> exchange_once(Connection& c, const HttpUrl& url, http::request<http::string_body>& req,
                                 std::chrono::milliseconds timeout, std::size_t max_body,
                                 const std::vector<std::string>& forbidden) {
  Outcome out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = c.open;
    beast::error_code ec;
    c.stream.expires_after(timeout);
    if (!c.open) {
      auto results =
          co_await c.resolver.async_resolve(url.host, url.port, asio::redirect_error(use_awaitable, ec));
      if (!ec) {
        for (const auto& r : results) {
          if (forbidden_endpoint(r.endpoint().address().to_string(), std::to_string(r.endpoint().port()),
                                 forbidden)) {
            ec = asio::error::access_denied;  // a name that resolves to the node itself or etcd
          }
        }
      }
      if (!ec) co_await c.stream.async_connect(results, asio::redirect_error(use_awaitable, ec));
      if (ec) {
        c.stream.close();
        out.reason = ec == beast::error::timeout ? "timeout" : "connect";
        co_return out;
      }
      c.open = true;
    }
    co_await http::async_write(c.stream, req, asio::redirect_error(use_awaitable, ec));
    beast::flat_buffer buf(kMaxAnswerFraming);
    http::response_parser<http::string_body> parser;
    parser.header_limit(kMaxAnswerFraming);
    parser.body_limit(max_body);
    if (!ec) co_await http::async_read_header(c.stream, buf, parser, asio::redirect_error(use_awaitable, ec));
    if (ec == http::error::body_limit && parser.is_header_done()) {
      // An answer longer than max_body (its Content-Length says so): its status is all we need.
      out.status = parser.get().result_int();
      if (auto ra = parser.get()[http::field::retry_after]; !ra.empty()) out.retry_after_ms = retry_after(ra);
      c.stream.close();
      c.open = false;
      out.ok = out.status >= 200 && out.status < 300;
      if (!out.ok) out.reason = "status";
      co_return out;
    }
    if (ec) {
      c.stream.close();
      c.open = false;
      // A kept-alive connection the service had closed: send once more on a new one.
      if (reused && attempt == 0 && ec != beast::error::timeout) continue;
      out.reason = ec == beast::error::timeout ? "timeout" : "error";
      co_return out;
    }
    out.status = parser.get().result_int();
    if (auto ra = parser.get()[http::field::retry_after]; !ra.empty()) out.retry_after_ms = retry_after(ra);
    // The rest of the answer: read (for keep-alive) up to max_body; a larger one closes the
    // connection and is judged by its status. One that does not end in time (a body still
    // dripping at the timeout) or breaks its framing is a failure, whatever its status said.
    co_await http::async_read(c.stream, buf, parser, asio::redirect_error(use_awaitable, ec));
    if (ec || !parser.get().keep_alive()) {
      c.stream.close();
      c.open = false;
    }
    if (ec && ec != http::error::body_limit) {
      out.ok = false;
      out.reason = ec == beast::error::timeout ? "timeout" : "error";
      co_return out;
    }
    out.ok = out.status >= 200 && out.status < 300;  // redirects are not followed: a failure
    if (!out.ok) out.reason = "status";
    co_return out;
  }
  co_return out;
}

// exchange_once, where anything the answer makes the parser throw (a field over Beast's own
// limits) is a failed request on a closed connection, never an exception out of the slot.
awaitable<Outcome> exchange(Connection& c, const HttpUrl& url, http::request<http::string_body>& req,
                            std::chrono::milliseconds timeout, std::size_t max_body,
                            const std::vector<std::string>& forbidden) {
  try {
    co_return co_await exchange_once(c, url, req, timeout, max_body, forbidden);
  } catch (const std::exception& e) {
    module_logger("push")->warn("push to {}:{}: the answer could not be read: {}", url.host, url.port,
                                e.what());
  }
  beast::error_code ignored;
  c.stream.socket().close(ignored);
  c.open = false;
  Outcome out;
  out.reason = "error";
  co_return out;
}

// Runs a Router call whose callback may come on any thread; resumes on this coroutine's executor.
template <class T, class Start>
awaitable<Result<T>> routed(Start start) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(use_awaitable), void(Result<T>)>(
      [ex, start = std::move(start)](auto handler) mutable {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([ex, h](Result<T> r) mutable {
          asio::post(ex, [h, r = std::move(r)]() mutable { std::move (*h)(std::move(r)); });
        });
      },
      use_awaitable);
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  beast::error_code ec;
  co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
}

// A channel pattern forwarded to a URL (channel_webhooks): at most once, through a bounded queue.
struct Webhook : channels::Subscriber, std::enable_shared_from_this<Webhook> {
  std::string pattern, url_text;
  HttpUrl url;
  std::vector<std::string> forbidden;  // (set before the first delivery)
  asio::any_io_executor ex;
  std::size_t limit = 1024;
  std::mutex mu;
  std::deque<channels::MessagePtr> waiting;
  std::atomic<std::uint64_t> delivered{0}, failed{0}, dropped{0};
  unsigned senders = 0;  // under mu
  static constexpr unsigned kSenders = 4;
  std::atomic<bool> stopped{false};

  void deliver(const channels::MessagePtr& m) override {
    if (m->kind != channels::MessageKind::kData) return;
    std::lock_guard lock(mu);
    if (stopped.load()) return;  // (set under mu: nothing is spawned once stop() went by)
    if (waiting.size() >= limit) {
      dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    waiting.push_back(m);
    if (senders < kSenders) {
      ++senders;
      asio::co_spawn(ex, send_all(shared_from_this()), asio::detached);
    }
  }
  void stop() {
    std::lock_guard lock(mu);
    stopped.store(true);
  }

  static awaitable<void> send_all(std::shared_ptr<Webhook> self) {
    Connection c(co_await asio::this_coro::executor);
    for (;;) {
      channels::MessagePtr m;
      {
        std::lock_guard lock(self->mu);
        if (self->waiting.empty() || self->stopped.load()) {
          --self->senders;
          break;
        }
        m = self->waiting.front();
        self->waiting.pop_front();
      }
      std::string body = R"({"channel":)";
      append_json_string(body, m->channel);
      body += R"(,"data":)";
      switch (m->content_type) {
        case ContentType::kJson: body += m->data; break;
        case ContentType::kText: append_json_string(body, m->data); break;
        case ContentType::kBytes: body += '"' + base64_encode(m->data) + '"'; break;
      }
      body += R"(,"content_type":")" + std::string(content_type_name(m->content_type)) + R"(","offset":)" +
              std::to_string(m->offset) + R"(,"epoch":)";
      append_json_string(body, m->epoch);
      body += R"(,"timestamp_ms":)" + std::to_string(m->timestamp_ms) + "}";
      http::request<http::string_body> req{http::verb::post, self->url.target, 11};
      req.set(http::field::host, host_header(self->url));
      req.set(http::field::user_agent, "roost-webhook");
      req.set(http::field::content_type, "application/json");
      req.set("Roost-Channel", m->channel);
      req.keep_alive(true);
      req.body() = std::move(body);
      req.prepare_payload();
      auto out = co_await exchange(c, self->url, req, std::chrono::seconds(10), 64 * 1024, self->forbidden);
      (out.ok ? self->delivered : self->failed).fetch_add(1, std::memory_order_relaxed);
    }
    if (c.open) c.stream.close();
  }
};

}  // namespace

struct PushDelivery::Impl {
  Impl(Router& r, PushOptions o) : router(r), options(std::move(o)), timer(io) {}

  Router& router;
  PushOptions options;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  asio::steady_timer timer;
  std::atomic<bool> stopping{false};
  std::atomic<bool> finished{false};                       // the thread's io.run() returned
  std::map<std::string, std::shared_ptr<Pusher>> pushers;  // io thread only
  std::map<std::string, std::string> refused;              // queue → url logged as not allowed (io thread)
  mutable std::mutex forbid_mu;
  std::vector<std::string> forbidden;  // under forbid_mu: the node's listeners, etcd (forbid())
  std::vector<std::string> forbidden_now() const {
    std::lock_guard lock(forbid_mu);
    return forbidden;
  }
  mutable std::mutex stats_mu;
  std::map<std::string, std::shared_ptr<TargetStats>> stats;  // by queue
  std::vector<std::shared_ptr<Webhook>> webhooks;
  std::vector<std::uint64_t> webhook_subscriptions;
  std::shared_ptr<spdlog::logger> log = module_logger("push");

  void schedule() {
    timer.expires_after(std::chrono::milliseconds(options.reconcile_ms));
    // Raw pointers in handlers and coroutines: they never outlive the io_context, a member of
    // this Impl (its destructor destroys what is still pending), and hold no cycle through it.
    timer.async_wait([self = this](beast::error_code ec) {
      if (ec || self->stopping.load()) return;
      self->reconcile();
      self->schedule();
    });
  }

  // Which queues this node should push now: those it owns with a push target. Pushers of queues
  // gone, moved away or retargeted stop; new ones start.
  void reconcile() {
    std::map<std::string, PushTarget> want;
    for (const auto& q : router.list_queues()) {
      if (q.config.push.url.empty()) continue;
      if (!router.get_queue(q.name)) continue;  // (mesh) not this node's to serve now
      if (auto e = check_push_url(q.config.push.url, options.allowed_hosts, forbidden_now())) {
        if (refused[q.name] != q.config.push.url) log->warn("queue {}: not pushing: {}", q.name, e->message);
        refused[q.name] = q.config.push.url;
        continue;
      }
      want[q.name] = q.config.push;
    }
    for (auto it = pushers.begin(); it != pushers.end();) {
      auto w = want.find(it->first);
      if (w == want.end() || !(w->second == it->second->target)) {
        log->info("queue {}: push to {} stopped", it->first, it->second->target.url);
        it->second->stopped->store(true);
        it = pushers.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [name, target] : want) {
      if (pushers.contains(name)) continue;
      auto p = std::make_shared<Pusher>();
      p->queue = name;
      p->target = target;
      p->url = *parse_http_url(target.url);
      {
        std::lock_guard lock(stats_mu);
        auto& s = stats[name];
        if (!s || s->url != target.url) {
          s = std::make_shared<TargetStats>();
          s->queue = name;
          s->url = target.url;
        }
        p->stats = s;
      }
      pushers[name] = p;
      refused.erase(name);
      log->info("queue {}: pushing to {} (concurrency {}, timeout {} ms, batch {})", name, target.url,
                target.concurrency, target.timeout_ms, target.batch_size);
      for (std::uint32_t i = 0; i < target.concurrency; ++i) {
        spawn_slot(p);
      }
    }
  }

  // Starts one request slot of `p`. A slot that ends on an exception (a bug: requests catch their
  // own) is logged and started again while its queue is pushed, so a queue never loses a slot.
  void spawn_slot(const std::shared_ptr<Pusher>& p) {
    asio::co_spawn(io, slot(this, p), [self = this, p](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        module_logger("push")->error("queue {}: a push slot failed (bug): {}", p->queue, ex.what());
      }
      if (!p->stopped->load() && !self->stopping.load()) self->spawn_slot(p);
    });
  }

  // One of a queue's `concurrency` request slots: lease, POST, ack or retry, again.
  static awaitable<void> slot(Impl* self, std::shared_ptr<Pusher> p) {
    Connection conn(co_await asio::this_coro::executor);
    unsigned failures = 0;
    const auto timeout = std::chrono::milliseconds(p->target.timeout_ms);
    while (!p->stopped->load() && !self->stopping.load()) {
      PullOptions o;
      o.batch_size = p->target.batch_size;
      o.visibility_timeout_ms = p->target.timeout_ms + 10'000;  // outlives the request
      o.for_push = true;
      auto got = co_await routed<std::vector<LeasedMessage>>([&](Callback<std::vector<LeasedMessage>> cb) {
        self->router.pull(p->queue, o, self->options.poll_wait_ms, std::move(cb), p->stopped);
      });
      if (!got) {
        co_await sleep_for(std::chrono::milliseconds(200));  // deleted, moving, or stopping
        continue;
      }
      if (got->empty()) continue;
      std::vector<std::string> leases;
      for (const auto& m : *got) leases.push_back(m.lease_id);
      if (p->stopped->load() || self->stopping.load()) {
        // Leased after the target changed or the node began to stop: back to the queue at once.
        std::vector<RetryRequest> back;
        for (auto& l : leases) back.push_back(RetryRequest{l, 0});
        co_await routed<AckResult>(
            [&](Callback<AckResult> cb) { self->router.ack(p->queue, {}, back, std::move(cb)); });
        break;
      }
      http::request<http::string_body> req{http::verb::post, p->url.target, 11};
      req.set(http::field::host, host_header(p->url));
      req.set(http::field::user_agent, "roost-push");
      req.set("Roost-Queue", p->queue);
      req.keep_alive(true);
      if (p->target.batch_size == 1 && got->size() == 1) {
        const auto& m = got->front();
        req.set(http::field::content_type, content_type_mime(m.content_type));
        req.set("Roost-Message-Id", m.id);
        req.set("Roost-Attempts", std::to_string(m.attempts));
        req.set("Roost-Timestamp-Ms", std::to_string(m.timestamp_ms));
        if (!m.key.empty()) req.set("Roost-Key", m.key);
        req.body() = m.body;
      } else {
        req.set(http::field::content_type, "application/json");
        req.set("Roost-Batch-Size", std::to_string(got->size()));
        req.body() = gateway::encode_message_array(*got, /*with_leases=*/false);
      }
      req.prepare_payload();
      auto& st = *p->stats;
      st.in_flight.fetch_add(1, std::memory_order_relaxed);
      auto t0 = std::chrono::steady_clock::now();
      auto out = co_await exchange(conn, p->url, req, timeout, self->options.max_response_bytes,
                                   self->forbidden_now());
      st.in_flight.fetch_sub(1, std::memory_order_relaxed);
      if (out.status != 0) st.observe(std::chrono::steady_clock::now() - t0);
      if (out.ok) {
        failures = 0;
        auto r = co_await routed<AckResult>(
            [&](Callback<AckResult> cb) { self->router.ack(p->queue, leases, {}, std::move(cb)); });
        if (r) st.delivered.fetch_add(r->acked, std::memory_order_relaxed);
        if (r && !r->unknown.empty()) {
          self->log->warn(
              "queue {}: {} pushed messages were no longer leased when acked (the request "
              "outlived its lease): they may come again",
              p->queue, r->unknown.size());
        }
        continue;
      }
      (out.reason == "status"    ? st.failed_status
       : out.reason == "timeout" ? st.failed_timeout
       : out.reason == "connect" ? st.failed_connect
                                 : st.failed_other)
          .fetch_add(1, std::memory_order_relaxed);
      std::vector<RetryRequest> retries;
      for (auto& l : leases) retries.push_back(RetryRequest{l, out.retry_after_ms});  // nullopt = the queue's
      auto r = co_await routed<AckResult>(
          [&](Callback<AckResult> cb) { self->router.ack(p->queue, {}, retries, std::move(cb)); });
      if (r) st.retried.fetch_add(r->retried, std::memory_order_relaxed);
      // A failing target is not hammered: this slot waits before it leases again (100 ms doubling
      // to 5 s; the next success resets it). Other queues' slots are not affected.
      ++failures;
      co_await sleep_for(
          std::chrono::milliseconds(std::min<std::uint64_t>(5000, 100ull << std::min(failures - 1, 6u))));
    }
    if (conn.open) conn.stream.close();
  }
};

PushDelivery::PushDelivery(Router& router, PushOptions options)
    : impl_(std::make_shared<Impl>(router, std::move(options))) {}

PushDelivery::~PushDelivery() { stop(); }

void PushDelivery::start() {
  auto& d = *impl_;
  auto hooks = parse_channel_webhooks(d.options.channel_webhooks);
  if (!hooks) throw std::invalid_argument(hooks.error().message);
  for (auto& [pattern, url] : *hooks) {
    if (auto e = check_push_url(url, d.options.allowed_hosts, d.forbidden_now())) {
      throw std::invalid_argument(e->message);
    }
    auto w = std::make_shared<Webhook>();
    w->forbidden = d.forbidden_now();
    w->pattern = pattern;
    w->url_text = url;
    w->url = *parse_http_url(url);
    w->ex = d.io.get_executor();
    w->limit = d.options.webhook_queue;
    auto sub = d.router.subscribe(pattern, w, std::nullopt);
    if (!sub) throw std::invalid_argument("channel_webhooks: " + sub.error().message);
    d.webhook_subscriptions.push_back(sub->id);
    d.webhooks.push_back(std::move(w));
    d.log->info("channel webhook: {} → {}", pattern, url);
  }
  d.work.emplace(asio::make_work_guard(d.io));
  d.thread = std::thread([impl = impl_] {
    roost::name_this_thread("roost-push");
    for (;;) {
      try {
        impl->io.run();
        break;
      } catch (const std::exception& e) {
        impl->log->error("a push handler threw (bug): {}", e.what());
      }
    }
    impl->finished.store(true);
  });
  asio::post(d.io, [impl = impl_] {
    impl->reconcile();
    impl->schedule();
  });
}

void PushDelivery::stop() {
  auto& d = *impl_;
  if (!d.thread.joinable()) return;
  d.stopping.store(true);
  for (auto id : d.webhook_subscriptions) d.router.unsubscribe(id);
  d.webhook_subscriptions.clear();
  for (auto& w : d.webhooks) w->stop();
  asio::post(d.io, [impl = impl_] {
    impl->timer.cancel();
    for (auto& [name, p] : impl->pushers) p->stopped->store(true);
    impl->pushers.clear();
  });
  d.work.reset();
  // Slots end after their request or their long poll. A request still waiting for a slow target
  // after stop_grace_ms is abandoned: its messages come back when their leases run out.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(d.options.stop_grace_ms);
  while (!d.finished.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!d.finished.load()) {
    d.log->warn(
        "push requests still waiting for their targets at stop: abandoned (their messages come "
        "back when their leases run out)");
    d.io.stop();
  }
  d.thread.join();
}

void PushDelivery::kick() {
  auto& d = *impl_;
  if (d.stopping.load() || !d.thread.joinable()) return;
  asio::post(d.io, [impl = impl_] {
    if (!impl->stopping.load()) impl->reconcile();
  });
}

void PushDelivery::forbid(std::vector<std::string> endpoints) {
  std::lock_guard lock(impl_->forbid_mu);
  impl_->forbidden = std::move(endpoints);
}

std::optional<Error> PushDelivery::check_target(const PushTarget& target) const {
  if (target.url.empty()) return std::nullopt;
  return check_push_url(target.url, impl_->options.allowed_hosts, impl_->forbidden_now());
}

std::string PushDelivery::metrics_text() const {
  auto& d = *impl_;
  std::vector<std::shared_ptr<TargetStats>> all;
  {
    std::lock_guard lock(d.stats_mu);
    for (auto& [q, s] : d.stats) all.push_back(s);
  }
  MetricsWriter w;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    w.family(name, type, help);
    for (const auto& s : all) w.sample(name, {{"queue", s->queue}, {"target", s->url}}, value(*s));
  };
  family("roost_push_delivered_total", "counter", "Messages a push target acknowledged (2xx).",
         [](TargetStats& s) { return s.delivered.load(); });
  family("roost_push_retried_total", "counter", "Messages given back to their queue after a failed push.",
         [](TargetStats& s) { return s.retried.load(); });
  family("roost_push_in_flight", "gauge", "Push requests waiting for their answer.",
         [](TargetStats& s) { return s.in_flight.load(); });
  w.family("roost_push_failures_total", "counter", "Failed push requests by reason.");
  for (const auto& s : all) {
    for (auto [reason, n] :
         {std::pair{"status", &s->failed_status}, std::pair{"timeout", &s->failed_timeout},
          std::pair{"connect", &s->failed_connect}, std::pair{"error", &s->failed_other}}) {
      w.sample("roost_push_failures_total", {{"queue", s->queue}, {"target", s->url}, {"reason", reason}},
               n->load());
    }
  }
  w.family("roost_push_request_seconds", "histogram", "Push request latency, sent to answered.");
  for (const auto& s : all) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kLatencyBounds.size(); ++i) {
      cumulative += s->buckets[i].load();
      std::string le = i < kLatencyBounds.size() ? fmt::format("{}", kLatencyBounds[i]) : "+Inf";
      w.sample("roost_push_request_seconds_bucket", {{"queue", s->queue}, {"target", s->url}, {"le", le}},
               cumulative);
    }
    w.sample("roost_push_request_seconds_sum", {{"queue", s->queue}, {"target", s->url}},
             static_cast<double>(s->latency_us.load()) / 1e6);
    w.sample("roost_push_request_seconds_count", {{"queue", s->queue}, {"target", s->url}},
             s->requests.load());
  }
  w.family("roost_webhook_delivered_total", "counter", "Channel messages a webhook target acknowledged.");
  for (const auto& h : d.webhooks)
    w.sample("roost_webhook_delivered_total", {{"pattern", h->pattern}, {"target", h->url_text}},
             h->delivered.load());
  w.family("roost_webhook_failed_total", "counter",
           "Channel messages a webhook target refused or missed (not retried).");
  for (const auto& h : d.webhooks)
    w.sample("roost_webhook_failed_total", {{"pattern", h->pattern}, {"target", h->url_text}},
             h->failed.load());
  w.family("roost_webhook_dropped_total", "counter",
           "Channel messages dropped: the webhook's queue was full.");
  for (const auto& h : d.webhooks)
    w.sample("roost_webhook_dropped_total", {{"pattern", h->pattern}, {"target", h->url_text}},
             h->dropped.load());
  return std::move(w).text();
}

}  // namespace roost::broker
