// MeshRouter's placement of queue and object requests (docs/mesh.md): a request is served here
// when this node owns the shard of what it names (and is not fenced), else sent over a link to the
// shard's owner with the route (shard, epoch) this node believes in. An owner that refuses the
// route (owner_unavailable: stale epoch, fenced, or gone) makes the placement be read again from
// etcd and the request tried once more. A shard with no owner answers owner_unavailable once its
// home has had a lease period to claim it. Shards a move left unsettled are held closed here.
//
// Thread-safety: every method may be called from any thread. A request's callbacks run on the
// mesh's request thread, a link's I/O thread, or wherever the LocalRouter runs them.
#pragma once

#include "mesh_links.h"

#include <roost/broker/mesh.h>
#include <roost/client/peer.h>
#include <roost/core/error.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roost::broker {

inline Error owner_unavailable(std::string why) {
  return Error{ErrorCode::OWNER_UNAVAILABLE, std::move(why)};
}

class ShardRoutes {
 public:
  // One request on its way to its shard's owner: how to serve it here, how to send it there, and
  // whom to answer (once).
  template <class T>
  struct Forward {
    std::uint32_t shard = 0;
    std::function<void(Callback<T>)> local;
    std::function<void(const std::shared_ptr<PeerLink>&, Route, Callback<T>)> remote;
    Callback<T> done;
    bool refreshed = false;                            // the placement was read again from etcd once
    std::chrono::steady_clock::time_point wait_owner;  // until when a shard without owner is waited for
  };

  ShardRoutes(const std::atomic<Mesh*>& mesh, MeshLinks& links, boost::asio::io_context& timers)
      : mesh_(mesh), links_(links), timers_(timers) {}
  ShardRoutes(const ShardRoutes&) = delete;
  ShardRoutes& operator=(const ShardRoutes&) = delete;

  // Serves `f` where its shard lives (f->local here, f->remote on the owner) and answers f->done.
  template <class T>
  void route(std::uint32_t shard, std::shared_ptr<Forward<T>> f);

  std::uint32_t queue_shard(std::string_view queue) const;
  std::uint32_t object_shard(std::string_view object_class, std::string_view name) const;
  // Nothing when this node owns `shard` now; else why not.
  std::optional<Error> owned_here(std::uint32_t shard) const;

  // Shards a move left unsettled when the node stopped, as (shard, shard count then): closed here
  // until the shard mover has asked etcd whose they are and released them.
  void hold(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& shards);
  void release(std::uint32_t shard);
  bool any_held() const { return any_held_.load(); }
  bool held(std::uint32_t shard) const;
  bool held_queue(std::string_view queue) const;
  bool held_object(std::string_view object_class, std::string_view name) const;

  std::uint64_t forwarded() const { return forwarded_.load(); }
  std::uint64_t refreshed() const { return refreshed_.load(); }
  std::uint64_t no_owner() const { return no_owner_.load(); }

 private:
  static constexpr auto kNoOwnerPoll = std::chrono::milliseconds(100);

  template <class T>
  void go(std::shared_ptr<Forward<T>> f, Result<ShardPlacement> placement);

  const std::atomic<Mesh*>& mesh_;
  MeshLinks& links_;
  boost::asio::io_context& timers_;
  mutable Mutex held_mu_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> held_ ROOST_GUARDED_BY(held_mu_);  // (shard, count)
  std::atomic<bool> any_held_{false};
  std::atomic<std::uint64_t> forwarded_{0};
  std::atomic<std::uint64_t> refreshed_{0};
  std::atomic<std::uint64_t> no_owner_{0};
};

template <class T>
void ShardRoutes::route(std::uint32_t shard, std::shared_ptr<Forward<T>> f) {
  f->shard = shard;
  Mesh* m = mesh_.load();
  if (m == nullptr || m->shards() == 0)
    return f->done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"}));
  if (auto p = m->cached(shard); p && !p->owner.empty()) return go(std::move(f), *p);
  m->resolve_async(shard, false,
                   [this, f](Result<ShardPlacement> p) mutable { go(std::move(f), std::move(p)); });
}

template <class T>
void ShardRoutes::go(std::shared_ptr<Forward<T>> f, Result<ShardPlacement> placement) {
  Mesh* m = mesh_.load();
  if (m == nullptr)
    return f->done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the node is leaving the mesh"}));
  if (!placement) return f->done(std::unexpected(placement.error()));
  const auto& p = *placement;
  auto refresh = [this, m, f] {
    f->refreshed = true;
    refreshed_.fetch_add(1, std::memory_order_relaxed);
    m->resolve_async(f->shard, true,
                     [this, f](Result<ShardPlacement> again) mutable { go(std::move(f), std::move(again)); });
  };
  if (p.owner.empty()) {
    // A shard homed a moment ago (or whose home just came back) is claimed by its home within a
    // lease period; a home that is not a live member will not claim it.
    bool home_live = false;
    for (const auto& member : m->members()) home_live = home_live || member.name == p.home;
    auto now = std::chrono::steady_clock::now();
    if (f->wait_owner == std::chrono::steady_clock::time_point{})
      f->wait_owner = now + m->options().lease_ttl;
    if (home_live && now < f->wait_owner) {
      auto timer = std::make_shared<boost::asio::steady_timer>(timers_, kNoOwnerPoll);
      timer->async_wait([this, m, f, timer](boost::system::error_code) mutable {
        m->resolve_async(f->shard, true, [this, f](Result<ShardPlacement> again) mutable {
          go(std::move(f), std::move(again));
        });
      });
      return;
    }
    no_owner_.fetch_add(1, std::memory_order_relaxed);
    return f->done(
        std::unexpected(owner_unavailable("shard " + std::to_string(p.shard) + " has no owner: its home " +
                                          p.home + (home_live ? " has not claimed it" : " is down"))));
  }
  if (p.owner == m->options().node_name) {
    if (m->serves(p.shard, p.epoch)) return f->local(std::move(f->done));
    if (!f->refreshed) return refresh();
    return f->done(std::unexpected(owner_unavailable("this node owns shard " + std::to_string(p.shard) +
                                                     " but cannot renew its lease now (fenced)")));
  }
  auto link = links_.to(p.owner);
  if (!link) {
    if (!f->refreshed) return refresh();
    return f->done(std::unexpected(owner_unavailable("the owner of shard " + std::to_string(p.shard) + ", " +
                                                     p.owner + ", is not a live member")));
  }
  if (link->down()) {
    // The owner stopped answering (killed, cut off, paused): fail now rather than after the
    // request's timeout; its lease runs out within the TTL, and it is back when it answers again.
    if (!f->refreshed) return refresh();
    no_owner_.fetch_add(1, std::memory_order_relaxed);
    return f->done(std::unexpected(owner_unavailable("the owner of shard " + std::to_string(p.shard) + ", " +
                                                     p.owner + ", is not answering")));
  }
  forwarded_.fetch_add(1, std::memory_order_relaxed);
  f->remote(link, Route{p.shard, p.epoch}, [f, refresh](Result<T> r) mutable {
    if (!r && r.error().code == ErrorCode::OWNER_UNAVAILABLE && !f->refreshed) return refresh();
    f->done(std::move(r));
  });
}

}  // namespace roost::broker
