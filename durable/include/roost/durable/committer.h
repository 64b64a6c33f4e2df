// The Committer: the only LMDB writer of a node. Callers submit Ops from any thread; the committer
// thread drains everything pending into one write transaction, commits once (one fsync for the
// whole group in sync mode), then completes each Op. This is where durable throughput comes from.
#pragma once

#include <roost/core/error.h>
#include <roost/core/lead_scope.h>
#include <roost/core/thread_annotations.h>
#include <roost/durable/env.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace roost::durable {

// What an Op sees while it runs inside the group transaction.
struct WriteContext {
  Txn& txn;
  std::int64_t now_ms;  // one clock reading for the whole group
  // True when the map cannot grow any more: Ops that add data must fail with kStorageFull,
  // Ops that remove data (acks, deletes) should still run.
  bool storage_full;
};

// One unit of write work.
class Op {
 public:
  virtual ~Op() = default;
  // Runs inside the group transaction on the committer thread. May run more than once for one
  // submission (the group is replayed after the map grows), so it must reset any result it keeps.
  // Must check its preconditions before writing: a logical failure (queue_full, not found) is
  // recorded in the Op and leaves the transaction untouched. LMDB failures throw MdbError.
  virtual void apply(WriteContext& ctx) = 0;
  // Runs on the committer thread after the group committed (or failed: `error` set). Must be
  // cheap: hand real work to another thread.
  virtual void complete(const Error* error) = 0;
  // Whether the Op may be answered only once its commit is flushed to disk. Ops whose loss to a
  // power cut is harmless (a lease, an ack: the message is delivered again, at-least-once) say
  // false: through the write-ahead log, a group of only such Ops is answered once its record is
  // in the page cache (a kill -9 keeps it) and flushed with the next group or when the
  // committer idles. LMDB's own sync commits (wal = false) flush every group.
  virtual bool needs_flush() const { return true; }
};

// Something that keeps per-transaction state (caches, counters) across the Ops of a group.
class Participant {
 public:
  virtual ~Participant() = default;
  virtual void begin(WriteContext&) {}
  // Last chance to write before commit (flush cached records).
  virtual void prepare(WriteContext&) {}
  virtual void committed() {}
  virtual void aborted() {}
  // Periodic work (expiry, promotion of due messages). Returns true if it wrote anything.
  virtual bool maintain(WriteContext&) { return false; }
};

// Which groups a LeadScope's thread may commit itself (Committer::lead).
enum class LeadMode {
  kOff,       // none: the committer thread commits everything
  kNoFlush,   // groups whose commit needs no flush (leases, acks through the log; batch/none
              // durability): no blocking call on the leading thread — it is an I/O thread
  kMayBlock,  // any group on a scope that may block (the native endpoint's thread: its enqueues'
              // answers go out with no hand-off); groups that need no flush on any other scope
  kAll,       // any group, flushing on the leading thread (fewest hand-offs; blocks that thread)
};

struct CommitterOptions {
  std::chrono::milliseconds sync_interval{100};  // batch durability only
  std::chrono::milliseconds maintenance_interval{50};
  std::size_t max_group_ops = 8192;  // cap on Ops per transaction (bounds latency)
  LeadMode lead = LeadMode::kNoFlush;
};

// Histogram with fixed power-of-two-ish buckets, safe to read from any thread.
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {1,   2,   5,    10,   25,   50,    100,
                                                     250, 500, 1000, 2500, 5000, 10000, 50000};
  void record(double value);
  struct Snapshot {
    std::array<std::uint64_t, kBounds.size() + 1> buckets{};  // last = +Inf
    std::uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

struct CommitterMetrics {
  Histogram commit_us;  // commit latency including fsync, microseconds
  Histogram group_ops;  // Ops per committed group
  std::atomic<std::uint64_t> commits{0};
  std::atomic<std::uint64_t> ops{0};
  std::atomic<std::uint64_t> map_grows{0};
  std::atomic<std::uint64_t> storage_full_errors{0};
  std::atomic<std::uint64_t> fenced_groups{0};  // groups abandoned: the node may not commit (mesh)
  std::atomic<std::uint64_t> led_groups{0};     // groups committed by a LeadScope's thread
};

// Thread-safe: submit() from any thread. Participants are registered before start().
class Committer final : public roost::Leader {
 public:
  using Clock = std::function<std::int64_t()>;

  Committer(Env& env, CommitterOptions options, Clock clock);
  ~Committer() override;  // stops after draining everything submitted
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  void add_participant(Participant* p);
  void start();
  // Completes every Op already submitted, then stops the thread. New submissions fail with
  // kUnavailable.
  void stop();

  void submit(std::unique_ptr<Op> op);

  // Leader/follower group commit (roost/core/lead_scope.h): what a thread submits inside a
  // LeadScope waits without waking the committer thread; when the scope ends, that thread commits
  // everything pending itself if no group is being committed (else the committer thread takes it
  // next). Its Ops then complete on the thread that took their requests. Groups stay one at a
  // time; maintenance stays on the committer thread.
  void lead(bool may_block) override;

  // (mesh) Asked just before every commit: false = this node may not commit now (its ownership
  // lease may have run out), and the group is abandoned — its Ops fail with owner_unavailable,
  // nothing is written. A request checked against the lease when it arrived is checked again here,
  // where it would take effect. REQUIRES: before start().
  void set_fence(std::function<bool()> may_commit) { fence_ = std::move(may_commit); }
  // Asks for a maintenance pass at the next opportunity (e.g. after a clock change in tests).
  void poke();

  const CommitterMetrics& metrics() const { return metrics_; }
  // Nothing pending and no group being committed (by any thread) at this instant. Any thread.
  bool idle();

 private:
  void run();
  // leading: on a LeadScope's thread (no segment switch or checkpoint start: those may block).
  void commit_group(std::vector<std::unique_ptr<Op>>& group, bool maintenance, bool leading = false);
  // Whether committing these Ops flushes (sync durability: LMDB's commit, or a log record that
  // needs its flush).
  bool group_flushes(const std::vector<std::unique_ptr<Op>>& ops, std::size_t n) const;
  // Takes the oldest max_group_ops pending Ops into `group`.
  void take_group(std::vector<std::unique_ptr<Op>>& group) ROOST_REQUIRES(mu_);

  Env& env_;
  CommitterOptions options_;
  Clock clock_;
  std::vector<Participant*> participants_;
  std::function<bool()> fence_;
  CommitterMetrics metrics_;

  Mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Op>> pending_ ROOST_GUARDED_BY(mu_);
  bool stopping_ ROOST_GUARDED_BY(mu_) = false;
  bool poked_ ROOST_GUARDED_BY(mu_) = false;
  bool busy_ ROOST_GUARDED_BY(mu_) = false;          // a group is being committed (by any thread)
  bool flush_wanted_ ROOST_GUARDED_BY(mu_) = false;  // a leader left log records unflushed
  std::thread thread_;
};

}  // namespace roost::durable
