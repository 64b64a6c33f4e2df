// MeshRouter's links to its peers (docs/mesh.md): one PeerLink per live member's mesh socket, made
// on first use, replaced when the member comes back at another address, closed with the router.
// With a cluster secret a link speaks CURVE with the key the secret derives and hands the peer
// short-lived credentials (issue 26 §1); without one (mesh_insecure), plain links.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <roost/broker/mesh.h>
#include <roost/client/peer.h>
#include <roost/core/thread_annotations.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace roost::broker {

class MeshLinks {
 public:
  MeshLinks(const std::atomic<Mesh*>& mesh, std::string auth_secret,
            std::chrono::milliseconds request_timeout);
  MeshLinks(const MeshLinks&) = delete;
  MeshLinks& operator=(const MeshLinks&) = delete;

  // The loop that drives the links made from now on (the client endpoint's; null: each link has
  // its own thread).
  void set_loop(LinkLoop* loop) { loop_.store(loop); }
  // The link to a live member, made on first use (nullptr: not a live member, or closed). The fast
  // path of every forwarded request.
  std::shared_ptr<PeerLink> to(const std::string& node);
  // The same, and a link whose member came back at another address is replaced (the channel
  // routes' thread calls it for every live member, every 250 ms).
  std::shared_ptr<PeerLink> refresh(const std::string& node);
  // Links to every live peer that answers now.
  std::vector<std::shared_ptr<PeerLink>> live();
  struct State {
    std::string node, url;
    bool connected = false, down = false;
  };
  std::vector<State> states() const;
  // Closes every link (what waits on them fails); none is made after it.
  void close();

 private:
  const std::atomic<Mesh*>& mesh_;
  const std::string auth_secret_;
  const std::chrono::milliseconds request_timeout_;
  std::string curve_server_key_;  // peers' mesh sockets (from auth_secret; none without it)
  std::atomic<LinkLoop*> loop_{nullptr};
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<PeerLink>> links_ ROOST_GUARDED_BY(mu_);  // by member name
  bool closed_ ROOST_GUARDED_BY(mu_) = false;
};

}  // namespace roost::broker
