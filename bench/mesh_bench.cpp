// The mesh's forwarding costs, side by side in one run (bench/mesh_bench.sh starts etcd and two
// nodes, "a" and "b", with the counter example loaded): every figure is measured twice on the same
// queue, object or channel — once against the node that owns it (b, "local") and once through the
// other node (a, "forwarded"), which sends it over the mesh. Same client, same window, same
// durability (sync). Only what the node acknowledged (or the subscriber received) counts; channel
// subscribers check every sequence for loss, duplicates and order.
//
//   mesh_bench --a tcp://… --b tcp://… --http-a http://… [--seconds 3] [--runs 3] [--only enqueue|fanout]
//
// Prints every run's `name value unit` line, then each figure's median (`…_median`) and the
// forwarded/local ratios of the medians.
#include <roost/client/client.h>
#include <roost/client/http_client.h>
#include <roost/core/auth.h>

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;
using roost::bench::percentile;
using roost::bench::report;
namespace json = boost::json;

struct Args {
  std::string a, b, http_a;
  double seconds = 3;
  int runs = 3;
  std::string only;  // --only enqueue | fanout: those figures alone
};

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// With --secret (the nodes' auth_secret: a secured mesh), an operator's token for every driver.
std::string g_token;

std::string operator_token(const std::string& secret) {
  auto exp =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() +
      3600;
  return roost::sign_jwt(secret,
                         R"({"roost":{"publish":[">"],"subscribe":[">"],"queues":[">"],"objects":[">"]},)"
                         R"("exp":)" +
                             std::to_string(exp) + "}");
}

std::shared_ptr<roost::Client> connect(const std::string& url) {
  auto c = roost::Client::connect({.url = url, .token = g_token, .name = "mesh_bench"});
  if (!c) {
    std::fprintf(stderr, "%s: %s\n", url.c_str(), c.error().message.c_str());
    std::exit(1);
  }
  return *c;
}

// A name (queue, or object of class `cls`) whose shard is homed on `node`, found through a's API.
std::string homed_on(roost::client::HttpClient& http, const std::string& kind, const std::string& prefix,
                     const std::string& node, const std::string& cls = "") {
  for (int i = 0; i < 10'000; ++i) {
    auto name = prefix + std::to_string(i);
    auto r = http.get("/v1/mesh?" + kind + "=" + (cls.empty() ? name : cls + "/" + name));
    if (r.status != 200) continue;
    auto v = json::parse(r.body);
    if (v.at("home").as_string() == node) return name;
  }
  std::fprintf(stderr, "no %s homed on %s\n", kind.c_str(), node.c_str());
  std::exit(1);
}

roost::NewMessage body_msg() {
  roost::NewMessage m;
  m.body = std::string(100, 'x');
  m.content_type = roost::ContentType::kBytes;
  return m;
}

// Durable enqueues with `window` in flight for the run's time; acknowledged per second.
double enqueue_rate(const std::string& url, const std::string& queue, std::size_t window, double seconds) {
  auto c = connect(url);
  roost::Producer p(*c, queue, window);
  std::atomic<std::uint64_t> done{0}, failed{0};
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  std::uint64_t sent = 0;
  while (Clock::now() < end && sent < 5'000'000) {
    p.send_async(body_msg(), [&](roost::Result<std::string> r) { (r ? done : failed).fetch_add(1); });
    ++sent;
  }
  p.flush();
  if (failed.load() != 0)
    std::fprintf(stderr, "%llu enqueues failed\n", static_cast<unsigned long long>(failed.load()));
  return static_cast<double>(done.load()) / since(t0);
}

// One enqueue at a time: microseconds each.
std::vector<double> enqueue_latency(const std::string& url, const std::string& queue, int n) {
  auto c = connect(url);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    if (!c->enqueue(queue, {body_msg()})) break;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  return us;
}

// Round trips of a call to a warm object (on_call → reply).
std::vector<double> call_latency(const std::string& url, const std::string& object, int n) {
  auto c = connect(url);
  (void)c->call("counter", object, "{}");
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    if (!c->call("counter", object, "{}")) break;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  return us;
}

// Delivery latency of a channel message, publish on `pub_url` → a subscriber on `sub_url`: `n`
// messages one at a time (each published once the one before arrived), microseconds each.
std::vector<double> delivery_latency(const std::string& pub_url, const std::string& sub_url,
                                     const std::string& channel, int n) {
  auto sc = connect(sub_url);
  std::mutex mu;
  std::condition_variable cv;
  std::int64_t got = -1;
  auto s = sc->subscribe(channel, [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    got = std::stoll(m.data);
    cv.notify_all();
  });
  if (!s) {
    std::fprintf(stderr, "subscribe: %s\n", s.error().message.c_str());
    std::exit(1);
  }
  auto pc = connect(pub_url);
  auto arrived = [&](std::int64_t i, std::chrono::milliseconds within) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, within, [&] { return got == i; });
  };
  // Interest crosses the mesh within a moment: 0 until it arrives.
  for (int i = 0; i < 400; ++i) {
    pc->publish(channel, "0", roost::ContentType::kText);
    if (arrived(0, std::chrono::milliseconds(10))) break;
  }
  std::vector<double> us;
  for (int i = 1; i <= n; ++i) {
    auto t = Clock::now();
    pc->publish(channel, std::to_string(i), roost::ContentType::kText);
    if (!arrived(i, std::chrono::seconds(2))) break;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  return us;
}

// Fan-out: `subs` subscribers on `sub_url`, one publisher on `pub_url`, `count` messages numbered
// in their payload. Messages received per second (from the first publish to the last delivery);
// `bad` counts what was lost, duplicated or out of order over all subscribers (paced: none may be
// dropped for lagging).
struct Fanout {
  double rate = 0;
  std::uint64_t bad = 0;
  std::uint64_t lost = 0, extra = 0, gaps = 0;
};
Fanout fanout(const std::string& pub_url, const std::string& sub_url, int subs, std::uint64_t count,
              const std::string& channel) {
  auto sc = connect(sub_url);
  struct Sub {
    std::uint64_t next = 0, received = 0, bad = 0;
  };
  std::vector<Sub> state(static_cast<std::size_t>(subs));
  std::mutex mu;
  std::atomic<std::uint64_t> got{0};
  std::atomic<std::int64_t> last_ns{0};
  std::vector<std::unique_ptr<roost::Stream>> streams;
  for (int i = 0; i < subs; ++i) {
    auto s = sc->subscribe(channel, [&, i](const roost::ChannelMessage& m) {
      auto n = std::stoull(m.data);
      if (n == ~0ull) return;  // a probe
      {
        std::lock_guard lock(mu);
        auto& st = state[static_cast<std::size_t>(i)];
        if (n != st.next) ++st.bad;
        st.next = n + 1;
        ++st.received;
      }
      got.fetch_add(1);
      last_ns.store(Clock::now().time_since_epoch().count());
    });
    if (!s) {
      std::fprintf(stderr, "subscribe: %s\n", s.error().message.c_str());
      std::exit(1);
    }
    streams.push_back(std::move(*s));
  }
  auto pc = connect(pub_url);
  // Interest crosses the mesh within a moment: wait until a probe arrives.
  std::atomic<bool> heard{false};
  auto probe = sc->subscribe(channel, [&](const roost::ChannelMessage& m) {
    if (m.data == std::to_string(~0ull)) heard = true;
  });
  for (int i = 0; i < 400 && !heard.load(); ++i) {
    (void)pc->publish_sync(channel, std::to_string(~0ull), roost::ContentType::kText);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  probe->reset();
  // Paced so that no subscriber falls behind its buffer (which drops, by design): at most `ahead`
  // messages published and not yet received by every subscriber. What is measured is sustained
  // delivery; any loss, duplicate or reordering left is a bug.
  const std::uint64_t ahead = 500;  // under a subscriber's buffer (1,024 messages)
  auto slowest = [&] {
    std::lock_guard lock(mu);
    std::uint64_t m = ~0ull;
    for (const auto& s : state) m = std::min(m, s.received);
    return m;
  };
  auto t0 = Clock::now();
  for (std::uint64_t n = 0; n < count; ++n) {
    if (n % 100 == 0) {
      auto wait_until = Clock::now() + std::chrono::seconds(10);
      while (n > ahead && slowest() + ahead < n && Clock::now() < wait_until) std::this_thread::yield();
    }
    pc->publish(channel, std::to_string(n), roost::ContentType::kText);
  }
  (void)pc->publish_sync(channel, std::to_string(~0ull), roost::ContentType::kText);  // flush
  const std::uint64_t want = count * static_cast<std::uint64_t>(subs);
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (got.load() < want && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // late duplicates would show
  Fanout f;
  double secs =
      std::chrono::duration<double>(Clock::time_point(Clock::duration(last_ns.load())) - t0).count();
  f.rate = secs > 0 ? static_cast<double>(got.load()) / secs : 0;
  std::lock_guard lock(mu);
  for (const auto& s : state) {
    f.gaps += s.bad;
    if (s.received > count) f.extra += s.received - count;
    if (s.received < count) f.lost += count - s.received;
  }
  f.bad = f.gaps + f.extra + f.lost;
  return f;
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--a") a.a = v;
    if (k == "--b") a.b = v;
    if (k == "--http-a") a.http_a = v;
    if (k == "--seconds") a.seconds = std::stod(v);
    if (k == "--runs") a.runs = std::stoi(v);
    if (k == "--only") a.only = v;
    if (k == "--secret") g_token = operator_token(v);
    if (k == "--print-token") {  // for the scripts' curl and CLI calls
      std::printf("%s\n", g_token.c_str());
      return 0;
    }
  }
  if (a.a.empty() || a.b.empty() || a.http_a.empty()) {
    std::fprintf(stderr, "usage: mesh_bench --a URL --b URL --http-a URL [--seconds S] [--runs N]\n");
    return 2;
  }
  roost::client::HttpClient http(a.http_a);
  if (!g_token.empty()) http.set_header("Authorization", "Bearer " + g_token);
  const auto queue = homed_on(http, "queue", "mq", "b");
  const auto lat_queue = homed_on(http, "queue", "ml", "b");
  const auto object = homed_on(http, "object", "mo", "b", "counter");
  http.put("/v1/queues/" + queue, "{}");
  http.put("/v1/queues/" + lat_queue, "{}");
  std::printf("# queue %s, object counter/%s owned by b; local = the client talks to b, forwarded = to a\n",
              queue.c_str(), object.c_str());
  std::map<std::string, std::vector<double>> runs;
  auto record = [&](const std::string& name, double v, const char* unit) {
    report(name, v, unit);
    runs[name].push_back(v);
  };
  for (int run = 0; run < a.runs; ++run) {
    std::printf("# run %d\n", run + 1);
    // Which one goes first alternates between runs: the queue grows with each, and the machine's
    // state drifts; neither side always gets the fresher one.
    for (int k = 0; k < 2 && a.only != "fanout"; ++k) {
      if ((k + run) % 2 == 0)
        record("enqueue_w64_local", enqueue_rate(a.b, queue, 64, a.seconds), "msgs/s");
      else
        record("enqueue_w64_forwarded", enqueue_rate(a.a, queue, 64, a.seconds), "msgs/s");
    }
    if (a.only == "enqueue") continue;
    for (const auto& [label, url] : {std::pair{"local", a.b}, std::pair{"forwarded", a.a}}) {
      if (a.only == "fanout") break;
      auto us = enqueue_latency(url, lat_queue, 1000);
      record(std::string("enqueue_w1_") + label + "_p50", percentile(us, 0.5), "us");
      record(std::string("enqueue_w1_") + label + "_p99", percentile(us, 0.99), "us");
      auto cs = call_latency(url, object, 2000);
      record(std::string("object_call_") + label + "_p50", percentile(cs, 0.5), "us");
      record(std::string("object_call_") + label + "_p99", percentile(cs, 0.99), "us");
    }
    // Channels are sequenced by their home node: one homed on a (the publisher's node) for the
    // one-node baseline and for subscribers on b (one hop: a relays to b); one homed on b for the
    // publisher on a whose publishes go to the home first (a → b, delivered there).
    const auto tag = "r" + std::to_string(run) + "_";
    {
      const auto ch = homed_on(http, "channel", "bench.lat" + tag, "a");
      for (const auto& [label, url] : {std::pair{"one_node", a.a}, std::pair{"cross_node", a.b}}) {
        auto us = delivery_latency(a.a, url, ch, 1000);
        record(std::string("channel_delivery_") + label + "_p50", percentile(us, 0.5), "us");
        record(std::string("channel_delivery_") + label + "_p99", percentile(us, 0.99), "us");
      }
    }
    // (One node and cross node take turns going first, as above.) 300,000 messages each (3 M
    // deliveries, about a second): shorter runs swung more between runs than between scenarios.
    constexpr std::uint64_t kFanout = 300'000;
    Fanout one, cross;
    for (int k = 0; k < 2; ++k) {
      if ((k + run) % 2 == 0) {
        one = fanout(a.a, a.a, 10, kFanout, homed_on(http, "channel", "bench.fan" + tag, "a"));
        record("fanout_10subs_one_node", one.rate, "msgs/s");
        record("fanout_10subs_one_node_lost_dup_or_reordered", static_cast<double>(one.bad), "msgs");
      } else {
        cross = fanout(a.a, a.b, 10, kFanout, homed_on(http, "channel", "bench.cross" + tag, "a"));
        record("fanout_10subs_cross_node", cross.rate, "msgs/s");
        record("fanout_10subs_cross_node_lost_dup_or_reordered", static_cast<double>(cross.bad), "msgs");
      }
    }
    auto via = fanout(a.a, a.b, 10, kFanout, homed_on(http, "channel", "bench.via" + tag, "b"));
    record("fanout_10subs_publish_via_home", via.rate, "msgs/s");
    record("fanout_10subs_publish_via_home_lost_dup_or_reordered", static_cast<double>(via.bad), "msgs");
    if (cross.bad != 0 || one.bad != 0 || via.bad != 0) {
      for (const auto& [label, f] :
           {std::pair{"one node", &one}, std::pair{"cross", &cross}, std::pair{"via home", &via}}) {
        std::printf("# (%s: lost %llu, extra %llu, out of sequence %llu)\n", label,
                    static_cast<unsigned long long>(f->lost), static_cast<unsigned long long>(f->extra),
                    static_cast<unsigned long long>(f->gaps));
      }
    }
  }
  std::printf("# medians of %d runs\n", a.runs);
  for (const auto& [name, vs] : runs) report(name + "_median", median(vs), "");
  auto ratio = [&](const std::string& name, const std::string& num, const std::string& den) {
    double d = median(runs[den]);
    if (d > 0) report(name, median(runs[num]) / d, "x");
  };
  ratio("ratio_enqueue_w64_forwarded_vs_local", "enqueue_w64_forwarded", "enqueue_w64_local");
  ratio("ratio_enqueue_w1_p50_forwarded_vs_local", "enqueue_w1_forwarded_p50", "enqueue_w1_local_p50");
  ratio("ratio_object_call_p50_forwarded_vs_local", "object_call_forwarded_p50", "object_call_local_p50");
  ratio("ratio_fanout_cross_node_vs_one_node", "fanout_10subs_cross_node", "fanout_10subs_one_node");
  ratio("ratio_fanout_publish_via_home_vs_one_node", "fanout_10subs_publish_via_home",
        "fanout_10subs_one_node");
  return 0;
}
