#include "roost/durable/committer.h"

#include <roost/core/hop_trace.h>
#include <roost/core/log.h>
#include <roost/core/thread_name.h>

#include <algorithm>
#include <cerrno>

namespace roost::durable {

namespace {
std::int64_t ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

void Histogram::record(double value) {
  std::size_t i = 0;
  while (i < kBounds.size() && value > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + value, std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  s.count = count_.load(std::memory_order_relaxed);
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

Committer::Committer(Env& env, CommitterOptions options, Clock clock)
    : env_(env), options_(options), clock_(clock) {}

Committer::~Committer() { stop(); }

void Committer::add_participant(Participant* p) { participants_.push_back(p); }

void Committer::start() {
  thread_ = std::thread([this] {
    roost::name_this_thread("roost-commit");
    run();
  });
}

void Committer::stop() {
  {
    MutexLock lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  MutexLock lock(mu_);
  while (busy_) cv_.wait(lock.native());  // a leader's group
}

void Committer::take_group(std::vector<std::unique_ptr<Op>>& group) {
  if (pending_.size() <= options_.max_group_ops) {
    group.swap(pending_);
  } else {
    // Take the oldest max_group_ops; leave the rest for the next group.
    auto split = pending_.begin() + static_cast<std::ptrdiff_t>(options_.max_group_ops);
    group.assign(std::make_move_iterator(pending_.begin()), std::make_move_iterator(split));
    pending_.erase(pending_.begin(), split);
  }
}

bool Committer::group_flushes(const std::vector<std::unique_ptr<Op>>& ops, std::size_t n) const {
  if (env_.options().durability != Durability::kSync) return false;
  if (!env_.uses_wal()) return true;
  for (std::size_t i = 0; i < n && i < ops.size(); ++i)
    if (ops[i]->needs_flush()) return true;
  return false;
}

bool Committer::idle() {
  MutexLock lock(mu_);
  return !busy_ && pending_.empty();
}

void Committer::lead(bool may_block) {
  std::vector<std::unique_ptr<Op>> group;
  bool blocking = false;
  {
    MutexLock lock(mu_);
    if (pending_.empty()) return;
    // A thread that may block commits any group, as the committer thread would: flushing, and
    // switching the log's segment or starting a checkpoint when one is due. Any other leads only
    // groups that need no flush, and leaves segment switches and checkpoints to the committer.
    blocking = options_.lead == LeadMode::kAll || (options_.lead == LeadMode::kMayBlock && may_block);
    bool mine = !busy_ && !stopping_ && thread_.joinable() && options_.lead != LeadMode::kOff &&
                (blocking || !group_flushes(pending_, options_.max_group_ops));
    if (!mine) {
      lock.unlock();
      cv_.notify_all();  // the committer thread takes them (after its group)
      return;
    }
    busy_ = true;
    take_group(group);
  }
  metrics_.led_groups.fetch_add(1, std::memory_order_relaxed);
  commit_group(group, false, !blocking);
  group.clear();
  // Records answered before their flush are flushed by the committer thread, not here: this
  // thread's answers go out first.
  const bool unflushed = env_.log_unflushed();
  bool wake = false;
  {
    MutexLock lock(mu_);
    busy_ = false;
    flush_wanted_ = flush_wanted_ || unflushed;
    wake = unflushed || !pending_.empty() || stopping_;
  }
  if (wake) cv_.notify_all();
}

void Committer::submit(std::unique_ptr<Op> op) {
  MutexLock lock(mu_);
  if (stopping_) {
    lock.unlock();
    Error err{ErrorCode::UNAVAILABLE, "the node is shutting down"};
    op->complete(&err);
    return;
  }
  pending_.push_back(std::move(op));
  bool first = pending_.size() == 1;
  if (roost::LeadScope::defer_to(this)) return;  // the scope's end leads (or wakes the committer thread)
  lock.unlock();
  if (first) cv_.notify_all();
}

void Committer::poke() {
  {
    MutexLock lock(mu_);
    poked_ = true;
  }
  cv_.notify_all();
}

void Committer::run() {
  auto log = roost::module_logger("durable");
  using SteadyClock = std::chrono::steady_clock;
  auto next_maintenance = SteadyClock::now();
  auto next_sync = SteadyClock::now() + options_.sync_interval;
  bool unsynced = false;
  std::vector<std::unique_ptr<Op>> group;
  for (;;) {
    bool stopping = false;
    bool maintenance = false;
    {
      MutexLock lock(mu_);
      auto deadline = next_maintenance;
      if (env_.options().durability == Durability::kBatch && unsynced && next_sync < deadline) {
        deadline = next_sync;
      }
      // Pending Ops wait while a leader (a LeadScope's thread) commits a group.
      while ((pending_.empty() || busy_) && !(stopping_ && !busy_) && !poked_ && !flush_wanted_) {
        if (cv_.wait_until(lock.native(), deadline) == std::cv_status::timeout) break;
      }
      while (busy_) cv_.wait(lock.native());
      take_group(group);
      stopping = stopping_ && pending_.empty();
      maintenance = poked_ || SteadyClock::now() >= next_maintenance;
      poked_ = false;
      flush_wanted_ = false;
      busy_ = true;
    }
    if (maintenance) next_maintenance = SteadyClock::now() + options_.maintenance_interval;
    if (!group.empty() || maintenance) {
      commit_group(group, maintenance);
      if (!group.empty()) unsynced = true;
      group.clear();
    }
    try {
      env_.checkpoint_if_due();  // what leaders' groups left due: they start no checkpoint
    } catch (const MdbError& e) {
      log->error("write-ahead log checkpoint failed: {}", e.what());
    }
    bool idle = false;
    {
      MutexLock lock(mu_);
      busy_ = false;
      idle = pending_.empty();
    }
    cv_.notify_all();
    // Records answered before their flush (leases, acks) are flushed as soon as nothing waits —
    // outside the group role, so that a leader's next group need not wait for this flush.
    if (idle) {
      try {
        env_.flush_log();
      } catch (const MdbError& e) {
        log->error("flushing the write-ahead log failed: {}", e.what());
      }
    }
    if (env_.options().durability == Durability::kBatch && unsynced &&
        (SteadyClock::now() >= next_sync || stopping)) {
      try {
        env_.sync();
      } catch (const MdbError& e) {
        log->error("periodic sync failed: {}", e.what());
      }
      unsynced = false;
      next_sync = SteadyClock::now() + options_.sync_interval;
    }
    if (stopping) break;
  }
}

void Committer::commit_group(std::vector<std::unique_ptr<Op>>& group, bool maintenance, bool leading) {
  auto log = roost::module_logger("durable");
  const auto began = hop_trace::now_ns();
  // Over the cap, Ops that add data are refused from the start; the rest may use the reserve.
  bool storage_full = env_.over_cap();
  bool bumped = false;
  for (;;) {
    std::int64_t now = clock_();
    try {
      Txn txn = env_.begin_write();
      WriteContext ctx{txn, now, storage_full};
      for (auto* p : participants_) p->begin(ctx);
      for (auto& op : group) op->apply(ctx);
      bool wrote = !group.empty();
      if (maintenance) {
        for (auto* p : participants_) wrote = p->maintain(ctx) || wrote;
      }
      if (!wrote) {
        txn.abort();
        for (auto* p : participants_) p->aborted();
        return;
      }
      for (auto* p : participants_) p->prepare(ctx);
      if (fence_ && !fence_()) {
        txn.abort();
        for (auto* p : participants_) p->aborted();
        metrics_.fenced_groups.fetch_add(1, std::memory_order_relaxed);
        log->debug("a write group of {} ops abandoned: this node may not commit now (its mesh lease ran out)",
                   group.size());
        Error err{ErrorCode::OWNER_UNAVAILABLE, "this node lost its ownership lease before the commit"};
        for (auto& op : group) op->complete(&err);
        return;
      }
      bool flush = false;
      for (const auto& op : group) flush = flush || op->needs_flush();
      auto t0 = std::chrono::steady_clock::now();
      txn.commit(flush, !leading);
      const auto t1 = std::chrono::steady_clock::now();
      auto us = std::chrono::duration<double, std::micro>(t1 - t0);
      metrics_.commit_us.record(us.count());
      metrics_.group_ops.record(static_cast<double>(group.size()));
      metrics_.commits.fetch_add(1, std::memory_order_relaxed);
      metrics_.ops.fetch_add(group.size(), std::memory_order_relaxed);
      for (auto* p : participants_) p->committed();
      auto& completing = hop_trace::completing_group();
      completing = {began, ns(t0), hop_trace::log_write_began(), ns(t1)};
      for (auto& op : group) op->complete(nullptr);
      completing = {};
      env_.zero_ahead();
      return;
    } catch (const MdbError& e) {
      for (auto* p : participants_) p->aborted();
      bool map_full = e.rc() == MDB_MAP_FULL;
      bool disk_full = e.rc() == ENOSPC || e.rc() == EDQUOT || (e.rc() == EIO && env_.disk_low());
      if (map_full && !storage_full && env_.grow_map()) {
        metrics_.map_grows.fetch_add(1, std::memory_order_relaxed);
        continue;  // replay the group in a larger map
      }
      if ((map_full || disk_full) && !bumped && env_.bump()) {
        bumped = true;  // pages freed by the last commit are usable now: try once more
        continue;
      }
      if ((map_full || disk_full) && !storage_full) {
        // Replay with adding Ops refused, so acks and deletes can still free space.
        log->warn("storage full ({}); refusing writes that add data", e.what());
        storage_full = true;
        continue;
      }
      Error err;
      if (map_full || disk_full) {
        metrics_.storage_full_errors.fetch_add(1, std::memory_order_relaxed);
        err = Error{ErrorCode::STORAGE_FULL, "storage is full"};
      } else {
        log->error("write transaction failed: {}", e.what());
        err = Error{ErrorCode::INTERNAL, std::string("storage error: ") + e.what()};
      }
      for (auto& op : group) op->complete(&err);
      return;
    }
  }
}

}  // namespace roost::durable
