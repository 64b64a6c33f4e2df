// native_bench's Redis driver (hiredis): Streams with appendfsync always for queues, PUBLISH for
// pub/sub.
#include "native_bench_common.h"

#include <hiredis/hiredis.h>

namespace native_bench {

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

double redis_enqueue(const Args& a, std::size_t window, const std::string& tag) {
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

}  // namespace native_bench
