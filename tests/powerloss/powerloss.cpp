// Power-loss simulation of the durable path (issue 17 §3).
//
//   powerloss run DIR [--durability none] [--no-wal]
//                            a workload on a QueueStore in DIR (sync durability, through the
//                            write-ahead log unless --no-wal): producers
//                            enqueue, a consumer pulls and acks; every acknowledged enqueue and
//                            ack is marked in the trace (run it with LD_PRELOAD=trace_shim.so,
//                            POWERLOSS_DIR=DIR, POWERLOSS_TRACE=FILE)
//   powerloss check FILE [--cuts N] [--seed S] [--seconds T]
//                            for N random cut points of the trace: rebuild the files as a power
//                            cut there would leave them — every write up to the file's last
//                            completed flush, then an arbitrary subset of the later writes, some
//                            of them torn (only some of their 512-byte sectors) — open the store
//                            and check: it opens; every enqueue acknowledged before the cut is
//                            there exactly once unless an ack of it was sent; nothing
//                            whose ack was acknowledged is there (through the write-ahead log,
//                            whose acks are answered before their flush: nothing whose ack was
//                            acknowledged before a later flush of the log); nothing is there twice.
// Exit 0 when every cut passed; the first failing cut is printed with its seed.
#include <roost/core/lead_scope.h>
#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/queue_store.h>

#include <dlfcn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace roost;

namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void mark(const std::string& text) {
  using Marker = void (*)(const char*);
  static auto m = reinterpret_cast<Marker>(dlsym(RTLD_DEFAULT, "powerloss_marker"));
  if (m != nullptr) m(text.c_str());
}

template <class T, class F>
Result<T> wait(F&& call) {
  std::promise<Result<T>> p;
  auto f = p.get_future();
  call([&p](Result<T> r) { p.set_value(std::move(r)); });
  return f.get();
}

struct Store {
  explicit Store(const fs::path& dir, durable::Durability durability = durable::Durability::kSync,
                 bool wal = true) {
    durable::EnvOptions eo;
    eo.dir = dir;
    eo.durability = durability;
    eo.wal = wal;
    // Small segments, frequent checkpoints: the run crosses many segment switches and checkpoints.
    eo.wal_segment_bytes = 64 << 10;
    eo.wal_checkpoint_ms = 5;
    eo.initial_map_bytes = 64ull << 20;
    eo.zero_ahead_bytes = 1ull << 20;
    env = std::make_unique<durable::Env>(eo);
    committer = std::make_unique<durable::Committer>(*env, durable::CommitterOptions{}, wall_ms);
    queues = std::make_unique<durable::QueueStore>(*env, *committer, durable::QueueStoreOptions{}, wall_ms);
    committer->start();
  }
  ~Store() {
    committer->stop();
    queues.reset();
    committer.reset();
    env.reset();
  }
  std::unique_ptr<durable::Env> env;
  std::unique_ptr<durable::Committer> committer;
  std::unique_ptr<durable::QueueStore> queues;
};

int run(const fs::path& dir, durable::Durability durability, bool wal) {
  Store s(dir, durability, wal);
  const bool lazy_acks = s.env->uses_wal();
  QueueConfigPatch p;
  p.visibility_timeout_ms = 600'000;
  if (!wait<QueueInfo>([&](auto cb) { s.queues->put_queue("q", p, std::move(cb)); })) return 1;
  constexpr int kProducers = 3, kEach = 300;
  std::atomic<int> producing{kProducers};
  std::vector<std::thread> threads;
  for (int t = 0; t < kProducers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int n = 0; n < kEach;) {
        int batch = 1 + static_cast<int>(rng() % 4);
        std::vector<NewMessage> msgs;
        std::vector<std::string> bodies;
        for (int k = 0; k < batch && n < kEach; ++k, ++n) {
          NewMessage m;
          m.body = "p" + std::to_string(t) + "-" + std::to_string(n);
          m.content_type = ContentType::kText;
          bodies.push_back(m.body);
          msgs.push_back(std::move(m));
        }
        auto r = wait<std::vector<std::string>>(
            [&](auto cb) { s.queues->enqueue("q", std::move(msgs), std::move(cb)); });
        if (r) {
          for (const auto& b : bodies) mark("E " + b);  // acknowledged: it must survive
        }
      }
      --producing;
    });
  }
  threads.emplace_back([&] {
    // While the producers run, then alone until the queue is empty (its groups are then its own:
    // led on this thread).
    for (int idle = 0; producing.load() > 0 || idle < 3;) {
      PullOptions po;
      po.batch_size = 7;
      // The consumer leads its own pulls and acks (a LeadScope, as the endpoint does): they
      // commit on this thread, and their log records go past a full segment's end (no switch
      // there) until the committer thread checkpoints.
      auto got = wait<std::vector<LeasedMessage>>([&](auto cb) {
        LeadScope lead;
        s.queues->pull("q", po, std::move(cb));
      });
      if (!got || got->empty()) {
        if (producing.load() == 0) ++idle;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      std::vector<std::string> leases;
      std::map<std::string, std::string> body_of;
      for (const auto& m : *got) {
        leases.push_back(m.lease_id);
        body_of[m.lease_id] = m.body;
      }
      for (const auto& [lease, body] : body_of) mark("a " + body);  // sent: it may be gone from here on
      auto a = wait<AckResult>([&](auto cb) {
        LeadScope lead;
        s.queues->ack("q", leases, {}, std::move(cb));
      });
      if (!a) continue;
      for (const auto& u : a->unknown) body_of.erase(u);
      // Acknowledged: it must not come back — through the log, once the log was next flushed (an
      // ack is answered before its flush, Op::needs_flush).
      for (const auto& [lease, body] : body_of) mark((lazy_acks ? "L " : "A ") + body);
    }
  });
  for (auto& t : threads) t.join();
  auto w = s.env->wal_stats();
  if (s.env->uses_wal())
    std::printf("run: %llu log records, %llu checkpoints, %llu groups led by the consumer\n",
                static_cast<unsigned long long>(w.records), static_cast<unsigned long long>(w.checkpoints),
                static_cast<unsigned long long>(s.committer->metrics().led_groups.load()));
  return 0;
}

struct Record {
  char type;
  std::uint32_t file;
  std::uint64_t offset, length;
  std::string data;
};

std::vector<Record> read_trace(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<Record> out;
  for (;;) {
    char head[21];
    if (!in.read(head, sizeof head)) break;
    Record r;
    r.type = head[0];
    std::memcpy(&r.file, head + 1, 4);
    std::memcpy(&r.offset, head + 5, 8);
    std::memcpy(&r.length, head + 13, 8);
    if (r.type == 'W' || r.type == 'D' || r.type == 'O' || r.type == 'M') {
      r.data.resize(r.length);
      if (!in.read(r.data.data(), static_cast<std::streamsize>(r.length))) break;
    }
    out.push_back(std::move(r));
  }
  return out;
}

void apply(std::string& file, const Record& r, const std::vector<bool>* sectors = nullptr) {
  if (r.type == 'T') {
    file.resize(r.offset);
    return;
  }
  if (file.size() < r.offset + r.length) file.resize(r.offset + r.length, '\0');
  for (std::uint64_t at = 0; at < r.length; at += 512) {
    if (sectors != nullptr && !(*sectors)[at / 512]) continue;  // this sector never reached the disk
    std::uint64_t n = std::min<std::uint64_t>(512, r.length - at);
    if (r.type == 'Z') {
      std::memset(file.data() + r.offset + at, 0, n);
    } else {
      std::memcpy(file.data() + r.offset + at, r.data.data() + at, n);
    }
  }
}

// Runs `f` in a forked child and returns what it returned, or how the child died.
template <class F>
std::string in_child(F&& f) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    ::close(fds[0]);
    std::string out = f();
    for (std::size_t at = 0; at < out.size();) {
      ssize_t w = ::write(fds[1], out.data() + at, out.size() - at);
      if (w <= 0) break;
      at += static_cast<std::size_t>(w);
    }
    _exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    return "the store crashed on these files (signal " + std::to_string(WTERMSIG(status)) + ")";
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "the checking process failed";
  return out;
}

// One cut: the files rebuilt into `dir`; the store opened (in a child) and its content checked.
std::string check_cut(const std::vector<Record>& trace, std::size_t cut, std::mt19937_64& rng,
                      const fs::path& dir) {
  std::map<std::uint32_t, std::string> names;
  std::map<std::uint32_t, std::size_t> last_flush;  // per file: index of its last flush before the cut
  std::set<std::string> enqueued, ack_sent, acked;
  std::vector<std::string> lazy;  // acks answered before the log's flush, since its last flush
  for (std::size_t i = 0; i < cut; ++i) {
    const auto& r = trace[i];
    if (r.type == 'O') names[r.file] = r.data;
    if (r.type == 'S') last_flush[r.file] = i;
    if (r.type == 'S' && fs::path(names[r.file]).filename().string().starts_with("wal.")) {
      for (auto& b : lazy) acked.insert(std::move(b));
      lazy.clear();
    }
    if (r.type == 'M' && r.data.starts_with("E ")) enqueued.insert(r.data.substr(2));
    if (r.type == 'M' && r.data.starts_with("A ")) acked.insert(r.data.substr(2));
    if (r.type == 'M' && r.data.starts_with("L ")) lazy.push_back(r.data.substr(2));
    if (r.type == 'M' && r.data.starts_with("a ")) ack_sent.insert(r.data.substr(2));
  }
  std::map<std::uint32_t, std::string> files;
  std::string what;
  for (std::size_t i = 0; i < cut; ++i) {
    const auto& r = trace[i];
    if (r.type != 'W' && r.type != 'Z' && r.type != 'T' && r.type != 'D') continue;
    auto& f = files[r.file];
    auto flushed = last_flush.find(r.file);
    bool durable = r.type == 'D' || (flushed != last_flush.end() && i < flushed->second);
    if (durable) {
      apply(f, r);
      continue;
    }
    // After the file's last flush: it may or may not have reached the disk, maybe torn.
    auto roll = rng() % 4;
    if (roll == 0) continue;  // lost
    if (roll == 1 && r.length > 512) {
      std::vector<bool> sectors((r.length + 511) / 512);
      for (std::size_t k = 0; k < sectors.size(); ++k) sectors[k] = rng() % 2;
      apply(f, r, &sectors);
      continue;
    }
    apply(f, r);
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& [id, content] : files) {
    auto name = fs::path(names[id]).filename();
    if (name == "lock.mdb") continue;  // rebuilt by the next open
    std::ofstream(dir / name, std::ios::binary)
        .write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  // The store opens in a child: a crash there (a data file LMDB maps past its end: SIGBUS) is a
  // failure of this cut, reported as one, not the end of the check.
  return in_child([&]() -> std::string {
    std::map<std::string, int> present;
    try {
      Store s(dir);
      PullOptions po;
      po.batch_size = 1000;
      po.visibility_timeout_ms = 600'000;
      for (int round = 0; round < 100; ++round) {
        auto got = wait<std::vector<LeasedMessage>>([&](auto cb) { s.queues->pull("q", po, std::move(cb)); });
        if (!got) {
          if (got.error().code == ErrorCode::QUEUE_NOT_FOUND && enqueued.empty())
            break;  // cut before it existed
          return "pull failed: " + got.error().message;
        }
        if (got->empty()) break;
        for (const auto& m : *got) present[m.body] += 1;
      }
    } catch (const std::exception& e) {
      return std::string("the store does not open: ") + e.what();
    }
    for (const auto& b : enqueued) {
      if (ack_sent.contains(b)) continue;  // its ack may have committed before the cut
      if (!present.contains(b)) return "acknowledged enqueue lost: " + b;
    }
    for (const auto& [b, n] : present) {
      if (n > 1) return "present twice: " + b;
      if (acked.contains(b)) return "acknowledged ack undone: " + b + " is back";
    }
    return "";
  });
}

int check(const fs::path& trace_path, int cuts, std::uint64_t seed, double seconds, long one_cut = -1,
          std::uint64_t one_seed = 0) {
  auto trace = read_trace(trace_path);
  if (one_cut >= 0) {  // replay one cut (a failure's) and keep its files
    std::mt19937_64 rng(one_seed);
    auto dir = fs::path("powerloss-cut-" + std::to_string(one_cut));
    auto failure = check_cut(trace, static_cast<std::size_t>(one_cut), rng, dir);
    std::printf("cut %ld: %s (files in %s)\n", one_cut, failure.empty() ? "passed" : failure.c_str(),
                dir.c_str());
    return failure.empty() ? 0 : 1;
  }
  std::size_t markers = 0, flushes = 0, writes = 0;
  for (const auto& r : trace) {
    markers += r.type == 'M';
    flushes += r.type == 'S';
    writes += r.type == 'W' || r.type == 'Z' || r.type == 'D';
  }
  std::printf("trace: %zu records (%zu writes, %zu flushes, %zu markers)\n", trace.size(), writes, flushes,
              markers);
  if (markers < 100) {
    std::printf("FAILED: the workload left too little to check (was the shim preloaded?)\n");
    return 1;
  }
  auto dir = fs::temp_directory_path() / ("roost-powerloss-" + std::to_string(::getpid()));
  std::mt19937_64 pick(seed);
  auto t0 = std::chrono::steady_clock::now();
  int done = 0;
  for (; done < cuts; ++done) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) break;
    std::size_t cut = static_cast<std::size_t>(pick() % (trace.size() + 1));
    std::uint64_t cut_seed = pick();
    std::mt19937_64 rng(cut_seed);
    auto failure = check_cut(trace, cut, rng, dir);
    if (!failure.empty()) {
      std::printf("FAILED at cut %zu of %zu (seed %llu): %s\n", cut, trace.size(),
                  static_cast<unsigned long long>(cut_seed), failure.c_str());
      fs::remove_all(dir);
      return 1;
    }
  }
  fs::remove_all(dir);
  std::printf("powerloss: %d cut points passed\n", done);
  return done >= std::min(cuts, 50) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // one line per store opened at every cut otherwise
  if (argc >= 3 && std::string(argv[1]) == "run") {
    // --durability none: a store that acknowledges before flushing (the check must catch it).
    // --no-wal: sync durability through LMDB's own fsync'd commits instead of the log.
    bool none = false, wal = true;
    for (int i = 3; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--durability" && i + 1 < argc) none = std::string(argv[++i]) == "none";
      if (a == "--no-wal") wal = false;
    }
    return run(argv[2], none ? durable::Durability::kNone : durable::Durability::kSync, wal);
  }
  if (argc >= 3 && std::string(argv[1]) == "check") {
    int cuts = 300;
    std::uint64_t seed = 1;
    double seconds = 120;
    long one_cut = -1;
    std::uint64_t one_seed = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
      std::string k = argv[i];
      if (k == "--cuts") cuts = std::stoi(argv[i + 1]);
      if (k == "--seed") seed = std::stoull(argv[i + 1]);
      if (k == "--seconds") seconds = std::stod(argv[i + 1]);
      if (k == "--cut") one_cut = std::stol(argv[i + 1]);
      if (k == "--cut-seed") one_seed = std::stoull(argv[i + 1]);
    }
    return check(argv[2], cuts, seed, seconds, one_cut, one_seed);
  }
  std::fprintf(stderr,
               "usage: powerloss run DIR | powerloss check TRACE [--cuts N] [--seed S] [--seconds T]\n");
  return 2;
}
