// Authentication and authorization: HS256 JWT bearer tokens (OpenSSL HMAC), and the
// permissions they carry. Claims: `exp` (seconds since the epoch; required when present to be in
// the future), `nbf` (when present, not before that second) and `roost:
// {"publish":[patterns],"subscribe":[patterns],"queues":[patterns], "objects":[patterns],
// "host":[classes], "push": true, "mesh": true}` (`push`: may set queues' push targets; `mesh`: a
// peer node of the mesh, every permission — honoured only on a node's mesh socket, see Audience). Patterns
// use the channel grammar ('*' one token, '>' the rest), also for queue names. Without a configured secret,
// only loopback clients are accepted, with every permission.
#pragma once

#include <roost/core/error.h>
#include <roost/core/queue_types.h>

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace roost {

struct Principal {
  bool unrestricted = false;
  std::vector<std::string> publish;
  std::vector<std::string> subscribe;
  std::vector<std::string> queues;
  std::vector<std::string> objects;
  std::vector<std::string> host;  // object classes it may serve as a remote host ("*" = any)
  bool push = false;              // may set or remove a queue's push target (roost.push: true)
  bool mesh = false;              // a peer node: may use a node's mesh socket
  std::string node;               // (mesh) the peer node the credentials name
  std::string claims;             // the verified token's payload, as JSON ("" without a token)

  bool may_publish(std::string_view channel) const;
  bool may_subscribe(std::string_view pattern) const;
  bool may_use_queue(std::string_view queue) const;
  // `objects` patterns are "class.name": "doc.welcome", "doc.*" / "doc.>" (every doc), "*.*" or
  // ">" (every object). The name part is compared whole, so names may contain dots.
  bool may_use_object(std::string_view object_class, std::string_view name) const;
  // Whether a queue's configuration may change as `patch` says, for a caller granted the queue
  // itself: every other queue it names (a dead-letter queue) is granted too, and a push target —
  // which makes the node send requests — needs the push grant. Nullopt = allowed; else forbidden.
  std::optional<Error> may_configure_queue(const QueueConfigPatch& patch) const;
};

// 127.0.0.0/8 and ::1, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1, what a dual-stack
// listener reports for an IPv4 client).
bool is_loopback(const boost::asio::ip::address& a);

// True when every subject `requested` can match is matched by `allowed`.
bool pattern_covers(std::string_view allowed, std::string_view requested);

// Where credentials are presented. A node's mesh credentials (audience "roost-mesh", the `mesh`
// grant) are accepted on mesh sockets only: anywhere else they are refused (401), and a `mesh`
// grant in a client token gives nothing. A mesh socket accepts nothing else.
enum class Audience { kClient, kMesh };
inline constexpr std::string_view kMeshAudience = "roost-mesh";

class Authenticator {
 public:
  explicit Authenticator(std::string secret, std::function<std::int64_t()> now_seconds = nullptr);
  // `token` is empty when the request carried none.
  Result<Principal> authenticate(std::string_view token, const boost::asio::ip::address& remote,
                                 Audience audience = Audience::kClient) const;
  bool enabled() const { return !secret_.empty(); }

 private:
  std::string secret_;
  std::function<std::int64_t()> now_seconds_;
};

// Signs `payload_json` as an HS256 JWT (tests, tools).
std::string sign_jwt(std::string_view secret, std::string_view payload_json);

// A node's mesh credentials: node `node`, audience roost-mesh, valid `ttl_seconds` from `now`.
std::string sign_mesh_token(std::string_view secret, std::string_view node, std::int64_t now_seconds,
                            std::int64_t ttl_seconds);

// HMAC-SHA256 of `data` under `key`, raw bytes (32).
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace roost
