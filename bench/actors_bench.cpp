// Object-mailbox benchmarks, in process: the ActorRuntime on a real LMDB environment and
// committer, sockets replaced by a sink that timestamps what the output gate releases. Prints
// `name value unit` lines. Usage:
//   actors_bench [--dir DIR] [--durability sync|batch|none] [--only NAME] [--hibernated N]
//                [--active N] [--messages N]
// Sections (--only): warm, cold, hot, spread, memory, hibernated.
//  - warm: socket frame → on_socket_message → send (nothing durable: no commit), and
//          tell → on_message (a storage write) → broadcast (two commits: the tell's, the turn's);
//          p50/p99 from the call to the frame reaching the socket.
//  - cold: call on a hibernated object whose state is on disk → on_activate reads it → reply.
//  - hot: durable messages/s through one object (each turn writes storage), tells pipelined.
//  - spread: the same across 10 000 objects.
//  - memory: RSS per active object (--active N, default 100 000 active at once).
//  - hibernated: RSS of a node opened over --hibernated N (default 1 000 000) objects on disk.
#include <roost/broker/actor_runtime.h>
#include <roost/channels/hub.h>
#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/queue_store.h>

#include <spdlog/spdlog.h>

#include "bench_util.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace durable = roost::durable;
namespace broker = roost::broker;
using Clock = std::chrono::steady_clock;

namespace {

using roost::bench::percentile;
using roost::bench::report;
using roost::bench::status_bytes;
using roost::bench::wall_ms;

// Counts turns; keeps a small state; echoes socket frames; broadcasts after a durable message.
std::atomic<std::uint64_t> g_turns{0};
class Bench final : public roost::Actor {
 public:
  void on_activate(roost::Context& ctx) override { state_ = ctx.storage().get("state").value_or(""); }
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    ctx.storage().put("state", m.data);
    g_turns.fetch_add(1, std::memory_order_relaxed);
    if (!ctx.sockets().empty()) ctx.broadcast(std::string(m.data));
  }
  void on_call(roost::Context& ctx, const roost::Message&) override {
    ctx.reply(state_.empty() ? "null" : state_);
  }
  void on_socket_message(roost::Context& ctx, roost::Socket s, std::string_view text) override {
    ctx.send(s, std::string(text));
  }

 private:
  std::string state_;
};

// The socket: wakes the waiting benchmark thread when a frame arrives.
class Sink final : public roost::ObjectSocket {
 public:
  void send(std::string) override {
    {
      std::lock_guard lock(mu);
      ++frames;
    }
    cv.notify_one();
  }
  void close(std::uint16_t, std::string) override {}
  void wait_for(std::uint64_t n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return frames >= n; });
  }
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t frames = 0;
};

struct World {
  World(const std::filesystem::path& dir, durable::Durability d, std::uint64_t idle_ms, bool fresh = true) {
    if (fresh) std::filesystem::remove_all(dir);
    durable::EnvOptions eo;
    eo.dir = dir;
    eo.durability = d;
    env = std::make_unique<durable::Env>(eo);
    committer = std::make_unique<durable::Committer>(*env, durable::CommitterOptions{}, wall_ms);
    queues = std::make_unique<durable::QueueStore>(*env, *committer, durable::QueueStoreOptions{}, wall_ms);
    hub = std::make_unique<roost::channels::Hub>(roost::channels::HubOptions{}, wall_ms);
    store = std::make_unique<durable::MailboxStore>(*env);
    broker::ActorRuntimeOptions ao;
    ao.threads = 2;
    ao.idle_ms = idle_ms;
    rt = std::make_unique<broker::ActorRuntime>(*store, *committer, *queues, *hub, ao, wall_ms);
    rt->register_class("bench", [] { return std::make_unique<Bench>(); });
    committer->start();
    rt->start();
  }
  ~World() {
    rt->stop();
    committer->stop();
  }
  std::uint64_t tell_sync(const std::string& name, std::string data) {
    std::promise<roost::Result<std::uint64_t>> p;
    auto f = p.get_future();
    rt->tell("bench", name, std::move(data), roost::ContentType::kJson,
             [&p](roost::Result<std::uint64_t> r) { p.set_value(std::move(r)); });
    auto r = f.get();
    if (!r) throw std::runtime_error(r.error().message);
    return *r;
  }
  roost::Result<roost::ObjectReply> call_sync(const std::string& name) {
    std::promise<roost::Result<roost::ObjectReply>> p;
    auto f = p.get_future();
    rt->call("bench", name, "{}", roost::ContentType::kJson, 10'000,
             [&p](roost::Result<roost::ObjectReply> r) { p.set_value(std::move(r)); });
    return f.get();
  }
  std::uint64_t attach(const std::string& name, std::shared_ptr<Sink> sink) {
    std::promise<roost::Result<std::uint64_t>> p;
    auto f = p.get_future();
    rt->connect("bench", name, sink, {}, [&p](roost::Result<std::uint64_t> r) { p.set_value(std::move(r)); });
    auto r = f.get();
    if (!r) throw std::runtime_error(r.error().message);
    return *r;
  }
  // Pipelined tells from one thread, at most `window` unacknowledged; returns when all are acked.
  void tell_many(const std::function<std::string(std::uint64_t)>& name_of, std::uint64_t n,
                 std::uint64_t window) {
    std::mutex mu;
    std::condition_variable cv;
    std::uint64_t acked = 0, failed = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return i - acked < window; });
      }
      rt->tell("bench", name_of(i), R"({"i":)" + std::to_string(i) + "}", roost::ContentType::kJson,
               [&](roost::Result<std::uint64_t> r) {
                 std::lock_guard lock(mu);
                 ++acked;
                 failed += !r;
                 cv.notify_all();
               });
    }
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return acked == n; });
    if (failed) std::fprintf(stderr, "%llu tells failed\n", static_cast<unsigned long long>(failed));
  }

  std::unique_ptr<durable::Env> env;
  std::unique_ptr<durable::Committer> committer;
  std::unique_ptr<durable::QueueStore> queues;
  std::unique_ptr<roost::channels::Hub> hub;
  std::unique_ptr<durable::MailboxStore> store;
  std::unique_ptr<broker::ActorRuntime> rt;
};

void wait_turns(std::uint64_t target) {
  auto deadline = Clock::now() + std::chrono::minutes(5);
  while (g_turns.load() < target && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

void warm(const std::filesystem::path& dir, durable::Durability d, const std::string& tag) {
  World w(dir, d, 60'000);
  auto sink = std::make_shared<Sink>();
  auto id = w.attach("warm", sink);
  w.tell_sync("warm", "{}");  // activate
  wait_turns(g_turns.load());
  constexpr int kRounds = 2000;
  std::vector<double> socket_us, tell_us;
  std::uint64_t frames = sink->frames;
  for (int i = 0; i < kRounds; ++i) {
    auto t0 = Clock::now();
    w.rt->socket_message(id, "x");
    sink->wait_for(++frames);
    socket_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  int tells = d == durable::Durability::kSync ? 500 : kRounds;
  for (int i = 0; i < tells; ++i) {
    auto t0 = Clock::now();
    w.rt->tell("bench", "warm", "{}", roost::ContentType::kJson, [](roost::Result<std::uint64_t>) {});
    sink->wait_for(++frames);
    tell_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  report("actor_warm_socket_turn_p50", percentile(socket_us, 0.50), "us");
  report("actor_warm_socket_turn_p99", percentile(socket_us, 0.99), "us");
  report("actor_warm_tell_turn_" + tag + "_p50", percentile(tell_us, 0.50), "us");
  report("actor_warm_tell_turn_" + tag + "_p99", percentile(tell_us, 0.99), "us");
}

void cold(const std::filesystem::path& dir, durable::Durability d) {
  constexpr int kObjects = 2000;
  World w(dir, d, 50);
  auto base = g_turns.load();
  w.tell_many([](std::uint64_t i) { return "c" + std::to_string(i); }, kObjects, 256);
  wait_turns(base + kObjects);
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (w.rt->objects_in_memory() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (w.rt->objects_in_memory() > 0) std::fprintf(stderr, "not all objects hibernated\n");
  std::vector<double> us;
  for (int i = 0; i < kObjects; ++i) {
    auto t0 = Clock::now();
    auto r = w.call_sync("c" + std::to_string(i));
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!r || r->data.find("\"i\"") == std::string::npos) std::fprintf(stderr, "cold call lost its state\n");
  }
  report("actor_cold_wake_p50", percentile(us, 0.50), "us");
  report("actor_cold_wake_p99", percentile(us, 0.99), "us");
}

void throughput(const std::filesystem::path& dir, durable::Durability d, std::uint64_t objects,
                std::uint64_t messages, const std::string& name) {
  World w(dir, d, 60'000);
  auto base = g_turns.load();
  auto t0 = Clock::now();
  std::thread producer([&] {
    w.tell_many([objects](std::uint64_t i) { return "t" + std::to_string(i % objects); }, messages, 4096);
  });
  wait_turns(base + messages);
  producer.join();
  // A call queues behind every earlier turn of its object and is answered only after their
  // commits: when all calls are answered, every message is consumed durably.
  for (std::uint64_t o = 0; o < std::min(objects, messages); ++o) (void)w.call_sync("t" + std::to_string(o));
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  report(name, static_cast<double>(messages) / s, "msg/s");
}

void memory(const std::filesystem::path& dir, durable::Durability d, std::uint64_t active) {
  World w(dir, d, 600'000);
  std::uint64_t anon0 = status_bytes("RssAnon");
  auto base = g_turns.load();
  // One durable message each activates `active` objects (idle_ms is long: none hibernates).
  w.tell_many([](std::uint64_t i) { return "m" + std::to_string(i); }, active, 4096);
  wait_turns(base + active);
  for (std::uint64_t i = 0; i < active; i += 997) (void)w.call_sync("m" + std::to_string(i));
  std::uint64_t anon1 = status_bytes("RssAnon");
  report("actor_active_objects", static_cast<double>(w.rt->active_actors()), "objects");
  report("actor_rss_per_active_object",
         static_cast<double>(anon1 - std::min(anon0, anon1)) / static_cast<double>(active), "bytes");
  report("actor_rss_anon_for_active_objects", static_cast<double>(anon1 - std::min(anon0, anon1)) / (1 << 20),
         "MiB");
}

// Writes `n` objects (state + a consumed message each) in a child process, then opens the data in
// this (clean) process, where nothing is loaded eagerly: RSS with n hibernated objects.
void hibernated(const std::filesystem::path& dir, durable::Durability d, std::uint64_t n) {
  std::fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    World w(dir, d, 100);
    auto base = g_turns.load();
    auto t0 = Clock::now();
    std::uint64_t step = std::max<std::uint64_t>(1, n / 10);
    for (std::uint64_t done = 0; done < n; done += step) {
      auto k = std::min(step, n - done);
      w.tell_many([done](std::uint64_t i) { return "h" + std::to_string(done + i); }, k, 8192);
      std::fprintf(stderr, "  %llu / %llu objects written (%.0f s)\n",
                   static_cast<unsigned long long>(done + k), static_cast<unsigned long long>(n),
                   std::chrono::duration<double>(Clock::now() - t0).count());
    }
    wait_turns(base + n);
    for (std::uint64_t i = 0; i < n; i += 9973) (void)w.call_sync("h" + std::to_string(i));  // all committed
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (w.rt->objects_in_memory() > 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::printf("actor_objects_in_memory_after_hibernation %.3f objects\n",
                static_cast<double>(w.rt->objects_in_memory()));
    std::fflush(stdout);
    std::_Exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  std::uint64_t anon0 = status_bytes("RssAnon");
  World w(dir, d, 100, false);
  report("actor_objects_on_disk", static_cast<double>(w.store->object_count()), "objects");
  report("actor_rss_anon_with_hibernated",
         static_cast<double>(status_bytes("RssAnon") - std::min(anon0, status_bytes("RssAnon"))) / (1 << 20),
         "MiB");
  report("actor_rss_total_with_hibernated", static_cast<double>(status_bytes("VmRSS")) / (1 << 20), "MiB");
  report("actor_rss_file_with_hibernated", static_cast<double>(status_bytes("RssFile")) / (1 << 20), "MiB");
  auto t0 = Clock::now();
  auto r = w.call_sync("h" + std::to_string(n / 2));
  report("actor_wake_one_of_many", std::chrono::duration<double, std::micro>(Clock::now() - t0).count(),
         "us");
  if (!r || r->data.find("\"i\"") == std::string::npos)
    std::fprintf(stderr, "wake lost the object's state\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / "roost-actors-bench";
  std::string only;
  std::string durability = "sync";
  std::uint64_t hibernated_n = 1'000'000, active = 100'000, messages = 100'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir")
      dir = argv[i + 1];
    else if (a == "--only")
      only = argv[i + 1];
    else if (a == "--durability")
      durability = argv[i + 1];
    else if (a == "--hibernated")
      hibernated_n = std::stoull(argv[i + 1]);
    else if (a == "--active")
      active = std::stoull(argv[i + 1]);
    else if (a == "--messages")
      messages = std::stoull(argv[i + 1]);
  }
  spdlog::set_level(spdlog::level::warn);
  auto d = durability == "none"    ? durable::Durability::kNone
           : durability == "batch" ? durable::Durability::kBatch
                                   : durable::Durability::kSync;
  auto want = [&](const char* s) { return only.empty() || only == s; };
  std::printf("# durability %s, dir %s\n", durability.c_str(), dir.c_str());
  // First, while this process is still small: its RSS is what a node over that data costs.
  if (want("hibernated")) hibernated(dir / "h", d, hibernated_n);
  if (want("warm")) warm(dir, d, durability);
  if (want("cold")) cold(dir, d);
  if (want("hot")) throughput(dir, d, 1, messages, "actor_one_object_durable_" + durability);
  if (want("spread")) throughput(dir, d, 10'000, messages, "actor_10k_objects_durable_" + durability);
  if (want("memory")) memory(dir, d, active);
  std::filesystem::remove_all(dir);
  return 0;
}
