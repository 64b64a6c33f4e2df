#include "mesh_links.h"

#include <roost/core/auth.h>
#include <roost/core/log.h>

#include <algorithm>

namespace roost::broker {

namespace {
constexpr std::int64_t kMeshTokenSeconds = 300;  // a link's credentials, renewed at each hello
}  // namespace

MeshLinks::MeshLinks(const std::atomic<Mesh*>& mesh, std::string auth_secret,
                     std::chrono::milliseconds request_timeout)
    : mesh_(mesh), auth_secret_(std::move(auth_secret)), request_timeout_(request_timeout) {
  // A link dials a peer's mesh socket over CURVE with the key pair the cluster secret derives: a
  // member that cannot prove the secret never completes the handshake, and so never sees the
  // credentials (issue 26 §1).
  if (!auth_secret_.empty()) curve_server_key_ = mesh_curve_keys(auth_secret_).public_key;
}

std::shared_ptr<PeerLink> MeshLinks::to(const std::string& node) {
  {
    // The fast path of every forwarded request: the link made already. A member's new address is
    // picked up by the channel routes' thread (refresh for every live member, every 250 ms).
    MutexLock lock(mu_);
    if (closed_) return nullptr;
    if (auto it = links_.find(node); it != links_.end() && it->second) return it->second;
  }
  return refresh(node);
}

std::shared_ptr<PeerLink> MeshLinks::refresh(const std::string& node) {
  Mesh* m = mesh_.load();
  if (m == nullptr) return nullptr;
  std::string address;
  for (const auto& member : m->members()) {
    if (member.name == node) address = member.mesh;
  }
  if (address.empty()) return nullptr;
  std::shared_ptr<PeerLink> old;  // closed once mu_ is released (a driven link waits for its loop)
  MutexLock lock(mu_);
  if (closed_) return nullptr;
  auto& link = links_[node];
  if (!link || link->url() != address) {  // new, or the node came back elsewhere
    ClientOptions o;
    o.url = address;
    if (!auth_secret_.empty()) {
      // Short-lived mesh credentials (audience roost-mesh, this node's name), signed anew for each
      // hello: accepted on mesh sockets only, and worth little if ever seen.
      o.token_source = [secret = auth_secret_, self = m->options().node_name] {
        auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
        return sign_mesh_token(secret, self, now, kMeshTokenSeconds);
      };
      o.curve_server_key = curve_server_key_;
    }
    o.name = "roost-mesh/" + m->options().node_name;
    o.request_timeout = request_timeout_;
    o.connect_timeout = std::chrono::milliseconds(2000);
    // Silent for three heartbeats = down: half the lease TTL, so a dead owner shows before its
    // lease could have run out.
    o.heartbeat = std::max(std::chrono::milliseconds(100),
                           std::chrono::duration_cast<std::chrono::milliseconds>(m->options().lease_ttl / 6));
    old = std::move(link);
    // Driven by the client endpoint's thread when there is one: a request forwarded from there
    // crosses no other thread of this node.
    link = PeerLink::open(std::move(o), loop_.load());
    module_logger("mesh")->info("link to {} at {}", node, address);
  }
  auto result = link;
  lock.unlock();
  if (old) old->close();
  return result;
}

std::vector<std::shared_ptr<PeerLink>> MeshLinks::live() {
  std::vector<std::shared_ptr<PeerLink>> links;
  if (Mesh* m = mesh_.load()) {
    for (const auto& member : m->members()) {
      if (member.name == m->options().node_name || member.mesh.empty()) continue;
      if (auto link = to(member.name); link && !link->down()) links.push_back(std::move(link));
    }
  }
  return links;
}

std::vector<MeshLinks::State> MeshLinks::states() const {
  std::vector<State> out;
  MutexLock lock(mu_);
  for (const auto& [node, link] : links_)
    out.push_back(State{node, link->url(), link->connected(), link->down()});
  return out;
}

void MeshLinks::close() {
  std::map<std::string, std::shared_ptr<PeerLink>> links;
  {
    MutexLock lock(mu_);
    closed_ = true;
    links.swap(links_);
  }
  for (auto& [name, link] : links) link->close();
}

}  // namespace roost::broker
