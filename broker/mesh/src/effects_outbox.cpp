#include "effects_outbox.h"

#include <roost/core/log.h>
#include <roost/core/thread_name.h>
#include <roost/durable/committer.h>
#include <roost/durable/outbox_store.h>

#include <map>
#include <vector>

namespace roost::broker {

namespace {
// Drops what the owner applied from the outbox; then the shard may be sent again.
class OutboxRemoveOp final : public durable::Op {
 public:
  OutboxRemoveOp(durable::OutboxStore& outbox, std::uint32_t shard, std::uint64_t upto,
                 std::function<void()> done)
      : outbox_(outbox), shard_(shard), upto_(upto), done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override { outbox_.remove_upto_in(ctx.txn, shard_, upto_); }
  void complete(const Error*) override { done_(); }

 private:
  durable::OutboxStore& outbox_;
  std::uint32_t shard_;
  std::uint64_t upto_;
  std::function<void()> done_;
};
}  // namespace

EffectsOutbox::EffectsOutbox(const std::atomic<Mesh*>& mesh, ShardRoutes& routes, LocalRouter& local,
                             durable::OutboxStore& outbox, durable::Committer& committer)
    : mesh_(mesh), routes_(routes), local_(local), outbox_(outbox), committer_(committer) {
  thread_ = std::thread([this] {
    roost::name_this_thread("roost-outbox");
    loop();
  });
}

void EffectsOutbox::written() {
  MutexLock lock(mu_);
  wake_ = true;
  cv_.notify_all();
}

void EffectsOutbox::stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

std::uint64_t EffectsOutbox::entries() const { return outbox_.size(); }

void EffectsOutbox::loop() {
  auto log = module_logger("mesh");
  for (;;) {
    {
      MutexLock lock(mu_);
      // Waiting effects are retried at this pace while their shard's owner is away.
      cv_.wait_for(lock.native(), std::chrono::milliseconds(500),
                   [this]() ROOST_REQUIRES(mu_) { return stop_ || wake_; });
      if (stop_) return;
      wake_ = false;
    }
    Mesh* m = mesh_.load();
    if (m == nullptr || m->shards() == 0) continue;
    std::map<std::uint32_t, std::vector<MeshEffect>> pending;
    try {
      pending = outbox_.pending(1000);
    } catch (const std::exception& e) {
      log->error("reading the outbox: {}", e.what());
      continue;
    }
    const std::string origin = m->options().node_name;
    for (auto& [shard, effects] : pending) {
      {
        MutexLock lock(mu_);
        if (!in_flight_.insert(shard).second) continue;  // its last batch is still out
      }
      auto release = [this, shard] {
        MutexLock lock(mu_);
        in_flight_.erase(shard);
      };
      auto batch = std::make_shared<const std::vector<MeshEffect>>(std::move(effects));
      auto f = std::make_shared<ShardRoutes::Forward<std::uint64_t>>();
      f->local = [this, origin, shard, batch](Callback<std::uint64_t> d) {
        local_.mesh_effects(origin, shard, *batch, std::move(d));
      };
      f->remote = [origin, batch](const std::shared_ptr<PeerLink>& l, Route r, Callback<std::uint64_t> d) {
        l->effects(r, origin, *batch, std::move(d));
      };
      f->done = [this, shard, release, n = batch->size(), log](Result<std::uint64_t> applied) {
        if (!applied) {
          failures_.fetch_add(1, std::memory_order_relaxed);
          log->debug("outbox: shard {} not delivered yet: {}", shard, applied.error().message);
          return release();
        }
        delivered_.fetch_add(n, std::memory_order_relaxed);
        committer_.submit(std::make_unique<OutboxRemoveOp>(outbox_, shard, *applied, [this, release] {
          release();
          written();  // more may wait
        }));
      };
      routes_.route(shard, std::move(f));
    }
  }
}

}  // namespace roost::broker
