// What native_bench's drivers share: the arguments, running connections concurrently, sequenced
// bodies and their checks (loss, duplicates), and the `name value unit` report lines.
#pragma once

#include <roost/client/client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace native_bench {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

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
  bool hops = false;  // --hops on: the latency part also traces Roost's enqueues hand-off by hand-off
  std::string hops_queue = "hops";  // --hops-queue: the queue they go to
  std::string roost_token;          // --roost-token: for a node with an auth secret
};

// `conns` copies of `run` at once, each on a thread (and a connection) of its own; the sum of
// their rates (each counts only what its server acknowledged, over its own time).
template <class F>
inline double concurrently(int conns, F run) {
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
inline std::map<std::string, double> g_results;
inline int g_failures = 0;  // scenarios whose subscribers did not get every message: the run fails
inline void report(const std::string& name, double value, const char* unit);

// A pub/sub body: kBody with the message's sequence number in its first 8 bytes.
inline std::string seq_body(std::uint64_t seq) {
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

inline void report_pubsub(const std::string& name, const PubSubRun& r, const std::vector<SeqCheck>& checks) {
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

inline void report(const std::string& name, double value, const char* unit) {
  g_results[name] = value;
  std::printf("%s %.1f %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}
inline void ratio(const std::string& name, const std::string& ours, const std::string& theirs) {
  if (!g_results.contains(ours) || !g_results.contains(theirs) || g_results[theirs] == 0) return;
  std::printf("%s %.2f x\n", name.c_str(), g_results[ours] / g_results[theirs]);
}
// For latencies lower is better: the ratio is theirs / ours so that > 1 means Roost is ahead.
inline void ratio_lower(const std::string& name, const std::string& ours, const std::string& theirs) {
  if (!g_results.contains(ours) || !g_results.contains(theirs) || g_results[ours] == 0) return;
  std::printf("%s %.2f x\n", name.c_str(), g_results[theirs] / g_results[ours]);
}

inline double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

inline double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Each peer's driver (native_bench_redis.cpp, native_bench_nats.cpp): the same loads as Roost's.
double redis_enqueue(const Args& a, std::size_t window, const std::string& tag = "");
std::vector<double> redis_latency(const Args& a, int n);
double redis_consume(const Args& a, std::size_t prefill);
void redis_pubsub(const Args& a, int subs, std::uint64_t count, const std::string& name);
double nats_enqueue(const Args& a, std::size_t window, const std::string& tag = "", bool create = true);
std::vector<double> nats_latency(const Args& a, int n);
double nats_consume(const Args& a, std::size_t prefill);
void nats_pubsub(const Args& a, int subs, std::uint64_t count, const std::string& name);
// The JetStream stream the enqueue connections of `tag` share; the library's end.
void nats_enqueue_stream(const Args& a, const std::string& tag);
void nats_shutdown();

}  // namespace native_bench
