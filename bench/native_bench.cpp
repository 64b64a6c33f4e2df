// Roost's native protocol next to its peers, same machine, same run: redis-server (appendonly,
// appendfsync always; Streams for queues, PUBLISH for pub/sub) and nats-server (JetStream with
// file storage for queues, core NATS for pub/sub), each driven by its own C client (hiredis,
// libnats) with the same load. 100-byte messages. Prints `name value unit` lines and ratios.
//
//   native_bench --roost tcp://127.0.0.1:7400 --redis 127.0.0.1:6379 --nats nats://127.0.0.1:4222
//                [--seconds 3] [--only enqueue|latency|consume|pubsub|objects]
//                [--fanouts 1,10] [--pubsub-messages N] [--windows 64,1000]
// bench/native_bench.sh starts all three servers and runs this.
#include <roost/client/client.h>

#include <hiredis/hiredis.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Args {
  std::string roost = "tcp://127.0.0.1:7400";
  std::string redis_host = "127.0.0.1";
  int redis_port = 6379;
  std::string nats = "nats://127.0.0.1:4222";
  double seconds = 3;
  std::string only;
  std::string targets = "roost,redis,nats";       // which servers to drive
  std::vector<int> fanouts = {1, 10};             // pub/sub subscribers per run
  std::uint64_t pubsub_messages = 0;              // 0 = 500,000 at 1 subscriber, 200,000 above
  std::vector<std::size_t> windows = {64, 1000};  // enqueues in flight per run
  // Many connections, a few in flight each (CxW): Redis groups its fsync per event-loop pass over
  // every connection, so one connection alone flatters a server that groups per connection.
  std::vector<std::pair<int, std::size_t>> shapes = {{16, 4}};
};

// `conns` copies of `run` at once, each on a thread (and a connection) of its own; the sum of
// their rates (each counts only what its server acknowledged, over its own time).
template <class F>
double concurrently(int conns, F run) {
  std::vector<double> rates(static_cast<std::size_t>(conns), 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < conns; ++i)
    threads.emplace_back([&, i] { rates[static_cast<std::size_t>(i)] = run(i); });
  for (auto& t : threads) t.join();
  double sum = 0;
  for (double r : rates) sum += r;
  return sum;
}

const std::string kBody(100, 'x');
std::map<std::string, double> g_results;
int g_failures = 0;  // scenarios whose subscribers did not get every message: the run fails
void report(const std::string& name, double value, const char* unit);

// A pub/sub body: kBody with the message's sequence number in its first 8 bytes.
std::string seq_body(std::uint64_t seq) {
  std::string b = kBody;
  std::memcpy(b.data(), &seq, sizeof seq);
  return b;
}

// One subscriber's view of a run: every sequence in order once. A jump forward counts the
// skipped ones as gaps; a sequence at or below the last one seen is a duplicate or reordering.
struct SeqCheck {
  std::uint64_t next = 0, gaps = 0, dups = 0, got = 0;
  void see(std::string_view body) {
    if (body.size() < sizeof(std::uint64_t)) return;
    std::uint64_t seq;
    std::memcpy(&seq, body.data(), sizeof seq);
    ++got;
    if (seq < next) {
      ++dups;
      return;
    }
    gaps += seq - next;
    next = seq + 1;
  }
};

// A pub/sub scenario's figures: deliveries per second, and what the sequences say.
struct PubSubRun {
  double rate = 0;
  std::uint64_t want = 0, got = 0, gaps = 0, dups = 0;
};

void report_pubsub(const std::string& name, const PubSubRun& r, const std::vector<SeqCheck>& checks) {
  PubSubRun out = r;
  for (const auto& c : checks) {
    out.got += c.got;
    out.gaps += c.gaps;
    out.dups += c.dups;
  }
  // Gaps at the end of a subscriber's stream (never sent on) are short deliveries too.
  std::uint64_t shortfall = out.want - std::min(out.want, out.got);
  std::printf("%s_gaps %llu msgs\n%s_duplicates %llu msgs\n%s_short %llu msgs\n", name.c_str(),
              static_cast<unsigned long long>(out.gaps), name.c_str(),
              static_cast<unsigned long long>(out.dups), name.c_str(),
              static_cast<unsigned long long>(shortfall));
  if (shortfall != 0 || out.dups != 0) {
    // No ratio for a run that did not deliver everything once.
    std::printf("FAILED %s: %llu of %llu deliveries, %llu duplicates\n", name.c_str(),
                static_cast<unsigned long long>(out.got), static_cast<unsigned long long>(out.want),
                static_cast<unsigned long long>(out.dups));
    ++g_failures;
    return;
  }
  report(name, out.rate, "deliveries/s");
}

void report(const std::string& name, double value, const char* unit) {
  g_results[name] = value;
  std::printf("%s %.1f %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}
void ratio(const std::string& name, const std::string& ours, const std::string& theirs) {
  if (!g_results.contains(ours) || !g_results.contains(theirs) || g_results[theirs] == 0) return;
  std::printf("%s %.2f x\n", name.c_str(), g_results[ours] / g_results[theirs]);
}
// For latencies lower is better: the ratio is theirs / ours so that > 1 means Roost is ahead.
void ratio_lower(const std::string& name, const std::string& ours, const std::string& theirs) {
  if (!g_results.contains(ours) || !g_results.contains(theirs) || g_results[ours] == 0) return;
  std::printf("%s %.2f x\n", name.c_str(), g_results[theirs] / g_results[ours]);
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- Roost ------------------------------------------------------------------------------------

std::shared_ptr<roost::Client> roost_connect(const Args& a) {
  roost::ClientOptions o;
  o.url = a.roost;
  o.name = "native_bench";
  auto c = roost::Client::connect(o);
  if (!c) {
    std::fprintf(stderr, "roost: %s\n", c.error().message.c_str());
    std::exit(1);
  }
  return *c;
}

roost::NewMessage body_msg() {
  roost::NewMessage m;
  m.body = kBody;
  m.content_type = roost::ContentType::kBytes;
  return m;
}

double roost_enqueue(const Args& a, std::size_t window, const std::string& queue) {
  auto c = roost_connect(a);
  roost::Producer p(*c, queue, window);
  std::atomic<std::uint64_t> done{0};
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(a.seconds);
  std::uint64_t sent = 0;
  while (Clock::now() < end && sent < 5'000'000) {
    p.send_async(body_msg(), [&](roost::Result<std::string> r) {
      if (r) done.fetch_add(1, std::memory_order_relaxed);
    });
    ++sent;
  }
  p.flush();
  return static_cast<double>(done.load()) / since(t0);
}

// Durable tells to objects of the counter example (native_bench.sh loads its plugin), `window`
// in flight; the time ends when a call to every object has answered (calls queue behind the
// earlier turns and answer after their commits), so every message was consumed durably.
double roost_object_tells(const Args& a, std::size_t objects, std::size_t window) {
  auto c = roost_connect(a);
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t acked = 0, failed = 0, sent = 0;
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(a.seconds);
  while (Clock::now() < end && sent < 5'000'000) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return sent - acked < window; });
    }
    c->tell_async("counter", "hot" + std::to_string(sent % objects), R"({"add":1})",
                  roost::ContentType::kJson, [&](roost::Result<std::uint64_t> r) {
                    std::lock_guard lock(mu);
                    ++acked;
                    failed += !r;
                    cv.notify_all();
                  });
    ++sent;
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return acked == sent; });
  }
  for (std::size_t o = 0; o < std::min<std::uint64_t>(objects, sent); ++o)
    (void)c->call("counter", "hot" + std::to_string(o), "{}");
  if (failed) std::fprintf(stderr, "%llu tells failed\n", static_cast<unsigned long long>(failed));
  return static_cast<double>(acked - failed) / since(t0);
}

// Round trips of a call to a warm object (on_call → reply; nothing durable).
std::vector<double> roost_object_calls(const Args& a, int n) {
  auto c = roost_connect(a);
  (void)c->call("counter", "warm", "{}");
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    if (!c->call("counter", "warm", "{}")) break;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  return us;
}

std::vector<double> roost_latency(const Args& a, int n) {
  auto c = roost_connect(a);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    auto r = c->enqueue("lat", {body_msg()});
    if (!r) break;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  return us;
}

double roost_consume(const Args& a, std::size_t prefill) {
  auto c = roost_connect(a);
  {
    roost::Producer p(*c, "consume", 1000);
    for (std::size_t i = 0; i < prefill; i += 100) {
      std::vector<roost::NewMessage> batch(100, body_msg());
      if (!p.send_batch(std::move(batch))) break;
    }
  }
  // Each batch's ack goes out without waiting, so it shares a commit with the next pull (as NATS's
  // natsMsg_Ack does not wait, and the Redis driver pipelines XACK with the next XREADGROUP).
  auto t0 = Clock::now();
  std::atomic<std::uint64_t> n{0};
  std::atomic<int> acks_in_flight{0};
  roost::PullOptions po;
  po.batch_size = 100;
  std::uint64_t pulled = 0;
  while (pulled < prefill && since(t0) < a.seconds * 3) {
    auto got = c->pull("consume", po);
    if (!got || got->empty()) break;
    pulled += got->size();
    std::vector<std::string> leases;
    for (auto& m : *got) leases.push_back(m.lease_id);
    while (acks_in_flight.load() > 1) std::this_thread::yield();
    acks_in_flight++;
    c->ack_async("consume", std::move(leases), {}, [&](roost::Result<roost::AckResult> r) {
      if (r) n += r->acked;
      acks_in_flight--;
    });
  }
  while (acks_in_flight.load() > 0) std::this_thread::yield();
  return static_cast<double>(n.load()) / since(t0);
}

// 1 publisher → `subs` subscribers, `count` messages. Deliveries per second, and what was lost.
// io_thread: handlers run on the SDK's I/O thread (SubscribeOptions::on_io_thread).
void roost_pubsub(const Args& a, int subs, std::uint64_t count, const std::string& name,
                  bool io_thread = false) {
  std::vector<std::shared_ptr<roost::Client>> clients;
  std::vector<std::unique_ptr<roost::Stream>> streams;
  std::vector<SeqCheck> checks(static_cast<std::size_t>(subs));
  std::atomic<std::uint64_t> got{0}, lost{0};
  std::atomic<std::int64_t> last_ns{0};
  std::string subject = "bench.ps" + std::to_string(subs) + (io_thread ? "io" : "");
  for (int i = 0; i < subs; ++i) {
    clients.push_back(roost_connect(a));
    roost::SubscribeOptions so;
    so.on_io_thread = io_thread;
    so.on_lag = [&](std::uint64_t n) { lost += n; };
    auto* check = &checks[static_cast<std::size_t>(i)];
    auto s = clients.back()->subscribe(
        subject,
        [&, check](const roost::ChannelMessage& m) {
          check->see(m.data);  // one subscription's handler runs on one thread at a time
          got.fetch_add(1, std::memory_order_relaxed);
          last_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        },
        so);
    if (!s) {
      std::fprintf(stderr, "subscribe: %s\n", s.error().message.c_str());
      std::exit(1);
    }
    streams.push_back(std::move(*s));
  }
  auto pub = roost_connect(a);
  auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    pub->publish(subject, seq_body(i), roost::ContentType::kBytes);
    if (i % 5000 == 4999) (void)pub->publish_sync(subject + ".sync", "0");  // keep the pipe bounded
  }
  std::uint64_t want = count * static_cast<std::uint64_t>(subs);
  auto deadline = Clock::now() + 20s;
  while (got + lost < want && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  double secs =
      std::chrono::duration<double>(Clock::time_point(Clock::duration(last_ns.load())) - t0).count();
  streams.clear();  // no handler runs past here
  report_pubsub(name, PubSubRun{static_cast<double>(got.load()) / secs, want}, checks);
}

// ---- Redis ------------------------------------------------------------------------------------

redisContext* redis_connect(const Args& a) {
  redisContext* c = redisConnect(a.redis_host.c_str(), a.redis_port);
  if (c == nullptr || c->err) {
    std::fprintf(stderr, "redis: %s\n", c ? c->errstr : "connect failed");
    std::exit(1);
  }
  return c;
}

bool redis_reply(redisContext* c) {
  void* r = nullptr;
  if (redisGetReply(c, &r) != REDIS_OK) return false;
  bool ok = static_cast<redisReply*>(r)->type != REDIS_REPLY_ERROR;
  freeReplyObject(r);
  return ok;
}

double redis_enqueue(const Args& a, std::size_t window, const std::string& tag = "") {
  redisContext* c = redis_connect(a);
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(a.seconds);
  std::uint64_t done = 0;
  std::size_t outstanding = 0;
  std::string key = "q" + (tag.empty() ? std::to_string(window) : tag);
  while (Clock::now() < end) {
    while (outstanding < window) {
      redisAppendCommand(c, "XADD %s * b %b", key.c_str(), kBody.data(), kBody.size());
      ++outstanding;
    }
    if (!redis_reply(c)) break;
    --outstanding;
    ++done;
  }
  while (outstanding > 0 && redis_reply(c)) {
    --outstanding;
    ++done;
  }
  redisFree(c);
  return static_cast<double>(done) / since(t0);
}

std::vector<double> redis_latency(const Args& a, int n) {
  redisContext* c = redis_connect(a);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    auto* r = static_cast<redisReply*>(redisCommand(c, "XADD lat * b %b", kBody.data(), kBody.size()));
    if (r == nullptr) break;
    freeReplyObject(r);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  redisFree(c);
  return us;
}

double redis_consume(const Args& a, std::size_t prefill) {
  redisContext* c = redis_connect(a);
  for (std::size_t i = 0; i < prefill; i += 100) {
    for (int j = 0; j < 100; ++j) redisAppendCommand(c, "XADD consume * b %b", kBody.data(), kBody.size());
    for (int j = 0; j < 100; ++j) redis_reply(c);
  }
  freeReplyObject(redisCommand(c, "XGROUP CREATE consume g 0"));
  // XACK of one batch is pipelined with the XREADGROUP of the next: one round trip per batch.
  auto t0 = Clock::now();
  std::uint64_t n = 0;
  bool ack_pending = false;
  redisAppendCommand(c, "XREADGROUP GROUP g c1 COUNT 100 STREAMS consume >");
  while (since(t0) < a.seconds * 3) {
    if (ack_pending) {
      void* ack = nullptr;
      if (redisGetReply(c, &ack) != REDIS_OK) break;
      n += static_cast<std::uint64_t>(static_cast<redisReply*>(ack)->integer);
      freeReplyObject(ack);
      ack_pending = false;
    }
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK) break;
    auto* r = static_cast<redisReply*>(raw);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
      freeReplyObject(r);
      break;
    }
    redisReply* entries = r->element[0]->element[1];
    std::vector<const char*> argv = {"XACK", "consume", "g"};
    std::vector<std::size_t> lens = {4, 7, 1};
    for (std::size_t i = 0; i < entries->elements; ++i) {
      argv.push_back(entries->element[i]->element[0]->str);
      lens.push_back(entries->element[i]->element[0]->len);
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
    ack_pending = true;
    freeReplyObject(r);
    if (n + 100 >= prefill) break;
    redisAppendCommand(c, "XREADGROUP GROUP g c1 COUNT 100 STREAMS consume >");
  }
  if (ack_pending) {
    void* ack = nullptr;
    if (redisGetReply(c, &ack) == REDIS_OK) {
      n += static_cast<std::uint64_t>(static_cast<redisReply*>(ack)->integer);
      freeReplyObject(ack);
    }
  }
  redisFree(c);
  return static_cast<double>(n) / since(t0);
}

void redis_pubsub(const Args& a, int subs, std::uint64_t count, const std::string& name) {
  std::atomic<std::uint64_t> got{0};
  std::atomic<std::int64_t> last_ns{0};
  std::atomic<int> ready{0};
  std::string channel = "ps" + std::to_string(subs);
  std::vector<std::thread> threads;
  std::vector<redisContext*> contexts;
  std::vector<SeqCheck> checks(static_cast<std::size_t>(subs));
  for (int i = 0; i < subs; ++i) contexts.push_back(redis_connect(a));
  for (int i = 0; i < subs; ++i) {
    threads.emplace_back(
        [&, c = contexts[static_cast<std::size_t>(i)], check = &checks[static_cast<std::size_t>(i)]] {
          freeReplyObject(redisCommand(c, "SUBSCRIBE %s", channel.c_str()));
          ready++;
          struct timeval tv {
            2, 0
          };
          redisSetTimeout(c, tv);
          for (;;) {
            void* r = nullptr;
            if (redisGetReply(c, &r) != REDIS_OK) break;
            auto* reply = static_cast<redisReply*>(r);
            if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
                reply->element[2]->type == REDIS_REPLY_STRING)
              check->see(std::string_view(reply->element[2]->str, reply->element[2]->len));
            freeReplyObject(r);
            got.fetch_add(1, std::memory_order_relaxed);
            last_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
            if (got.load(std::memory_order_relaxed) >= count * static_cast<std::uint64_t>(subs)) break;
          }
        });
  }
  while (ready < subs) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  redisContext* pub = redis_connect(a);
  // As Roost's and NATS's publishers: fire and forget (no reply per PUBLISH: CLIENT REPLY OFF),
  // one round trip every 5,000 to keep the pipe bounded, one at the end.
  auto sync_point = [&] {
    redisAppendCommand(pub, "CLIENT REPLY ON");
    redisAppendCommand(pub, "PING");
    redis_reply(pub);
    redis_reply(pub);
    redisAppendCommand(pub, "CLIENT REPLY OFF");
  };
  redisAppendCommand(pub, "CLIENT REPLY OFF");
  auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    auto body = seq_body(i);
    redisAppendCommand(pub, "PUBLISH %s %b", channel.c_str(), body.data(), body.size());
    if (i % 5000 == 4999) sync_point();
  }
  sync_point();
  for (auto& t : threads) t.join();
  for (auto* c : contexts) redisFree(c);
  redisFree(pub);
  std::uint64_t want = count * static_cast<std::uint64_t>(subs);
  double secs =
      std::chrono::duration<double>(Clock::time_point(Clock::duration(last_ns.load())) - t0).count();
  report_pubsub(name, PubSubRun{static_cast<double>(got.load()) / secs, want}, checks);
}

// ---- NATS -------------------------------------------------------------------------------------

natsConnection* nats_connect(const Args& a) {
  natsConnection* nc = nullptr;
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  natsOptions_SetURL(opts, a.nats.c_str());
  natsOptions_SetMaxPendingMsgs(opts, 10'000'000);
  if (natsConnection_Connect(&nc, opts) != NATS_OK) {
    std::fprintf(stderr, "nats: cannot connect to %s\n", a.nats.c_str());
    std::exit(1);
  }
  natsOptions_Destroy(opts);
  return nc;
}

// Async publishes the server acknowledged (counted in the ack handler, not when sent).
void on_js_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr*, void* closure) {
  if (pa != nullptr)
    static_cast<std::atomic<std::uint64_t>*>(closure)->fetch_add(1, std::memory_order_relaxed);
  natsMsg_Destroy(msg);
}

jsCtx* nats_js(natsConnection* nc, std::int64_t max_pending, std::atomic<std::uint64_t>* acked = nullptr) {
  jsCtx* js = nullptr;
  jsOptions o;
  jsOptions_Init(&o);
  o.PublishAsync.MaxPending = max_pending;
  if (acked != nullptr) {
    o.PublishAsync.AckHandler = on_js_ack;
    o.PublishAsync.AckHandlerClosure = acked;
  }
  natsConnection_JetStream(&js, nc, &o);
  return js;
}

void nats_stream(jsCtx* js, const char* name, const char* subject) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name;
  const char* subjects[] = {subject};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  js_DeleteStream(js, name, nullptr, &jerr);
  if (js_AddStream(&si, js, &cfg, nullptr, &jerr) != NATS_OK) {
    std::fprintf(stderr, "nats: cannot add stream %s (jetstream on? -js)\n", name);
    std::exit(1);
  }
  jsStreamInfo_Destroy(si);
}

// create = false: the stream exists already (the connections of one shape share it).
double nats_enqueue(const Args& a, std::size_t window, const std::string& tag = "", bool create = true) {
  natsConnection* nc = nats_connect(a);
  std::atomic<std::uint64_t> acked{0};
  jsCtx* js = nats_js(nc, static_cast<std::int64_t>(window), &acked);
  std::string id = tag.empty() ? std::to_string(window) : tag;
  std::string name = "ENQ" + id, subject = "enq." + id;
  if (create) nats_stream(js, name.c_str(), subject.c_str());
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(a.seconds);
  std::uint64_t sent = 0;
  while (Clock::now() < end) {
    if (js_PublishAsync(js, subject.c_str(), kBody.data(), static_cast<int>(kBody.size()), nullptr) !=
        NATS_OK)
      break;
    ++sent;
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 30'000;
  // Only what the server acknowledged counts, by the time the last ack came.
  if (js_PublishAsyncComplete(js, &po) != NATS_OK) {
    std::printf("FAILED nats_js_nofsync_enqueue_w%zu: not every publish was acknowledged in 30 s\n", window);
    ++g_failures;
  }
  double rate = static_cast<double>(acked.load()) / since(t0);
  if (acked.load() != sent) {
    std::printf("# nats_js enqueue w%zu: %llu sent, %llu acknowledged\n", window,
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(acked.load()));
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return rate;
}

std::vector<double> nats_latency(const Args& a, int n) {
  natsConnection* nc = nats_connect(a);
  jsCtx* js = nats_js(nc, 1);
  nats_stream(js, "LAT", "lat");
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_Publish(&pa, js, "lat", kBody.data(), static_cast<int>(kBody.size()), nullptr, &jerr) != NATS_OK)
      break;
    jsPubAck_Destroy(pa);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return us;
}

double nats_consume(const Args& a, std::size_t prefill) {
  natsConnection* nc = nats_connect(a);
  jsCtx* js = nats_js(nc, 1000);
  nats_stream(js, "CONSUME", "consume");
  for (std::size_t i = 0; i < prefill; ++i) {
    js_PublishAsync(js, "consume", kBody.data(), static_cast<int>(kBody.size()), nullptr);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 30'000;
  js_PublishAsyncComplete(js, &po);
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.AckPolicy = js_AckAll;  // one ack per batch of 100 (its last message), as Roost's and Redis's
  if (js_PullSubscribe(&sub, js, "consume", "bench", nullptr, &so, &jerr) != NATS_OK) {
    std::fprintf(stderr, "nats: pull subscribe failed\n");
    std::exit(1);
  }
  auto t0 = Clock::now();
  std::uint64_t n = 0;
  while (n < prefill && since(t0) < a.seconds * 3) {
    natsMsgList list{};
    if (natsSubscription_Fetch(&list, sub, 100, 5000, &jerr) != NATS_OK) break;
    if (list.Count > 0) natsMsg_Ack(list.Msgs[list.Count - 1], nullptr);
    n += static_cast<std::uint64_t>(list.Count);
    natsMsgList_Destroy(&list);
  }
  natsConnection_Flush(nc);
  double rate = static_cast<double>(n) / since(t0);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return rate;
}

struct NatsCounter {
  std::atomic<std::uint64_t>* got;
  std::atomic<std::int64_t>* last_ns;
  SeqCheck* check;  // this subscription's (its callbacks run one at a time)
};

void on_nats_msg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* c = static_cast<NatsCounter*>(closure);
  c->check->see(std::string_view(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
  c->got->fetch_add(1, std::memory_order_relaxed);
  c->last_ns->store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  natsMsg_Destroy(msg);
}

void nats_pubsub(const Args& a, int subs, std::uint64_t count, const std::string& name) {
  std::atomic<std::uint64_t> got{0};
  std::atomic<std::int64_t> last_ns{0};
  std::vector<SeqCheck> checks(static_cast<std::size_t>(subs));
  std::vector<NatsCounter> counters;
  for (auto& c : checks) counters.push_back(NatsCounter{&got, &last_ns, &c});
  std::vector<natsConnection*> conns;
  std::vector<natsSubscription*> subscriptions;
  std::string subject = "ps." + std::to_string(subs);
  for (int i = 0; i < subs; ++i) {
    conns.push_back(nats_connect(a));
    natsSubscription* s = nullptr;
    natsConnection_Subscribe(&s, conns.back(), subject.c_str(), on_nats_msg,
                             &counters[static_cast<std::size_t>(i)]);
    natsSubscription_SetPendingLimits(s, -1, -1);
    natsConnection_Flush(conns.back());
    subscriptions.push_back(s);
  }
  natsConnection* pub = nats_connect(a);
  auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    auto body = seq_body(i);
    natsConnection_Publish(pub, subject.c_str(), body.data(), static_cast<int>(body.size()));
    if (i % 5000 == 4999) natsConnection_Flush(pub);
  }
  natsConnection_Flush(pub);
  std::uint64_t want = count * static_cast<std::uint64_t>(subs);
  auto deadline = Clock::now() + 20s;
  while (got < want && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  double secs =
      std::chrono::duration<double>(Clock::time_point(Clock::duration(last_ns.load())) - t0).count();
  for (auto* s : subscriptions) natsSubscription_Unsubscribe(s);
  for (auto* c : conns) natsConnection_Close(c);  // no callback runs past here
  report_pubsub(name, PubSubRun{static_cast<double>(got.load()) / secs, want}, checks);
  for (auto* s : subscriptions) natsSubscription_Destroy(s);
  for (auto* c : conns) natsConnection_Destroy(c);
  natsConnection_Destroy(pub);
}

// "1,10" → {1, 10}
template <class T>
std::vector<T> numbers(const std::string& list) {
  std::vector<T> out;
  for (std::size_t at = 0; at < list.size();) {
    auto comma = list.find(',', at);
    out.push_back(static_cast<T>(std::stoull(list.substr(at, comma - at))));
    at = comma == std::string::npos ? list.size() : comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--roost")
      a.roost = v;
    else if (k == "--redis") {
      auto colon = v.rfind(':');
      a.redis_host = v.substr(0, colon);
      a.redis_port = std::stoi(v.substr(colon + 1));
    } else if (k == "--nats")
      a.nats = v;
    else if (k == "--seconds")
      a.seconds = std::stod(v);
    else if (k == "--only")
      a.only = v;
    else if (k == "--targets")
      a.targets = v;
    else if (k == "--fanouts")
      a.fanouts = numbers<int>(v);
    else if (k == "--pubsub-messages")
      a.pubsub_messages = std::stoull(v);
    else if (k == "--windows")
      a.windows = numbers<std::size_t>(v);
    else if (k == "--shapes") {  // e.g. 16x4,4x16; "none" for none
      a.shapes.clear();
      for (std::size_t at = 0; at < v.size();) {
        auto comma = v.find(',', at);
        std::string item = v.substr(at, comma - at);
        auto x = item.find('x');
        if (x != std::string::npos)
          a.shapes.emplace_back(std::stoi(item.substr(0, x)), std::stoul(item.substr(x + 1)));
        at = comma == std::string::npos ? v.size() : comma + 1;
      }
    }
  }
  auto want = [&](const char* s) { return a.only.empty() || a.only == s; };
  auto on = [&](const char* t) { return a.targets.find(t) != std::string::npos; };
  std::printf(
      "# 100-byte messages; Roost durability sync (fsync before every ack), Redis appendfsync always,\n"
      "# NATS JetStream file storage — which does NOT fsync each message (it syncs every 2 min by default).\n");

  if (want("enqueue")) {
    for (std::size_t w : a.windows) {
      std::string sw = std::to_string(w);
      if (on("roost")) report("roost_enqueue_w" + sw, roost_enqueue(a, w, "enq" + sw), "msgs/s");
      if (on("redis")) report("redis_stream_enqueue_w" + sw, redis_enqueue(a, w), "msgs/s");
      if (on("nats")) report("nats_js_nofsync_enqueue_w" + sw, nats_enqueue(a, w), "msgs/s");
      ratio("ratio_enqueue_w" + sw + "_roost_vs_redis", "roost_enqueue_w" + sw,
            "redis_stream_enqueue_w" + sw);
      ratio("ratio_enqueue_w" + sw + "_roost_vs_nats_js_nofsync", "roost_enqueue_w" + sw,
            "nats_js_nofsync_enqueue_w" + sw);
    }
    for (auto [conns, w] : a.shapes) {
      std::string tag = "c" + std::to_string(conns) + "w" + std::to_string(w);
      if (on("roost"))
        report("roost_enqueue_" + tag,
               concurrently(conns, [&](int) { return roost_enqueue(a, w, "enq" + tag); }), "msgs/s");
      if (on("redis"))
        report("redis_stream_enqueue_" + tag,
               concurrently(conns, [&](int) { return redis_enqueue(a, w, tag); }), "msgs/s");
      if (on("nats")) {
        {  // one stream for every connection, made before they start
          natsConnection* nc = nats_connect(a);
          jsCtx* js = nats_js(nc, 1);
          nats_stream(js, ("ENQ" + tag).c_str(), ("enq." + tag).c_str());
          jsCtx_Destroy(js);
          natsConnection_Destroy(nc);
        }
        report("nats_js_nofsync_enqueue_" + tag,
               concurrently(conns, [&](int) { return nats_enqueue(a, w, tag, false); }), "msgs/s");
      }
      ratio("ratio_enqueue_" + tag + "_roost_vs_redis", "roost_enqueue_" + tag,
            "redis_stream_enqueue_" + tag);
      ratio("ratio_enqueue_" + tag + "_roost_vs_nats_js_nofsync", "roost_enqueue_" + tag,
            "nats_js_nofsync_enqueue_" + tag);
    }
  }
  if (want("latency")) {
    int n = 2000;
    std::vector<double> r, d, j;
    if (on("roost")) r = roost_latency(a, n);
    if (on("redis")) d = redis_latency(a, n);
    if (on("nats")) j = nats_latency(a, n);
    std::vector<std::pair<std::string, std::vector<double>*>> all = {
        {"roost", &r}, {"redis_stream", &d}, {"nats_js_nofsync", &j}};
    for (auto& [name, v] : all) {
      if (v->empty()) continue;
      report(name + "_enqueue_p50", pct(*v, 0.50), "us");
      report(name + "_enqueue_p99", pct(*v, 0.99), "us");
    }
    ratio_lower("ratio_enqueue_p50_roost_vs_redis", "roost_enqueue_p50", "redis_stream_enqueue_p50");
    ratio_lower("ratio_enqueue_p50_roost_vs_nats_js_nofsync", "roost_enqueue_p50",
                "nats_js_nofsync_enqueue_p50");
  }
  if (want("consume")) {
    std::size_t prefill = 100'000;
    if (on("roost")) report("roost_consume_ack_b100", roost_consume(a, prefill), "msgs/s");
    if (on("redis")) report("redis_stream_consume_ack_b100", redis_consume(a, prefill), "msgs/s");
    if (on("nats")) report("nats_js_nofsync_consume_ack_b100", nats_consume(a, prefill), "msgs/s");
    ratio("ratio_consume_roost_vs_redis", "roost_consume_ack_b100", "redis_stream_consume_ack_b100");
    ratio("ratio_consume_roost_vs_nats_js_nofsync", "roost_consume_ack_b100",
          "nats_js_nofsync_consume_ack_b100");
  }
  if (want("pubsub")) {
    for (int subs : a.fanouts) {
      std::uint64_t count = a.pubsub_messages != 0 ? a.pubsub_messages : subs == 1 ? 500'000 : 200'000;
      std::string s = std::to_string(subs);
      if (on("roost")) {
        roost_pubsub(a, subs, count, "roost_pubsub_1to" + s);
        roost_pubsub(a, subs, count, "roost_pubsub_1to" + s + "_io_thread", true);
      }
      if (on("nats")) nats_pubsub(a, subs, count, "nats_pubsub_1to" + s);
      if (on("redis")) redis_pubsub(a, subs, count, "redis_pubsub_1to" + s);
      ratio("ratio_pubsub_1to" + s + "_roost_vs_nats", "roost_pubsub_1to" + s, "nats_pubsub_1to" + s);
      ratio("ratio_pubsub_1to" + s + "_roost_io_thread_vs_nats", "roost_pubsub_1to" + s + "_io_thread",
            "nats_pubsub_1to" + s);
      ratio("ratio_pubsub_1to" + s + "_roost_vs_redis", "roost_pubsub_1to" + s, "redis_pubsub_1to" + s);
    }
  }
  if (want("objects") && on("roost")) {
    // No peer has object mailboxes: Roost's own figures, end to end over the native protocol.
    report("roost_object_tells_1_object_w1000", roost_object_tells(a, 1, 1000), "msgs/s");
    report("roost_object_tells_10k_objects_w1000", roost_object_tells(a, 10'000, 1000), "msgs/s");
    auto us = roost_object_calls(a, 2000);
    report("roost_object_call_p50", pct(us, 0.50), "us");
    report("roost_object_call_p99", pct(us, 0.99), "us");
  }
  nats_Close();
  if (g_failures != 0) {
    std::printf("FAILED: %d scenarios did not deliver every message once\n", g_failures);
    return 1;
  }
  return 0;
}
