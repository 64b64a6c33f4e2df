// MeshRouter's insides shared by its files: what this node subscribed to on a peer (channels across
// nodes, mesh_channels.cpp), also dropped by MeshRouter::stop() (mesh_router.cpp).
#pragma once

#include <roost/broker/mesh_router.h>
#include <roost/channels/hub.h>
#include <roost/client/client.h>
#include <roost/client/peer.h>
#include <roost/core/thread_annotations.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace roost::broker {

// This node's subscriptions on one peer, and what came through them.
struct MeshRouter::PeerInterest {
  std::shared_ptr<PeerLink> link;
  std::map<std::string, std::unique_ptr<Stream>> streams;  // by pattern
  std::atomic<bool> broken{false};                         // a stream ended on an error: open again
  // Overlapping patterns ("news.>" and "news.today") bring a message once per stream: the highest
  // offset relayed per channel (and the channel's epoch there) lets only the first through.
  Mutex mu;
  std::unordered_map<std::string, std::pair<std::string, std::uint64_t>> last ROOST_GUARDED_BY(mu);
  // One batch's messages, gathered to enter the hub together (runs of a channel published at once:
  // subscribers here get them as runs too, not one event each).
  std::vector<std::pair<std::string, channels::Hub::Sequenced>> batch ROOST_GUARDED_BY(mu);
};

}  // namespace roost::broker
