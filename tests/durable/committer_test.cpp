// Leader/follower group commit (Committer::lead, roost/core/lead_scope.h): what a thread submits
// inside a LeadScope commits on that thread when the committer is idle, and goes to the committer
// thread when a group is in progress.
#include <roost/core/lead_scope.h>
#include <roost/durable/committer.h>
#include <roost/durable/env.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "../support/temp_dir.h"

using namespace roost;

namespace {

// Puts one key; reports the thread it completed on. `gate` (optional) holds apply() until set.
class PutOp final : public durable::Op {
 public:
  PutOp(MDB_dbi table, std::string key, std::promise<std::thread::id>* done,
        std::shared_future<void> gate = {}, bool flush = true)
      : table_(table), key_(std::move(key)), done_(done), gate_(std::move(gate)), flush_(flush) {}
  bool needs_flush() const override { return flush_; }
  void apply(durable::WriteContext& ctx) override {
    if (gate_.valid()) gate_.wait();
    ctx.txn.put(table_, key_, "v");
  }
  void complete(const Error* error) override {
    // No Catch2 assertion here (not thread-safe): a failed commit reports no thread.
    done_->set_value(error == nullptr ? std::this_thread::get_id() : std::thread::id{});
  }

 private:
  MDB_dbi table_;
  std::string key_;
  std::promise<std::thread::id>* done_;
  std::shared_future<void> gate_;
  bool flush_;
};

struct Fixture {
  explicit Fixture(durable::LeadMode mode = durable::LeadMode::kAll,
                   std::uint64_t segment_bytes = 16ull << 20)
      : segment_bytes(segment_bytes), committer(env, options(mode), clock) {
    start();
  }
  static durable::CommitterOptions options(durable::LeadMode mode) {
    durable::CommitterOptions o;
    o.maintenance_interval = std::chrono::hours(1);  // no pass during a test: it would take deferred Ops
    o.lead = mode;
    return o;
  }
  static std::int64_t clock() { return 0; }
  test::TempDir dir;
  std::uint64_t segment_bytes;
  durable::Env env{[this] {
    durable::EnvOptions o;
    o.dir = dir.path() / "data";
    o.wal_segment_bytes = segment_bytes;
    return o;
  }()};
  MDB_dbi table = env.open_db("t");
  durable::Committer committer;
  void start() {
    committer.start();
    // Past the committer's first pass (maintenance at start): it waits for work now.
    std::promise<std::thread::id> first;
    committer.submit(std::make_unique<PutOp>(table, "first", &first));
    first.get_future().wait();
    // Its answer comes before the committer leaves the group role: on a loaded machine the tests'
    // scopes could find it still busy (bounded wait).
    for (int i = 0; i < 5000 && !committer.idle(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Fixture() { committer.stop(); }
};

}  // namespace

TEST_CASE("committer: a LeadScope's thread commits its writes itself when the committer is idle",
          "[durable][lead]") {
  Fixture f;
  std::promise<std::thread::id> a, b;
  auto fa = a.get_future(), fb = b.get_future();
  {
    LeadScope outer;
    {
      LeadScope inner;  // nested: only the outermost scope's end leads
      f.committer.submit(std::make_unique<PutOp>(f.table, "a", &a));
    }
    f.committer.submit(std::make_unique<PutOp>(f.table, "b", &b));
    // Deferred: the committer thread was not woken for them.
    CHECK(fa.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  }
  // Both committed, as one group, on this thread.
  REQUIRE(fa.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  CHECK(fa.get() == std::this_thread::get_id());
  CHECK(fb.get() == std::this_thread::get_id());
  CHECK(f.committer.metrics().led_groups.load() == 1);
  durable::Txn txn = f.env.begin_read();
  CHECK(txn.get(f.table, "a").has_value());
  CHECK(txn.get(f.table, "b").has_value());
}

TEST_CASE("committer: without a scope, or while a group is in progress, the committer thread commits",
          "[durable][lead]") {
  Fixture f;
  std::promise<std::thread::id> plain;
  f.committer.submit(std::make_unique<PutOp>(f.table, "plain", &plain));
  auto plain_thread = plain.get_future().get();
  CHECK(plain_thread != std::thread::id{});
  CHECK(plain_thread != std::this_thread::get_id());

  // A group held in apply() keeps the committer busy; a scope's write then waits for it and
  // goes to the committer thread.
  std::promise<void> open;
  std::promise<std::thread::id> held, led;
  auto fheld = held.get_future(), fled = led.get_future();
  f.committer.submit(std::make_unique<PutOp>(f.table, "held", &held, open.get_future().share()));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the committer thread is in apply()
  {
    LeadScope scope;
    f.committer.submit(std::make_unique<PutOp>(f.table, "led", &led));
  }
  CHECK(fled.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  open.set_value();
  CHECK(fheld.get() == plain_thread);
  CHECK(fled.get() == plain_thread);
  CHECK(f.committer.metrics().led_groups.load() == 0);
}

TEST_CASE("committer: by default a scope's thread commits only groups that need no flush",
          "[durable][lead]") {
  Fixture f(durable::LeadMode::kNoFlush);
  std::promise<std::thread::id> lazy, durable_write;
  {
    LeadScope scope;  // an ack-like write: answered before its flush, no blocking call here
    f.committer.submit(std::make_unique<PutOp>(f.table, "lazy", &lazy, std::shared_future<void>{}, false));
  }
  CHECK(lazy.get_future().get() == std::this_thread::get_id());
  {
    LeadScope scope;  // an enqueue-like write flushes: the committer thread's, not this thread's
    f.committer.submit(std::make_unique<PutOp>(f.table, "durable", &durable_write));
  }
  auto t = durable_write.get_future().get();
  CHECK(t != std::thread::id{});
  CHECK(t != std::this_thread::get_id());
  CHECK(f.committer.metrics().led_groups.load() == 1);
}

TEST_CASE(
    "committer: in may-block mode a scope that may block leads flushed groups, any other only unflushed ones",
    "[durable][lead]") {
  Fixture f(durable::LeadMode::kMayBlock);
  std::promise<std::thread::id> on_endpoint, on_io, lazy;
  {
    LeadScope scope(LeadScope::kMayBlock);  // the native endpoint's round: an enqueue flushes here
    f.committer.submit(std::make_unique<PutOp>(f.table, "endpoint", &on_endpoint));
  }
  CHECK(on_endpoint.get_future().get() == std::this_thread::get_id());
  CHECK(f.committer.metrics().led_groups.load() == 1);
  for (int i = 0; i < 5000 && !f.committer.idle(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  {
    LeadScope outer;  // an HTTP I/O thread's: a nested scope that may block does not change that
    LeadScope inner(LeadScope::kMayBlock);
    f.committer.submit(std::make_unique<PutOp>(f.table, "io", &on_io));
  }
  auto t = on_io.get_future().get();
  CHECK(t != std::thread::id{});
  CHECK(t != std::this_thread::get_id());
  for (int i = 0; i < 5000 && !f.committer.idle(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  {
    LeadScope scope;  // an ack-like write needs no flush: any scope leads it
    f.committer.submit(std::make_unique<PutOp>(f.table, "lazy", &lazy, std::shared_future<void>{}, false));
  }
  CHECK(lazy.get_future().get() == std::this_thread::get_id());
  CHECK(f.committer.metrics().led_groups.load() == 2);
  durable::Txn txn = f.env.begin_read();
  CHECK(txn.get(f.table, "endpoint").has_value());
  CHECK(txn.get(f.table, "io").has_value());
}

TEST_CASE(
    "committer: a scope that may block switches a full log segment itself, as the committer thread would",
    "[durable][lead]") {
  // Small segments; the committer thread sleeps (no maintenance during the test), so only the
  // leading thread can switch them: a leader that may not block never does (its full segment grows
  // until the committer thread switches). Caught by native_bench: without the switch, the
  // endpoint's groups were ~20 % slower than inline_commits = all.
  Fixture f(durable::LeadMode::kMayBlock, 64u << 10);
  const auto before = f.env.wal_stats().checkpoints;
  for (int i = 0; i < 3000; ++i) {
    std::promise<std::thread::id> done;
    {
      LeadScope scope(LeadScope::kMayBlock);
      f.committer.submit(
          std::make_unique<PutOp>(f.table, "k" + std::to_string(i) + std::string(64, 'x'), &done));
    }
    REQUIRE(done.get_future().get() == std::this_thread::get_id());
  }
  CHECK(f.env.wal_stats().checkpoints > before);
}
