// LocalRouter: the Router of this node's shards (of the whole node, without a mesh). Queues live in
// this node's QueueStore (long polls: LongPolls), channels in its Hub, objects in its ActorRuntime
// and remote hosts; push targets are checked by PushDelivery.
#pragma once

#include <roost/broker/long_polls.h>
#include <roost/channels/hub.h>
#include <roost/core/mesh_view.h>
#include <roost/core/router.h>
#include <roost/core/thread_annotations.h>
#include <roost/durable/committer.h>
#include <roost/durable/queue_store.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace roost::broker {

class PushDelivery;

class ActorRuntime;
class RemoteHosts;

class LocalRouter final : public Router {
 public:
  // `timers` runs long-poll deadlines. Call attach() before the committer starts.
  LocalRouter(durable::QueueStore& queues, durable::Committer& committer, durable::Env& env,
              channels::Hub& hub, boost::asio::io_context& timers, std::uint64_t max_message_bytes);
  ~LocalRouter() override;
  LocalRouter(const LocalRouter&) = delete;
  LocalRouter& operator=(const LocalRouter&) = delete;

  // Hooks readiness notifications. REQUIRES: before committer.start().
  void attach();
  // More Prometheus lines for /metrics (the native endpoint's). REQUIRES: before serving.
  void set_extra_metrics(std::function<std::string()> f) { extra_metrics_ = std::move(f); }
  // Where object requests go; without one they answer class_not_found. REQUIRES: before serving.
  void set_actors(ActorRuntime* actors) { actors_ = actors; }
  // Where remote actor hosts connect; without it they are refused. REQUIRES: before serving.
  void set_hosts(RemoteHosts* hosts) { hosts_ = hosts; }
  // The mesh membership, when the node is started with mesh_etcd (set once the gateway's
  // address is known, so while serving).
  void set_mesh(MeshView* mesh) { mesh_.store(mesh); }
  // Push delivery: checks a push target before it is stored, and hears of every change.
  void set_push(PushDelivery* push) { push_.store(push); }
  // Answers every waiting long poll (with no messages). New long polls answer at once.
  void shutdown();

  void put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) override;
  void delete_queue(std::string name, Callback<bool> done) override;
  Result<QueueInfo> get_queue(const std::string& name) override;
  std::vector<QueueInfo> list_queues() override;
  void enqueue(std::string name, std::vector<NewMessage> messages,
               Callback<std::vector<std::string>> done) override;
  using Router::pull;
  void pull(std::string name, PullOptions options, std::uint64_t wait_ms,
            Callback<std::vector<LeasedMessage>> done,
            std::shared_ptr<const std::atomic<bool>> gone) override;
  void ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
           Callback<AckResult> done) override;
  void extend(std::string name, std::vector<std::string> leases, std::uint64_t visibility_timeout_ms,
              Callback<ExtendResult> done) override;
  void redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done) override;
  void purge_queue(std::string name, Callback<std::uint64_t> done) override;
  void peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done) override;
  Result<channels::SubscribeResult> subscribe(const std::string& pattern,
                                              std::shared_ptr<channels::Subscriber> subscriber,
                                              const std::optional<channels::Since>& since) override;
  void unsubscribe(std::uint64_t subscription) override;
  Result<channels::PublishResult> publish(const std::string& channel, std::string data,
                                          ContentType content_type = ContentType::kJson) override;
  // Messages the channel's home (another node of the mesh) sequenced, for this node's
  // subscribers only, under the home's epoch and offsets (Hub::publish_sequenced).
  std::vector<std::string> history_patterns() const { return hub_.history_patterns(); }
  // (mesh) Join/leave events sequenced by channels' homes (channels::Hub's presence_* methods).
  void set_presence_hook(channels::Hub::PresenceHook hook) { hub_.set_presence_hook(std::move(hook)); }
  // On the home: a node's join/leave (from the mesh socket, or this node's own).
  void presence_event(channels::MessageKind kind, std::string channel, std::string origin, std::size_t direct,
                      std::uint64_t subscription) override;
  void presence_relayed(channels::MessageKind kind, const std::string& channel, std::uint64_t subscribers,
                        const std::string& origin, std::uint64_t subscription);
  void forget_presence_of(const std::string& node) { hub_.forget_presence_of(node); }
  std::vector<std::pair<std::string, std::size_t>> join_leave_counts() const {
    return hub_.join_leave_counts();
  }
  std::size_t publish_sequenced(const std::string& channel, std::vector<channels::Hub::Sequenced>& items) {
    return hub_.publish_sequenced(channel, items);
  }
  Result<std::size_t> publish_many(const std::string& channel,
                                   std::vector<channels::Payload>& items) override {
    return hub_.publish_many(channel, items);
  }
  channels::Presence presence(const std::string& channel) override;
  const channels::NamespaceConfig& channel_namespace(std::string_view channel) override;
  void object_tell(std::string object_class, std::string name, std::string data, ContentType type,
                   Callback<std::uint64_t> done) override;
  void object_fetch(std::string object_class, std::string name, ObjectHttpRequest request,
                    std::uint64_t timeout_ms, Callback<ObjectReply> done) override;
  void object_call(std::string object_class, std::string name, std::string data, ContentType type,
                   std::uint64_t timeout_ms, Callback<ObjectReply> done) override;
  void object_connect(std::string object_class, std::string name, std::shared_ptr<ObjectSocket> socket,
                      ObjectConnectRequest request, Callback<std::uint64_t> done) override;
  void object_socket_message(std::uint64_t socket, std::string text) override;
  void object_socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason) override;
  std::optional<Error> object_check(std::string_view object_class, std::string_view name) override;
  std::shared_ptr<HostSession> host_connect(std::shared_ptr<HostLink> link, HostGrant grant) override;
  void host_front(ObjectHttpRequest request, Callback<FrontReply> done) override;
  std::optional<std::string> mesh_status() override;
  void mesh_placement(std::string kind, std::string name, Callback<std::string> done) override;
  Result<ObjectInfo> object_info(const std::string& object_class, const std::string& name) override;
  // Wakes the long polls waiting on `queue` now: they pull again (and answer what the pull says:
  // owner_unavailable once the queue's shard is closed for a move).
  void wake_polls(const std::string& queue) { polls_.on_ready(queue); }
  // (mesh) Shard moves to this node arrive on its mesh socket; `mover` takes them.
  void set_mover(ShardCopySink* mover) { mover_.store(mover); }
  void shard_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done) override;
  void mesh_effects(std::string origin, std::uint32_t shard, std::vector<MeshEffect> effects,
                    Callback<std::uint64_t> done) override;
  std::string metrics_text() override;
  std::uint64_t max_message_bytes() const override { return max_message_bytes_; }

 private:
  durable::QueueStore& queues_;
  durable::Committer& committer_;
  durable::Env& env_;
  channels::Hub& hub_;
  std::uint64_t max_message_bytes_;
  LongPolls polls_;
  std::function<std::string()> extra_metrics_;
  ActorRuntime* actors_ = nullptr;
  RemoteHosts* hosts_ = nullptr;
  std::atomic<MeshView*> mesh_{nullptr};
  std::atomic<PushDelivery*> push_{nullptr};
  std::atomic<ShardCopySink*> mover_{nullptr};
};

}  // namespace roost::broker
