// Roost's native protocol next to its peers, same machine, same run: redis-server (appendonly,
// appendfsync always; Streams for queues, PUBLISH for pub/sub) and nats-server (JetStream with
// file storage for queues, core NATS for pub/sub), each driven by its own C client (hiredis,
// libnats) with the same load. 100-byte messages. Prints `name value unit` lines and ratios.
//
//   native_bench --roost tcp://127.0.0.1:7400 --redis 127.0.0.1:6379 --nats nats://127.0.0.1:4222
//                [--seconds 3] [--only enqueue|latency|consume|pubsub|objects]
//                [--fanouts 1,10] [--pubsub-messages N] [--windows 64,1000] [--hops on]
// --hops on: the latency part also sends traced enqueues (Client::trace_enqueue) one at a time and
// prints where one spends its time, hand-off by hand-off (p50 and p90 of each, microseconds); to
// a mesh node with --hops-queue NAME (a queue another node owns), the forwarded request's hops
// (bench/mesh_hops.sh).
// bench/native_bench.sh starts all three servers and runs this.
#include "native_bench_common.h"

#include <roost/client/client.h>

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

using namespace native_bench;

namespace {

// ---- Roost ------------------------------------------------------------------------------------

std::shared_ptr<roost::Client> roost_connect(const Args& a) {
  roost::ClientOptions o;
  o.url = a.roost;
  o.name = "native_bench";
  o.token = a.roost_token;
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

// One traced enqueue at a time: each hand-off's share (core/hop_trace.h), p50 and p90 of `n`.
void roost_hops(const Args& a, int n) {
  auto c = roost_connect(a);
  // The stamps Client::trace_enqueue answers: called, sent, the node's eight, received, returned;
  // forwarded, then the link's sent, the owner's eight and the link's received.
  enum {
    kCalled,
    kSent,
    kRead,
    kAdmitted,
    kBegan,
    kCommitting,
    kLogging,
    kCommitted,
    kCompleted,
    kAnswered,
    kReceived,
    kReturned,
    kStamps,
    kLinkSent = kStamps,
    kOwnerRead,
    kOwnerAdmitted,
    kOwnerBegan,
    kOwnerCommitting,
    kOwnerLogging,
    kOwnerCommitted,
    kOwnerCompleted,
    kOwnerAnswered,
    kLinkReceived,
    kForwardedStamps
  };
  // A hand-off: from one stamp to another. Leader/follower commits run the group on the endpoint's
  // own thread, before `admitted` is stamped: admitted is taken as the earlier of the two.
  struct Hop {
    const char* name;
    int from, to;
    std::vector<double> us;
  };
  std::vector<Hop> hops = {
      {"client_call_to_io_thread_sent", kCalled, kSent, {}},
      {"wire_in_sent_to_endpoint_read", kSent, kRead, {}},
      {"endpoint_read_to_admitted", kRead, kAdmitted, {}},
      {"admitted_to_group_began", kAdmitted, kBegan, {}},
      {"group_apply", kBegan, kCommitting, {}},
      {"group_lmdb_commit", kCommitting, kLogging, {}},
      {"group_log_write_and_flush", kLogging, kCommitted, {}},
      {"committed_to_completion", kCommitted, kCompleted, {}},
      {"completion_to_endpoint_answered", kCompleted, kAnswered, {}},
      {"wire_out_answered_to_io_thread_received", kAnswered, kReceived, {}},
      {"client_received_to_returned", kReceived, kReturned, {}},
      {"total", kCalled, kReturned, {}},
  };
  // Forwarded by the entry node to the shard's owner: the entry's hops around the owner's.
  std::vector<Hop> forwarded = {
      {"client_call_to_io_thread_sent", kCalled, kSent, {}},
      {"wire_in_sent_to_entry_read", kSent, kRead, {}},
      {"entry_read_to_link_sent", kRead, kLinkSent, {}},
      {"mesh_wire_in_link_sent_to_owner_read", kLinkSent, kOwnerRead, {}},
      {"owner_read_to_group_began", kOwnerRead, kOwnerBegan, {}},
      {"owner_group_apply", kOwnerBegan, kOwnerCommitting, {}},
      {"owner_lmdb_commit", kOwnerCommitting, kOwnerLogging, {}},
      {"owner_log_write_and_flush", kOwnerLogging, kOwnerCommitted, {}},
      {"owner_committed_to_answered", kOwnerCommitted, kOwnerAnswered, {}},
      {"mesh_wire_out_owner_answered_to_link_received", kOwnerAnswered, kLinkReceived, {}},
      {"entry_link_received_to_completion", kLinkReceived, kCompleted, {}},
      {"entry_completion_to_answered", kCompleted, kAnswered, {}},
      {"wire_out_entry_answered_to_io_thread_received", kAnswered, kReceived, {}},
      {"client_received_to_returned", kReceived, kReturned, {}},
      {"total", kCalled, kReturned, {}},
  };
  auto add = [](std::vector<Hop>& list, const std::vector<std::int64_t>& t) {
    for (auto& h : list) h.us.push_back(static_cast<double>(t[h.to] - t[h.from]) / 1000.0);
  };
  int traced = 0;
  for (int i = 0; i < n; ++i) {
    auto t = c->trace_enqueue(a.hops_queue, body_msg());
    if (!t) {
      std::fprintf(stderr, "roost: traced enqueue: %s\n", t.error().message.c_str());
      break;
    }
    if (t->size() == kForwardedStamps && (*t)[kOwnerBegan] != 0) {
      ++traced;
      add(forwarded, *t);
      continue;
    }
    if (t->size() != kStamps || (*t)[kBegan] == 0) continue;  // not committed in a group (cannot be)
    ++traced;
    (*t)[kAdmitted] = std::min((*t)[kAdmitted], (*t)[kBegan]);
    add(hops, *t);
  }
  report("roost_hops_traced", traced, "enqueues");
  if (!forwarded.front().us.empty()) {
    for (auto& h : forwarded) {
      report(std::string("roost_fwd_hop_") + h.name + "_p50", pct(h.us, 0.50), "us");
      report(std::string("roost_fwd_hop_") + h.name + "_p90", pct(h.us, 0.90), "us");
    }
    return;
  }
  for (auto& h : hops) {
    report(std::string("roost_hop_") + h.name + "_p50", pct(h.us, 0.50), "us");
    report(std::string("roost_hop_") + h.name + "_p90", pct(h.us, 0.90), "us");
  }
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
    else if (k == "--hops")
      a.hops = v == "on";
    else if (k == "--hops-queue")
      a.hops_queue = v;
    else if (k == "--roost-token")
      a.roost_token = v;
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
        nats_enqueue_stream(a, tag);  // one stream for every connection, made before they start
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
    if (a.hops && on("roost")) roost_hops(a, n);
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
  nats_shutdown();
  if (g_failures != 0) {
    std::printf("FAILED: %d scenarios did not deliver every message once\n", g_failures);
    return 1;
  }
  return 0;
}
