#include "roost/broker/mesh_router.h"

#include "mesh_interest.h"

#include <roost/broker/mesh.h>
#include <roost/core/auth.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/subject.h>
#include <roost/core/thread_name.h>
#include <roost/durable/committer.h>
#include <roost/durable/outbox_store.h>

#include <algorithm>

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

namespace roost::broker {

namespace asio = boost::asio;

namespace {
constexpr auto kNoOwnerPoll = std::chrono::milliseconds(100);
constexpr std::int64_t kMeshTokenSeconds = 300;  // a link's credentials, renewed at each hello

Error owner_unavailable(std::string why) { return Error{ErrorCode::OWNER_UNAVAILABLE, std::move(why)}; }
}  // namespace

// One request on its way to its shard's owner: how to serve it here, how to send it there, and
// whom to answer (once).
template <class T>
struct MeshRouter::Forward {
  std::uint32_t shard = 0;
  std::function<void(Callback<T>)> local;
  std::function<void(const std::shared_ptr<PeerLink>&, Route, Callback<T>)> remote;
  Callback<T> done;
  bool refreshed = false;                            // the placement was read again from etcd once
  std::chrono::steady_clock::time_point wait_owner;  // until when a shard without owner is waited for
};

MeshRouter::MeshRouter(LocalRouter& local, asio::io_context& timers, MeshRouterOptions options)
    : local_(local),
      timers_(timers),
      presence_strand_(asio::make_strand(timers)),
      options_(std::move(options)) {
  // A link dials a peer's mesh socket over CURVE with the key pair the cluster secret derives: a
  // member that cannot prove the secret never completes the handshake, and so never sees the
  // credentials (issue 26 §1).
  if (!options_.auth_secret.empty()) curve_server_key_ = mesh_curve_keys(options_.auth_secret).public_key;
  for (auto& p : local_.history_patterns()) history_interest_[p] = 1;
  // Join/leave events of direct subscriptions go to the channel's home, which announces them with
  // the whole mesh's count (in order, through one strand: a join and its leave arrive in order).
  local_.set_presence_hook([this](channels::MessageKind kind, const std::string& channel, std::size_t direct,
                                  std::uint64_t subscription) {
    Mesh* m = mesh_.load();
    if (m == nullptr) return false;
    auto home = channel_home(channel);
    if (home.empty()) return false;
    asio::post(presence_strand_,
               [this, kind, channel, direct, subscription, home, self = m->options().node_name] {
                 if (home == self) return local_.presence_event(kind, channel, self, direct, subscription);
                 auto link = link_to(home);
                 if (!link || link->down()) {
                   presence_unroutable_.fetch_add(1, std::memory_order_relaxed);
                   return;  // at most once, as channel messages
                 }
                 link->presence_event(channel, kind, self, direct, subscription);
               });
    return true;
  });
  interest_thread_ = std::thread([this] {
    roost::name_this_thread("roost-interest");
    interest_loop();
  });
}

MeshRouter::~MeshRouter() { stop(); }

void MeshRouter::stop() {
  local_.set_presence_hook(nullptr);  // joins and leaves from now on are this node's own
  {
    MutexLock lock(outbox_mu_);
    outbox_stop_ = true;
    outbox_cv_.notify_all();
  }
  if (outbox_thread_.joinable()) outbox_thread_.join();
  {
    MutexLock lock(interest_mu_);
    interest_stop_ = true;
    interest_cv_.notify_all();
  }
  if (interest_thread_.joinable()) interest_thread_.join();
  peers_.clear();  // (the thread is gone: its state is ours)
  std::map<std::string, std::shared_ptr<PeerLink>> links;
  {
    MutexLock lock(mu_);
    stopped_ = true;
    links.swap(links_);
  }
  for (auto& [name, link] : links) link->close();
}

// ---- effects of this node's turns on other nodes' shards -------------------------------------------

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

void MeshRouter::set_outbox(durable::OutboxStore* outbox, durable::Committer* committer) {
  outbox_ = outbox;
  committer_ = committer;
  outbox_thread_ = std::thread([this] {
    roost::name_this_thread("roost-outbox");
    outbox_loop();
  });
}

bool MeshRouter::ready() {
  Mesh* m = mesh_.load();
  return m != nullptr && m->shards() != 0;
}

void MeshRouter::hold(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& shards) {
  MutexLock lock(held_mu_);
  held_.insert(held_.end(), shards.begin(), shards.end());
  any_held_ = !held_.empty();
}

void MeshRouter::release(std::uint32_t shard) {
  MutexLock lock(held_mu_);
  std::erase_if(held_, [shard](const auto& h) { return h.first == shard; });
  any_held_ = !held_.empty();
}

bool MeshRouter::held(std::uint32_t shard) const {
  MutexLock lock(held_mu_);
  return std::any_of(held_.begin(), held_.end(), [shard](const auto& h) { return h.first == shard; });
}

bool MeshRouter::held_queue(std::string_view queue) const {
  if (!any_held_.load()) return false;
  MutexLock lock(held_mu_);
  return std::any_of(held_.begin(), held_.end(),
                     [&](const auto& h) { return shard_of_queue(queue, h.second) == h.first; });
}

bool MeshRouter::held_object(std::string_view object_class, std::string_view name) const {
  MutexLock lock(held_mu_);
  return std::any_of(held_.begin(), held_.end(),
                     [&](const auto& h) { return shard_of_object(object_class, name, h.second) == h.first; });
}

std::optional<std::uint32_t> MeshRouter::remote_queue(std::string_view queue) {
  auto shard = queue_shard(queue);
  if (!owned_here(shard)) return std::nullopt;
  return shard;
}

std::optional<std::uint32_t> MeshRouter::remote_object(std::string_view object_class, std::string_view name) {
  auto shard = object_shard(object_class, name);
  if (!owned_here(shard)) return std::nullopt;
  return shard;
}

void MeshRouter::outbox_written() {
  MutexLock lock(outbox_mu_);
  outbox_wake_ = true;
  outbox_cv_.notify_all();
}

void MeshRouter::outbox_loop() {
  auto log = module_logger("mesh");
  for (;;) {
    {
      MutexLock lock(outbox_mu_);
      // Waiting effects are retried at this pace while their shard's owner is away.
      outbox_cv_.wait_for(lock.native(), std::chrono::milliseconds(500),
                          [this]() ROOST_REQUIRES(outbox_mu_) { return outbox_stop_ || outbox_wake_; });
      if (outbox_stop_) return;
      outbox_wake_ = false;
    }
    Mesh* m = mesh_.load();
    if (m == nullptr || m->shards() == 0) continue;
    std::map<std::uint32_t, std::vector<MeshEffect>> pending;
    try {
      pending = outbox_->pending(1000);
    } catch (const std::exception& e) {
      log->error("reading the outbox: {}", e.what());
      continue;
    }
    const std::string origin = m->options().node_name;
    for (auto& [shard, effects] : pending) {
      {
        MutexLock lock(outbox_mu_);
        if (!outbox_in_flight_.insert(shard).second) continue;  // its last batch is still out
      }
      auto release = [this, shard] {
        MutexLock lock(outbox_mu_);
        outbox_in_flight_.erase(shard);
      };
      auto batch = std::make_shared<const std::vector<MeshEffect>>(std::move(effects));
      auto f = std::make_shared<Forward<std::uint64_t>>();
      f->local = [this, origin, shard, batch](Callback<std::uint64_t> d) {
        local_.mesh_effects(origin, shard, *batch, std::move(d));
      };
      f->remote = [origin, batch](const std::shared_ptr<PeerLink>& l, Route r, Callback<std::uint64_t> d) {
        l->effects(r, origin, *batch, std::move(d));
      };
      f->done = [this, shard, release, n = batch->size(), log](Result<std::uint64_t> applied) {
        if (!applied) {
          outbox_failures_.fetch_add(1, std::memory_order_relaxed);
          log->debug("outbox: shard {} not delivered yet: {}", shard, applied.error().message);
          return release();
        }
        outbox_delivered_.fetch_add(n, std::memory_order_relaxed);
        committer_->submit(std::make_unique<OutboxRemoveOp>(*outbox_, shard, *applied, [this, release] {
          release();
          outbox_written();  // more may wait
        }));
      };
      route(shard, std::move(f));
    }
  }
}

std::uint32_t MeshRouter::queue_shard(std::string_view queue) const {
  Mesh* m = mesh_.load();
  return m == nullptr ? 0 : shard_of_queue(queue, m->shards());
}

std::uint32_t MeshRouter::object_shard(std::string_view object_class, std::string_view name) const {
  Mesh* m = mesh_.load();
  return m == nullptr ? 0 : shard_of_object(object_class, name, m->shards());
}

std::shared_ptr<PeerLink> MeshRouter::link_to(const std::string& node) {
  {
    // The fast path of every forwarded request: the link made already. A member's new address is
    // picked up by the interest thread (refresh_link for every live member, every 250 ms).
    MutexLock lock(mu_);
    if (stopped_) return nullptr;
    if (auto it = links_.find(node); it != links_.end() && it->second) return it->second;
  }
  return refresh_link(node);
}

std::shared_ptr<PeerLink> MeshRouter::refresh_link(const std::string& node) {
  Mesh* m = mesh_.load();
  if (m == nullptr) return nullptr;
  std::string address;
  for (const auto& member : m->members()) {
    if (member.name == node) address = member.mesh;
  }
  if (address.empty()) return nullptr;
  std::shared_ptr<PeerLink> old;  // closed once mu_ is released (a driven link waits for its loop)
  MutexLock lock(mu_);
  if (stopped_) return nullptr;
  auto& link = links_[node];
  if (!link || link->url() != address) {  // new, or the node came back elsewhere
    ClientOptions o;
    o.url = address;
    if (!options_.auth_secret.empty()) {
      // Short-lived mesh credentials (audience roost-mesh, this node's name), signed anew for each
      // hello: accepted on mesh sockets only, and worth little if ever seen.
      o.token_source = [secret = options_.auth_secret, self = m->options().node_name] {
        auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
        return sign_mesh_token(secret, self, now, kMeshTokenSeconds);
      };
      o.curve_server_key = curve_server_key_;
    }
    o.name = "roost-mesh/" + m->options().node_name;
    o.request_timeout = options_.request_timeout;
    o.connect_timeout = std::chrono::milliseconds(2000);
    // Silent for three heartbeats = down: half the lease TTL, so a dead owner shows before its
    // lease could have run out.
    o.heartbeat = std::max(std::chrono::milliseconds(100),
                           std::chrono::duration_cast<std::chrono::milliseconds>(m->options().lease_ttl / 6));
    old = std::move(link);
    // Driven by the client endpoint's thread when there is one: a request forwarded from there
    // crosses no other thread of this node.
    link = PeerLink::open(std::move(o), link_loop_.load());
    module_logger("mesh")->info("link to {} at {}", node, address);
  }
  auto result = link;
  lock.unlock();
  if (old) old->close();
  return result;
}

template <class T>
void MeshRouter::route(std::uint32_t shard, std::shared_ptr<Forward<T>> f) {
  f->shard = shard;
  Mesh* m = mesh_.load();
  if (m == nullptr || m->shards() == 0)
    return f->done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"}));
  if (auto p = m->cached(shard); p && !p->owner.empty()) return go(std::move(f), *p);
  m->resolve_async(shard, false,
                   [this, f](Result<ShardPlacement> p) mutable { go(std::move(f), std::move(p)); });
}

template <class T>
void MeshRouter::go(std::shared_ptr<Forward<T>> f, Result<ShardPlacement> placement) {
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
      auto timer = std::make_shared<asio::steady_timer>(timers_, kNoOwnerPoll);
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
  auto link = link_to(p.owner);
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

Result<std::string> MeshRouter::mesh_move(std::uint32_t shard, std::string to) {
  if (mover_ == nullptr) return std::unexpected(Error{ErrorCode::UNAVAILABLE, "shard moves are not set up"});
  return mover_->start(shard, std::move(to));
}

std::optional<std::string> MeshRouter::mesh_moves() {
  if (mover_ == nullptr) return std::nullopt;
  return mover_->moves_json();
}

// ---- queues --------------------------------------------------------------------------------------

void MeshRouter::put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) {
  auto f = std::make_shared<Forward<QueueInfo>>();
  f->local = [this, name, patch](Callback<QueueInfo> d) { local_.put_queue(name, patch, std::move(d)); };
  f->remote = [name, patch](const std::shared_ptr<PeerLink>& l, Route r, Callback<QueueInfo> d) {
    l->put_queue(r, name, patch, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::delete_queue(std::string name, Callback<bool> done) {
  auto f = std::make_shared<Forward<bool>>();
  f->local = [this, name](Callback<bool> d) { local_.delete_queue(name, std::move(d)); };
  f->remote = [name](const std::shared_ptr<PeerLink>& l, Route r, Callback<bool> d) {
    l->delete_queue(r, name, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::purge_queue(std::string name, Callback<std::uint64_t> done) {
  auto f = std::make_shared<Forward<std::uint64_t>>();
  f->local = [this, name](Callback<std::uint64_t> d) { local_.purge_queue(name, std::move(d)); };
  f->remote = [name](const std::shared_ptr<PeerLink>& l, Route r, Callback<std::uint64_t> d) {
    l->purge_queue(r, name, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done) {
  auto f = std::make_shared<Forward<std::vector<LeasedMessage>>>();
  f->local = [this, name, max](Callback<std::vector<LeasedMessage>> d) {
    local_.peek(name, max, std::move(d));
  };
  f->remote = [name, max](const std::shared_ptr<PeerLink>& l, Route r,
                          Callback<std::vector<LeasedMessage>> d) { l->peek(r, name, max, std::move(d)); };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

std::optional<Error> MeshRouter::owned_here(std::uint32_t shard) {
  Mesh* m = mesh_.load();
  if (m == nullptr) return Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"};
  auto p = m->cached(shard);
  if (p && p->owner == m->options().node_name && m->serves(shard, p->epoch)) return std::nullopt;
  return owner_unavailable("shard " + std::to_string(shard) + " is served by " +
                           (p && !p->owner.empty() ? p->owner : std::string("no node now")));
}

Result<QueueInfo> MeshRouter::get_queue(const std::string& name) {
  if (auto e = owned_here(queue_shard(name))) return std::unexpected(*e);
  return local_.get_queue(name);
}

void MeshRouter::get_queue_async(std::string name, Callback<QueueInfo> done) {
  auto f = std::make_shared<Forward<QueueInfo>>();
  f->local = [this, name](Callback<QueueInfo> d) { d(local_.get_queue(name)); };
  f->remote = [name](const std::shared_ptr<PeerLink>& l, Route r, Callback<QueueInfo> d) {
    l->get_queue(r, name, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::enqueue(std::string name, std::vector<NewMessage> messages,
                         Callback<std::vector<std::string>> done) {
  auto f = std::make_shared<Forward<std::vector<std::string>>>();
  auto shared = std::make_shared<const std::vector<NewMessage>>(std::move(messages));
  f->local = [this, name, shared](Callback<std::vector<std::string>> d) {
    local_.enqueue(name, *shared, std::move(d));
  };
  f->remote = [name, shared](const std::shared_ptr<PeerLink>& l, Route r,
                             Callback<std::vector<std::string>> d) {
    l->enqueue(r, name, *shared, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::pull(std::string name, PullOptions options, std::uint64_t wait_ms,
                      Callback<std::vector<LeasedMessage>> done,
                      std::shared_ptr<const std::atomic<bool>> gone) {
  auto f = std::make_shared<Forward<std::vector<LeasedMessage>>>();
  f->local = [this, name, options, wait_ms, gone](Callback<std::vector<LeasedMessage>> d) {
    local_.pull(name, options, wait_ms, std::move(d), gone);
  };
  f->remote = [name, options, wait_ms, gone](const std::shared_ptr<PeerLink>& l, Route r,
                                             Callback<std::vector<LeasedMessage>> d) {
    // A long poll the client gave up on may still lease messages on the owner: they go back at once.
    l->pull(r, name, options, wait_ms,
            [l, r, name, gone, d = std::move(d)](Result<std::vector<LeasedMessage>> got) mutable {
              if (got && !got->empty() && gone && gone->load()) {
                std::vector<RetryRequest> back;
                for (const auto& m : *got) back.push_back(RetryRequest{m.lease_id, 0});
                l->ack(r, name, {}, back, [](Result<AckResult>) {});
                return d(std::vector<LeasedMessage>{});
              }
              d(std::move(got));
            });
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
                     Callback<AckResult> done) {
  auto f = std::make_shared<Forward<AckResult>>();
  f->local = [this, name, acks, retries](Callback<AckResult> d) {
    local_.ack(name, acks, retries, std::move(d));
  };
  f->remote = [name, acks, retries](const std::shared_ptr<PeerLink>& l, Route r, Callback<AckResult> d) {
    l->ack(r, name, acks, retries, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::extend(std::string name, std::vector<std::string> leases,
                        std::uint64_t visibility_timeout_ms, Callback<ExtendResult> done) {
  auto f = std::make_shared<Forward<ExtendResult>>();
  f->local = [this, name, leases, visibility_timeout_ms](Callback<ExtendResult> d) {
    local_.extend(name, leases, visibility_timeout_ms, std::move(d));
  };
  f->remote = [name, leases, visibility_timeout_ms](const std::shared_ptr<PeerLink>& l, Route r,
                                                    Callback<ExtendResult> d) {
    l->extend(r, name, leases, visibility_timeout_ms, std::move(d));
  };
  f->done = std::move(done);
  route(queue_shard(name), std::move(f));
}

void MeshRouter::redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done) {
  if (from == to)
    return done(std::unexpected(Error{ErrorCode::CONFLICT, "cannot redrive a queue into itself"}));
  if (!owned_here(queue_shard(from)) && !owned_here(queue_shard(to))) {
    return local_.redrive(std::move(from), std::move(to), max, std::move(done));  // one node: atomic
  }
  // Across nodes: batches leased from `from`, enqueued into `to`, then acknowledged — at least
  // once (a batch whose ack is lost is moved again), and the messages get new ids there.
  struct Move : std::enable_shared_from_this<Move> {
    MeshRouter* router;
    std::string from, to;
    std::uint64_t max = 0, moved = 0;
    Callback<std::uint64_t> done;
    void step() {
      PullOptions po;
      po.batch_size = static_cast<std::uint32_t>(max == 0 ? 100 : std::min<std::uint64_t>(100, max - moved));
      po.visibility_timeout_ms = 60'000;
      router->pull(from, po, 0, [self = shared_from_this()](Result<std::vector<LeasedMessage>> got) {
        if (!got) return self->finish(std::unexpected(got.error()));
        if (got->empty()) return self->finish(self->moved);
        std::vector<NewMessage> copies;
        std::vector<std::string> leases;
        for (auto& m : *got) {
          copies.push_back(NewMessage{std::move(m.body), m.content_type, 0, {}, m.key});
          leases.push_back(m.lease_id);
        }
        self->router->enqueue(
            self->to, std::move(copies), [self, leases](Result<std::vector<std::string>> put) mutable {
              if (!put) {
                std::vector<RetryRequest> back;
                for (const auto& l : leases) back.push_back(RetryRequest{l, 0});
                self->router->ack(self->from, {}, std::move(back), [](Result<AckResult>) {});
                return self->finish(std::unexpected(put.error()));
              }
              auto n = leases.size();
              self->router->ack(self->from, std::move(leases), {}, [self, n](Result<AckResult> acked) {
                if (!acked) return self->finish(std::unexpected(acked.error()));
                self->moved += n;
                if (self->max != 0 && self->moved >= self->max) return self->finish(self->moved);
                self->step();
              });
            });
      });
    }
    void finish(Result<std::uint64_t> r) {
      // Part moved before an error still moved: say how much.
      if (!r && moved > 0)
        r = std::unexpected(
            Error{r.error().code, r.error().message + " (after " + std::to_string(moved) + " moved)"});
      done(std::move(r));
    }
  };
  auto m = std::make_shared<Move>();
  m->router = this;
  m->from = std::move(from);
  m->to = std::move(to);
  m->max = max;
  m->done = std::move(done);
  m->step();
}

// ---- objects -------------------------------------------------------------------------------------

void MeshRouter::object_tell(std::string object_class, std::string name, std::string data, ContentType type,
                             Callback<std::uint64_t> done) {
  auto f = std::make_shared<Forward<std::uint64_t>>();
  auto body = std::make_shared<const std::string>(std::move(data));
  f->local = [this, object_class, name, body, type](Callback<std::uint64_t> d) {
    local_.object_tell(object_class, name, *body, type, std::move(d));
  };
  f->remote = [object_class, name, body, type](const std::shared_ptr<PeerLink>& l, Route r,
                                               Callback<std::uint64_t> d) {
    l->tell(r, object_class, name, *body, type, std::move(d));
  };
  f->done = std::move(done);
  route(object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_call(std::string object_class, std::string name, std::string data, ContentType type,
                             std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  auto f = std::make_shared<Forward<ObjectReply>>();
  auto body = std::make_shared<const std::string>(std::move(data));
  f->local = [this, object_class, name, body, type, timeout_ms](Callback<ObjectReply> d) {
    local_.object_call(object_class, name, *body, type, timeout_ms, std::move(d));
  };
  f->remote = [object_class, name, body, type, timeout_ms](const std::shared_ptr<PeerLink>& l, Route r,
                                                           Callback<ObjectReply> d) {
    l->call(r, object_class, name, *body, type, timeout_ms, std::move(d));
  };
  f->done = std::move(done);
  route(object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_fetch(std::string object_class, std::string name, ObjectHttpRequest request,
                              std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  auto f = std::make_shared<Forward<ObjectReply>>();
  auto req = std::make_shared<const ObjectHttpRequest>(std::move(request));
  f->local = [this, object_class, name, req, timeout_ms](Callback<ObjectReply> d) {
    local_.object_fetch(object_class, name, *req, timeout_ms, std::move(d));
  };
  f->remote = [object_class, name, req, timeout_ms](const std::shared_ptr<PeerLink>& l, Route r,
                                                    Callback<ObjectReply> d) {
    l->fetch(r, object_class, name, *req, timeout_ms, std::move(d));
  };
  f->done = std::move(done);
  route(object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_connect(std::string object_class, std::string name,
                                std::shared_ptr<ObjectSocket> socket, ObjectConnectRequest request,
                                Callback<std::uint64_t> done) {
  auto f = std::make_shared<Forward<std::uint64_t>>();
  auto req = std::make_shared<const ObjectConnectRequest>(std::move(request));
  f->local = [this, object_class, name, socket, req](Callback<std::uint64_t> d) {
    local_.object_connect(object_class, name, socket, *req, std::move(d));
  };
  f->remote = [this, object_class, name, socket, req](const std::shared_ptr<PeerLink>& l, Route r,
                                                      Callback<std::uint64_t> d) {
    // The object's frames and close, on the link's I/O thread: the gateway's socket queues them.
    PeerLink::SocketHandlers h;
    h.on_frame = [socket](std::string_view text) { socket->send(std::string(text)); };
    h.on_close = [this, socket](std::uint16_t code, std::string reason) {
      if (code == 1012) socket_link_losses_.fetch_add(1, std::memory_order_relaxed);
      socket->close(code, std::move(reason));
    };
    // (0: the owner's call timeout bounds its on_connect.)
    l->connect_socket(r, object_class, name, *req, std::move(h), 0,
                      [this, l, d = std::move(d)](Result<std::uint64_t> stream) mutable {
                        if (!stream) return d(std::unexpected(stream.error()));
                        const std::uint64_t mine = kForwardedSocket | next_socket_.fetch_add(1);
                        {
                          MutexLock lock(sockets_mu_);
                          sockets_[mine] = ForwardedSocket{l, *stream};
                        }
                        sockets_forwarded_.fetch_add(1, std::memory_order_relaxed);
                        d(mine);
                      });
  };
  f->done = std::move(done);
  route(object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_socket_message(std::uint64_t socket, std::string text) {
  if ((socket & kForwardedSocket) == 0) return local_.object_socket_message(socket, std::move(text));
  std::shared_ptr<PeerLink> link;
  std::uint64_t stream = 0;
  {
    MutexLock lock(sockets_mu_);
    auto it = sockets_.find(socket);
    if (it == sockets_.end()) return;
    link = it->second.link;
    stream = it->second.stream;
  }
  link->socket_send(stream, text);
}

void MeshRouter::object_socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason) {
  if ((socket & kForwardedSocket) == 0) return local_.object_socket_closed(socket, code, std::move(reason));
  ForwardedSocket f;
  {
    MutexLock lock(sockets_mu_);
    auto it = sockets_.find(socket);
    if (it == sockets_.end()) return;
    f = std::move(it->second);
    sockets_.erase(it);
  }
  f.link->socket_close(f.stream, code, reason);
}

void MeshRouter::mesh_placement(std::string kind, std::string name, Callback<std::string> done) {
  if (kind != "channel") return local_.mesh_placement(std::move(kind), std::move(name), std::move(done));
  if (auto e = channels::validate_subject(name)) return done(std::unexpected(*e));
  auto home = channel_home(name);
  if (home.empty()) return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"}));
  done(boost::json::serialize(boost::json::object{{"channel", name}, {"home", home}}));
}

std::optional<std::string> MeshRouter::mesh_status() {
  auto base = local_.mesh_status();
  if (!base) return base;
  boost::system::error_code ec;
  auto v = boost::json::parse(*base, ec);
  if (ec || !v.is_object()) return base;
  boost::json::array links;
  {
    MutexLock lock(mu_);
    for (const auto& [node, link] : links_) {
      links.push_back(boost::json::object{
          {"node", node}, {"url", link->url()}, {"connected", link->connected()}, {"down", link->down()}});
    }
  }
  auto& o = v.as_object();
  o["links"] = std::move(links);
  o["interest_entries"] = interest_entries_.load();
  o["outbox_entries"] = outbox_ != nullptr ? outbox_->size() : 0;
  return boost::json::serialize(v);
}

std::string MeshRouter::forward_metrics() const {
  MetricsWriter w;
  w.counter("roost_mesh_forwarded_total", "Requests this node forwarded to the owner of their shard.",
            forwarded_.load());
  w.counter("roost_mesh_refreshed_total",
            "Forwarded requests whose owner refused the route, sent again after reading etcd.",
            refreshed_.load());
  w.counter("roost_mesh_no_owner_total", "Requests answered owner_unavailable: their shard had no owner.",
            no_owner_.load());
  w.counter("roost_mesh_publishes_forwarded_total",
            "Publishes this node sent to their channel's home (it sequences them).",
            publishes_forwarded_.load());
  w.counter("roost_mesh_publishes_unroutable_total",
            "Publishes dropped: their channel's home was not answering (at most once).",
            publishes_unroutable_.load());
  w.counter("roost_mesh_presence_unroutable_total",
            "Join/leave events dropped: their channel's home was not answering.",
            presence_unroutable_.load());
  w.counter("roost_mesh_channel_relayed_total",
            "Channel messages peers sent here for this node's subscribers.", relayed_.load());
  w.counter("roost_mesh_channel_duplicates_total",
            "Channel messages that came twice (overlapping patterns) and were relayed once.",
            relay_duplicates_.load());
  w.counter("roost_mesh_channel_lagged_total",
            "Channel messages a peer dropped for this node (its link lagged).", relay_lagged_.load());
  w.counter("roost_mesh_sockets_forwarded_total",
            "WebSockets this node attached to objects owned by other nodes.", sockets_forwarded_.load());
  w.counter("roost_mesh_socket_link_losses_total",
            "Forwarded WebSockets closed (1012) because the link to the object's owner was lost.",
            socket_link_losses_.load());
  w.counter("roost_mesh_outbox_delivered_total",
            "Effects of this node's turns delivered to the owner of their shard (applied once there).",
            outbox_delivered_.load());
  w.counter("roost_mesh_outbox_failures_total", "Outbox deliveries that failed (retried).",
            outbox_failures_.load());
  w.gauge("roost_mesh_interest_entries", "Channel patterns this node holds on its peers (patterns × peers).",
          interest_entries_.load());
  return std::move(w).text();
}

}  // namespace roost::broker
