// OutboxStore: the mesh's exactly-once path for a turn's effects on another node's shard
// (docs/mesh.md, "Effects across shards").
//
// On the origin, a turn's tell/enqueue to a shard this node does not own is written into the
// outbox in the turn's own transaction (atomic with the consumption of its mail), numbered from a
// counter that never goes back; it is deleted once the shard's owner says it applied it. On the
// target, the highest outbox number applied per (origin node, shard) is kept in the same
// transaction as the effect, so a delivery repeated after a lost answer is applied once.
//
// Tables (keys big-endian):
//   outbox   shard u32 + seq u64 → effect
//   meshin   origin + '\0' + shard u32 → last applied seq u64;  "\0" + shard u32 → the outbox's next
//            seq for that shard (each shard's seqs run 1, 2, 3, … without a gap)
//   movemark shard u32 → shard count u32 + peer: a shard move this node was in when it could have
//            stopped between its data being written and the switch in etcd being settled (the
//            source from sending the finish until its copy is gone; the target from writing the
//            copy until the switch). At the next start such a shard stays closed until etcd says
//            whose it is: home here → kept; elsewhere → this node's copy is stale and removed.
#pragma once

#include <roost/core/mesh_types.h>
#include <roost/durable/env.h>

#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

namespace roost::durable {

class OutboxStore {
 public:
  // Opens (creating) the tables. REQUIRES: before concurrent use of `env`.
  explicit OutboxStore(Env& env);
  OutboxStore(const OutboxStore&) = delete;
  OutboxStore& operator=(const OutboxStore&) = delete;

  // --- inside a write transaction (committer thread) ---
  // Appends an effect for `shard`; returns its seq (also set in `effect`).
  std::uint64_t append_in(Txn& txn, std::uint32_t shard, MeshEffect& effect);
  // Removes the shard's entries up to and including `seq`.
  void remove_upto_in(Txn& txn, std::uint32_t shard, std::uint64_t seq);
  // (target) The last seq applied from `origin` for `shard` (0: none), and its update.
  std::uint64_t applied_in(Txn& txn, std::string_view origin, std::uint32_t shard);
  void set_applied_in(Txn& txn, std::string_view origin, std::uint32_t shard, std::uint64_t seq);

  // --- reads (any thread) ---
  // Waiting effects by shard, each shard's in seq order; at most `limit` per shard.
  std::map<std::uint32_t, std::vector<MeshEffect>> pending(std::size_t limit) const;
  std::uint64_t size() const;
  // (source of a shard move) The marks of `shard`: each origin's last applied seq.
  std::vector<std::pair<std::string, std::uint64_t>> marks(std::uint32_t shard) const;

  // Shard moves in an unsettled state (table movemark above).
  struct MoveMark {
    std::uint32_t shard = 0;
    std::uint32_t shards = 0;  // the mesh's shard count then
    std::string peer;          // the other side of the move
  };
  void set_move_mark_in(Txn& txn, const MoveMark& mark);
  void clear_move_mark_in(Txn& txn, std::uint32_t shard);
  std::vector<MoveMark> move_marks() const;

 private:
  Env& env_;
  MDB_dbi outbox_, meshin_, movemark_;
};

}  // namespace roost::durable
