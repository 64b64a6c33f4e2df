// Remote actor hosts (GET /v1/hosts/connect, docs/hosts.md): a process in any language that serves
// object classes over one WebSocket. The gateway carries the frames; the broker speaks the
// protocol. These two interfaces are the seam between them.
//
// Thread-safety: both may be called from any thread.
#pragma once

#include <roost/core/auth.h>

#include <cstdint>
#include <string>
#include <vector>

namespace roost {

// The host's connection, as the broker sees it (implemented by the gateway's host session).
class HostLink {
 public:
  virtual ~HostLink() = default;
  // Queues a text frame to the host. Returns false when the link is closed or its queue is over
  // its bound (the link is then closed): the frame will never arrive.
  virtual bool send(std::string frame) = 0;
  virtual void close(std::uint16_t code, std::string reason) = 0;
  // Bytes queued to the host and not yet written to its socket (the broker paces turns by it).
  virtual std::size_t queued_bytes() const { return 0; }
};

// The broker's side of one host connection: the gateway hands it every frame the host sent, in
// order, and tells it once when the connection ended.
class HostSession {
 public:
  virtual ~HostSession() = default;
  virtual void on_frame(std::string frame) = 0;
  virtual void on_closed() = 0;
};

// Who the host is: its token's grants. `roost.host` names the classes it may serve ("*" or ">" =
// any); what its objects do beyond their own storage and sockets — publish, enqueue, tell or call
// other objects, subscribe — needs the token's other grants, as for any client.
struct HostGrant {
  Principal principal;
  std::string peer;  // the host's address, for logs
  bool may_host(const std::string& object_class) const {
    if (principal.unrestricted) return true;
    for (const auto& c : principal.host) {
      if (c == "*" || c == ">" || c == object_class) return true;
    }
    return false;
  }
};

}  // namespace roost
