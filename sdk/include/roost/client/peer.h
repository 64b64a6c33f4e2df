// PeerLink: a node's link to another node of the mesh (docs/mesh.md) — used by the broker, not by
// applications. It is the C++ client's connection (hello with a mesh token, heartbeats, reconnects
// with backoff, requests waiting while it is down) with asynchronous requests that carry a Route:
// the shard of the queue or object they name and the owner epoch the sender believes in. The peer
// serves them only while it owns that shard under that epoch (owner_unavailable otherwise).
//
// Thread-safety: every method may be called from any thread; callbacks run on the link's I/O
// thread — its own, or the thread of the LinkLoop that drives it (post anything long elsewhere).
#pragma once

#include <roost/client/client.h>
#include <roost/core/mesh_types.h>
#include <roost/core/object_types.h>
#include <roost/core/router.h>

#include <zmq.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace roost {

struct Route {
  std::uint32_t shard = 0;
  std::int64_t epoch = 0;
};

// The CURVE key pair of a mesh's sockets (Z85, 40 characters each), derived from the cluster's
// auth_secret: a node's mesh socket serves with the secret key, and a link dials it with the
// public key as the server key — so a link's credentials only ever reach a peer that holds the
// cluster secret (a member entry written by anyone else cannot complete the handshake).
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};
CurveKeyPair mesh_curve_keys(std::string_view cluster_secret);

class PeerLink;

// A thread's poll loop that can drive links (the node's client endpoint): a request forwarded from
// that thread then leaves and its answer comes back on it, crossing no other thread.
class LinkLoop {
 public:
  // The loop's thread while it runs (nullopt: not running).
  virtual std::optional<std::thread::id> loop_thread() = 0;
  // Takes `link` into the loop: from now on it polls link->poll_items() and calls link->turn()
  // after each poll, until turn() answers false, and link->end() when it stops. False: the loop
  // has stopped (the link then runs on its own thread).
  virtual bool adopt(std::shared_ptr<PeerLink> link) = 0;
  // The ZeroMQ context of the loop's own sockets: a link's socket joins it (null: its own), so one
  // ZeroMQ I/O thread carries both sides of a forwarded request.
  virtual zmq::context_t* zmq_context() { return nullptr; }

 protected:
  ~LinkLoop() = default;
};

class PeerLink {
 public:
  // Starts connecting in the background on its own I/O thread; requests made meanwhile wait (up
  // to their timeout).
  explicit PeerLink(ClientOptions options);
  // The same, driven by `loop` when it runs (callbacks then run on the loop's thread), else on its
  // own thread.
  static std::shared_ptr<PeerLink> open(ClientOptions options, LinkLoop* loop);
  ~PeerLink();
  PeerLink(const PeerLink&) = delete;
  PeerLink& operator=(const PeerLink&) = delete;

  void enqueue(Route route, const std::string& queue, const std::vector<NewMessage>& messages,
               Callback<std::vector<std::string>> done);
  void pull(Route route, const std::string& queue, const PullOptions& options, std::uint64_t wait_ms,
            Callback<std::vector<LeasedMessage>> done);
  void ack(Route route, const std::string& queue, const std::vector<std::string>& acks,
           const std::vector<RetryRequest>& retries, Callback<AckResult> done);
  void extend(Route route, const std::string& queue, const std::vector<std::string>& leases,
              std::uint64_t visibility_ms, Callback<ExtendResult> done);
  void put_queue(Route route, const std::string& name, const QueueConfigPatch& patch,
                 Callback<QueueInfo> done);
  void delete_queue(Route route, const std::string& name, Callback<bool> done);
  void get_queue(Route route, const std::string& name, Callback<QueueInfo> done);
  void purge_queue(Route route, const std::string& name, Callback<std::uint64_t> done);
  void peek(Route route, const std::string& queue, std::uint32_t max,
            Callback<std::vector<LeasedMessage>> done);
  void tell(Route route, const std::string& object_class, const std::string& name, std::string_view data,
            ContentType type, Callback<std::uint64_t> done);
  void call(Route route, const std::string& object_class, const std::string& name, std::string_view data,
            ContentType type, std::uint64_t timeout_ms, Callback<ObjectReply> done);

  // Effects of this node's turns on the peer's shard (route.shard), from this node's outbox, in
  // order; answers the last outbox seq the peer has applied from `origin` for that shard.
  void effects(Route route, const std::string& origin, const std::vector<MeshEffect>& effects,
               Callback<std::uint64_t> done);
  // An HTTP request to the object's on_fetch on its owner: its response (status, headers, body).
  void fetch(Route route, const std::string& object_class, const std::string& name,
             const ObjectHttpRequest& request, std::uint64_t timeout_ms, Callback<ObjectReply> done);
  // A WebSocket that reached this node, attached to an object the peer owns (its on_connect runs
  // there): `attached` answers the socket's stream once the object accepted it. The object's
  // frames and its close come to the handlers on the link's I/O thread (keep them short), in
  // order, until on_close — which also comes (1012) when the link's session ends (connection lost,
  // the peer restarted). The browser's frames go with socket_send, its end with socket_close.
  struct SocketHandlers {
    std::function<void(std::string_view)> on_frame;
    std::function<void(std::uint16_t code, std::string reason)> on_close;
  };
  void connect_socket(Route route, const std::string& object_class, const std::string& name,
                      const ObjectConnectRequest& request, SocketHandlers handlers, std::uint64_t timeout_ms,
                      Callback<std::uint64_t> attached);
  // Frames of an attached socket, in order; nothing once it ended.
  void socket_send(std::uint64_t stream, std::string_view text);
  // The browser closed the socket (or it failed): the object's on_close runs with code/reason.
  void socket_close(std::uint64_t stream, std::uint16_t code, std::string_view reason);
  // A publish to a channel whose home is the peer (no route: the home sequences it, never passes
  // it on). Fire and forget (batched with the publishes around it), or answered with the home's
  // offset and epoch.
  void publish(std::string_view channel, std::string_view data, ContentType type);
  void publish_async(const std::string& channel, std::string_view data, ContentType type,
                     Callback<PublishAck> done);
  // To the home of a channel: a direct subscription on this node (`origin`) joined or left it,
  // leaving `direct` of them here. Fire and forget.
  // (`kind`: join, leave, or data = only a report of the count, for a home that moved.)
  void presence_event(const std::string& channel, channels::MessageKind kind, const std::string& origin,
                      std::uint64_t direct, std::uint64_t subscription);
  // The peer's own subscribers of a channel (peers' interest not counted).
  void presence(const std::string& channel, Callback<channels::Presence> done);
  // One step of a shard move to the peer (its payload: the step's data) → the count it answers.
  void shard_copy(const ShardCopy& step, std::string payload, Callback<std::uint64_t> done);
  // The peer's own queues (no route: every node answers for its disk).
  void list_queues(Callback<std::vector<QueueInfo>> done);
  // Subscribes to `pattern` on the peer (live messages only) without waiting for its answer; the
  // subscription is made again after every reconnect. Ends with the Stream, or on an error
  // (options.on_error).
  std::unique_ptr<Stream> subscribe(const std::string& pattern,
                                    std::function<void(const ChannelMessage&)> handler,
                                    SubscribeOptions options);

  bool connected() const;
  // Not connected now, and either it was before (the peer went silent or away) or it has been
  // trying for longer than the connect timeout (the peer was never reachable). The link keeps
  // trying either way.
  bool down() const;
  const std::string& url() const;
  // Fails what waits (unavailable) and joins the link's threads (a driven link: waits until its
  // loop has ended it, or ends it now on the loop's thread).
  void close();

  // For the LinkLoop that adopted the link, on its thread only: what to poll (its socket when
  // open, its wake fd; up to 2 items, 0 once ended), one round of its work after a poll (`woke`:
  // its wake fd was readable; false: it has ended, drop it), and its end when the loop stops.
  std::size_t poll_items(zmq_pollitem_t* items);
  bool turn(bool woke);
  void end();

 private:
  struct Driven {};
  PeerLink(ClientOptions options, Driven);
  std::shared_ptr<struct ClientCore> core_;
  std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
};

}  // namespace roost
