#include "channel_routes.h"

#include "shard_routes.h"

#include <roost/core/log.h>
#include <roost/core/subject.h>
#include <roost/core/thread_name.h>

#include <algorithm>

#include <boost/asio/post.hpp>

namespace roost::broker {

namespace asio = boost::asio;

// This node's subscriptions on one peer, and what came through them.
struct ChannelRoutes::PeerInterest {
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

ChannelRoutes::ChannelRoutes(const std::atomic<Mesh*>& mesh, MeshLinks& links, LocalRouter& local,
                             asio::io_context& timers)
    : mesh_(mesh), links_(links), local_(local), presence_strand_(asio::make_strand(timers)) {
  for (auto& p : local_.history_patterns()) history_interest_[p] = 1;
  // Join/leave events of direct subscriptions go to the channel's home, which announces them with
  // the whole mesh's count (in order, through one strand: a join and its leave arrive in order).
  local_.set_presence_hook([this](channels::MessageKind kind, const std::string& channel, std::size_t direct,
                                  std::uint64_t subscription) {
    Mesh* m = mesh_.load();
    if (m == nullptr) return false;
    auto home = this->home(channel);
    if (home.empty()) return false;
    asio::post(presence_strand_,
               [this, kind, channel, direct, subscription, home, self = m->options().node_name] {
                 if (home == self) return local_.presence_event(kind, channel, self, direct, subscription);
                 auto link = links_.to(home);
                 if (!link || link->down()) {
                   presence_unroutable_.fetch_add(1, std::memory_order_relaxed);
                   return;  // at most once, as channel messages
                 }
                 link->presence_event(channel, kind, self, direct, subscription);
               });
    return true;
  });
  interest_thread_ = std::thread([this] {
    roost::name_this_thread("roost-interest");
    interest_loop();
  });
}

void ChannelRoutes::stop() {
  local_.set_presence_hook(nullptr);  // joins and leaves from now on are this node's own
  {
    MutexLock lock(interest_mu_);
    interest_stop_ = true;
    interest_cv_.notify_all();
  }
  if (interest_thread_.joinable()) interest_thread_.join();
  peers_.clear();  // (the thread is gone: its state is ours)
}

void ChannelRoutes::write_counters(MetricsWriter& w) const {
  w.counter("roost_mesh_publishes_forwarded_total",
            "Publishes this node sent to their channel's home (it sequences them).",
            publishes_forwarded_.load());
  w.counter("roost_mesh_publishes_unroutable_total",
            "Publishes dropped: their channel's home was not answering (at most once).",
            publishes_unroutable_.load());
  w.counter("roost_mesh_presence_unroutable_total",
            "Join/leave events dropped: their channel's home was not answering.",
            presence_unroutable_.load());
  w.counter("roost_mesh_channel_relayed_total",
            "Channel messages peers sent here for this node's subscribers.", relayed_.load());
  w.counter("roost_mesh_channel_duplicates_total",
            "Channel messages that came twice (overlapping patterns) and were relayed once.",
            relay_duplicates_.load());
  w.counter("roost_mesh_channel_lagged_total",
            "Channel messages a peer dropped for this node (its link lagged).", relay_lagged_.load());
}

// ---- channels ------------------------------------------------------------------------------------

Result<channels::SubscribeResult> ChannelRoutes::subscribe(const std::string& pattern,
                                                           std::shared_ptr<channels::Subscriber> subscriber,
                                                           const std::optional<channels::Since>& since) {
  auto r = local_.subscribe(pattern, std::move(subscriber), since);
  if (!r) return r;
  MutexLock lock(interest_mu_);
  pattern_of_.emplace(r->id, pattern);
  if (++interest_[pattern] == 1) {
    interest_changed_ = true;
    interest_cv_.notify_all();
  }
  return r;
}

void ChannelRoutes::unsubscribe(std::uint64_t subscription) {
  local_.unsubscribe(subscription);
  MutexLock lock(interest_mu_);
  auto it = pattern_of_.find(subscription);
  if (it == pattern_of_.end()) return;
  auto n = interest_.find(it->second);
  if (n != interest_.end() && --n->second == 0) {
    interest_.erase(n);
    interest_changed_ = true;
    interest_cv_.notify_all();
  }
  pattern_of_.erase(it);
}

void ChannelRoutes::interest_loop() {
  for (;;) {
    {
      MutexLock lock(interest_mu_);
      // Membership changes are seen within this period; a new pattern at once.
      interest_cv_.wait_for(lock.native(), std::chrono::milliseconds(250),
                            [this]()
                                ROOST_REQUIRES(interest_mu_) { return interest_stop_ || interest_changed_; });
      if (interest_stop_) return;
      interest_changed_ = false;
    }
    try {
      reconcile_interest();
    } catch (const std::exception& e) {
      module_logger("mesh")->error("channel interest: {}", e.what());
    }
  }
}

void ChannelRoutes::reconcile_interest() {
  Mesh* m = mesh_.load();
  if (m == nullptr) return;
  // The patterns to hold on every peer: those of this node's clients, but none another one covers.
  // Channels whose namespace keeps history are wanted whether or not a client listens here: every
  // node keeps their history under the home's numbers, so a client resumes on any node.
  std::map<std::string, std::size_t> held = history_interest_;
  {
    MutexLock lock(interest_mu_);
    for (const auto& [p, n] : interest_) held[p] += n;
  }
  std::vector<std::string> wanted;
  for (const auto& [p, n] : held) {
    bool covered = false;
    for (const auto& [other, k] : held) covered = covered || (other != p && pattern_covers(other, p));
    if (!covered) wanted.push_back(p);
  }
  std::map<std::string, bool> live;
  auto names = std::make_shared<std::vector<std::string>>();
  for (const auto& member : m->members()) {
    if (!member.mesh.empty() || member.name == m->options().node_name) names->push_back(member.name);
    if (member.name != m->options().node_name && !member.mesh.empty()) live[member.name] = true;
  }
  {
    // A member that left: its direct subscriptions no longer count on the homes (this one's).
    std::set<std::string> now(names->begin(), names->end());
    for (const auto& gone : presence_members_) {
      if (!now.contains(gone)) local_.forget_presence_of(gone);
    }
    if (now != presence_members_ && !now.empty()) {
      // Members changed, so homes may have moved: report this node's counts to each channel's
      // home (a report announces nothing; the new home's next event counts this node).
      const auto& self = m->options().node_name;
      for (auto& [channel, direct] : local_.join_leave_counts()) {
        auto home = Mesh::channel_home(*names, channel);
        asio::post(presence_strand_, [this, channel, direct, home, self] {
          if (home == self)
            return local_.presence_event(channels::MessageKind::kData, channel, self, direct, 0);
          if (auto link = links_.to(home); link && !link->down())
            link->presence_event(channel, channels::MessageKind::kData, self, direct, 0);
        });
      }
    }
    presence_members_ = std::move(now);
  }
  {
    MutexLock lock(members_mu_);
    member_names_ = std::move(names);
  }
  std::erase_if(peers_, [&](const auto& kv) { return !live.contains(kv.first); });
  std::uint64_t entries = 0;
  for (const auto& [name, yes] : live) {
    auto link = links_.refresh(name);
    if (!link) continue;
    auto& peer = peers_[name];
    if (!peer || peer->link != link || peer->broken.load()) peer = std::make_shared<PeerInterest>();
    peer->link = link;
    std::erase_if(peer->streams, [&](const auto& kv) {
      return std::find(wanted.begin(), wanted.end(), kv.first) == wanted.end();
    });
    for (const auto& p : wanted) {
      if (peer->streams.contains(p)) continue;
      SubscribeOptions o;
      std::weak_ptr<PeerInterest> weak = peer;
      o.on_lag = [this](std::uint64_t dropped) {
        relay_lagged_.fetch_add(dropped, std::memory_order_relaxed);
      };
      o.on_error = [weak, name = name, p](const Error& e) {
        module_logger("mesh")->warn("interest in {} on {} ended: {}", p, name, e.message);
        if (auto s = weak.lock()) s->broken = true;
      };
      o.on_io_thread = true;  // relaying only hands messages to the hub
      // Join/leave events the channel's home announced, in order with the data around them.
      o.on_presence = [this, weak](const ChannelMessage& msg) {
        if (auto s = weak.lock()) relay(*s, msg);
      };
      o.on_batch_end = [this, weak] {
        if (auto s = weak.lock()) flush_relay(*s);
      };
      peer->streams.emplace(p, link->subscribe(
                                   p,
                                   [this, weak](const ChannelMessage& msg) {
                                     if (auto s = weak.lock()) relay(*s, msg);
                                   },
                                   std::move(o)));
    }
    entries += peer->streams.size();
  }
  interest_entries_.store(entries, std::memory_order_relaxed);
}

void ChannelRoutes::relay(PeerInterest& peer, const ChannelMessage& m) {
  if (m.kind != ChannelEventKind::kMessage) {
    // A join/leave the channel's home announced (a node's own events never travel: they go to the
    // home first). After the data relayed before it, in order.
    if (m.origin.empty()) return;
    flush_relay(peer);
    local_.presence_relayed(
        m.kind == ChannelEventKind::kJoin ? channels::MessageKind::kJoin : channels::MessageKind::kLeave,
        m.channel, m.subscribers, m.origin, m.origin_subscription);
    return;
  }
  {
    MutexLock lock(peer.mu);
    auto& [epoch, offset] = peer.last[m.channel];
    if (epoch == m.epoch && m.offset <= offset) {
      relay_duplicates_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    epoch = m.epoch;
    offset = m.offset;
    if (peer.last.size() > 100'000) peer.last.clear();  // bounded (a rare duplicate at worst)
    peer.batch.emplace_back(
        m.channel, channels::Hub::Sequenced{m.data, m.content_type, m.epoch, m.offset, m.timestamp_ms});
  }
  relayed_.fetch_add(1, std::memory_order_relaxed);
}

void ChannelRoutes::flush_relay(PeerInterest& peer) {
  std::vector<std::pair<std::string, channels::Hub::Sequenced>> batch;
  {
    MutexLock lock(peer.mu);
    batch.swap(peer.batch);
  }
  std::vector<channels::Hub::Sequenced> run;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    run.push_back(std::move(batch[i].second));
    if (i + 1 == batch.size() || batch[i + 1].first != batch[i].first) {
      (void)local_.publish_sequenced(batch[i].first, run);
      run.clear();
    }
  }
}

std::string ChannelRoutes::home(std::string_view channel) const {
  std::shared_ptr<const std::vector<std::string>> names;
  {
    MutexLock lock(members_mu_);
    names = member_names_;
  }
  if (!names || names->empty()) return {};
  return Mesh::channel_home(*names, channel);
}

Result<std::shared_ptr<PeerLink>> ChannelRoutes::publish_route(std::string_view channel) {
  Mesh* m = mesh_.load();
  auto home = m == nullptr ? std::string() : this->home(channel);
  if (home.empty() || home == m->options().node_name) return nullptr;  // sequenced here
  auto link = links_.to(home);
  if (!link || link->down()) {
    // At most once, as channels are: dropped (counted) rather than queued for a home that may be
    // gone — the member list drops it within a lease period and a new home takes over.
    publishes_unroutable_.fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(owner_unavailable("the home of channel " + std::string(channel) + ", " + home +
                                             ", is not answering"));
  }
  return link;
}

Result<channels::PublishResult> ChannelRoutes::publish(const std::string& channel, std::string data,
                                                       ContentType content_type) {
  if (auto e = channels::validate_subject(channel)) return std::unexpected(*e);
  auto link = publish_route(channel);
  if (!link) return std::unexpected(link.error());
  if (!*link) return local_.publish(channel, std::move(data), content_type);
  publishes_forwarded_.fetch_add(1, std::memory_order_relaxed);
  (*link)->publish(channel, data, content_type);
  return channels::PublishResult{};  // the home assigns offset and epoch
}

Result<std::size_t> ChannelRoutes::publish_many(const std::string& channel,
                                                std::vector<channels::Payload>& items) {
  if (auto e = channels::validate_subject(channel)) return std::unexpected(*e);
  auto link = publish_route(channel);
  if (!link) return std::unexpected(link.error());
  if (!*link) return local_.publish_many(channel, items);
  publishes_forwarded_.fetch_add(items.size(), std::memory_order_relaxed);
  for (const auto& [data, type] : items) (*link)->publish(channel, data, type);
  return items.size();
}

void ChannelRoutes::publish_async(std::string channel, std::string data, ContentType content_type,
                                  Callback<channels::PublishResult> done) {
  if (auto e = channels::validate_subject(channel)) return done(std::unexpected(*e));
  auto link = publish_route(channel);
  if (!link) return done(std::unexpected(link.error()));
  if (!*link) return done(local_.publish(channel, std::move(data), content_type));
  publishes_forwarded_.fetch_add(1, std::memory_order_relaxed);
  (*link)->publish_async(channel, data, content_type, [done = std::move(done)](Result<PublishAck> r) mutable {
    if (!r) return done(std::unexpected(r.error()));
    done(channels::PublishResult{r->offset, std::move(r->epoch), r->subscribers});
  });
}

}  // namespace roost::broker
