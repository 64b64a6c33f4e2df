#include "roost/channels/hub.h"

#include <deque>
#include <random>

#include "roost/channels/subscription_trie.h"
#include "roost/core/subject.h"

namespace roost::channels {

namespace {

std::string new_epoch() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  auto v = rng();
  // 15 hex digits (60 random bits): short enough for std::string's inline buffer, so copying an
  // epoch into every message allocates nothing.
  for (int i = 0; i < 15; ++i) out.push_back(kDigits[(v >> (4 * i)) & 0xf]);
  return out;
}

// The oldest timestamp history may still serve under `ns` (0 = no TTL).
std::int64_t history_cutoff(const NamespaceConfig& ns, std::int64_t now) {
  return ns.history_ttl_ms != 0 ? now - static_cast<std::int64_t>(ns.history_ttl_ms) : 0;
}
}  // namespace

Hub::Channel::Channel() : epoch(new_epoch()) {}

void Hub::Channel::own_epoch() {
  if (!adopted) return;
  adopted = false;
  epoch = new_epoch();
  history.clear();
}

void Hub::Channel::trim_history(const NamespaceConfig& ns, std::int64_t now) {
  while (history.size() > ns.history_size) history.pop_front();
  const std::int64_t cutoff = history_cutoff(ns, now);
  while (!history.empty() && history.front()->timestamp_ms < cutoff) history.pop_front();
}

Hub::Hub(HubOptions options, std::function<std::int64_t()> clock)
    : options_(std::move(options)), clock_(std::move(clock)), trie_(std::make_unique<SubscriptionTrie>()) {}

Hub::~Hub() = default;

const NamespaceConfig& Hub::namespace_of(std::string_view channel) const {
  const NamespaceConfig* best = &options_.defaults;
  std::size_t best_len = 0;
  for (const auto& ns : options_.namespaces) {
    if (channel.starts_with(ns.prefix) && ns.prefix.size() >= best_len) {
      best = &ns;
      best_len = ns.prefix.size();
    }
  }
  return *best;
}

std::vector<std::string> Hub::history_patterns() const {
  std::vector<std::string> out;
  if (options_.defaults.history_size > 0) return {">"};
  for (const auto& ns : options_.namespaces) {
    if (ns.history_size == 0) continue;
    if (!ns.prefix.empty() && ns.prefix.back() == '.' && !validate_pattern(ns.prefix + ">")) {
      out.push_back(ns.prefix + ">");
    } else {
      return {">"};
    }
  }
  return out;
}

// Returns with the channel's lock held: the analysis does not follow a lock across a return, so
// callers take it over with MutexLock(mu, std::adopt_lock).
std::shared_ptr<Hub::Channel> Hub::channel(const std::string& name) {
  for (;;) {
    std::shared_ptr<Channel> ch;
    {
      MutexLock lock(channels_mu_);
      auto& slot = channels_[name];
      if (!slot) slot = std::make_shared<Channel>();
      ch = slot;
    }
    ch->mu.lock();
    if (ch->forgotten) {  // forgotten between the lookup and the lock: look again
      ch->mu.unlock();
      continue;
    }
    ch->last_used_ms = clock_();
    return ch;
  }
}

std::size_t Hub::forget_idle(std::uint64_t idle_ms) {
  std::int64_t now = clock_();
  std::size_t forgotten = 0;
  MutexLock lock(channels_mu_);
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& ch = *it->second;
    if (!ch.mu.try_lock()) {  // in use: not idle
      ++it;
      continue;
    }
    bool forget = false;
    if (now - ch.last_used_ms >= static_cast<std::int64_t>(idle_ms)) {
      ch.trim_history(namespace_of(it->first), now);
      if (ch.history.empty() && ch.node_direct.empty()) {
        ReaderLock tl(trie_mu_);
        forget = trie_->count_exact(it->first) == 0;
      }
    }
    if (forget) {
      ch.forgotten = true;
      ch.subs.reset();
    }
    ch.mu.unlock();
    if (forget) {
      it = channels_.erase(it);
      ++forgotten;
    } else {
      ++it;
    }
  }
  return forgotten;
}

std::size_t Hub::channels() const {
  MutexLock lock(channels_mu_);
  return channels_.size();
}

// Computed once per change of the subscriptions (any change: one counter),
// then shared by every publish to the channel — no lookup, no copy.
std::shared_ptr<const Hub::SubscriberList> Hub::match(Channel& ch, const std::string& name) const {
  if (ch.subs && ch.subs_generation == generation_.load(std::memory_order_acquire)) return ch.subs;
  ReaderLock lock(trie_mu_);
  // Read under the trie lock: the counter moves only under its exclusive side, after the change.
  ch.subs_generation = generation_.load(std::memory_order_relaxed);
  ch.subs = std::make_shared<const SubscriberList>(trie_->match(name));
  return ch.subs;
}

Result<SubscribeResult> Hub::subscribe(const std::string& pattern, std::shared_ptr<Subscriber> subscriber,
                                       const std::optional<Since>& since) {
  if (auto e = validate_pattern(pattern)) return std::unexpected(*e);
  bool wildcard = is_wildcard(pattern);
  if (since && wildcard) {
    return std::unexpected(
        Error{ErrorCode::INVALID_ARGUMENT, "'since' (resume) needs a concrete channel, not a pattern"});
  }
  SubscribeResult result;
  auto insert = [&] {
    {
      WriterLock lock(trie_mu_);
      result.id = next_id_++;
      trie_->insert(pattern, result.id, subscriber);
      subscriptions_.emplace(result.id, Subscription{pattern, subscriber->watcher(), subscriber.get()});
      if (subscriber->watcher() && !wildcard) ++exact_watchers_[pattern];
      generation_.fetch_add(1, std::memory_order_release);
    }
  };
  if (wildcard) {
    insert();
    return result;
  }
  // A concrete channel: subscribe and recover under the channel's lock, so recovered messages
  // reach the subscriber before any live one and none falls in between.
  auto chp = channel(pattern);
  Channel& ch = *chp;
  MutexLock lock(ch.mu, std::adopt_lock);
  insert();
  result.epoch = ch.epoch;
  result.offset = ch.last_offset;
  if (since && since->recent > 0) {
    const std::int64_t cutoff = history_cutoff(namespace_of(pattern), clock_());
    std::size_t skip = ch.history.size() > since->recent ? ch.history.size() - since->recent : 0;
    for (std::size_t i = skip; i < ch.history.size(); ++i) {
      if (ch.history[i]->timestamp_ms < cutoff) continue;
      subscriber->deliver(ch.history[i]);
      ++result.recovered;
    }
  } else if (since) {
    if (since->epoch != ch.epoch) {
      result.reset = true;
    } else if (since->offset < ch.last_offset) {
      std::uint64_t oldest = ch.history.empty() ? ch.last_offset + 1 : ch.history.front()->offset;
      const std::int64_t cutoff = history_cutoff(namespace_of(pattern), clock_());
      if (since->offset + 1 < oldest) result.reset = true;
      for (const auto& m : ch.history) {
        if (m->offset <= since->offset || m->timestamp_ms < cutoff) {
          if (m->offset > since->offset) result.reset = true;  // expired: a gap remains
          continue;
        }
        subscriber->deliver(m);
        ++result.recovered;
      }
    }
  }
  if (namespace_of(pattern).join_leave && !subscriber->watcher()) {
    std::size_t direct = 0;
    {
      ReaderLock tl(trie_mu_);
      direct = direct_locked(pattern);
    }
    if (!hand_presence(MessageKind::kJoin, pattern, direct, result.id)) {
      announce(MessageKind::kJoin, ch, pattern, subscriber.get());
    }
  }
  return result;
}

void Hub::announce(MessageKind kind, Channel& ch, const std::string& channel, const Subscriber* except) {
  std::size_t direct = 0;
  {
    ReaderLock lock(trie_mu_);
    direct = direct_locked(channel);
  }
  auto subs = match(ch, channel);
  auto event = make_presence(kind, channel, direct, clock_(), subs->size());
  for (const auto& s : *subs) {
    if (s.get() != except) s->deliver(event);
  }
}

void Hub::unsubscribe(std::uint64_t id) {
  std::string pattern;
  bool watcher = false;
  {
    WriterLock lock(trie_mu_);
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end()) return;
    pattern = std::move(it->second.pattern);
    watcher = it->second.watcher;
    trie_->remove(pattern, id);
    subscriptions_.erase(it);
    if (watcher && !is_wildcard(pattern)) {
      if (auto w = exact_watchers_.find(pattern); w != exact_watchers_.end() && --w->second == 0) {
        exact_watchers_.erase(w);
      }
    }
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (!watcher && !is_wildcard(pattern) && namespace_of(pattern).join_leave) {
    auto chp = channel(pattern);
    MutexLock lock(chp->mu, std::adopt_lock);
    std::size_t direct = 0;
    {
      ReaderLock rl(trie_mu_);
      direct = direct_locked(pattern);
    }
    if (!hand_presence(MessageKind::kLeave, pattern, direct, id))
      announce(MessageKind::kLeave, *chp, pattern, nullptr);
  }
}

Result<PublishResult> Hub::publish(const std::string& name, std::string data, ContentType content_type,
                                   bool relayed) {
  if (auto e = validate_subject(name)) return std::unexpected(*e);
  const auto& ns = namespace_of(name);
  PublishResult result;
  {
    auto chp = channel(name);
    Channel& ch = *chp;
    MutexLock lock(ch.mu, std::adopt_lock);
    std::int64_t now = ch.last_used_ms;
    if (!relayed) ch.own_epoch();
    auto subs = match(ch, name);
    auto msg = make_message(name, std::move(data), ++ch.last_offset, ch.epoch, now, content_type,
                            subs->size(), relayed);
    if (ns.history_size > 0) {
      ch.history.push_back(msg);
      ch.trim_history(ns, now);
    }
    for (const auto& s : *subs) s->deliver(msg);
    result.offset = msg->offset;
    result.epoch = ch.epoch;
    result.subscribers = subs->size();
  }
  published_.fetch_add(1, std::memory_order_relaxed);
  delivered_.fetch_add(result.subscribers, std::memory_order_relaxed);
  return result;
}

Result<std::size_t> Hub::publish_many(const std::string& name, std::vector<Payload>& items, bool relayed) {
  if (auto e = validate_subject(name)) return std::unexpected(*e);
  if (items.empty()) return 0;
  const auto& ns = namespace_of(name);
  std::size_t subscribers = 0;
  {
    auto chp = channel(name);
    Channel& ch = *chp;
    MutexLock lock(ch.mu, std::adopt_lock);
    std::int64_t now = ch.last_used_ms;
    if (!relayed) ch.own_epoch();
    auto subs = match(ch, name);
    std::vector<MessagePtr> msgs;
    msgs.reserve(items.size());
    for (auto& [data, type] : items) {
      msgs.push_back(
          make_message(name, std::move(data), ++ch.last_offset, ch.epoch, now, type, subs->size(), relayed));
    }
    if (ns.history_size > 0) {
      for (const auto& m : msgs) ch.history.push_back(m);
      ch.trim_history(ns, now);
    }
    for (const auto& s : *subs) s->deliver_many(msgs);
    subscribers = subs->size();
  }
  published_.fetch_add(items.size(), std::memory_order_relaxed);
  delivered_.fetch_add(subscribers * items.size(), std::memory_order_relaxed);
  return items.size();
}

bool Hub::hand_presence(MessageKind kind, const std::string& channel, std::size_t direct,
                        std::uint64_t subscription) {
  MutexLock lock(hook_mu_);
  return presence_hook_ && presence_hook_(kind, channel, direct, subscription);
}

void Hub::deliver_presence(Channel& ch, const std::string& channel, const MessagePtr& event,
                           std::uint64_t except) {
  const Subscriber* skip = nullptr;
  if (except != 0) {
    ReaderLock lock(trie_mu_);
    if (auto it = subscriptions_.find(except); it != subscriptions_.end()) skip = it->second.subscriber;
  }
  auto subs = match(ch, channel);
  for (const auto& s : *subs) {
    if (s.get() != skip) s->deliver(event);
  }
}

void Hub::presence_from(MessageKind kind, const std::string& name, const std::string& origin,
                        std::size_t direct, std::uint64_t subscription, const std::string& self) {
  if (validate_subject(name)) return;
  auto chp = channel(name);
  Channel& ch = *chp;
  MutexLock lock(ch.mu, std::adopt_lock);
  if (direct == 0) {
    ch.node_direct.erase(origin);
  } else {
    ch.node_direct[origin] = direct;
  }
  if (kind == MessageKind::kData) return;  // a report
  std::uint64_t total = 0;
  for (const auto& [node, n] : ch.node_direct) total += n;
  auto event = make_presence(kind, name, total, clock_(), 0, origin, subscription);
  deliver_presence(ch, name, event, origin == self ? subscription : 0);
}

void Hub::presence_relayed(MessageKind kind, const std::string& name, std::uint64_t subscribers,
                           const std::string& origin, std::uint64_t subscription, const std::string& self) {
  if (validate_subject(name)) return;
  auto chp = channel(name);
  Channel& ch = *chp;
  MutexLock lock(ch.mu, std::adopt_lock);
  auto event = make_presence(kind, name, subscribers, clock_(), 0, origin, subscription, true);
  deliver_presence(ch, name, event, origin == self ? subscription : 0);
}

std::vector<std::pair<std::string, std::size_t>> Hub::join_leave_counts() const {
  std::map<std::string, std::size_t> counts;
  {
    ReaderLock lock(trie_mu_);
    for (const auto& [id, sub] : subscriptions_) {
      if (sub.watcher || is_wildcard(sub.pattern) || !namespace_of(sub.pattern).join_leave) continue;
      counts[sub.pattern] += 1;
    }
  }
  return {counts.begin(), counts.end()};
}

void Hub::forget_presence_of(const std::string& node) {
  std::vector<std::shared_ptr<Channel>> all;
  {
    MutexLock lock(channels_mu_);
    for (const auto& [name, ch] : channels_) all.push_back(ch);
  }
  for (auto& ch : all) {
    MutexLock lock(ch->mu);
    ch->node_direct.erase(node);
  }
}

std::size_t Hub::publish_sequenced(const std::string& name, std::vector<Sequenced>& items) {
  if (validate_subject(name) || items.empty()) return 0;
  const auto& ns = namespace_of(name);
  std::size_t subscribers = 0, fresh = 0;
  {
    auto chp = channel(name);
    Channel& ch = *chp;
    MutexLock lock(ch.mu, std::adopt_lock);
    std::int64_t now = ch.last_used_ms;
    auto subs = match(ch, name);
    std::vector<MessagePtr> msgs;
    msgs.reserve(items.size());
    for (auto& it : items) {
      if (it.epoch != ch.epoch) {
        ch.epoch = it.epoch;
        ch.history.clear();
        ch.last_offset = it.offset - 1;
      }
      ch.adopted = true;
      if (it.offset <= ch.last_offset) continue;                // had it already
      if (it.offset != ch.last_offset + 1) ch.history.clear();  // a gap: resume across it = reset
      ch.last_offset = it.offset;
      msgs.push_back(make_message(name, std::move(it.data), it.offset, ch.epoch, it.timestamp_ms,
                                  it.content_type, subs->size(), true));
    }
    if (ns.history_size > 0) {
      for (const auto& m : msgs) ch.history.push_back(m);
      ch.trim_history(ns, now);
    }
    if (!msgs.empty()) {
      for (const auto& s : *subs) s->deliver_many(msgs);
    }
    subscribers = subs->size();
    fresh = msgs.size();
  }
  published_.fetch_add(fresh, std::memory_order_relaxed);
  delivered_.fetch_add(subscribers * fresh, std::memory_order_relaxed);
  return fresh;
}

Hub::Presence Hub::presence(const std::string& channel) const {
  if (validate_subject(channel)) return {};
  ReaderLock lock(trie_mu_);
  auto subs = trie_->match(channel);
  auto clients = static_cast<std::size_t>(
      std::count_if(subs.begin(), subs.end(), [](const auto& s) { return !s->watcher(); }));
  return Presence{clients, direct_locked(channel)};
}

std::size_t Hub::direct_locked(const std::string& channel) const {
  auto n = trie_->count_exact(channel);
  auto w = exact_watchers_.find(channel);
  return w == exact_watchers_.end() ? n : n - std::min(n, w->second);
}

std::size_t Hub::subscriptions() const {
  ReaderLock lock(trie_mu_);
  return trie_->size();
}

}  // namespace roost::channels
