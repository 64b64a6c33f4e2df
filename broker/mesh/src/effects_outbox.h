// MeshRouter's outbox (docs/mesh.md, "Cross-shard effects"): the actor runtime writes a turn's
// effects on other nodes' shards (tells, enqueues) into the outbox in the turn's transaction; this
// thread sends each shard's waiting effects to its owner, in order, one batch per shard at a time,
// and removes what the owner says it applied (exactly once there). Effects whose owner is away
// wait, retried every 500 ms.
//
// Thread-safety: written() and the counters from any thread; the rest from the router's.
#pragma once

#include "shard_routes.h"

#include <roost/broker/local_router.h>
#include <roost/broker/mesh.h>
#include <roost/core/thread_annotations.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <set>
#include <thread>

namespace roost::durable {
class OutboxStore;
class Committer;
}  // namespace roost::durable

namespace roost::broker {

class EffectsOutbox {
 public:
  // Starts the delivering thread.
  EffectsOutbox(const std::atomic<Mesh*>& mesh, ShardRoutes& routes, LocalRouter& local,
                durable::OutboxStore& outbox, durable::Committer& committer);
  ~EffectsOutbox() { stop(); }
  EffectsOutbox(const EffectsOutbox&) = delete;
  EffectsOutbox& operator=(const EffectsOutbox&) = delete;

  // More effects were written (committer thread): deliver them now.
  void written();
  void stop();
  std::uint64_t entries() const;
  std::uint64_t delivered() const { return delivered_.load(); }
  std::uint64_t failures() const { return failures_.load(); }

 private:
  void loop();

  const std::atomic<Mesh*>& mesh_;
  ShardRoutes& routes_;
  LocalRouter& local_;
  durable::OutboxStore& outbox_;
  durable::Committer& committer_;
  Mutex mu_;
  std::condition_variable cv_;
  bool wake_ ROOST_GUARDED_BY(mu_) = false;
  bool stop_ ROOST_GUARDED_BY(mu_) = false;
  std::set<std::uint32_t> in_flight_ ROOST_GUARDED_BY(mu_);  // shards being delivered
  std::thread thread_;
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> failures_{0};
};

}  // namespace roost::broker
