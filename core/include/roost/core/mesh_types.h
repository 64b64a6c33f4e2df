// What crosses the mesh for a turn's effects on another node's shard (docs/mesh.md): a tell or an
// enqueue, numbered by its origin node's outbox.
#pragma once

#include <roost/core/queue_types.h>

#include <cstdint>
#include <string>

namespace roost {

struct MeshEffect {
  std::uint64_t seq = 0;           // the origin's outbox sequence (increasing, never reused)
  std::string queue;               // an enqueue to this queue, or (empty)
  std::string object_class, name;  // a tell to this object
  NewMessage message;              // a tell uses body and content type
};

// One step of a shard move (docs/mesh.md, "Moving shards"), source → target over the mesh. The
// payload is the step's data, encoded by the broker's shard mover.
enum class ShardCopyPhase : std::uint8_t {
  kBodies = 0,   // message bodies, copied while the source still serves the shard
  kQueues = 1,   // exported queues (records, message states, dedup), once the source closed it
  kMarks = 2,    // the outbox marks (origin → last effect applied) of the shard
  kFinish = 3,   // build the queues, take the shard over in etcd → the new epoch
  kAbort = 4,    // forget the move
  kObjects = 5,  // rows of the shard's objects (mailboxes, storage, alarms, subscriptions)
};

struct ShardCopy {
  std::uint64_t move = 0;  // the move's id (the source's choice)
  std::uint32_t shard = 0;
  ShardCopyPhase phase = ShardCopyPhase::kBodies;
  std::string origin;      // the source node
  std::int64_t epoch = 0;  // (finish) the source's claim on the shard
};

}  // namespace roost
