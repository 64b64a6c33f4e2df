// MeshRouter's channels across nodes (docs/mesh.md, "Channels across nodes"), like NATS routes: a
// publish is delivered where it is made and to every peer with a subscriber whose pattern matches
// (this node subscribes on each peer to the patterns its clients hold — when the first one comes,
// until the last one goes, and again whenever a link comes up); relayed copies are never passed
// on, so a publish crosses the mesh at most once.
//
// Each channel has a home: the live member that wins rendezvous for its name. Every publish is
// sequenced there (epoch, offset, history) — made on another node, it is forwarded to the home
// first — and reaches the other nodes' subscribers as the home's relayed copy, so every subscriber
// in the mesh sees one order per channel. Join/leave events go to the home too, which announces
// them with the whole mesh's count.
//
// Thread-safety: every public method may be called from any thread. The interest thread keeps the
// subscriptions on peers; relayed messages enter the hub on the links' I/O threads.
#pragma once

#include "mesh_links.h"

#include <roost/broker/local_router.h>
#include <roost/broker/mesh.h>
#include <roost/channels/hub.h>
#include <roost/client/client.h>
#include <roost/client/peer.h>
#include <roost/core/metrics.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace roost::broker {

class ChannelRoutes {
 public:
  // Hooks the LocalRouter's join/leave events and starts the interest thread.
  ChannelRoutes(const std::atomic<Mesh*>& mesh, MeshLinks& links, LocalRouter& local,
                boost::asio::io_context& timers);
  ~ChannelRoutes() { stop(); }
  ChannelRoutes(const ChannelRoutes&) = delete;
  ChannelRoutes& operator=(const ChannelRoutes&) = delete;
  // Joins and leaves are this node's own from now on; the interest thread ends, and with it the
  // subscriptions on peers.
  void stop();

  Result<channels::SubscribeResult> subscribe(const std::string& pattern,
                                              std::shared_ptr<channels::Subscriber> subscriber,
                                              const std::optional<channels::Since>& since);
  void unsubscribe(std::uint64_t subscription);
  // A message for a home elsewhere goes to the link at once, answered without offset and epoch
  // (0 and ""); publish_async answers the home's.
  Result<channels::PublishResult> publish(const std::string& channel, std::string data,
                                          ContentType content_type);
  Result<std::size_t> publish_many(const std::string& channel, std::vector<channels::Payload>& items);
  void publish_async(std::string channel, std::string data, ContentType content_type,
                     Callback<channels::PublishResult> done);
  // The node that sequences `channel` now ("" before the mesh has members).
  std::string home(std::string_view channel) const;

  std::uint64_t interest_entries() const { return interest_entries_.load(); }
  // roost_mesh_publishes_* … roost_mesh_channel_lagged_total, in that order.
  void write_counters(MetricsWriter& w) const;

 private:
  struct PeerInterest;
  void interest_loop();
  void reconcile_interest();
  void relay(PeerInterest& peer, const ChannelMessage& m);
  void flush_relay(PeerInterest& peer);
  // The link to the home of `channel`; nullptr when this node is its home (or knows no members).
  Result<std::shared_ptr<PeerLink>> publish_route(std::string_view channel);

  const std::atomic<Mesh*>& mesh_;
  MeshLinks& links_;
  LocalRouter& local_;
  boost::asio::strand<boost::asio::io_context::executor_type> presence_strand_;
  std::atomic<std::uint64_t> presence_unroutable_{0};
  std::set<std::string> presence_members_;  // (interest thread) members last seen, to forget leavers
  // Interest: patterns this node's clients hold (with how many), and per peer the subscriptions
  // this node holds there (interest thread only).
  Mutex interest_mu_;
  std::condition_variable interest_cv_;
  std::map<std::string, std::size_t> interest_ ROOST_GUARDED_BY(interest_mu_);
  std::unordered_map<std::uint64_t, std::string> pattern_of_ ROOST_GUARDED_BY(interest_mu_);
  bool interest_changed_ ROOST_GUARDED_BY(interest_mu_) = false;
  bool interest_stop_ ROOST_GUARDED_BY(interest_mu_) = false;
  std::map<std::string, std::shared_ptr<PeerInterest>> peers_;  // by node name
  std::map<std::string, std::size_t> history_interest_;         // patterns of history namespaces (constant)
  std::thread interest_thread_;
  // The live members' names (channel homes), as the interest thread last saw them.
  mutable Mutex members_mu_;
  std::shared_ptr<const std::vector<std::string>> member_names_ ROOST_GUARDED_BY(members_mu_);
  std::atomic<std::uint64_t> publishes_forwarded_{0};
  std::atomic<std::uint64_t> publishes_unroutable_{0};
  std::atomic<std::uint64_t> relayed_{0};
  std::atomic<std::uint64_t> relay_duplicates_{0};
  std::atomic<std::uint64_t> relay_lagged_{0};
  std::atomic<std::uint64_t> interest_entries_{0};
};

}  // namespace roost::broker
