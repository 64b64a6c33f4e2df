// ShardMover: moves a shard's data to another node of the mesh while it keeps serving, then
// switches its ownership under a new epoch (docs/mesh.md, "Moving shards"; `roost mesh move` and
// `roost mesh rebalance`).
//
// On the source (the shard's owner), one move at a time, on its own thread:
//   1. copy: the bodies of the shard's messages go to the target in chunks while the shard serves
//      as usual; rounds repeat while a round still had much to copy (catch-up);
//   2. close: the shard stops serving here (requests answer owner_unavailable: clients retry) and
//      the stores refuse writes to it where they would take effect; a barrier through the
//      committer makes sure everything admitted before is committed;
//   3. the rest: bodies written since the last round, then every queue's record, message states
//      and dedup entries, and the shard's outbox marks (exactly-once effects from other nodes);
//   4. finish: the target builds the queues in one transaction, then switches the shard in one
//      etcd transaction (home := target, the source's claim deleted — only while that claim is
//      the one the move started under) and claims it: a new epoch. The source deletes its copy.
// A failure before the switch reopens the shard here, under a new claim of its own (a late switch
// by the target can then no longer succeed), and the target forgets what it received.
//
// Objects move with their shard: their rows (mailboxes, storage, alarms, durable subscriptions)
// are copied once the shard is closed (their turns cannot commit on the source any more); the
// source evicts them from memory (calls answered owner_unavailable, WebSockets closed with 1012),
// the target loads their mail and subscriptions.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <roost/broker/mesh_router.h>
#include <roost/core/error.h>
#include <roost/core/mesh_types.h>
#include <roost/core/mesh_view.h>
#include <roost/core/thread_annotations.h>
#include <roost/durable/outbox_store.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/thread_pool.hpp>

namespace roost::durable {
class QueueStore;
class MailboxStore;
class Committer;
}  // namespace roost::durable

namespace roost::broker {

class ActorRuntime;
class Mesh;
class ShardReceiver;

struct ShardMoverOptions {
  std::size_t chunk_bytes = 512u << 10;            // data per copy step (at least one body)
  std::chrono::milliseconds step_timeout{30'000};  // one step's answer (finish: the import and etcd)
};

class ShardMover final : public ShardMoves, public ShardCopySink {
 public:
  ShardMover(durable::QueueStore& queues, durable::MailboxStore& mailboxes, durable::OutboxStore& outbox,
             durable::Committer& committer, ActorRuntime& actors, MeshRouter& router,
             ShardMoverOptions options = {});
  ~ShardMover();
  ShardMover(const ShardMover&) = delete;
  ShardMover& operator=(const ShardMover&) = delete;

  void set_mesh(Mesh* mesh) { mesh_.store(mesh); }
  // Wakes the long polls parked on a queue (so that they answer owner_unavailable once it closes).
  // REQUIRES: before the first move.
  void set_wake(std::function<void(const std::string& queue)> wake) { wake_ = std::move(wake); }
  // Waits for a move in progress to end (it stops at its next step and is undone).
  void stop();

  // (source) Starts moving `shard`, which this node owns, to the live member `to`. Answers the
  // move's status as JSON; conflict while another move runs here, or when this node does not own
  // the shard; not_found for an unknown member.
  Result<std::string> start(std::uint32_t shard, std::string to) override;
  // {"moves": [...]} — the moves this node made since it started, the last first (at most 64).
  std::string moves_json() const override;
  // (target) One step of a move another node makes to this one.
  void on_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done) override;
  // roost_mesh_move* Prometheus lines.
  std::string metrics_text() const;
  // At start, the shards a move left unsettled when the node stopped (OutboxStore::move_marks;
  // held closed by the router since before the actor runtime started): once the mesh answers,
  // each is settled on its own thread — home here: kept, its objects loaded; another node's: this
  // node's stale copy is removed and the shard stays closed here. Then the mark goes.
  void settle(std::vector<durable::OutboxStore::MoveMark> marks);

 private:
  struct Move;
  void run(std::shared_ptr<Move> move);
  Result<std::int64_t> transfer(Move& move);
  // Writes (or, nullopt, removes) a shard's move mark; waits for the commit.
  Result<std::uint64_t> mark(std::uint32_t shard, std::optional<durable::OutboxStore::MoveMark> m);
  void unmark(std::uint32_t shard);  // without waiting
  // Deletes this node's rows of those objects, then those queues; waits. The first failure.
  std::optional<Error> remove_copy(const std::vector<std::string>& okeys,
                                   const std::vector<std::string>& names);
  void settle_one(const durable::OutboxStore::MoveMark& mark);

  durable::QueueStore& queues_;
  durable::MailboxStore& mailboxes_;
  durable::OutboxStore& outbox_;
  durable::Committer& committer_;
  ActorRuntime& actors_;
  MeshRouter& router_;
  ShardMoverOptions options_;
  std::function<void(const std::string&)> wake_;
  std::atomic<Mesh*> mesh_{nullptr};
  std::atomic<bool> stopping_{false};

  mutable Mutex mu_;
  std::deque<std::shared_ptr<Move>> moves_ ROOST_GUARDED_BY(mu_);  // the last first
  bool running_ ROOST_GUARDED_BY(mu_) = false;
  std::thread thread_ ROOST_GUARDED_BY(mu_);
  std::thread settle_thread_ ROOST_GUARDED_BY(mu_);

  std::atomic<std::uint64_t> moved_out_{0}, failed_{0};
  std::unique_ptr<ShardReceiver> receiver_;  // the target side (src/shard_receiver.h)
};

}  // namespace roost::broker
