// The Hub: publishes messages to every subscriber whose pattern matches, keeps short per-channel
// history for resumption, and counts presence.
//
// Thread-safety: every method may be called from any thread. Each channel (concrete subject) has
// its own lock, held while an offset is assigned and the message handed to subscribers, so every
// subscriber sees a channel's messages in offset order. Lock order: the channel map, then a
// channel (forget_idle only tries it), then the trie.
#pragma once

#include <roost/channels/outgoing_queue.h>
#include <roost/core/channel_types.h>
#include <roost/core/error.h>
#include <roost/core/thread_annotations.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace roost::channels {

struct HubOptions {
  std::vector<NamespaceConfig> namespaces;  // longest matching prefix wins
  NamespaceConfig defaults;
};

class Hub {
 public:
  explicit Hub(HubOptions options, std::function<std::int64_t()> clock);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // `since` only with a concrete channel (no wildcards).
  Result<SubscribeResult> subscribe(const std::string& pattern, std::shared_ptr<Subscriber> subscriber,
                                    const std::optional<Since>& since = std::nullopt);
  void unsubscribe(std::uint64_t id);
  // `data` is JSON text unless `content_type` says otherwise.
  // `relayed`: the message was published on another node of the mesh (Message::relayed).
  Result<PublishResult> publish(const std::string& channel, std::string data,
                                ContentType content_type = ContentType::kJson, bool relayed = false);
  // Publishes a run of messages to one channel, in order, taking its lock and looking up its
  // subscribers once (the native protocol's publishBatch). `items` are moved from.
  using Payload = channels::Payload;
  Result<std::size_t> publish_many(const std::string& channel, std::vector<Payload>& items,
                                   bool relayed = false);
  // Messages another node sequenced (the mesh: the channel's home assigned their epoch, offset
  // and timestamp), delivered here as relayed copies and kept in history under the home's numbers,
  // so a subscriber resumes on this node where it left off on another. In order, one channel:
  // an offset at or below the last one of the same epoch is a duplicate (skipped); a new epoch
  // replaces the channel's (history starts over); a gap empties history, so that a resume from
  // inside it answers reset instead of skipping what this node never got. Returns how many were
  // new.
  struct Sequenced {
    std::string data;
    ContentType content_type = ContentType::kJson;
    std::string epoch;
    std::uint64_t offset = 0;
    std::int64_t timestamp_ms = 0;
  };
  std::size_t publish_sequenced(const std::string& channel, std::vector<Sequenced>& items);
  using Presence = channels::Presence;
  Presence presence(const std::string& channel) const;

  // (mesh) Join/leave events are announced by the channel's home for the whole mesh. With a hook
  // set, a direct subscription that joins or leaves here is handed to it — the channel, the kind,
  // this node's direct count after the change, the subscription's id — and announced only if it
  // answers false (no mesh yet). It runs under the channel's lock: it must not call the hub.
  // Set (or cleared: nullptr) at any time; clearing waits for a call in progress.
  using PresenceHook = std::function<bool(MessageKind, const std::string& channel, std::size_t direct,
                                          std::uint64_t subscription)>;
  void set_presence_hook(PresenceHook hook) {
    MutexLock lock(hook_mu_);
    presence_hook_ = std::move(hook);
  }
  // (mesh, on the home) Node `origin` says a direct subscription of it joined or left, leaving it
  // `direct` of them: the channel's count over every node is announced to this node's subscribers
  // (peers' interest included, so every node hears it) — but not to the subscription itself.
  // MessageKind::kData: only a report of the count (a home that moved learns it), no event.
  void presence_from(MessageKind kind, const std::string& channel, const std::string& origin,
                     std::size_t direct, std::uint64_t subscription, const std::string& self);
  // (mesh, elsewhere) The home's event: to this node's subscribers, but not to the subscription it
  // is about (when it was made here, on node `self`).
  void presence_relayed(MessageKind kind, const std::string& channel, std::uint64_t subscribers,
                        const std::string& origin, std::uint64_t subscription, const std::string& self);
  // (mesh) This node's direct subscriptions per channel of a join_leave namespace: what it reports
  // to channels' homes again when homes may have moved.
  std::vector<std::pair<std::string, std::size_t>> join_leave_counts() const;
  // (mesh, on the home) A node left: its direct counts no longer count.
  void forget_presence_of(const std::string& node);
  const NamespaceConfig& namespace_of(std::string_view channel) const;
  // Patterns that cover every channel whose namespace keeps history (">" when the defaults do;
  // "chat.>" for a namespace "chat."; ">" for a prefix that is not a whole token).
  std::vector<std::string> history_patterns() const;

  // Forgets channels unused (no publish, no subscription) for `idle_ms` that keep no history and
  // have no direct subscriber, so that publishing to ever new names does not grow memory without
  // bound. A forgotten channel that comes back starts a new epoch (resumers get a reset, which is
  // right: nothing was kept). Returns how many were forgotten.
  std::size_t forget_idle(std::uint64_t idle_ms);
  std::size_t channels() const;  // channels known (published to or subscribed to directly)

  std::uint64_t published() const { return published_.load(); }
  std::uint64_t delivered() const { return delivered_.load(); }
  std::size_t subscriptions() const;

 private:
  using SubscriberList = std::vector<std::shared_ptr<Subscriber>>;
  // One concrete channel: its offsets, history and cached subscriber list.
  struct Channel {
    Channel();
    Mutex mu;
    std::string epoch ROOST_GUARDED_BY(mu);
    // The epoch is another node's (publish_sequenced): a publish made here starts a new one, as
    // this node cannot know it has every message of that sequence.
    bool adopted ROOST_GUARDED_BY(mu) = false;
    // (mesh, on the home) Each node's direct subscriptions, as it last reported them.
    std::map<std::string, std::size_t> node_direct ROOST_GUARDED_BY(mu);
    // A local publish on an adopted channel: this node's own epoch from now on.
    void own_epoch() ROOST_REQUIRES(mu);
    std::uint64_t last_offset ROOST_GUARDED_BY(mu) = 0;
    std::deque<MessagePtr> history ROOST_GUARDED_BY(mu);
    // The subscriptions matching this channel, as of subscription generation `subs_generation`.
    std::shared_ptr<const SubscriberList> subs ROOST_GUARDED_BY(mu);
    std::uint64_t subs_generation ROOST_GUARDED_BY(mu) = 0;
    std::int64_t last_used_ms ROOST_GUARDED_BY(mu) = 0;  // last publish or subscription
    bool forgotten ROOST_GUARDED_BY(mu) = false;         // removed by forget_idle

    // Drops history past the namespace's size and older than its TTL, as of `now`.
    void trim_history(const NamespaceConfig& ns, std::int64_t now) ROOST_REQUIRES(mu);
  };
  // The channel, created if new, its last use set to now — returned with its lock held (the
  // caller takes it over: MutexLock lock(ch->mu, std::adopt_lock)).
  std::shared_ptr<Channel> channel(const std::string& name) ROOST_NO_THREAD_SAFETY_ANALYSIS;
  // The subscribers of channel `name` (`ch`), cached in the channel (no copy per publish).
  std::shared_ptr<const SubscriberList> match(Channel& ch, const std::string& name) const
      ROOST_REQUIRES(ch.mu);
  // A join / leave event to the channel's subscribers (but `except`).
  void announce(MessageKind kind, Channel& ch, const std::string& channel, const Subscriber* except)
      ROOST_REQUIRES(ch.mu);

  HubOptions options_;
  std::function<std::int64_t()> clock_;

  mutable Mutex channels_mu_;
  std::unordered_map<std::string, std::shared_ptr<Channel>> channels_ ROOST_GUARDED_BY(channels_mu_);

  mutable SharedMutex trie_mu_;
  // Direct subscribers of a concrete channel, watchers left out.
  std::size_t direct_locked(const std::string& channel) const ROOST_REQUIRES_SHARED(trie_mu_);
  struct Subscription {
    std::string pattern;
    bool watcher = false;
    const Subscriber* subscriber = nullptr;  // (valid while subscribed)
  };
  // Delivers `event` to the channel's subscribers but the one subscription `except` (0: none).
  void deliver_presence(Channel& ch, const std::string& channel, const MessagePtr& event,
                        std::uint64_t except) ROOST_REQUIRES(ch.mu);
  // Hands a join/leave to the hook; false without one (or when it declines).
  bool hand_presence(MessageKind kind, const std::string& channel, std::size_t direct,
                     std::uint64_t subscription);
  Mutex hook_mu_;  // after a channel's lock
  PresenceHook presence_hook_ ROOST_GUARDED_BY(hook_mu_);
  // Watchers (Subscriber::watcher) subscribed to each concrete channel: presence leaves them out.
  std::unordered_map<std::string, std::size_t> exact_watchers_ ROOST_GUARDED_BY(trie_mu_);
  std::unique_ptr<class SubscriptionTrie> trie_ ROOST_GUARDED_BY(trie_mu_);
  std::unordered_map<std::uint64_t, Subscription> subscriptions_ ROOST_GUARDED_BY(trie_mu_);
  std::uint64_t next_id_ ROOST_GUARDED_BY(trie_mu_) = 1;

  // Bumped (under trie_mu_, exclusive) by every change of the subscriptions; a channel's cached
  // match is good while it was computed at the current value.
  std::atomic<std::uint64_t> generation_{1};

  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> delivered_{0};
};

}  // namespace roost::channels
