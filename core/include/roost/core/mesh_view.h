// The mesh as the rooms below it see it (docs/architecture.md, "broker/ rooms"): the LocalRouter
// and the native endpoint sit under broker/mesh/ and never include it; they are handed these
// interfaces, which the mesh's classes implement (Mesh: MeshView; ShardMover: ShardCopySink).
#pragma once

#include <roost/core/error.h>
#include <roost/core/mesh_types.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace roost {

// Placement: a queue is in shard hash(name) mod S, an object in hash(class, name) mod S — stable
// across nodes and versions. The hash is FNV-1a of the strings, each followed by a NUL.
std::uint64_t placement_hash(std::string_view a, std::string_view b = {}, std::string_view c = {});
std::uint32_t shard_of_queue(std::string_view queue, std::uint32_t shards);
std::uint32_t shard_of_object(std::string_view object_class, std::string_view name, std::uint32_t shards);

// This node's membership in a mesh. Thread-safety: every method may be called from any thread.
class MeshView {
 public:
  virtual const std::string& node_name() const = 0;
  // The cluster's shard count (0 until the node has read it from etcd).
  virtual std::uint32_t shards() const = 0;
  // Whether this node owns `shard` under `epoch` now (what a forwarded request needs to be served).
  virtual bool serves(std::uint32_t shard, std::int64_t epoch) const = 0;
  // The membership's status (JSON) and Prometheus lines.
  virtual std::string status_json() const = 0;
  virtual std::string metrics_text() const = 0;
  // Where a queue or object ("class/name") lives, as JSON; `done` runs on the mesh's thread.
  virtual void placement(std::string kind, std::string name, Callback<std::string> done) = 0;

 protected:
  ~MeshView() = default;
};

// Takes the steps of shard moves other nodes make to this one (arriving on its mesh socket).
class ShardCopySink {
 public:
  virtual void on_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done) = 0;

 protected:
  ~ShardCopySink() = default;
};

}  // namespace roost
