// The turn context: what an actor's handler sees. It records effects (storage writes, outputs,
// tells, enqueues, alarms, subscriptions) and never writes anything itself; the runtime turns the
// recorded effects into one TurnOp. Storage reads see this turn's writes, then the object's
// uncommitted turns (the overlay), then LMDB. Private to broker/src.
#pragma once

#include "actor_state.h"

#include <roost/core/subject.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/queue_store.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <stdexcept>

namespace roost::broker {

using durable::MailboxStore;

inline bool has_tag(const std::vector<std::string>& tags, std::string_view tag) {
  return tag.empty() || std::find(tags.begin(), tags.end(), tag) != tags.end();
}

class ActorRuntime::TurnContext final : public Context, public Storage {
 public:
  TurnContext(ActorRuntime& rt, Obj& obj, Effects& fx, const Item& item, std::int64_t now)
      : rt_(rt), obj_(obj), fx_(fx), item_(item), now_(now) {}

  std::string_view object_class() const override { return obj_.cls; }
  std::string_view object_name() const override { return obj_.name; }
  std::int64_t now_ms() const override { return now_; }
  Storage& storage() override { return *this; }

  // --- Storage ---
  std::optional<std::string> get(std::string_view key) override {
    if (auto it = fx_.writes.find(key); it != fx_.writes.end()) return it->second;
    {
      MutexLock lock(obj_.mu);
      if (auto it = obj_.overlay.find(key); it != obj_.overlay.end()) return it->second.value;
    }
    return rt_.store_.kv_get(obj_.okey, key);
  }
  void put(std::string_view key, std::string_view value) override {
    check_key(key);
    if (value.size() > rt_.options_.max_value_bytes) {
      throw std::length_error("storage value of " + std::to_string(value.size()) + " bytes exceeds " +
                              std::to_string(rt_.options_.max_value_bytes));
    }
    fx_.writes.insert_or_assign(std::string(key), std::string(value));
  }
  bool del(std::string_view key) override {
    check_key(key);
    bool existed = get(key).has_value();
    fx_.writes.insert_or_assign(std::string(key), std::nullopt);
    return existed;
  }
  using Storage::list;
  std::vector<std::pair<std::string, std::string>> list(const ListOptions& o) override {
    return scan(o.prefix, std::max(o.start, o.prefix), o.end, o.limit, o.reverse);
  }
  // list() for an answer that must stay within `max_bytes` of keys and values: nullopt past it,
  // having read no more than the bound from disk (a remote host's `list`).
  std::optional<std::vector<std::pair<std::string, std::string>>> list_within(const ListOptions& o,
                                                                              std::size_t max_bytes) {
    bool over = false;
    auto out = scan(o.prefix, std::max(o.start, o.prefix), o.end, o.limit, o.reverse, max_bytes, &over);
    std::size_t bytes = 0;
    for (const auto& [k, v] : out) bytes += k.size() + v.size();
    if (over || bytes > max_bytes) return std::nullopt;
    return out;
  }

  // --- sockets ---
  std::vector<Socket> sockets(std::string_view tag) override {
    std::vector<Socket> out;
    MutexLock lock(obj_.mu);
    for (const auto& [id, s] : obj_.sockets) {
      if (has_tag(tags_locked(id, s.tags), tag)) out.push_back(Socket{id});
    }
    if (item_.kind == Item::Kind::kConnect && has_tag(tags_locked(item_.socket, {}), tag)) {
      out.push_back(Socket{item_.socket});
    }
    return out;
  }
  std::vector<std::string> tags(Socket s) override {
    if (auto it = fx_.tags.find(s.id); it != fx_.tags.end()) return it->second;
    if (leaving(s)) return item_.left_tags;
    MutexLock lock(obj_.mu);
    auto it = obj_.sockets.find(s.id);
    return it == obj_.sockets.end() ? std::vector<std::string>{} : it->second.tags;
  }
  std::string attachment(Socket s) override {
    if (auto it = fx_.attachments.find(s.id); it != fx_.attachments.end()) return it->second;
    if (leaving(s)) return item_.left_attachment;
    MutexLock lock(obj_.mu);
    auto it = obj_.sockets.find(s.id);
    return it == obj_.sockets.end() ? std::string{} : it->second.attachment;
  }
  void set_attachment(Socket s, std::string data) override {
    if (data.size() > rt_.options_.max_attachment_bytes) {
      throw std::length_error("socket attachment of " + std::to_string(data.size()) + " bytes exceeds " +
                              std::to_string(rt_.options_.max_attachment_bytes));
    }
    fx_.attachments[s.id] = std::move(data);
  }
  void set_tags(Socket s, std::vector<std::string> tags) override {
    if (tags.size() > rt_.options_.max_tags) {
      throw std::length_error("at most " + std::to_string(rt_.options_.max_tags) + " tags a socket");
    }
    fx_.tags[s.id] = std::move(tags);
  }
  void send(Socket s, std::string data) override { fx_.sends.emplace_back(s.id, std::move(data)); }
  void broadcast(std::string data, std::string_view tag) override {
    auto targets = sockets(tag);
    for (std::size_t i = 0; i < targets.size(); ++i) {
      fx_.sends.emplace_back(targets[i].id, i + 1 == targets.size() ? std::move(data) : data);
    }
  }
  void close(Socket s, std::uint16_t code, std::string reason) override {
    // What a WebSocket endpoint may send (RFC 6455 §7.4): 1004-1006 and 1015 are reserved for
    // reporting, 1016-2999 for the protocol, 5000 and up do not exist. The reason fits a control
    // frame (125 bytes with the code).
    if (!sendable_close_code(code)) {
      throw std::invalid_argument("close code " + std::to_string(code) +
                                  " may not be sent (1000-1003, 1007-1014, 3000-4999)");
    }
    if (reason.size() > 123) throw std::length_error("a close reason is at most 123 bytes");
    fx_.closes.push_back({s.id, code, std::move(reason)});
  }
  void set_auto_response(std::string request, std::string response) override {
    fx_.auto_response.emplace(std::move(request), std::move(response));
  }

  // --- outputs to the rest of the broker ---
  void publish(std::string_view subject, std::string data, ContentType type) override {
    if (auto e = channels::validate_subject(subject)) throw std::invalid_argument(e->message);
    check_size(data);
    fx_.publishes.push_back({std::string(subject), std::move(data), type});
  }
  void enqueue(std::string_view queue, std::string data, ContentType type) override {
    if (auto e = durable::QueueStore::validate_name(queue)) throw std::invalid_argument(e->message);
    check_size(data);
    NewMessage m;
    m.body = std::move(data);
    m.content_type = type;
    fx_.enqueues[std::string(queue)].push_back(std::move(m));
  }
  void tell(std::string_view cls, std::string_view name, std::string data, ContentType type) override {
    if (auto e = rt_.check(cls, name)) throw std::invalid_argument(e->message);
    check_size(data);
    Effects::Tell t;
    t.okey = MailboxStore::object_key(cls, name);
    t.cls = std::string(cls);
    t.name = std::string(name);
    t.mail.content_type = type;
    t.mail.enqueued_ms = now_;
    t.mail.data = std::move(data);
    fx_.tells.push_back(std::move(t));
  }
  CallReply call(std::string_view cls, std::string_view name, std::string data, ContentType type,
                 std::uint64_t timeout_ms) override {
    auto r =
        wait_object(cls, name, timeout_ms,
                    [&](std::vector<std::string> chain, std::uint64_t timeout, Callback<ObjectReply> done) {
                      // In a mesh, an object owned by another node is called there (a second
                      // instance here would split its state); the chain does not cross nodes.
                      if (auto* mesh = rt_.mesh_effects_; mesh != nullptr && mesh->remote_object(cls, name)) {
                        return mesh->call(std::string(cls), std::string(name), std::move(data), type, timeout,
                                          std::move(done));
                      }
                      rt_.call(std::string(cls), std::string(name), std::move(data), type, timeout,
                               std::move(done), std::move(chain));
                    });
    return CallReply{std::move(r.data), r.content_type};
  }
  // An HTTP request to another object's on_fetch, answered within this turn like call() (a remote
  // host's `await stub.fetch()`).
  ObjectReply fetch_object(std::string_view cls, std::string_view name, ObjectHttpRequest request,
                           std::uint64_t timeout_ms) {
    return wait_object(
        cls, name, timeout_ms,
        [&](std::vector<std::string> chain, std::uint64_t timeout, Callback<ObjectReply> done) {
          rt_.fetch(std::string(cls), std::string(name), std::move(request), timeout, std::move(done),
                    std::move(chain));
        });
  }
  // The object's alarms as committed (remote hosts get them when an object wakes).
  std::vector<ObjectInfo::Alarm> committed_alarms() { return rt_.info(obj_.cls, obj_.name).alarms; }
  const Item& item() const { return item_; }
  ActorRuntime& runtime() { return rt_; }
  // The answer of a call or fetch being handled, whole (a remote host's response with its status).
  void respond(ObjectReply reply) {
    if (item_.kind != Item::Kind::kCall) throw std::logic_error("a response outside a call or fetch");
    fx_.reply = std::move(reply);
  }
  void reply(std::string data, ContentType type) override {
    if (item_.kind != Item::Kind::kCall) throw std::logic_error("reply() outside on_call");
    fx_.reply = ObjectReply{std::move(data), type};
  }
  void set_alarm(std::string_view name, std::int64_t time_ms, std::uint64_t every_ms) override {
    check_alarm_name(name);
    fx_.alarms.push_back({std::string(name), true, time_ms, every_ms});
  }
  void cancel_alarm(std::string_view name) override {
    check_alarm_name(name);
    fx_.alarms.push_back({std::string(name), false, 0, 0});
  }
  void subscribe(std::string_view pattern) override {
    if (auto e = channels::validate_pattern(pattern)) throw std::invalid_argument(e->message);
    fx_.subscriptions.emplace_back(std::string(pattern), true);
  }
  void unsubscribe(std::string_view pattern) override {
    fx_.subscriptions.emplace_back(std::string(pattern), false);
  }

 private:
  // Submits a call or fetch made within this turn and waits for its answer; throws CallError.
  template <class Submit>
  ObjectReply wait_object(std::string_view cls, std::string_view name, std::uint64_t timeout_ms,
                          Submit submit) {
    if (auto e = rt_.check(cls, name)) throw CallError(std::string(error_code_name(e->code)), e->message);
    auto target = MailboxStore::object_key(cls, name);
    std::vector<std::string> chain = item_.chain;
    chain.push_back(obj_.okey);
    if (std::find(chain.begin(), chain.end(), target) != chain.end()) {
      throw CallError("call_cycle", "object " + std::string(cls) + "/" + std::string(name) +
                                        " is waiting in this chain of calls: calling it would never return");
    }
    if (timeout_ms == 0) timeout_ms = rt_.options_.default_call_timeout_ms;
    auto answer = std::make_shared<std::promise<Result<ObjectReply>>>();
    auto got = answer->get_future();
    submit(std::move(chain), timeout_ms,
           [answer](Result<ObjectReply> r) { answer->set_value(std::move(r)); });
    // The runtime answers call_timeout at the deadline; the margin covers a node that stops. A
    // stopping runtime ends the wait at once: its workers must finish.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms + 5'000);
    while (got.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (rt_.halt_.load()) throw CallError("unavailable", "the node is shutting down");
      if (std::chrono::steady_clock::now() >= deadline) {
        throw CallError("call_timeout", "no answer from " + std::string(cls) + "/" + std::string(name));
      }
    }
    auto r = got.get();
    if (!r) throw CallError(std::string(error_code_name(r.error().code)), r.error().message);
    return std::move(*r);
  }
  const std::vector<std::string>& tags_locked(std::uint64_t id, const std::vector<std::string>& committed)
      ROOST_REQUIRES(obj_.mu) {
    auto it = fx_.tags.find(id);
    return it != fx_.tags.end() ? it->second : committed;
  }
  void check_key(std::string_view key) const {
    if (key.empty() || key.size() > rt_.options_.max_key_bytes) {
      throw std::length_error("storage keys are 1 to " + std::to_string(rt_.options_.max_key_bytes) +
                              " bytes");
    }
  }
  void check_size(const std::string& data) const {
    if (data.size() > rt_.options_.max_message_bytes) {
      throw std::length_error("message of " + std::to_string(data.size()) + " bytes exceeds " +
                              std::to_string(rt_.options_.max_message_bytes));
    }
  }
  // The socket whose on_disconnect this turn runs.
  bool leaving(Socket s) const { return item_.kind == Item::Kind::kDisconnect && item_.socket == s.id; }
  static void check_alarm_name(std::string_view name) {
    if (name.empty() || name.size() > 256) throw std::invalid_argument("alarm names are 1 to 256 bytes");
  }
  // Committed entries, overlaid by uncommitted turns, overlaid by this turn.
  std::vector<std::pair<std::string, std::string>> scan(std::string_view prefix, std::string_view start,
                                                        std::string_view end, std::size_t limit, bool reverse,
                                                        std::size_t max_bytes = 0, bool* over = nullptr) {
    auto in_range = [&](std::string_view k) {
      return k.starts_with(prefix) && k >= start && (end.empty() || k < end);
    };
    std::map<std::string, std::optional<std::string>, std::less<>> pending;
    {
      MutexLock lock(obj_.mu);
      for (const auto& [k, p] : obj_.overlay) {
        if (in_range(k)) pending[k] = p.value;
      }
    }
    for (const auto& [k, v] : fx_.writes) {
      if (in_range(k)) pending[k] = v;
    }
    std::size_t fetch = limit == 0 ? 0 : limit + pending.size();
    // Enough committed entries that `limit` survive this turn's and earlier turns' deletes.
    auto base = rt_.store_.kv_scan(obj_.okey, prefix, start, end, fetch, reverse, max_bytes, over);
    std::map<std::string, std::string, std::less<>> merged(std::make_move_iterator(base.begin()),
                                                           std::make_move_iterator(base.end()));
    for (auto& [k, v] : pending) {
      if (v) {
        merged[k] = *v;
      } else {
        merged.erase(k);
      }
    }
    std::vector<std::pair<std::string, std::string>> out;
    auto take = [&](auto first, auto last) {
      for (; first != last && (limit == 0 || out.size() < limit); ++first) {
        out.emplace_back(first->first, std::move(first->second));
      }
    };
    if (reverse) {
      take(merged.rbegin(), merged.rend());
    } else {
      take(merged.begin(), merged.end());
    }
    return out;
  }

  ActorRuntime& rt_;
  Obj& obj_;
  Effects& fx_;
  const Item& item_;
  std::int64_t now_;
};

// A turn whose handler runs elsewhere (AsyncTurnDriver): the item, its effects and its context
// live here until the driver ends it.
struct ActorRuntime::AsyncTurn {
  AsyncTurn(ActorRuntime& rt, std::shared_ptr<Obj> o, Item i, std::uint64_t gen, std::int64_t now,
            bool rolled)
      : obj(std::move(o)),
        item(std::move(i)),
        generation(gen),
        rolled_back(rolled),
        ctx(rt, *obj, fx, item, now) {}
  AsyncTurn(const AsyncTurn&) = delete;
  AsyncTurn& operator=(const AsyncTurn&) = delete;

  std::shared_ptr<Obj> obj;
  Item item;
  Effects fx;
  std::uint64_t generation;
  bool rolled_back;
  TurnContext ctx;
  Actor* instance = nullptr;  // the object's actor (the driver's per-object state)
  std::atomic<bool> ended{false};

  // The turn is over: its effects commit with the item, or — with `failure` — it has none and
  // the item is retried (then dead-lettered) or its caller answered. Once; later calls do nothing.
  void end(std::optional<Error> failure = std::nullopt);
  // Nobody can run it now: the item goes back to the front of the line, its attempt uncounted.
  void requeue();
};

}  // namespace roost::broker
