#include "roost/broker/mesh_router.h"

#include "channel_routes.h"
#include "effects_outbox.h"
#include "mesh_links.h"
#include "shard_routes.h"

#include <roost/broker/mesh.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/subject.h>
#include <roost/durable/committer.h>
#include <roost/durable/outbox_store.h>

#include <algorithm>

#include <boost/json.hpp>

namespace roost::broker {

namespace asio = boost::asio;

MeshRouter::MeshRouter(LocalRouter& local, asio::io_context& timers, MeshRouterOptions options)
    : local_(local),
      options_(std::move(options)),
      links_(std::make_unique<MeshLinks>(mesh_, options_.auth_secret, options_.request_timeout)),
      routes_(std::make_unique<ShardRoutes>(mesh_, *links_, timers)),
      channels_(std::make_unique<ChannelRoutes>(mesh_, *links_, local_, timers)) {}

MeshRouter::~MeshRouter() { stop(); }

void MeshRouter::stop() {
  channels_->stop();
  if (effects_) effects_->stop();
  links_->close();
}

void MeshRouter::set_outbox(durable::OutboxStore* outbox, durable::Committer* committer) {
  effects_ = std::make_unique<EffectsOutbox>(mesh_, *routes_, local_, *outbox, *committer);
}

void MeshRouter::outbox_written() {
  if (effects_) effects_->written();
}

void MeshRouter::set_link_loop(LinkLoop* loop) { links_->set_loop(loop); }

std::shared_ptr<PeerLink> MeshRouter::peer(const std::string& node) { return links_->to(node); }

bool MeshRouter::ready() {
  Mesh* m = mesh_.load();
  return m != nullptr && m->shards() != 0;
}

bool MeshRouter::shard_closed(std::uint32_t shard) {
  Mesh* m = mesh_.load();
  return (m != nullptr && m->shard_closed(shard)) || (routes_->any_held() && routes_->held(shard));
}

bool MeshRouter::object_closed(std::string_view object_class, std::string_view name) {
  Mesh* m = mesh_.load();
  return (m != nullptr && m->any_closed() && m->shards() != 0 &&
          m->shard_closed(routes_->object_shard(object_class, name))) ||
         (routes_->any_held() && routes_->held_object(object_class, name));
}

void MeshRouter::hold(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& shards) {
  routes_->hold(shards);
}

void MeshRouter::release(std::uint32_t shard) { routes_->release(shard); }

bool MeshRouter::held_queue(std::string_view queue) const { return routes_->held_queue(queue); }

std::optional<std::uint32_t> MeshRouter::remote_queue(std::string_view queue) {
  auto shard = routes_->queue_shard(queue);
  if (!routes_->owned_here(shard)) return std::nullopt;
  return shard;
}

std::optional<std::uint32_t> MeshRouter::remote_object(std::string_view object_class, std::string_view name) {
  auto shard = routes_->object_shard(object_class, name);
  if (!routes_->owned_here(shard)) return std::nullopt;
  return shard;
}

// ---- channels: ChannelRoutes ---------------------------------------------------------------------

Result<channels::SubscribeResult> MeshRouter::subscribe(const std::string& pattern,
                                                        std::shared_ptr<channels::Subscriber> subscriber,
                                                        const std::optional<channels::Since>& since) {
  return channels_->subscribe(pattern, std::move(subscriber), since);
}

void MeshRouter::unsubscribe(std::uint64_t subscription) { channels_->unsubscribe(subscription); }

Result<channels::PublishResult> MeshRouter::publish(const std::string& channel, std::string data,
                                                    ContentType content_type) {
  return channels_->publish(channel, std::move(data), content_type);
}

Result<std::size_t> MeshRouter::publish_many(const std::string& channel,
                                             std::vector<channels::Payload>& items) {
  return channels_->publish_many(channel, items);
}

void MeshRouter::publish_async(std::string channel, std::string data, ContentType content_type,
                               Callback<channels::PublishResult> done) {
  channels_->publish_async(std::move(channel), std::move(data), content_type, std::move(done));
}

void MeshRouter::turn_publish(const std::string& channel, std::string data, ContentType type) {
  if (auto r = publish(channel, std::move(data), type); !r) {
    module_logger("actors")->warn("an object's publish to {} failed: {}", channel, r.error().message);
  }
}

std::string MeshRouter::channel_home(std::string_view channel) const { return channels_->home(channel); }

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
  auto f = std::make_shared<ShardRoutes::Forward<QueueInfo>>();
  f->local = [this, name, patch](Callback<QueueInfo> d) { local_.put_queue(name, patch, std::move(d)); };
  f->remote = [name, patch](const std::shared_ptr<PeerLink>& l, Route r, Callback<QueueInfo> d) {
    l->put_queue(r, name, patch, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::delete_queue(std::string name, Callback<bool> done) {
  auto f = std::make_shared<ShardRoutes::Forward<bool>>();
  f->local = [this, name](Callback<bool> d) { local_.delete_queue(name, std::move(d)); };
  f->remote = [name](const std::shared_ptr<PeerLink>& l, Route r, Callback<bool> d) {
    l->delete_queue(r, name, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::purge_queue(std::string name, Callback<std::uint64_t> done) {
  auto f = std::make_shared<ShardRoutes::Forward<std::uint64_t>>();
  f->local = [this, name](Callback<std::uint64_t> d) { local_.purge_queue(name, std::move(d)); };
  f->remote = [name](const std::shared_ptr<PeerLink>& l, Route r, Callback<std::uint64_t> d) {
    l->purge_queue(r, name, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done) {
  auto f = std::make_shared<ShardRoutes::Forward<std::vector<LeasedMessage>>>();
  f->local = [this, name, max](Callback<std::vector<LeasedMessage>> d) {
    local_.peek(name, max, std::move(d));
  };
  f->remote = [name, max](const std::shared_ptr<PeerLink>& l, Route r,
                          Callback<std::vector<LeasedMessage>> d) { l->peek(r, name, max, std::move(d)); };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

Result<QueueInfo> MeshRouter::get_queue(const std::string& name) {
  if (auto e = routes_->owned_here(routes_->queue_shard(name))) return std::unexpected(*e);
  return local_.get_queue(name);
}

void MeshRouter::get_queue_async(std::string name, Callback<QueueInfo> done) {
  auto f = std::make_shared<ShardRoutes::Forward<QueueInfo>>();
  f->local = [this, name](Callback<QueueInfo> d) { d(local_.get_queue(name)); };
  f->remote = [name](const std::shared_ptr<PeerLink>& l, Route r, Callback<QueueInfo> d) {
    l->get_queue(r, name, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::enqueue(std::string name, std::vector<NewMessage> messages,
                         Callback<std::vector<std::string>> done) {
  auto f = std::make_shared<ShardRoutes::Forward<std::vector<std::string>>>();
  auto shared = std::make_shared<const std::vector<NewMessage>>(std::move(messages));
  f->local = [this, name, shared](Callback<std::vector<std::string>> d) {
    local_.enqueue(name, *shared, std::move(d));
  };
  f->remote = [name, shared](const std::shared_ptr<PeerLink>& l, Route r,
                             Callback<std::vector<std::string>> d) {
    l->enqueue(r, name, *shared, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::pull(std::string name, PullOptions options, std::uint64_t wait_ms,
                      Callback<std::vector<LeasedMessage>> done,
                      std::shared_ptr<const std::atomic<bool>> gone) {
  auto f = std::make_shared<ShardRoutes::Forward<std::vector<LeasedMessage>>>();
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
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
                     Callback<AckResult> done) {
  auto f = std::make_shared<ShardRoutes::Forward<AckResult>>();
  f->local = [this, name, acks, retries](Callback<AckResult> d) {
    local_.ack(name, acks, retries, std::move(d));
  };
  f->remote = [name, acks, retries](const std::shared_ptr<PeerLink>& l, Route r, Callback<AckResult> d) {
    l->ack(r, name, acks, retries, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::extend(std::string name, std::vector<std::string> leases,
                        std::uint64_t visibility_timeout_ms, Callback<ExtendResult> done) {
  auto f = std::make_shared<ShardRoutes::Forward<ExtendResult>>();
  f->local = [this, name, leases, visibility_timeout_ms](Callback<ExtendResult> d) {
    local_.extend(name, leases, visibility_timeout_ms, std::move(d));
  };
  f->remote = [name, leases, visibility_timeout_ms](const std::shared_ptr<PeerLink>& l, Route r,
                                                    Callback<ExtendResult> d) {
    l->extend(r, name, leases, visibility_timeout_ms, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->queue_shard(name), std::move(f));
}

void MeshRouter::redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done) {
  if (from == to)
    return done(std::unexpected(Error{ErrorCode::CONFLICT, "cannot redrive a queue into itself"}));
  if (!routes_->owned_here(routes_->queue_shard(from)) && !routes_->owned_here(routes_->queue_shard(to))) {
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
  auto f = std::make_shared<ShardRoutes::Forward<std::uint64_t>>();
  auto body = std::make_shared<const std::string>(std::move(data));
  f->local = [this, object_class, name, body, type](Callback<std::uint64_t> d) {
    local_.object_tell(object_class, name, *body, type, std::move(d));
  };
  f->remote = [object_class, name, body, type](const std::shared_ptr<PeerLink>& l, Route r,
                                               Callback<std::uint64_t> d) {
    l->tell(r, object_class, name, *body, type, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_call(std::string object_class, std::string name, std::string data, ContentType type,
                             std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  auto f = std::make_shared<ShardRoutes::Forward<ObjectReply>>();
  auto body = std::make_shared<const std::string>(std::move(data));
  f->local = [this, object_class, name, body, type, timeout_ms](Callback<ObjectReply> d) {
    local_.object_call(object_class, name, *body, type, timeout_ms, std::move(d));
  };
  f->remote = [object_class, name, body, type, timeout_ms](const std::shared_ptr<PeerLink>& l, Route r,
                                                           Callback<ObjectReply> d) {
    l->call(r, object_class, name, *body, type, timeout_ms, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_fetch(std::string object_class, std::string name, ObjectHttpRequest request,
                              std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  auto f = std::make_shared<ShardRoutes::Forward<ObjectReply>>();
  auto req = std::make_shared<const ObjectHttpRequest>(std::move(request));
  f->local = [this, object_class, name, req, timeout_ms](Callback<ObjectReply> d) {
    local_.object_fetch(object_class, name, *req, timeout_ms, std::move(d));
  };
  f->remote = [object_class, name, req, timeout_ms](const std::shared_ptr<PeerLink>& l, Route r,
                                                    Callback<ObjectReply> d) {
    l->fetch(r, object_class, name, *req, timeout_ms, std::move(d));
  };
  f->done = std::move(done);
  routes_->route(routes_->object_shard(object_class, name), std::move(f));
}

void MeshRouter::object_connect(std::string object_class, std::string name,
                                std::shared_ptr<ObjectSocket> socket, ObjectConnectRequest request,
                                Callback<std::uint64_t> done) {
  auto f = std::make_shared<ShardRoutes::Forward<std::uint64_t>>();
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
  routes_->route(routes_->object_shard(object_class, name), std::move(f));
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
  auto home = channels_->home(name);
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
  for (const auto& l : links_->states()) {
    links.push_back(
        boost::json::object{{"node", l.node}, {"url", l.url}, {"connected", l.connected}, {"down", l.down}});
  }
  auto& o = v.as_object();
  o["links"] = std::move(links);
  o["interest_entries"] = channels_->interest_entries();
  o["outbox_entries"] = effects_ ? effects_->entries() : 0;
  return boost::json::serialize(v);
}

std::string MeshRouter::forward_metrics() const {
  MetricsWriter w;
  w.counter("roost_mesh_forwarded_total", "Requests this node forwarded to the owner of their shard.",
            routes_->forwarded());
  w.counter("roost_mesh_refreshed_total",
            "Forwarded requests whose owner refused the route, sent again after reading etcd.",
            routes_->refreshed());
  w.counter("roost_mesh_no_owner_total", "Requests answered owner_unavailable: their shard had no owner.",
            routes_->no_owner());
  channels_->write_counters(w);
  w.counter("roost_mesh_sockets_forwarded_total",
            "WebSockets this node attached to objects owned by other nodes.", sockets_forwarded_.load());
  w.counter("roost_mesh_socket_link_losses_total",
            "Forwarded WebSockets closed (1012) because the link to the object's owner was lost.",
            socket_link_losses_.load());
  w.counter("roost_mesh_outbox_delivered_total",
            "Effects of this node's turns delivered to the owner of their shard (applied once there).",
            effects_ ? effects_->delivered() : 0);
  w.counter("roost_mesh_outbox_failures_total", "Outbox deliveries that failed (retried).",
            effects_ ? effects_->failures() : 0);
  w.gauge("roost_mesh_interest_entries", "Channel patterns this node holds on its peers (patterns × peers).",
          channels_->interest_entries());
  return std::move(w).text();
}

}  // namespace roost::broker
