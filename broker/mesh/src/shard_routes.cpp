#include "shard_routes.h"

#include <algorithm>

namespace roost::broker {

std::uint32_t ShardRoutes::queue_shard(std::string_view queue) const {
  Mesh* m = mesh_.load();
  return m == nullptr ? 0 : shard_of_queue(queue, m->shards());
}

std::uint32_t ShardRoutes::object_shard(std::string_view object_class, std::string_view name) const {
  Mesh* m = mesh_.load();
  return m == nullptr ? 0 : shard_of_object(object_class, name, m->shards());
}

std::optional<Error> ShardRoutes::owned_here(std::uint32_t shard) const {
  Mesh* m = mesh_.load();
  if (m == nullptr) return Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"};
  auto p = m->cached(shard);
  if (p && p->owner == m->options().node_name && m->serves(shard, p->epoch)) return std::nullopt;
  return owner_unavailable("shard " + std::to_string(shard) + " is served by " +
                           (p && !p->owner.empty() ? p->owner : std::string("no node now")));
}

void ShardRoutes::hold(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& shards) {
  MutexLock lock(held_mu_);
  held_.insert(held_.end(), shards.begin(), shards.end());
  any_held_ = !held_.empty();
}

void ShardRoutes::release(std::uint32_t shard) {
  MutexLock lock(held_mu_);
  std::erase_if(held_, [shard](const auto& h) { return h.first == shard; });
  any_held_ = !held_.empty();
}

bool ShardRoutes::held(std::uint32_t shard) const {
  MutexLock lock(held_mu_);
  return std::any_of(held_.begin(), held_.end(), [shard](const auto& h) { return h.first == shard; });
}

bool ShardRoutes::held_queue(std::string_view queue) const {
  if (!any_held_.load()) return false;
  MutexLock lock(held_mu_);
  return std::any_of(held_.begin(), held_.end(),
                     [&](const auto& h) { return shard_of_queue(queue, h.second) == h.first; });
}

bool ShardRoutes::held_object(std::string_view object_class, std::string_view name) const {
  MutexLock lock(held_mu_);
  return std::any_of(held_.begin(), held_.end(),
                     [&](const auto& h) { return shard_of_object(object_class, name, h.second) == h.first; });
}

}  // namespace roost::broker
