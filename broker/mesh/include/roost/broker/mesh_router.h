// MeshRouter: the Router of a node in a mesh (docs/mesh.md). It puts together the mesh room's
// parts, each in broker/mesh/src: the links to the peers (MeshLinks), where a queue or object
// request is served — here, or forwarded to its shard's owner (ShardRoutes) —, channels across
// nodes (ChannelRoutes: interest like NATS routes, channel homes), the outbox of effects on other
// nodes' shards (EffectsOutbox), and what the whole mesh answers (mesh_gather.cpp). Everything
// else (hosts, status, metrics) is the LocalRouter's. A WebSocket to an object owned elsewhere
// stays on this node and is attached on the owner.
//
// Thread-safety: as Router. Callbacks run on the mesh's request thread, a peer link's I/O thread
// (the client endpoint's thread, which drives the links), or wherever the LocalRouter runs them.
#pragma once

#include <roost/broker/actor_runtime.h>
#include <roost/broker/local_router.h>
#include <roost/broker/mesh.h>
#include <roost/client/peer.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>

namespace roost::durable {
class OutboxStore;
class Committer;
}  // namespace roost::durable

namespace roost::broker {

class MeshLinks;
class ShardRoutes;
class ChannelRoutes;
class EffectsOutbox;

struct MeshRouterOptions {
  // The cluster secret: signs this node's short-lived mesh credentials and derives the CURVE key of
  // peers' mesh sockets; empty (mesh_insecure): plain links, loopback peers.
  std::string auth_secret;
  std::chrono::milliseconds request_timeout{10'000};
};

// Shard moves as the router starts and lists them (POST /v1/mesh/moves): the ShardMover's.
class ShardMoves {
 public:
  virtual Result<std::string> start(std::uint32_t shard, std::string to) = 0;
  virtual std::string moves_json() const = 0;

 protected:
  ~ShardMoves() = default;
};

class MeshRouter final : public Router, public ActorRuntime::MeshEffects {
 public:
  MeshRouter(LocalRouter& local, boost::asio::io_context& timers, MeshRouterOptions options);
  ~MeshRouter() override;
  MeshRouter(const MeshRouter&) = delete;
  MeshRouter& operator=(const MeshRouter&) = delete;

  // Set once the mesh has started; until then sharded requests answer unavailable.
  void set_mesh(Mesh* mesh) { mesh_.store(mesh); }
  // Where the actor runtime writes effects on other nodes' shards; this router delivers them (a
  // thread sends each shard's waiting effects to its owner, in order, and removes what the owner
  // says it applied). REQUIRES: before the runtime starts.
  void set_outbox(durable::OutboxStore* outbox, durable::Committer* committer);

  // ActorRuntime::MeshEffects (committer thread).
  bool ready() override;
  std::optional<std::uint32_t> remote_queue(std::string_view queue) override;
  std::optional<std::uint32_t> remote_object(std::string_view object_class, std::string_view name) override;
  void outbox_written() override;
  void call(std::string object_class, std::string name, std::string data, ContentType type,
            std::uint64_t timeout_ms, Callback<ObjectReply> done) override {
    object_call(std::move(object_class), std::move(name), std::move(data), type, timeout_ms, std::move(done));
  }
  Result<channels::SubscribeResult> subscribe(const std::string& pattern,
                                              std::shared_ptr<channels::Subscriber> subscriber) override {
    return subscribe(pattern, std::move(subscriber), std::nullopt);
  }
  void turn_publish(const std::string& channel, std::string data, ContentType type) override;
  bool shard_closed(std::uint32_t shard) override;
  bool object_closed(std::string_view object_class, std::string_view name) override;
  // Shards a move left unsettled when the node stopped (durable::OutboxStore::MoveMark, with the
  // mesh's shard count then): closed here — queues, objects, alarms, effects — from before the
  // actor runtime starts until the shard mover has asked etcd whose they are and released them.
  void hold(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& shards);
  void release(std::uint32_t shard);
  bool held_queue(std::string_view queue) const;
  // Closes the peer links (what waits on them fails). Requests after it answer unavailable.
  void stop();
  // The loop that drives the links made from now on (the client endpoint's; null: each link has
  // its own thread).
  void set_link_loop(LinkLoop* loop);
  // The link to a live member (nullptr: not a live member, or this node).
  std::shared_ptr<PeerLink> peer(const std::string& node);
  // Shard moves: made by `mover` (POST /v1/mesh/moves). REQUIRES: before the gateway starts.
  void set_mover(ShardMoves* mover) { mover_ = mover; }
  Result<std::string> mesh_move(std::uint32_t shard, std::string to) override;
  std::optional<std::string> mesh_moves() override;
  // roost_mesh_forward* Prometheus lines.
  std::string forward_metrics() const;

  void put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) override;
  void delete_queue(std::string name, Callback<bool> done) override;
  Result<QueueInfo> get_queue(const std::string& name) override;
  void get_queue_async(std::string name, Callback<QueueInfo> done) override;
  std::vector<QueueInfo> list_queues() override { return local_.list_queues(); }
  // This node's queues and every live peer's (a peer that does not answer is left out, logged).
  void list_queues_async(Callback<std::vector<QueueInfo>> done) override;
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

  // Channels across nodes: ChannelRoutes (channel_routes.h).
  Result<channels::SubscribeResult> subscribe(const std::string& pattern,
                                              std::shared_ptr<channels::Subscriber> subscriber,
                                              const std::optional<channels::Since>& since) override;
  void unsubscribe(std::uint64_t subscription) override;
  Result<channels::PublishResult> publish(const std::string& channel, std::string data,
                                          ContentType content_type = ContentType::kJson) override;
  Result<std::size_t> publish_many(const std::string& channel,
                                   std::vector<channels::Payload>& items) override;
  void publish_async(std::string channel, std::string data, ContentType content_type,
                     Callback<channels::PublishResult> done) override;
  // The node that sequences `channel` now ("" before the mesh has members).
  std::string channel_home(std::string_view channel) const;
  channels::Presence presence(const std::string& channel) override { return local_.presence(channel); }
  // This node's subscribers and every live peer's (a peer that does not answer is left out, logged).
  void presence_async(std::string channel, Callback<channels::Presence> done) override;
  const channels::NamespaceConfig& channel_namespace(std::string_view channel) override {
    return local_.channel_namespace(channel);
  }

  void object_tell(std::string object_class, std::string name, std::string data, ContentType type,
                   Callback<std::uint64_t> done) override;
  void object_call(std::string object_class, std::string name, std::string data, ContentType type,
                   std::uint64_t timeout_ms, Callback<ObjectReply> done) override;
  void object_fetch(std::string object_class, std::string name, ObjectHttpRequest request,
                    std::uint64_t timeout_ms, Callback<ObjectReply> done) override;
  void object_connect(std::string object_class, std::string name, std::shared_ptr<ObjectSocket> socket,
                      ObjectConnectRequest request, Callback<std::uint64_t> done) override;
  // A WebSocket to an object another node owns stays here (the browser's connection) and is
  // attached there over the link (PeerLink::connect_socket): the object's frames come back through
  // it, the browser's go to it. Such sockets get ids with kForwardedSocket set.
  void object_socket_message(std::uint64_t socket, std::string text) override;
  void object_socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason) override;
  static constexpr std::uint64_t kForwardedSocket = std::uint64_t{1} << 63;
  Result<ObjectInfo> object_info(const std::string& object_class, const std::string& name) override {
    return local_.object_info(object_class, name);
  }
  std::optional<Error> object_check(std::string_view object_class, std::string_view name) override {
    return local_.object_check(object_class, name);
  }
  std::shared_ptr<HostSession> host_connect(std::shared_ptr<HostLink> link, HostGrant grant) override {
    return local_.host_connect(std::move(link), std::move(grant));
  }
  void host_front(ObjectHttpRequest request, Callback<FrontReply> done) override {
    local_.host_front(std::move(request), std::move(done));
  }
  // The mesh's status, with this node's links to its peers (connected or not) and what waits.
  std::optional<std::string> mesh_status() override;
  // ("channel", NAME): {"channel", "home"} — the node that sequences it now.
  void mesh_placement(std::string kind, std::string name, Callback<std::string> done) override;
  void mesh_effects(std::string origin, std::uint32_t shard, std::vector<MeshEffect> effects,
                    Callback<std::uint64_t> done) override {
    local_.mesh_effects(std::move(origin), shard, std::move(effects), std::move(done));
  }
  std::string metrics_text() override { return local_.metrics_text(); }
  std::uint64_t max_message_bytes() const override { return local_.max_message_bytes(); }

 private:
  LocalRouter& local_;
  ShardMoves* mover_ = nullptr;
  MeshRouterOptions options_;
  std::atomic<Mesh*> mesh_{nullptr};
  std::unique_ptr<MeshLinks> links_;
  std::unique_ptr<ShardRoutes> routes_;
  std::unique_ptr<ChannelRoutes> channels_;
  std::unique_ptr<EffectsOutbox> effects_;  // once set_outbox()
  // Sockets attached to objects on other nodes: by this node's id for them, the link and stream.
  struct ForwardedSocket {
    std::shared_ptr<PeerLink> link;
    std::uint64_t stream = 0;
  };
  Mutex sockets_mu_;
  std::unordered_map<std::uint64_t, ForwardedSocket> sockets_ ROOST_GUARDED_BY(sockets_mu_);
  std::atomic<std::uint64_t> next_socket_{1};
  std::atomic<std::uint64_t> sockets_forwarded_{0};
  std::atomic<std::uint64_t> socket_link_losses_{0};
};

}  // namespace roost::broker
