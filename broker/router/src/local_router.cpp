#include "roost/broker/local_router.h"

#include <roost/broker/actor_runtime.h>
#include <roost/broker/push_delivery.h>
#include <roost/broker/remote_hosts.h>

#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sstream>

namespace roost::broker {

namespace asio = boost::asio;

LocalRouter::LocalRouter(durable::QueueStore& queues, durable::Committer& committer, durable::Env& env,
                         channels::Hub& hub, asio::io_context& timers, std::uint64_t max_message_bytes)
    : queues_(queues),
      committer_(committer),
      env_(env),
      hub_(hub),
      max_message_bytes_(max_message_bytes),
      polls_(queues, timers) {}

LocalRouter::~LocalRouter() { shutdown(); }

void LocalRouter::attach() {
  queues_.set_ready_listener([this](const std::string& q) { polls_.on_ready(q); });
}

void LocalRouter::shutdown() { polls_.shutdown(); }

void LocalRouter::put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) {
  PushDelivery* push = push_.load();
  if (patch.push && push != nullptr) {
    // A push target is checked against push_allowed_hosts where it would be used: here.
    if (auto e = push->check_target(*patch.push)) return done(std::unexpected(*e));
    return queues_.put_queue(std::move(name), std::move(patch),
                             [push, done = std::move(done)](Result<QueueInfo> r) mutable {
                               if (r) push->kick();
                               done(std::move(r));
                             });
  }
  queues_.put_queue(std::move(name), std::move(patch), std::move(done));
}
void LocalRouter::delete_queue(std::string name, Callback<bool> done) {
  queues_.delete_queue(std::move(name), std::move(done));
}
Result<QueueInfo> LocalRouter::get_queue(const std::string& name) { return queues_.get_queue(name); }
std::vector<QueueInfo> LocalRouter::list_queues() { return queues_.list_queues(); }
void LocalRouter::enqueue(std::string name, std::vector<NewMessage> messages,
                          Callback<std::vector<std::string>> done) {
  queues_.enqueue(std::move(name), std::move(messages), std::move(done));
}
void LocalRouter::ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
                      Callback<AckResult> done) {
  queues_.ack(std::move(name), std::move(acks), std::move(retries), std::move(done));
}
void LocalRouter::extend(std::string name, std::vector<std::string> leases,
                         std::uint64_t visibility_timeout_ms, Callback<ExtendResult> done) {
  queues_.extend(std::move(name), std::move(leases), visibility_timeout_ms, std::move(done));
}

void LocalRouter::redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done) {
  queues_.redrive(std::move(from), std::move(to), max, std::move(done));
}

void LocalRouter::purge_queue(std::string name, Callback<std::uint64_t> done) {
  queues_.purge(std::move(name), std::move(done));
}

void LocalRouter::peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done) {
  queues_.peek(std::move(name), max, std::move(done));
}

Result<channels::SubscribeResult> LocalRouter::subscribe(const std::string& pattern,
                                                         std::shared_ptr<channels::Subscriber> subscriber,
                                                         const std::optional<channels::Since>& since) {
  return hub_.subscribe(pattern, std::move(subscriber), since);
}
void LocalRouter::unsubscribe(std::uint64_t subscription) { hub_.unsubscribe(subscription); }
Result<channels::PublishResult> LocalRouter::publish(const std::string& channel, std::string data,
                                                     ContentType content_type) {
  return hub_.publish(channel, std::move(data), content_type);
}

channels::Presence LocalRouter::presence(const std::string& channel) { return hub_.presence(channel); }

void LocalRouter::presence_event(channels::MessageKind kind, std::string channel, std::string origin,
                                 std::size_t direct, std::uint64_t subscription) {
  MeshView* m = mesh_.load();
  if (m == nullptr) return;
  hub_.presence_from(kind, channel, origin, direct, subscription, m->node_name());
}

void LocalRouter::presence_relayed(channels::MessageKind kind, const std::string& channel,
                                   std::uint64_t subscribers, const std::string& origin,
                                   std::uint64_t subscription) {
  MeshView* m = mesh_.load();
  if (m == nullptr) return;
  hub_.presence_relayed(kind, channel, subscribers, origin, subscription, m->node_name());
}
const channels::NamespaceConfig& LocalRouter::channel_namespace(std::string_view channel) {
  return hub_.namespace_of(channel);
}

void LocalRouter::pull(std::string name, PullOptions options, std::uint64_t wait_ms,
                       Callback<std::vector<LeasedMessage>> done,
                       std::shared_ptr<const std::atomic<bool>> gone) {
  polls_.pull(std::move(name), options, wait_ms, std::move(done), std::move(gone));
}

std::string LocalRouter::metrics_text() {
  MetricsWriter w;
  auto queues = list_queues();
  auto per_queue = [&](const char* name, const char* type, const char* help, auto get) {
    w.family(name, type, help);
    for (const auto& q : queues) w.sample(name, {{"queue", q.name}}, get(q));
  };
  auto gauge = [&](const char* name, const char* help, auto get) { per_queue(name, "gauge", help, get); };
  auto counter = [&](const char* name, const char* help, auto get) { per_queue(name, "counter", help, get); };
  gauge("roost_queue_ready", "Messages visible and waiting for a pull.",
        [](const QueueInfo& q) { return q.stats.ready; });
  gauge("roost_queue_delayed", "Messages waiting for a delay or retry delay.",
        [](const QueueInfo& q) { return q.stats.delayed; });
  gauge("roost_queue_in_flight", "Messages leased and not yet acked.",
        [](const QueueInfo& q) { return q.stats.in_flight; });
  gauge("roost_queue_blocked", "Messages waiting behind an earlier message of their key.",
        [](const QueueInfo& q) { return q.stats.blocked; });
  gauge("roost_queue_bytes", "Body bytes held by the queue.",
        [](const QueueInfo& q) { return q.stats.bytes; });
  gauge("roost_queue_oldest_age_ms", "Age of the oldest message, in milliseconds.",
        [](const QueueInfo& q) { return q.stats.oldest_age_ms; });
  counter("roost_queue_enqueued_total", "Messages enqueued.",
          [](const QueueInfo& q) { return q.stats.enqueued; });
  counter("roost_queue_deduplicated_total", "Enqueues suppressed as duplicates.",
          [](const QueueInfo& q) { return q.stats.deduplicated; });
  counter("roost_queue_acked_total", "Messages acked.", [](const QueueInfo& q) { return q.stats.acked; });
  counter("roost_queue_retried_total", "Messages retried.",
          [](const QueueInfo& q) { return q.stats.retried; });
  counter("roost_queue_dead_lettered_total", "Messages that exhausted their retries.",
          [](const QueueInfo& q) { return q.stats.dead_lettered; });
  counter("roost_queue_dropped_total", "Exhausted messages dropped for lack of a DLQ.",
          [](const QueueInfo& q) { return q.stats.dropped; });
  counter("roost_queue_expired_total", "Messages removed by message_ttl_ms.",
          [](const QueueInfo& q) { return q.stats.expired; });

  const auto& m = committer_.metrics();
  auto histogram = [&](const char* name, const char* help, const durable::Histogram& h, double scale) {
    auto s = h.snapshot();
    w.histogram(name, help, durable::Histogram::kBounds, s.buckets, s.sum, s.count, scale);
  };
  histogram("roost_commit_seconds", "Group commit latency including fsync.", m.commit_us, 1e-6);
  histogram("roost_commit_batch_size", "Write operations per group commit.", m.group_ops, 1.0);
  w.counter("roost_commits_total", "Group commits.", m.commits.load());
  w.counter("roost_storage_full_total", "Writes refused because storage was full.",
            m.storage_full_errors.load());
  w.counter("roost_commits_fenced_total",
            "Write groups abandoned because this node's mesh lease may have run out (mesh).",
            m.fenced_groups.load());
  w.counter(
      "roost_commits_led_total",
      "Write groups committed by the thread that took their requests (the native endpoint), not the committer's.",
      m.led_groups.load());
  w.counter("roost_wal_records_total", "Write-ahead log records written.", env_.wal_stats().records);
  w.counter("roost_wal_checkpoints_total", "Write-ahead log checkpoints (data file flushed, base moved).",
            env_.wal_stats().checkpoints);
  w.gauge("roost_storage_used_bytes", "Bytes of the data file in use.", std::uint64_t{env_.used_bytes()});
  w.gauge("roost_storage_map_bytes", "Current LMDB map size.", std::uint64_t{env_.map_bytes()});
  w.counter("roost_channel_published_total", "Channel messages published.", hub_.published());
  w.counter("roost_channel_delivered_total", "Channel messages handed to subscribers.", hub_.delivered());
  w.gauge("roost_channel_subscriptions", "Live channel subscriptions.", std::uint64_t{hub_.subscriptions()});
  w.gauge("roost_channels", "Channels in memory (published to or subscribed to directly).",
          std::uint64_t{hub_.channels()});
  w.counter("roost_long_polls_abandoned_total",
            "Long polls ended without leasing because their client went away.", polls_.abandoned());
  w.counter("roost_long_polls_total", "Pulls that waited for messages.", polls_.count());
  if (actors_ != nullptr) w.append(actors_->metrics_text());
  if (hosts_ != nullptr) w.append(hosts_->metrics_text());
  if (MeshView* mesh = mesh_.load(); mesh != nullptr) w.append(mesh->metrics_text());
  if (extra_metrics_) w.append(extra_metrics_());
  return std::move(w).text();
}

namespace {
Error no_actors(std::string_view cls) {
  return Error{ErrorCode::CLASS_NOT_FOUND, "no actor class '" + std::string(cls) + "' on this node"};
}
}  // namespace

void LocalRouter::object_tell(std::string object_class, std::string name, std::string data, ContentType type,
                              Callback<std::uint64_t> done) {
  if (actors_ == nullptr) return done(std::unexpected(no_actors(object_class)));
  actors_->tell(std::move(object_class), std::move(name), std::move(data), type, std::move(done));
}

void LocalRouter::object_call(std::string object_class, std::string name, std::string data, ContentType type,
                              std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  if (actors_ == nullptr) return done(std::unexpected(no_actors(object_class)));
  actors_->call(std::move(object_class), std::move(name), std::move(data), type, timeout_ms, std::move(done));
}

void LocalRouter::object_fetch(std::string object_class, std::string name, ObjectHttpRequest request,
                               std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  if (actors_ == nullptr) return done(std::unexpected(no_actors(object_class)));
  actors_->fetch(std::move(object_class), std::move(name), std::move(request), timeout_ms, std::move(done));
}

void LocalRouter::object_connect(std::string object_class, std::string name,
                                 std::shared_ptr<ObjectSocket> socket, ObjectConnectRequest request,
                                 Callback<std::uint64_t> done) {
  if (actors_ == nullptr) return done(std::unexpected(no_actors(object_class)));
  actors_->connect(std::move(object_class), std::move(name), std::move(socket), std::move(request),
                   std::move(done));
}

void LocalRouter::object_socket_message(std::uint64_t socket, std::string text) {
  if (actors_ != nullptr) actors_->socket_message(socket, std::move(text));
}

void LocalRouter::object_socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason) {
  if (actors_ != nullptr) actors_->socket_closed(socket, code, std::move(reason));
}

Result<ObjectInfo> LocalRouter::object_info(const std::string& object_class, const std::string& name) {
  if (auto e = object_check(object_class, name)) return std::unexpected(*e);
  return actors_->info(object_class, name);
}

std::optional<Error> LocalRouter::object_check(std::string_view object_class, std::string_view name) {
  if (actors_ == nullptr) return no_actors(object_class);
  if (auto e = ActorRuntime::validate_class(object_class)) return e;
  if (!actors_->has_class(object_class)) return no_actors(object_class);
  return ActorRuntime::validate_name(name);
}

std::shared_ptr<HostSession> LocalRouter::host_connect(std::shared_ptr<HostLink> link, HostGrant grant) {
  if (hosts_ == nullptr) {
    link->close(1011, "this node takes no remote hosts");
    return nullptr;
  }
  return hosts_->connect(std::move(link), std::move(grant));
}

void LocalRouter::host_front(ObjectHttpRequest request, Callback<FrontReply> done) {
  if (hosts_ == nullptr) {
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "this node takes no remote hosts"}));
  }
  hosts_->front(std::move(request), std::move(done));
}

void LocalRouter::shard_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done) {
  auto* mover = mover_.load();
  if (mover == nullptr)
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "this node takes no shard moves"}));
  mover->on_copy(std::move(step), std::move(payload), std::move(done));
}

void LocalRouter::mesh_effects(std::string origin, std::uint32_t shard, std::vector<MeshEffect> effects,
                               Callback<std::uint64_t> done) {
  if (actors_ == nullptr) return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "no actor runtime"}));
  actors_->apply_mesh_effects(std::move(origin), shard, std::move(effects), std::move(done));
}

std::optional<std::string> LocalRouter::mesh_status() {
  MeshView* mesh = mesh_.load();
  if (mesh == nullptr) return std::nullopt;
  return mesh->status_json();
}

void LocalRouter::mesh_placement(std::string kind, std::string name, Callback<std::string> done) {
  MeshView* mesh = mesh_.load();
  if (mesh == nullptr) {
    return done(std::unexpected(Error{ErrorCode::NOT_FOUND, "this node is a single node (no mesh_etcd)"}));
  }
  mesh->placement(std::move(kind), std::move(name), std::move(done));
}

}  // namespace roost::broker
