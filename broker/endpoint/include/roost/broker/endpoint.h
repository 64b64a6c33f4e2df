// Endpoint: the native protocol's front end. One ZeroMQ ROUTER socket (tcp:// or ipc://), owned by
// one thread; each request is decoded from its Cap'n Proto envelope and goes through the Router,
// like an HTTP request. Answers and stream events (channel messages, push deliveries) are handed
// back to that thread through a queue and an eventfd wake-up.
//
// Sessions: a client's first request is `hello` (token checked as by the gateway); the node then
// expects a heartbeat every heartbeat_ms and forgets a client silent for three intervals — its
// subscriptions and push consumers end and every lease it holds is released at once (the message
// is visible again). A request from a client the node does not know answers `hello_required`.
//
// Thread-safety: start/stop from one thread; everything else runs on the endpoint thread.
#pragma once

#include <roost/client/peer.h>
#include <roost/core/mesh_view.h>
#include <roost/core/router.h>

#include <cstdint>
#include <memory>
#include <string>

namespace roost::broker {

struct EndpointOptions {
  std::string bind = "tcp://127.0.0.1:7400";  // tcp://HOST:PORT (PORT * = any free) or ipc://PATH
  std::string curve_secret_key;               // Z85 (40 chars): clients must use CURVE with the public key
  std::string auth_secret;                    // HS256 JWT secret; empty = loopback (and ipc) clients only
  std::uint32_t heartbeat_ms = 1000;          // default client heartbeat; silent 3× = gone
  std::uint64_t max_message_bytes = 1u << 20;
  std::uint32_t max_batch = 1000;  // messages per enqueue / pull
  // Channel events queued in ZeroMQ per client before more are dropped (and counted, `lagged`).
  // An event holds at most 256 messages and 64 KiB (or one larger message), so a client that
  // never reads holds at most send_hwm × 64 KiB (16 MiB) there, plus its subscriptions' buffers
  // (channel_buffer_messages / channel_buffer_bytes each).
  std::uint32_t send_hwm = 256;
  std::uint32_t max_backlog = 100'000;          // answers held for a client that doesn't read; then gone
  std::uint64_t max_backlog_bytes = 64u << 20;  // likewise, in bytes
  std::uint32_t max_subscriptions = 1024;       // channel subscriptions and push consumers per client
  std::uint32_t max_heartbeat_ms = 10'000;      // a client may ask for a heartbeat up to this (its
                                                // session outlives a silent client 3× that)
  std::string version = "0";
  // Set: this is the node's mesh socket (mesh_listen) and its clients are peer nodes — a token with
  // the `mesh` grant, or loopback without auth_secret. Only queue and object requests are served,
  // each carrying a route (shard, epoch): while `mesh` says this node owns that shard under that
  // epoch, else owner_unavailable. The router it is given must be the node's local one (a request
  // that reached its owner never hops again).
  MeshView* mesh = nullptr;
};

// An endpoint is also a LinkLoop: the node's mesh router gives it the links to its peers, so that a
// request a client sends here for another node's shard is forwarded, and answered, on this thread.
class Endpoint final : public LinkLoop {
 public:
  Endpoint(Router& router, EndpointOptions options);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Binds and starts the endpoint thread. Throws std::runtime_error if it cannot bind.
  void start();
  // The bound address, with the actual port ("tcp://127.0.0.1:7400").
  std::string bound() const;
  // Ends every session (releasing leases), closes the socket, joins the thread. Idempotent.
  void stop();

  std::size_t sessions() const;
  // Prometheus lines for /metrics.
  std::string metrics_text() const;

  // LinkLoop: links adopted while the endpoint thread runs are driven by it; stop() ends them.
  std::optional<std::thread::id> loop_thread() override;
  bool adopt(std::shared_ptr<PeerLink> link) override;
  zmq::context_t* zmq_context() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace roost::broker
