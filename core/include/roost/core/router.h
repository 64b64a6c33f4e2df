// The Router: the one in-process interface through which every front end (HTTP gateway today,
// the ZeroMQ endpoint and mesh later) reaches queues, channels and objects. It hides where a
// resource lives (this node or, with the mesh, its owner).
//
// Thread-safety: all methods may be called from any thread. Callbacks run on a broker thread
// (the committer or a timer thread), never on the caller's strand: post the result back.
#pragma once

#include <roost/core/channel_types.h>
#include <roost/core/error.h>
#include <roost/core/host_types.h>
#include <roost/core/mesh_types.h>
#include <roost/core/object_types.h>
#include <roost/core/queue_types.h>

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace roost {

// A WebSocket attached to an object, as the runtime sees it (implemented by the gateway).
// Thread-safe: called from the committer thread after a turn commits, and from the runtime.
class ObjectSocket {
 public:
  virtual ~ObjectSocket() = default;
  // Queues a text frame (the session applies its buffer limit; a socket that cannot keep up is
  // closed).
  virtual void send(std::string text) = 0;
  virtual void close(std::uint16_t code, std::string reason) = 0;
};

struct ObjectConnectRequest {
  std::string query;
  std::string origin;
  std::string protocol;
  std::string path;                                          // without the query
  std::vector<std::pair<std::string, std::string>> headers;  // as sent, but Authorization
  std::string client_address;  // the peer, or what a trusted proxy says it is (trusted_proxies)
  std::string claims;          // the verified token's payload as JSON ("" without a token)
};

// What an operator can see of one object.
struct ObjectInfo {
  std::string object_class, name;
  std::uint64_t waiting = 0;  // messages in its mailbox, not yet consumed
  bool in_memory = false;     // working, or holding sockets
  bool active = false;        // its actor exists (not hibernated)
  std::uint64_t sockets = 0;
  struct Alarm {
    std::string name;
    std::int64_t due_ms = 0;
    std::uint64_t every_ms = 0;
  };
  std::vector<Alarm> alarms;
};

class Router {
 public:
  virtual ~Router() = default;

  virtual void put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) = 0;
  virtual void delete_queue(std::string name, Callback<bool> done) = 0;
  // What this node knows of a queue now (in a mesh: only a queue whose shard it owns, or a copy).
  virtual Result<QueueInfo> get_queue(const std::string& name) = 0;
  // The queue as its owner knows it (in a mesh, a round trip to the owner).
  virtual void get_queue_async(std::string name, Callback<QueueInfo> done) { done(get_queue(name)); }
  virtual std::vector<QueueInfo> list_queues() = 0;
  // Every queue (in a mesh: this node's and every live peer's, gathered).
  virtual void list_queues_async(Callback<std::vector<QueueInfo>> done) { done(list_queues()); }
  virtual void enqueue(std::string name, std::vector<NewMessage> messages,
                       Callback<std::vector<std::string>> done) = 0;
  // wait_ms > 0 long-polls: answers as soon as a message is leased or the wait is over
  // (with no messages). Once `gone` is set (the client that asked went away) the poll leases
  // nothing more and ends, answered with no messages.
  virtual void pull(std::string name, PullOptions options, std::uint64_t wait_ms,
                    Callback<std::vector<LeasedMessage>> done,
                    std::shared_ptr<const std::atomic<bool>> gone) = 0;
  void pull(std::string name, PullOptions options, std::uint64_t wait_ms,
            Callback<std::vector<LeasedMessage>> done) {
    pull(std::move(name), options, wait_ms, std::move(done), nullptr);
  }
  virtual void ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
                   Callback<AckResult> done) = 0;
  virtual void extend(std::string name, std::vector<std::string> leases, std::uint64_t visibility_timeout_ms,
                      Callback<ExtendResult> done) = 0;
  virtual void redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done) = 0;
  // Deletes every message of the queue (waiting, delayed, leased); the queue stays. → how many.
  virtual void purge_queue(std::string name, Callback<std::uint64_t> done) = 0;
  // The next `max` messages a pull would lease, leasing nothing (lease_id empty).
  virtual void peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done) = 0;

  // Broadcast channels. Synchronous: the hub does no I/O.
  virtual Result<channels::SubscribeResult> subscribe(const std::string& pattern,
                                                      std::shared_ptr<channels::Subscriber> subscriber,
                                                      const std::optional<channels::Since>& since) = 0;
  virtual void unsubscribe(std::uint64_t subscription) = 0;
  virtual Result<channels::PublishResult> publish(const std::string& channel, std::string data,
                                                  ContentType content_type = ContentType::kJson) = 0;
  virtual Result<std::size_t> publish_many(const std::string& channel,
                                           std::vector<channels::Payload>& items) = 0;
  // A publish whose caller wants its place in the channel: the (offset, epoch) its sequencer
  // assigned. In a mesh the sequencer is the channel's home node, and publish() answers before
  // the home has (offset 0, epoch ""); this answers after it.
  virtual void publish_async(std::string channel, std::string data, ContentType content_type,
                             Callback<channels::PublishResult> done) {
    done(publish(channel, std::move(data), content_type));
  }
  virtual channels::Presence presence(const std::string& channel) = 0;
  // (mesh, the home of `channel`) Node `origin` says a direct subscription of it (`subscription`)
  // joined or left, leaving it `direct` of them: announced to every node with the mesh's count.
  virtual void presence_event(channels::MessageKind, std::string /*channel*/, std::string /*origin*/,
                              std::size_t /*direct*/, std::uint64_t /*subscription*/) {}
  // The channel's subscribers everywhere (in a mesh: this node's and every live peer's, gathered).
  virtual void presence_async(std::string channel, Callback<channels::Presence> done) {
    done(presence(channel));
  }
  virtual const channels::NamespaceConfig& channel_namespace(std::string_view channel) = 0;

  // Object mailboxes. `tell` answers the mailbox seq once the message is durable; `call` answers
  // the actor's reply (call_timeout after timeout_ms, 0 = the node's default); `connect` runs the
  // object's on_connect and answers the attached socket's id. Frames from an attached socket go to
  // object_socket_message, its end to object_socket_closed.
  virtual void object_tell(std::string object_class, std::string name, std::string data, ContentType type,
                           Callback<std::uint64_t> done) = 0;
  // An HTTP request to the object's on_fetch; answers its response (ObjectReply's status, headers
  // and data), after the turn committed. Errors as object_call.
  virtual void object_fetch(std::string object_class, std::string name, ObjectHttpRequest request,
                            std::uint64_t timeout_ms, Callback<ObjectReply> done) = 0;
  virtual void object_call(std::string object_class, std::string name, std::string data, ContentType type,
                           std::uint64_t timeout_ms, Callback<ObjectReply> done) = 0;
  virtual void object_connect(std::string object_class, std::string name,
                              std::shared_ptr<ObjectSocket> socket, ObjectConnectRequest request,
                              Callback<std::uint64_t> done) = 0;
  virtual void object_socket_message(std::uint64_t socket, std::string text) = 0;
  virtual void object_socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason) = 0;
  virtual Result<ObjectInfo> object_info(const std::string& object_class, const std::string& name) = 0;
  // Checks a class and an object name (class_not_found, invalid_name).
  virtual std::optional<Error> object_check(std::string_view object_class, std::string_view name) = 0;

  // A remote actor host connected (docs/hosts.md): the broker's side of the connection, which the
  // front end feeds the host's frames. `grant` bounds the classes it may register.
  virtual std::shared_ptr<HostSession> host_connect(std::shared_ptr<HostLink> link, HostGrant grant) = 0;
  // A request under one of app_routes, for the front code of a connected host (a Worker's
  // fetch): its response, or the object a WebSocket upgrade goes to. unavailable without such a
  // host; timeout after the node's call timeout.
  virtual void host_front(ObjectHttpRequest request, Callback<FrontReply> done) = 0;
  // The mesh as this node sees it (members, etcd reachability), as JSON; nullopt on a single node.
  virtual std::optional<std::string> mesh_status() = 0;
  // Where a queue ("queue", NAME) or an object ("object", "CLASS/NAME") lives in the mesh, as JSON
  // {shard, home, owner, epoch}; homes a shard used for the first time (etcd round trips, off the
  // caller's thread). not_found on a single node.
  virtual void mesh_placement(std::string kind, std::string name, Callback<std::string> done) = 0;
  // (mesh) A step of a shard move another node makes to this one (its mesh socket): the count
  // the step answers (bodies or queues stored; the new epoch for kFinish).
  virtual void shard_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done) {
    (void)step, (void)payload;
    done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "this node takes no shard moves"}));
  }
  // (mesh) Moves `shard`, which this node owns, to node `to`: the move runs in the background;
  // answers its status as JSON. not_found on a single node.
  virtual Result<std::string> mesh_move(std::uint32_t shard, std::string to) {
    (void)shard, (void)to;
    return std::unexpected(Error{ErrorCode::NOT_FOUND, "this node is a single node (no mesh_etcd)"});
  }
  // (mesh) The shard moves this node made (or makes now), as JSON; nullopt on a single node.
  virtual std::optional<std::string> mesh_moves() { return std::nullopt; }
  // (mesh) Effects of `origin`'s turns on this node's shard `shard`, from its outbox: applied once
  // each; answers the last seq applied from that origin for that shard.
  virtual void mesh_effects(std::string origin, std::uint32_t shard, std::vector<MeshEffect> effects,
                            Callback<std::uint64_t> done) {
    (void)origin, (void)shard, (void)effects;
    done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "this node does not take mesh effects"}));
  }
  // Prometheus text exposition of the broker's own metrics (queues, storage).
  virtual std::string metrics_text() = 0;
  // Limits the front ends enforce before calling in.
  virtual std::uint64_t max_message_bytes() const = 0;
};

}  // namespace roost
