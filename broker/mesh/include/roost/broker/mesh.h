// Mesh membership (issue 15, first part; docs/mesh.md): a node started with `mesh_etcd` keeps a
// lease-backed key /{cluster}/members/{node_name} with its addresses in etcd, renews it every
// TTL/3 on its own thread, and lists the live members. The number of shards is fixed when the
// cluster is created (/{cluster}/config/shards, first writer wins).
//
// Fencing starts here: `lease_valid_until()` is the last renewal *sent* plus the TTL minus a
// margin (monotonic clock) — etcd restarts the TTL when it receives the renewal, so the lease
// cannot have expired before that instant. An owner must stop serving its shards by then.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <roost/core/error.h>
#include <roost/core/mesh_view.h>
#include <roost/core/thread_annotations.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/thread_pool.hpp>

namespace roost::broker {

class EtcdClient;

struct MeshOptions {
  std::string etcd;  // comma-separated http://host:port
  std::string cluster = "roost";
  std::string node_name;
  std::string mesh_advertise;    // the node's ZeroMQ mesh address
  std::string http_advertise;    // its HTTP gateway
  std::string native_advertise;  // its native endpoint
  std::uint32_t shards = 256;
  std::chrono::milliseconds lease_ttl{3000};
  // The cluster's auth_secret: this node's member entry carries a proof made with it, and entries
  // without a valid one are not members (never dialled, never homed a shard). Empty: mesh_insecure.
  std::string secret;
};

// The proof a member entry carries: HMAC of its name and addresses under the cluster secret (hex).
std::string member_proof(std::string_view secret, const std::string& name, const std::string& mesh,
                         const std::string& http, const std::string& native);

// Where a shard lives: its home (the node whose disk holds it; persistent) and its owner claim
// (lease-backed; its creation revision is the shard's epoch). Empty owner: nobody may serve it now.
struct ShardPlacement {
  std::uint32_t shard = 0;
  std::string home;
  std::string owner;
  std::int64_t epoch = 0;
};

struct MeshMember {
  std::string name, mesh, http, native;
  std::int64_t joined_revision = 0;  // the member key's create revision (a rejoin is a new one)
};

class Mesh final : public MeshView {
 public:
  explicit Mesh(MeshOptions options);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  // The mesh socket's address, once it is bound. REQUIRES: before start().
  void set_mesh_advertise(std::string address) { options_.mesh_advertise = std::move(address); }
  // Starts the membership thread. It keeps trying while etcd is unreachable (reported by
  // etcd_ok() and the logs), so a node may start before its etcd.
  void start();
  // Leaves the mesh: revokes the lease (the member key goes at once) and stops the thread.
  void stop();

  std::vector<MeshMember> members() const;  // as last listed
  bool etcd_ok() const { return etcd_ok_.load(); }
  bool joined() const { return lease_.load() != 0; }
  const std::string& node_name() const override { return options_.node_name; }
  std::uint32_t shards() const override { return shards_.load(); }
  std::chrono::steady_clock::time_point lease_valid_until() const;
  // Whether this node may commit writes now (Committer::set_fence): before it ever joined (it owns
  // nothing then, and serves no shard request), or while its lease is valid.
  bool may_commit() const {
    return !ever_valid_.load() || std::chrono::steady_clock::now() < lease_valid_until();
  }
  const MeshOptions& options() const { return options_; }
  // {"node", "cluster", "etcd": "ok"|"unreachable", "shards", "lease_ttl_ms", "members": [...]}.
  std::string status_json() const override;
  // roost_mesh_* Prometheus lines: members, etcd reachability, owned shards, lease time left,
  // failed renewals, ownership changes seen.
  std::string metrics_text() const override;

  // Placement: roost::shard_of_queue and roost::shard_of_object (core/mesh_view.h).
  // Of the live members, the one a new shard is homed on (rendezvous hashing).
  static std::string rendezvous(const std::vector<MeshMember>& members, std::uint32_t shard);
  // Of the live members' names, the home of a channel (rendezvous on the channel's name).
  static std::string channel_home(const std::vector<std::string>& names, std::string_view channel);
  // The shard's placement; a shard used for the first time is homed now (create-if-absent in
  // etcd: the first node to home it wins). Blocks on etcd.
  // `refresh`: ask etcd even when the table knows an owner (a forwarded request was refused). A
  // shard homed here that nobody owns is claimed at once.
  Result<ShardPlacement> resolve(std::uint32_t shard, bool refresh = false);
  // The same on the mesh's request thread: `done` is called there.
  void resolve_async(std::uint32_t shard, bool refresh, Callback<ShardPlacement> done);
  // The shard's placement as last listed, without a round trip (nullopt: not known here yet).
  std::optional<ShardPlacement> cached(std::uint32_t shard) const;
  // Whether this node owns `shard` under `epoch` now (claimed, and its lease valid by the fencing
  // clock): what a forwarded request needs to be served.
  bool serves(std::uint32_t shard, std::int64_t epoch) const override;
  // {"shard", "home", "owner", "epoch"} as JSON; kind is "queue" or "object" ("class/name").
  Result<std::string> placement_json(const std::string& kind, const std::string& name);
  // The same on the mesh's request thread (it talks to etcd): `done` is called there.
  void placement(std::string kind, std::string name, Callback<std::string> done) override;
  // Shards this node owns now (claimed, and its lease still valid by the fencing clock).
  std::vector<ShardPlacement> owned() const;

  // ---- shard moves (docs/mesh.md, "Moving shards") ------------------------------------------
  // Closes a shard on this node: serves() answers false for it, and the stores refuse writes to
  // its queues (queue_closed, asked where a write takes effect) until reopen_shard() — or for good
  // once the shard has moved away.
  void close_shard(std::uint32_t shard);
  void reopen_shard(std::uint32_t shard);
  bool shard_closed(std::uint32_t shard) const;
  bool any_closed() const { return closed_count_.load() != 0; }
  bool queue_closed(std::string_view queue) const;
  // (target) Takes a shard over from `from`, which owned it under `epoch`: one etcd transaction
  // makes this node its home and deletes that claim (refused if the claim changed), then this node
  // claims it. Answers the new epoch. Blocks on etcd.
  Result<std::int64_t> take_over(std::uint32_t shard, const std::string& from, std::int64_t epoch);
  // (source) A move failed: this node deletes its claim made at `epoch` and claims the shard anew
  // (a new epoch), so that the target's switch, if it still comes, finds the claim changed.
  // Answers the new epoch. Blocks on etcd.
  Result<std::int64_t> reclaim(std::uint32_t shard, std::int64_t epoch);
  // (source) The shard now lives on `to` under `epoch` (it stays closed here).
  void moved_away(std::uint32_t shard, const std::string& to, std::int64_t epoch);
  // Whether this node holds the shard's claim made at `epoch`, its lease valid (closed or not).
  bool holds(std::uint32_t shard, std::int64_t epoch) const;

 private:
  void run();
  bool tick();  // one renewal (or join) and listing; false when etcd did not answer
  // Claims the owner key of every shard homed here that nobody owns; refreshes the table.
  bool claim(EtcdClient& etcd);
  // Reads the live members from etcd into the table.
  bool list_members(EtcdClient& etcd);
  // Claims the owner key of one shard homed here (`p` gets the owner and epoch that hold).
  bool claim_one(EtcdClient& etcd, ShardPlacement& p);

  MeshOptions options_;
  std::thread thread_;
  std::unique_ptr<boost::asio::thread_pool> requests_;  // placement lookups (blocking etcd calls)
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ ROOST_GUARDED_BY(mu_) = false;
  std::vector<MeshMember> members_ ROOST_GUARDED_BY(mu_);
  std::set<std::string> unproven_ ROOST_GUARDED_BY(mu_);  // entries logged as not proving the secret
  std::map<std::uint32_t, ShardPlacement> shards_table_ ROOST_GUARDED_BY(mu_);  // as last listed
  // Shards closed here (moving away, or moved): one bit each (mesh_shards ≤ 65,536), read without a
  // lock on every write's commit.
  std::array<std::atomic<std::uint64_t>, 1024> closed_bits_{};
  std::atomic<std::size_t> closed_count_{0};

  std::atomic<bool> ever_valid_{false};
  std::atomic<bool> etcd_ok_{false};
  std::atomic<std::int64_t> lease_{0};
  std::atomic<std::uint32_t> shards_{0};
  std::atomic<std::int64_t> valid_until_ns_{0};  // steady clock
  std::atomic<std::uint64_t> failed_ticks_{0};   // renewals (or listings) etcd did not answer
  std::atomic<std::uint64_t> claims_{0};         // shards this node claimed
  std::atomic<std::uint64_t> owners_lost_{0};    // owners seen gone
};

}  // namespace roost::broker
