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

}  // namespace roost
