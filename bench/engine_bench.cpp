// Engine-level queue benchmarks: QueueStore + Committer on a real LMDB environment, no network.
// Prints `name value unit` lines. Usage:
//   engine_bench [--dir DIR] [--seconds S] [--backlog N] [--durability sync|batch|none] [--only NAME]
// Producers are in-flight slots: each slot enqueues its next message as soon as the previous one
// is acknowledged (committed), so N slots = N concurrent producers with no client overhead.
#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/queue_store.h>

#include <spdlog/spdlog.h>

#include "bench_util.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace durable = roost::durable;
using Clock = std::chrono::steady_clock;

namespace {

using roost::bench::percentile;
using roost::bench::report;
using roost::bench::status_bytes;
using roost::bench::wall_ms;

std::uint64_t rss_bytes() { return status_bytes("VmRSS"); }

struct Engine {
  Engine(const std::filesystem::path& dir, durable::Durability d) {
    std::filesystem::remove_all(dir);
    durable::EnvOptions eo;
    eo.dir = dir;
    eo.durability = d;
    env = std::make_unique<durable::Env>(eo);
    committer = std::make_unique<durable::Committer>(*env, durable::CommitterOptions{}, wall_ms);
    store = std::make_unique<durable::QueueStore>(*env, *committer, durable::QueueStoreOptions{}, wall_ms);
    committer->start();
  }
  ~Engine() {
    committer->stop();
    store.reset();
    committer.reset();
    env.reset();
  }
  template <class T, class F>
  durable::Result<T> wait(F call) {
    std::promise<durable::Result<T>> p;
    auto f = p.get_future();
    call([&p](durable::Result<T> r) { p.set_value(std::move(r)); });
    return f.get();
  }
  std::unique_ptr<durable::Env> env;
  std::unique_ptr<durable::Committer> committer;
  std::unique_ptr<durable::QueueStore> store;
};

roost::NewMessage message100() {
  roost::NewMessage m;
  m.body = std::string(100, 'x');
  m.content_type = roost::ContentType::kText;
  return m;
}

// N in-flight producers for `seconds`; returns messages/s.
double enqueue_throughput(Engine& e, const std::string& queue, int producers, double seconds) {
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::atomic<int> live{producers};
  std::promise<void> all_stopped;
  struct Slot {
    Engine* e;
    std::string queue;
    std::atomic<std::uint64_t>* done;
    std::atomic<bool>* stop;
    std::atomic<int>* live;
    std::promise<void>* all_stopped;
    void next() {
      e->store->enqueue(queue, {message100()}, [this](durable::Result<std::vector<std::string>> r) {
        if (!r) {
          std::fprintf(stderr, "enqueue failed: %s\n", r.error().message.c_str());
          std::exit(1);
        }
        done->fetch_add(1, std::memory_order_relaxed);
        if (stop->load()) {
          if (live->fetch_sub(1) == 1) all_stopped->set_value();
          return;
        }
        next();
      });
    }
  };
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < producers; ++i) {
    slots.push_back(std::make_unique<Slot>(Slot{&e, queue, &done, &stop, &live, &all_stopped}));
  }
  auto t0 = Clock::now();
  for (auto& s : slots) s->next();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  std::uint64_t n = done.load();
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  all_stopped.get_future().wait();
  return static_cast<double>(n) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = std::filesystem::current_path() / "bench-data";
  double seconds = 3;
  std::uint64_t backlog = 5'000'000;
  std::string durability = "sync";
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir")
      dir = argv[i + 1];
    else if (a == "--seconds")
      seconds = std::stod(argv[i + 1]);
    else if (a == "--backlog")
      backlog = std::stoull(argv[i + 1]);
    else if (a == "--durability")
      durability = argv[i + 1];
    else if (a == "--only")
      only = argv[i + 1];
  }
  spdlog::set_level(spdlog::level::warn);
  auto d = durability == "batch"  ? durable::Durability::kBatch
           : durability == "none" ? durable::Durability::kNone
                                  : durable::Durability::kSync;
  auto want = [&](const char* name) { return only.empty() || only == name; };
  std::printf("# engine_bench: durability=%s, 100-byte bodies, dir=%s\n", durability.c_str(), dir.c_str());

  if (want("enqueue")) {
    Engine e(dir, d);
    for (int producers : {1, 16, 256}) {
      double rate = enqueue_throughput(e, "p" + std::to_string(producers), producers, seconds);
      report("engine_enqueue_producers_" + std::to_string(producers), rate, "msgs/s");
    }
    auto& m = e.committer->metrics();
    report("engine_commits", static_cast<double>(m.commits.load()), "commits");
    report("engine_ops_per_commit",
           static_cast<double>(m.ops.load()) / std::max<std::uint64_t>(1, m.commits.load()), "ops");
  }

  if (want("latency")) {
    Engine e(dir, d);
    std::vector<double> us;
    auto until = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < until && us.size() < 200'000) {
      auto t0 = Clock::now();
      auto r = e.wait<std::vector<std::string>>(
          [&](auto cb) { e.store->enqueue("lat", {message100()}, std::move(cb)); });
      if (!r) return 1;
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    report("engine_enqueue_seq_p50", us[us.size() / 2] / 1000.0, "ms");
    report("engine_enqueue_seq_p99", us[us.size() * 99 / 100] / 1000.0, "ms");
  }

  if (want("pullack")) {
    Engine e(dir, d);
    std::vector<roost::NewMessage> batch(1000, message100());
    auto prefill = [&](int n) {
      for (int i = 0; i < n / 1000; ++i) {
        auto r =
            e.wait<std::vector<std::string>>([&](auto cb) { e.store->enqueue("pa", batch, std::move(cb)); });
        if (!r) std::exit(1);
      }
    };
    for (int consumers : {1, 4}) {
      prefill(static_cast<int>(seconds * 400'000));  // more than can be drained in `seconds`
      std::atomic<std::uint64_t> acked{0};
      std::atomic<bool> stop{false};
      std::vector<std::thread> threads;
      auto t0 = Clock::now();
      for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&] {
          while (!stop) {
            roost::PullOptions o;
            o.batch_size = 100;
            auto got = e.wait<std::vector<roost::LeasedMessage>>(
                [&](auto cb) { e.store->pull("pa", o, std::move(cb)); });
            if (!got || got->empty()) break;
            std::vector<std::string> leases;
            for (auto& m : *got) leases.push_back(m.lease_id);
            auto a = e.wait<roost::AckResult>(
                [&](auto cb) { e.store->ack("pa", std::move(leases), {}, std::move(cb)); });
            if (!a) break;
            acked += a->acked;
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      stop = true;
      for (auto& t : threads) t.join();
      double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      if (e.store->get_queue("pa")->stats.ready == 0) std::fprintf(stderr, "warning: queue ran dry\n");
      report("engine_pull_ack_batch100_consumers_" + std::to_string(consumers),
             static_cast<double>(acked.load()) / elapsed, "msgs/s");
    }
  }

  if (want("backlog")) {
    Engine e(dir, d);
    std::vector<roost::NewMessage> batch(1000, message100());
    report("engine_rss_backlog_0", static_cast<double>(rss_bytes()) / (1 << 20), "MiB");
    auto t0 = Clock::now();
    std::uint64_t next_report = 1'000'000;
    std::uint64_t n = 0;
    while (n < backlog) {
      // Four batches in flight keep the committer busy.
      std::vector<std::future<durable::Result<std::vector<std::string>>>> futs;
      for (int k = 0; k < 4 && n < backlog; ++k, n += batch.size()) {
        auto p = std::make_shared<std::promise<durable::Result<std::vector<std::string>>>>();
        futs.push_back(p->get_future());
        e.store->enqueue("backlog", batch, [p](auto r) { p->set_value(std::move(r)); });
      }
      for (auto& f : futs) {
        if (!f.get()) return 1;
      }
      if (n >= next_report) {
        std::fprintf(stderr, "backlog: %llu messages, rss %.1f MiB (anon %.1f, file %.1f)\n",
                     static_cast<unsigned long long>(n), static_cast<double>(rss_bytes()) / (1 << 20),
                     static_cast<double>(status_bytes("RssAnon")) / (1 << 20),
                     static_cast<double>(status_bytes("RssFile")) / (1 << 20));
        next_report += 1'000'000;
      }
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    report("engine_backlog_fill_rate", static_cast<double>(backlog) / secs, "msgs/s");
    auto info = e.store->get_queue("backlog");
    report("engine_backlog_messages", static_cast<double>(info->stats.messages), "msgs");
    report("engine_rss_backlog_" + std::to_string(backlog), static_cast<double>(rss_bytes()) / (1 << 20),
           "MiB");
    report("engine_disk_backlog_" + std::to_string(backlog),
           static_cast<double>(e.env->used_bytes()) / (1 << 20), "MiB");
    // Pulling from the deep backlog stays cheap: the head is found by a seek, not a scan.
    roost::PullOptions o;
    o.batch_size = 100;
    auto p0 = Clock::now();
    auto got = e.wait<std::vector<roost::LeasedMessage>>(
        [&](auto cb) { e.store->pull("backlog", o, std::move(cb)); });
    report("engine_backlog_pull100_latency",
           std::chrono::duration<double, std::milli>(Clock::now() - p0).count(), "ms");
    report("engine_rss_backlog_after_pull", static_cast<double>(rss_bytes()) / (1 << 20), "MiB");
  }
  std::filesystem::remove_all(dir);
  return 0;
}
