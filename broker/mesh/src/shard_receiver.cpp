#include "shard_receiver.h"

#include "shard_move_ops.h"

#include <roost/broker/actor_runtime.h>
#include <roost/core/byte_codec.h>
#include <roost/core/log.h>
#include <roost/durable/committer.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/outbox_store.h>
#include <roost/durable/queue_store.h>

#include <boost/asio/post.hpp>

#include <chrono>
#include <optional>
#include <set>
#include <vector>

namespace roost::broker {

using namespace shard_moves;

namespace {
constexpr std::size_t kMaxSessionBytes = std::size_t{1} << 30;  // exported queues kept for a finish
constexpr auto kSessionIdle = std::chrono::minutes(5);
}  // namespace

struct ShardReceiver::Session {
  std::string origin;
  std::uint32_t shard = 0;
  std::vector<std::string> exported;  // complete exported queues
  std::string partial;                // the one being received
  std::vector<std::pair<std::string, std::uint64_t>> marks;
  std::vector<std::string> objects;  // chunks of object rows
  std::size_t bytes = 0;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool finishing = false;
};

void ShardReceiver::on_copy(ShardCopy s, std::string payload, Callback<std::uint64_t> done) {
  Mesh* mesh = mesh_.load();
  if (mesh == nullptr || mesh->shards() == 0) {
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"}));
  }
  if (s.shard >= mesh->shards())
    return done(std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "no such shard"}));
  if (auto p = mesh->cached(s.shard);
      p && p->owner == mesh->options().node_name && s.phase != ShardCopyPhase::kAbort) {
    // This node serves the shard: what it holds of it is live, not a stale copy to replace.
    return done(
        std::unexpected(Error{ErrorCode::CONFLICT, "this node owns shard " + std::to_string(s.shard)}));
  }
  std::shared_ptr<Session> session;
  {
    MutexLock lock(mu_);
    // Sessions whose source went silent are forgotten (their bodies with them).
    auto now = std::chrono::steady_clock::now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->first != s.move && !it->second->finishing && now - it->second->last > kSessionIdle) {
        module_logger("mesh")->warn("shard {}: the move from {} went silent; forgetting it",
                                    it->second->shard, it->second->origin);
        queues_.import_abort(it->first, [](Result<std::uint64_t>) {});
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    if (s.phase == ShardCopyPhase::kAbort) {
      sessions_.erase(s.move);
    } else {
      auto& slot = sessions_[s.move];
      if (!slot) {
        slot = std::make_shared<Session>();
        slot->origin = s.origin;
        slot->shard = s.shard;
      }
      if (slot->origin != s.origin || slot->shard != s.shard) {
        return done(std::unexpected(Error{ErrorCode::CONFLICT, "move id reused"}));
      }
      if (slot->finishing) return done(std::unexpected(Error{ErrorCode::CONFLICT, "the move is finishing"}));
      slot->last = now;
      session = slot;
    }
  }
  switch (s.phase) {
    case ShardCopyPhase::kAbort: return queues_.import_abort(s.move, std::move(done));
    case ShardCopyPhase::kBodies: {
      std::vector<std::pair<std::uint64_t, std::string>> bodies;
      bytes::Reader c(payload);
      while (c.ok() && !c.done()) {
        auto seq = c.num<std::uint64_t>();
        auto raw = c.str64();
        if (c.ok()) bodies.emplace_back(seq, std::string(raw));
      }
      if (!c.ok()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "a bodies step is malformed"}));
      bytes_in_.fetch_add(payload.size(), std::memory_order_relaxed);
      return queues_.import_bodies(s.move, std::move(bodies), std::move(done));
    }
    case ShardCopyPhase::kQueues: {
      if (payload.empty()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "an empty queues step"}));
      MutexLock lock(mu_);
      session->bytes += payload.size();
      if (session->bytes > kMaxSessionBytes) {
        return done(std::unexpected(
            Error{ErrorCode::PAYLOAD_TOO_LARGE, "the shard's queues exceed 1 GiB of records"}));
      }
      bool more = payload[0] != '\0';
      session->partial.append(payload, 1);
      if (!more) session->exported.push_back(std::exchange(session->partial, {}));
      bytes_in_.fetch_add(payload.size(), std::memory_order_relaxed);
      return done(session->exported.size());
    }
    case ShardCopyPhase::kObjects: {
      if (payload.empty()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "an empty objects step"}));
      MutexLock lock(mu_);
      session->bytes += payload.size();
      if (session->bytes > kMaxSessionBytes) {
        return done(std::unexpected(Error{ErrorCode::PAYLOAD_TOO_LARGE, "the shard's records exceed 1 GiB"}));
      }
      bytes_in_.fetch_add(payload.size(), std::memory_order_relaxed);
      session->objects.push_back(std::move(payload));
      return done(session->objects.size());
    }
    case ShardCopyPhase::kMarks: {
      bytes::Reader c(payload);
      std::vector<std::pair<std::string, std::uint64_t>> marks;
      while (c.ok() && !c.done()) {
        auto origin = c.str64();
        auto seq = c.num<std::uint64_t>();
        if (c.ok()) marks.emplace_back(std::string(origin), seq);
      }
      if (!c.ok()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "a marks step is malformed"}));
      MutexLock lock(mu_);
      session->marks = std::move(marks);
      return done(session->marks.size());
    }
    case ShardCopyPhase::kFinish: break;
  }
  // Finish: the marks, then the queues (one transaction each), then the switch in etcd.
  {
    MutexLock lock(mu_);
    if (!session->partial.empty()) {
      return done(std::unexpected(Error{ErrorCode::MALFORMED, "an exported queue was not complete"}));
    }
    session->finishing = true;
  }
  auto forget = [this, id = s.move] {
    MutexLock lock(mu_);
    sessions_.erase(id);
  };
  auto shared_done = std::make_shared<Callback<std::uint64_t>>(std::move(done));
  // Until the switch, the shard's objects written here stay inert: closed, their alarms do not
  // fire and no turn of theirs commits (take_over opens it).
  mesh->close_shard(s.shard);
  auto drop_objects = [this](std::set<std::string> okeys) {
    if (okeys.empty()) return;
    committer_.submit(std::make_unique<ObjectsOp>(mailboxes_, std::vector<std::string>{},
                                                  std::vector<std::string>(okeys.begin(), okeys.end()),
                                                  [](Result<std::set<std::string>>) {}));
  };
  committer_.submit(std::make_unique<MarksOp>(
      outbox_, s.shard, session->marks, durable::OutboxStore::MoveMark{s.shard, mesh->shards(), s.origin},
      [this, s, session, shared_done, forget, drop_objects](Result<std::uint64_t> marked) mutable {
        if (!marked) {
          forget();
          queues_.import_abort(s.move, [](Result<std::uint64_t>) {});
          return (*shared_done)(std::unexpected(marked.error()));
        }
        committer_.submit(std::make_unique<ObjectsOp>(
            mailboxes_, std::move(session->objects), std::vector<std::string>{},
            [this, s, session, shared_done, forget,
             drop_objects](Result<std::set<std::string>> written) mutable {
              if (!written) {  // nothing of them was written
                forget();
                queues_.import_abort(s.move, [](Result<std::uint64_t>) {});
                unmark(s.shard);
                return (*shared_done)(std::unexpected(written.error()));
              }
              std::vector<std::string> names;
              for (const auto& blob : session->exported) {
                names.push_back(durable::QueueStore::exported_name(blob));
              }
              queues_.import_queues(
                  s.move, std::move(session->exported),
                  [this, s, names, okeys = std::move(*written), shared_done, forget,
                   drop_objects](Result<std::uint64_t> placed) mutable {
                    forget();
                    if (!placed) {
                      queues_.import_abort(s.move, [](Result<std::uint64_t>) {});
                      drop_objects(std::move(okeys));
                      unmark(s.shard);
                      return (*shared_done)(std::unexpected(placed.error()));
                    }
                    // The switch blocks on etcd: off the committer thread.
                    boost::asio::post(etcd_pool_, [this, s, names, okeys = std::move(okeys), placed = *placed,
                                                   shared_done, drop_objects]() mutable {
                      Mesh* m = mesh_.load();
                      auto epoch = m != nullptr ? m->take_over(s.shard, s.origin, s.epoch)
                                                : Result<std::int64_t>(std::unexpected(
                                                      Error{ErrorCode::UNAVAILABLE, "left the mesh"}));
                      if (!epoch) {
                        // Not switched: what was built here is not this node's.
                        module_logger("mesh")->warn("shard {}: taking it over from {} failed: {}", s.shard,
                                                    s.origin, epoch.error().message);
                        queues_.drop_queues(names, [](Result<std::uint64_t>) {});
                        drop_objects(std::move(okeys));
                        unmark(s.shard);
                        return (*shared_done)(std::unexpected(epoch.error()));
                      }
                      // Open here now (take_over did): the objects' mail and subscriptions load.
                      actors_.adopt(std::vector<std::string>(okeys.begin(), okeys.end()));
                      unmark(s.shard);
                      moved_in_.fetch_add(1, std::memory_order_relaxed);
                      module_logger("mesh")->info(
                          "shard {}: took it over from {} ({} queues, {} messages, {} objects), epoch {}",
                          s.shard, s.origin, names.size(), placed, okeys.size(), *epoch);
                      (*shared_done)(static_cast<std::uint64_t>(*epoch));
                    });
                  });
            }));
      }));
}

void ShardReceiver::unmark(std::uint32_t shard) {
  committer_.submit(std::make_unique<MoveMarkOp>(outbox_, shard, std::nullopt, [](Result<std::uint64_t>) {}));
}

}  // namespace roost::broker
