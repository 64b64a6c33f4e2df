// RemoteHosts: a host connection (Conn, the protocol of docs/hosts.md) and the RemoteActor that runs
// a remote class's turns on the runtime's workers.
#include "roost/broker/remote_hosts.h"

#include "actor_state.h"
#include "turn_context.h"

#include <roost/broker/actor_runtime.h>
#include <roost/core/base64.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <stdexcept>

namespace roost::broker {

namespace json = boost::json;

namespace {

// Bytes queued to a host past which its next turns wait to be sent (Conn::send_turn): a quarter of
// the gateway's bound (64 MiB), so a host that reads is never closed for a backlog of turns.
constexpr std::size_t kPaceBytes = 16u << 20;

std::string_view type_name(ContentType t) {
  switch (t) {
    case ContentType::kText: return "text";
    case ContentType::kBytes: return "bytes";
    case ContentType::kJson: break;
  }
  return "json";
}

// Thrown for a frame that breaks the protocol; its message goes back to the host.
struct ProtocolError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

const json::value* field(const json::object& o, std::string_view key) { return o.if_contains(key); }

std::string str(const json::object& o, std::string_view key, bool required = true) {
  const auto* v = field(o, key);
  if (v == nullptr || v->is_null()) {
    if (required) throw ProtocolError("missing \"" + std::string(key) + "\"");
    return {};
  }
  if (!v->is_string()) throw ProtocolError("\"" + std::string(key) + "\" must be a string");
  return std::string(v->get_string());
}

std::uint64_t u64(const json::object& o, std::string_view key, std::uint64_t fallback = 0) {
  const auto* v = field(o, key);
  if (v == nullptr || v->is_null()) return fallback;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
  if (v->is_double() && v->get_double() >= 0 && v->get_double() < 1.8e19) {
    return static_cast<std::uint64_t>(v->get_double());
  }
  throw ProtocolError("\"" + std::string(key) + "\" must be a non-negative integer");
}

std::int64_t i64(const json::object& o, std::string_view key) {
  const auto* v = field(o, key);
  if (v == nullptr) throw ProtocolError("missing \"" + std::string(key) + "\"");
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v->get_uint64());
  }
  if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
  throw ProtocolError("\"" + std::string(key) + "\" must be an integer");
}

ContentType content_type(const json::object& o) {
  auto t = str(o, "type", false);
  if (t.empty() || t == "json") return ContentType::kJson;
  if (t == "text") return ContentType::kText;
  if (t == "bytes") return ContentType::kBytes;
  throw ProtocolError("\"type\" is json, text or bytes");
}

// A message's data: the text itself for json and text, base64 for bytes.
std::string data_of(const json::object& o, ContentType t, std::string_view key = "data") {
  auto d = str(o, key, false);
  if (t != ContentType::kBytes) return d;
  auto raw = base64_decode(d);
  if (!raw) throw ProtocolError("\"" + std::string(key) + "\" is not base64");
  return std::move(*raw);
}

std::string bytes_of(const json::object& o, std::string_view key) {
  auto raw = base64_decode(str(o, key, false));
  if (!raw) throw ProtocolError("\"" + std::string(key) + "\" is not base64");
  return std::move(*raw);
}

void put_data(json::object& o, std::string_view data, ContentType t) {
  o["type"] = type_name(t);
  o["data"] = t == ContentType::kBytes ? json::string(base64_encode(data)) : json::string(data);
}

json::array headers_json(std::span<const std::pair<std::string, std::string>> headers) {
  json::array a;
  for (const auto& [k, v] : headers) a.push_back(json::array{json::string(k), json::string(v)});
  return a;
}

std::vector<std::pair<std::string, std::string>> headers_of(const json::object& o) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto* v = field(o, "headers");
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_array()) throw ProtocolError("\"headers\" must be an array of [name, value]");
  for (const auto& h : v->get_array()) {
    if (!h.is_array() || h.get_array().size() != 2 || !h.get_array()[0].is_string() ||
        !h.get_array()[1].is_string()) {
      throw ProtocolError("\"headers\" must be an array of [name, value]");
    }
    out.emplace_back(std::string(h.get_array()[0].get_string()), std::string(h.get_array()[1].get_string()));
  }
  return out;
}

json::object request_json(const ObjectHttpRequest& r) {
  return json::object{{"method", r.method},
                      {"path", r.path},
                      {"query", r.query},
                      {"headers", headers_json(r.headers)},
                      {"body", base64_encode(r.body)},
                      {"client_address", r.client_address},
                      {"claims", r.claims}};
}

ObjectHttpRequest request_of(const json::object& o) {
  ObjectHttpRequest r;
  r.method = str(o, "method", false);
  if (r.method.empty()) r.method = "GET";
  r.path = str(o, "path", false);
  if (r.path.empty() || r.path.front() != '/') r.path.insert(0, "/");
  r.query = str(o, "query", false);
  r.headers = headers_of(o);
  r.body = bytes_of(o, "body");
  return r;
}

json::object error_json(const Error& e) {
  return json::object{{"code", error_code_name(e.code)}, {"message", e.message}};
}

json::object response_json(const ObjectReply& r) {
  return json::object{
      {"status", r.status}, {"headers", headers_json(r.headers)}, {"body", base64_encode(r.data)}};
}

const json::object& object_at(const json::object& o, std::string_view key) {
  const auto* v = field(o, key);
  if (v == nullptr || !v->is_object()) throw ProtocolError("\"" + std::string(key) + "\" must be an object");
  return v->get_object();
}

}  // namespace

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A turn at a host: the runtime's turn, and the frames the host sent for it until a worker applies
// them (one worker at a time, in order).
struct RemoteHosts::TurnWait {
  std::uint64_t id = 0;
  std::shared_ptr<ActorRuntime::AsyncTurn> turn;
  std::weak_ptr<Conn> host;
  Mutex mu;
  std::deque<json::object> frames ROOST_GUARDED_BY(mu);
  bool closed ROOST_GUARDED_BY(mu) = false;    // the host went away
  bool deferred ROOST_GUARDED_BY(mu) = false;  // waits to be sent: the host's queue is full enough
  bool overflow ROOST_GUARDED_BY(mu) = false;  // it sent more than a turn may
  bool draining ROOST_GUARDED_BY(mu) = false;  // a worker applies its frames now
  bool done ROOST_GUARDED_BY(mu) = false;
  std::size_t received ROOST_GUARDED_BY(mu) = 0;
  std::size_t received_bytes ROOST_GUARDED_BY(mu) = 0;
  std::int64_t last_ms ROOST_GUARDED_BY(mu) = 0;  // steady ms of the host's last frame for it

  // Under mu: whether the caller must post a drain.
  bool wake() ROOST_REQUIRES(mu) {
    if (draining || done) return false;
    draining = true;
    return true;
  }
};

class RemoteHosts::Conn final : public HostSession, public std::enable_shared_from_this<Conn> {
 public:
  Conn(RemoteHosts& reg, std::shared_ptr<HostLink> link, HostGrant grant, std::uint64_t id)
      : reg_(reg), link_(std::move(link)), grant_(std::move(grant)), id_(id) {}

  void on_frame(std::string text) override {
    if (!alive_.load()) return;  // closed (stalled, too slow, refused): what it sends now is void
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return protocol_error("a frame is a JSON object");
    auto& o = v.get_object();
    try {
      auto t = str(o, "t");
      if (t == "op" || t == "done" || t == "fail") {
        auto turn = u64(o, "turn");  // before `o` is moved from
        return to_turn(turn, std::move(o), text.size());
      }
      if (!registered_ && t != "register") throw ProtocolError("send \"register\" first");
      if (t == "register") return on_register(o);
      if (t == "tell" || t == "call" || t == "fetch") return on_request(t, o);
      if (t == "front_done") return on_front_done(o);
      if (t == "ping") {
        send(json::object{{"t", "pong"}});
        return;
      }
      throw ProtocolError("unknown frame type \"" + t + "\"");
    } catch (const ProtocolError& e) {
      protocol_error(e.what());
    } catch (const std::exception& e) {
      protocol_error(e.what());
    }
  }

  void on_closed() override {
    if (alive_.exchange(false)) {
      module_logger("actors")->info("remote host {} ({}) disconnected", id_, grant_.peer);
    }
    std::vector<std::shared_ptr<TurnWait>> waits;
    std::map<std::uint64_t, Callback<FrontReply>> fronts;
    {
      MutexLock lock(mu_);
      for (auto& [id, w] : turns_) waits.push_back(w);
      fronts.swap(fronts_);
      deferred_.clear();
    }
    for (auto& [id, done] : fronts) {
      done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the host disconnected before it answered"}));
    }
    for (auto& w : waits) {
      bool post = false;
      {
        MutexLock lock(w->mu);
        w->closed = true;
        post = w->wake();
      }
      if (post) reg_.post_drain(w);
    }
    reg_.remove_host(this);
  }

  bool alive() const { return alive_.load(); }
  bool serves_front() const { return front_.load(); }
  std::size_t fronts_waiting() {
    MutexLock lock(mu_);
    return fronts_.size();
  }
  // Sends a front request; `done` is answered once (by the host, its end, or the deadline).
  void front(std::uint64_t id, const ObjectHttpRequest& request, Callback<FrontReply> done) {
    {
      MutexLock lock(mu_);
      fronts_.emplace(id, std::move(done));
    }
    if (!send(json::object{{"t", "front"}, {"id", id}, {"request", request_json(request)}})) {
      finish_front(id, std::unexpected(Error{ErrorCode::UNAVAILABLE, "the host's connection closed"}));
    }
  }
  void finish_front(std::uint64_t id, Result<FrontReply> r) {
    Callback<FrontReply> done;
    {
      MutexLock lock(mu_);
      auto it = fronts_.find(id);
      if (it == fronts_.end()) return;
      done = std::move(it->second);
      fronts_.erase(it);
    }
    done(std::move(r));
  }
  std::uint64_t id() const { return id_; }
  const HostGrant& grant() const { return grant_; }
  std::atomic<std::size_t> objects{0};

  // False when the host is closed or its queue is over the bound (the link then ends it, and
  // on_closed follows at once).
  bool send(const json::object& frame) { return alive_.load() && link_->send(json::serialize(frame)); }
  void close(std::uint16_t code, std::string reason) {
    alive_ = false;
    link_->close(code, std::move(reason));
  }

  void open_turn(const std::shared_ptr<TurnWait>& w) {
    MutexLock lock(mu_);
    turns_.emplace(w->id, w);
  }
  // Sends a turn's frame, or keeps it while kPaceBytes are queued to the host already (or turns
  // wait before it): a host that reads is never sent a backlog faster than it reads — a burst of
  // waiting turns (a host connecting to many waiting objects) would otherwise pass its queue's
  // bound and close it as too slow. send_deferred() sends what waits. False: the link is closed.
  bool send_turn(const std::shared_ptr<TurnWait>& w, json::object frame) {
    {
      MutexLock lock(mu_);
      if (!deferred_.empty() || link_->queued_bytes() > kPaceBytes) {
        {
          MutexLock wl(w->mu);
          w->deferred = true;
        }
        deferred_.emplace_back(w, json::serialize(frame));
        return alive_.load();
      }
    }
    return send(frame);
  }
  // Sends deferred turns while the host's queue is below kPaceBytes (watchdog).
  void send_deferred() {
    for (;;) {
      std::shared_ptr<TurnWait> w;
      std::string frame;
      {
        MutexLock lock(mu_);
        if (deferred_.empty() || link_->queued_bytes() > kPaceBytes) return;
        w = std::move(deferred_.front().first);
        frame = std::move(deferred_.front().second);
        deferred_.pop_front();
      }
      {
        MutexLock wl(w->mu);
        if (w->done) continue;
        w->deferred = false;
        w->last_ms = steady_ms();
      }
      if (!alive_.load() || !link_->send(std::move(frame))) return;
    }
  }
  // Turns this host has not answered for `timeout_ms` (none while a worker applies its frames, nor
  // while a turn waits to be sent).
  bool stalled(std::int64_t now, std::int64_t timeout_ms) {
    MutexLock lock(mu_);
    for (auto& [id, w] : turns_) {
      MutexLock wl(w->mu);
      if (!w->draining && !w->done && !w->deferred && now - w->last_ms > timeout_ms) return true;
    }
    return false;
  }
  void close_turn(std::uint64_t turn) {
    MutexLock lock(mu_);
    turns_.erase(turn);
  }

  // Whether the host may reach this object outside its own (its token's objects grant, or a class
  // it serves).
  bool may_reach(std::string_view cls, std::string_view name) const {
    return grant_.principal.may_use_object(cls, name) || grant_.may_host(std::string(cls));
  }

 private:
  void protocol_error(std::string message) {
    module_logger("actors")->warn("remote host {} ({}): {}", id_, grant_.peer, message);
    send(
        json::object{{"t", "error"}, {"error", error_json(Error{ErrorCode::MALFORMED, std::move(message)})}});
  }

  void to_turn(std::uint64_t turn, json::object frame, std::size_t bytes) {
    std::shared_ptr<TurnWait> w;
    {
      MutexLock lock(mu_);
      auto it = turns_.find(turn);
      if (it == turns_.end()) return;  // a turn that failed or timed out: its late frames are void
      w = it->second;
    }
    bool post = false;
    {
      MutexLock lock(w->mu);
      w->received_bytes += bytes;
      if (++w->received > reg_.options_.max_turn_frames || w->received_bytes > reg_.options_.max_turn_bytes) {
        w->overflow = true;
      } else {
        w->frames.push_back(std::move(frame));
      }
      w->last_ms = steady_ms();
      post = w->wake();
    }
    if (post) reg_.post_drain(w);
  }

  void on_register(const json::object& o) {
    if (registering_) throw ProtocolError("registered already");
    const auto* list = field(o, "classes");
    const auto* front = field(o, "front");
    bool serves_front = front != nullptr && front->is_bool() && front->get_bool();
    if (list == nullptr || !list->is_array() || (list->get_array().empty() && !serves_front)) {
      throw ProtocolError("\"classes\" must be a non-empty array (or \"front\": true)");
    }
    if (list->get_array().size() > reg_.options_.max_classes_per_host) {
      throw ProtocolError("at most " + std::to_string(reg_.options_.max_classes_per_host) +
                          " classes a host");
    }
    std::vector<std::string> names;
    std::map<std::string, ActorClassOptions> options;
    for (const auto& c : list->get_array()) {
      std::string name;
      ActorClassOptions opts;
      if (c.is_string()) {
        name = std::string(c.get_string());
      } else if (c.is_object()) {
        const auto& co = c.get_object();
        name = str(co, "name");
        opts.max_retries =
            static_cast<std::uint32_t>(std::min<std::uint64_t>(u64(co, "max_retries", 3), 100));
        opts.retry_delay_ms = std::min<std::uint64_t>(u64(co, "retry_delay_ms", 100), 3'600'000);
        opts.dead_letter_queue = str(co, "dead_letter_queue", false);
      } else {
        throw ProtocolError("a class is a name or {\"name\": …}");
      }
      names.push_back(name);
      options[name] = std::move(opts);
    }
    registering_ = true;
    // Adding a class reads its waiting mail from LMDB: on an actor worker, not on the gateway's
    // io thread that delivered this frame.
    reg_.rt_.post([self = shared_from_this(), names = std::move(names), options = std::move(options),
                   serves_front]() mutable {
      if (auto e = self->reg_.add_host(self, names, options)) {
        self->send(json::object{{"t", "error"}, {"error", error_json(*e)}});
        self->close(e->code == ErrorCode::FORBIDDEN ? 4403 : 4400, e->message);
        return;
      }
      self->front_ = serves_front;
      self->registered_ = true;
      json::array classes;
      for (auto& n : names) classes.push_back(json::string(n));
      self->send(json::object{{"t", "registered"}, {"host", self->id_}, {"classes", std::move(classes)}});
      module_logger("actors")->info("remote host {} ({}) serves {} classes", self->id_, self->grant_.peer,
                                    names.size());
    });
  }

  // Requests outside turns: what a host's front code sends (docs/hosts.md, "Requests").
  void on_request(const std::string& t, const json::object& o) {
    auto id = u64(o, "id");
    auto cls = str(o, "class");
    auto name = str(o, "object");
    auto answer = [self = shared_from_this(), id](json::object reply) {
      reply["t"] = "reply";
      reply["id"] = id;
      self->requests_.fetch_sub(1);
      self->send(reply);
    };
    auto fail = [&](const Error& e) {
      send(json::object{{"t", "reply"}, {"id", id}, {"error", error_json(e)}});
    };
    if (!may_reach(cls, name)) {
      return fail(Error{ErrorCode::FORBIDDEN, "this host may not use object " + cls + "/" + name});
    }
    // Everything read before a slot is taken: a malformed request costs none.
    auto type = ContentType::kJson;
    std::string data;
    ObjectHttpRequest req;
    try {
      if (t == "fetch") {
        req = request_of(object_at(o, "request"));
        req.client_address = grant_.peer;
        req.claims = grant_.principal.claims;
      } else {
        type = content_type(o);
        data = data_of(o, type);
      }
    } catch (const ProtocolError& e) {
      return fail(Error{ErrorCode::MALFORMED, e.what()});
    }
    auto timeout_ms = reg_.call_timeout(o);
    if (requests_.fetch_add(1) >= reg_.options_.max_host_requests) {
      requests_.fetch_sub(1);
      return fail(
          Error{ErrorCode::TOO_MANY_REQUESTS, "too many requests outstanding on this host connection"});
    }
    reg_.metrics_.requests.fetch_add(1, std::memory_order_relaxed);
    auto& router = reg_.router_;
    if (t == "tell") {
      router.object_tell(
          std::move(cls), std::move(name), std::move(data), type, [answer](Result<std::uint64_t> r) {
            answer(r ? json::object{{"seq", *r}} : json::object{{"error", error_json(r.error())}});
          });
    } else if (t == "call") {
      router.object_call(std::move(cls), std::move(name), std::move(data), type, timeout_ms,
                         [answer](Result<ObjectReply> r) {
                           json::object out;
                           if (r) {
                             put_data(out, r->data, r->content_type);
                           } else {
                             out["error"] = error_json(r.error());
                           }
                           answer(std::move(out));
                         });
    } else {
      router.object_fetch(std::move(cls), std::move(name), std::move(req), timeout_ms,
                          [answer](Result<ObjectReply> r) {
                            answer(r ? json::object{{"response", response_json(*r)}}
                                     : json::object{{"error", error_json(r.error())}});
                          });
    }
  }

  RemoteHosts& reg_;
  std::shared_ptr<HostLink> link_;
  HostGrant grant_;
  std::uint64_t id_;
  std::atomic<bool> alive_{true};
  bool registering_ = false;             // a register frame came (frames arrive one at a time)
  std::atomic<bool> registered_{false};  // its classes are added (on a worker)
  std::atomic<std::size_t> requests_{0};
  Mutex mu_;
  std::map<std::uint64_t, std::shared_ptr<TurnWait>> turns_ ROOST_GUARDED_BY(mu_);
  std::deque<std::pair<std::shared_ptr<TurnWait>, std::string>> deferred_ ROOST_GUARDED_BY(mu_);
  std::atomic<bool> front_{false};  // registered front code (app_routes)
  std::map<std::uint64_t, Callback<FrontReply>> fronts_ ROOST_GUARDED_BY(mu_);

  void on_front_done(const json::object& o) {
    auto id = u64(o, "id");
    FrontReply out;
    if (const auto* up = field(o, "upgrade"); up != nullptr && up->is_object()) {
      out.upgrade_class = str(up->get_object(), "class");
      out.upgrade_object = str(up->get_object(), "object");
      if (!may_reach(out.upgrade_class, out.upgrade_object)) {
        return finish_front(id, std::unexpected(Error{ErrorCode::FORBIDDEN, "this host may not use object " +
                                                                                out.upgrade_class + "/" +
                                                                                out.upgrade_object}));
      }
    } else if (const auto* res = field(o, "response"); res != nullptr && res->is_object()) {
      const auto& r = res->get_object();
      auto status = u64(r, "status", 200);
      out.response.status = static_cast<std::uint16_t>(std::min<std::uint64_t>(status, 65535));
      out.response.headers = headers_of(r);
      out.response.data = bytes_of(r, "body");
      out.response.content_type = ContentType::kBytes;
    } else {
      auto message = str(o, "error", false);
      reg_.metrics_.fronts_failed.fetch_add(1, std::memory_order_relaxed);
      return finish_front(id, std::unexpected(Error{ErrorCode::ACTOR_ERROR,
                                                    message.empty() ? "the front code failed" : message}));
    }
    finish_front(id, std::move(out));
  }
};

// One object of a remote class while it is in memory: which host has it, and whether that host got
// its snapshot. Destroyed at hibernation (or after a failed turn): the host is told to let go.
class RemoteHosts::RemoteActor final : public Actor {
 public:
  RemoteActor(RemoteHosts& reg, std::string cls) : reg_(reg), cls_(std::move(cls)) {}
  ~RemoteActor() override { unbind(true); }

  // Keeps the host that has this object, or takes the least loaded one of its class (null: none).
  std::shared_ptr<Conn> bind() {
    if (host_ && host_->alive()) return host_;
    unbind(false);
    host_ = reg_.pick(cls_);
    if (host_) host_->objects.fetch_add(1);
    return host_;
  }
  bool host_knows = false;  // the host got this object's snapshot
  std::string object;       // its name (set by its first turn)

 private:
  void unbind(bool release) {
    if (!host_) return;
    host_->objects.fetch_sub(1);
    if (release && host_knows) {
      reg_.metrics_.releases.fetch_add(1, std::memory_order_relaxed);
      host_->send(json::object{{"t", "release"}, {"class", cls_}, {"object", object}});
    }
    host_.reset();
    host_knows = false;
  }

  RemoteHosts& reg_;
  std::string cls_;
  std::shared_ptr<Conn> host_;
};

namespace {

using TurnContext = ActorRuntime::TurnContext;
using Item = ActorRuntime::Item;

// The turn as the host sees it (docs/hosts.md, "Turns").
json::object turn_frame(const Item& item) {
  switch (item.kind) {
    case Item::Kind::kMail: {
      const auto& m = item.mail;
      if (m.kind == MailKind::kAlarm) {
        return json::object{{"kind", "alarm"},
                            {"name", m.subject},
                            {"scheduled_ms", m.scheduled_ms},
                            {"retry_count", item.attempt - 1},
                            {"missed", m.missed}};
      }
      json::object f{{"kind", m.kind == MailKind::kChannel ? "channel" : "message"},
                     {"seq", item.seq},
                     {"attempt", item.attempt}};
      put_data(f, m.data, m.content_type);
      if (m.kind == MailKind::kChannel) f["subject"] = m.subject;
      return f;
    }
    case Item::Kind::kCall: {
      if (item.http) return json::object{{"kind", "fetch"}, {"request", request_json(*item.http)}};
      json::object f{{"kind", "call"}};
      put_data(f, item.data, item.type);
      return f;
    }
    case Item::Kind::kConnect: {
      const auto& r = item.request;
      return json::object{{"kind", "connect"},
                          {"socket", item.socket},
                          {"request", json::object{{"query", r.query},
                                                   {"origin", r.origin},
                                                   {"protocol", r.protocol},
                                                   {"path", r.path},
                                                   {"headers", headers_json(r.headers)},
                                                   {"client_address", r.client_address},
                                                   {"claims", r.claims}}}};
    }
    case Item::Kind::kSocketMessage:
      return json::object{{"kind", "socket_message"}, {"socket", item.socket}, {"data", item.data}};
    case Item::Kind::kDisconnect: {
      json::array tags;
      for (const auto& t : item.left_tags) tags.push_back(json::string(t));
      return json::object{{"kind", "disconnect"},
                          {"socket", item.socket},
                          {"code", item.code},
                          {"reason", item.data},
                          {"was_clean", item.code != 1006},
                          {"tags", std::move(tags)},
                          {"attachment", item.left_attachment}};
    }
  }
  return {};
}

// What a host needs to serve an object it did not have: its sockets (the one being connected
// comes with its turn) and its alarms.
json::object snapshot(TurnContext& ctx, const Item& item) {
  json::array sockets;
  for (auto s : ctx.sockets({})) {
    if (item.kind == Item::Kind::kConnect && s.id == item.socket) continue;
    json::array tags;
    for (auto& t : ctx.tags(s)) tags.push_back(json::string(t));
    sockets.push_back(
        json::object{{"id", s.id}, {"tags", std::move(tags)}, {"attachment", ctx.attachment(s)}});
  }
  json::array alarms;
  for (const auto& a : ctx.committed_alarms()) {
    alarms.push_back(json::object{{"name", a.name}, {"due_ms", a.due_ms}, {"every_ms", a.every_ms}});
  }
  return json::object{{"sockets", std::move(sockets)}, {"alarms", std::move(alarms)}};
}

// Thrown by a host's `fail` of a connect it refuses.
struct Refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

void RemoteHosts::begin(std::shared_ptr<ActorRuntime::AsyncTurn> turn) {
  auto* actor = static_cast<RemoteActor*>(turn->instance);
  if (actor->object.empty()) actor->object = turn->obj->name;
  auto host = actor->bind();
  if (!host) return turn->requeue();  // no live host of its class now: it waits for one
  auto w = std::make_shared<TurnWait>();
  w->id = next_turn_.fetch_add(1);
  w->turn = turn;
  w->host = host;
  {
    MutexLock lock(w->mu);
    w->last_ms = steady_ms();
  }
  host->open_turn(w);
  json::object frame;
  try {
    frame = turn_frame(turn->item);
    frame["t"] = "turn";
    frame["turn"] = w->id;
    frame["class"] = turn->obj->cls;
    frame["object"] = turn->obj->name;
    frame["now_ms"] = turn->ctx.now_ms();
    if (!actor->host_knows) frame["activate"] = snapshot(turn->ctx, turn->item);
  } catch (const std::exception& e) {
    return finish(*w, Error{ErrorCode::ACTOR_ERROR, e.what()});
  }
  metrics_.turns.fetch_add(1, std::memory_order_relaxed);
  if (!host->send_turn(w, std::move(frame))) {
    return finish(*w, Error{ErrorCode::ACTOR_ERROR, "the host's connection closed"});
  }
  actor->host_knows = true;
}

void RemoteHosts::post_drain(const std::shared_ptr<TurnWait>& w) {
  rt_.post([this, w] { drain(w); });
}

// On an actor worker: applies the frames the host sent for the turn, in order, until it is done.
void RemoteHosts::drain(const std::shared_ptr<TurnWait>& w) {
  auto host = w->host.lock();
  auto& ctx = w->turn->ctx;
  for (;;) {
    json::object f;
    std::optional<Error> gone;
    {
      MutexLock lock(w->mu);
      if (w->done) {
        w->draining = false;
        return;
      }
      if (w->overflow) {
        gone = Error{ErrorCode::ACTOR_ERROR,
                     "the turn sent more than a turn may (max_turn_frames, max_turn_bytes)"};
      } else if (!w->frames.empty()) {
        f = std::move(w->frames.front());
        w->frames.pop_front();
      } else if (w->closed || !host) {
        gone = Error{ErrorCode::ACTOR_ERROR, "the host disconnected during the turn"};
      } else {
        w->draining = false;
        return;
      }
    }
    if (gone) return finish(*w, *gone);
    try {
      auto t = str(f, "t");
      if (t == "fail") {
        auto message = str(f, "error", false);
        if (message.empty()) message = "the host failed the turn";
        const auto* reject = field(f, "reject");
        if (w->turn->item.kind == Item::Kind::kConnect && reject != nullptr && reject->is_bool() &&
            reject->get_bool()) {
          return finish(*w, Error{ErrorCode::CONNECT_REJECTED, message});
        }
        return finish(*w, Error{ErrorCode::ACTOR_ERROR, message});
      }
      apply_all(ctx, *host, w->id, f);
      if (t == "done") {
        answer(ctx, w->turn->item, f);
        return finish(*w, std::nullopt);
      }
    } catch (const std::exception& e) {
      // The host drops what it did in this turn; the runtime gives the object a fresh actor,
      // whose next turn brings the host a new snapshot.
      host->send(json::object{{"t", "abort"}, {"turn", w->id}, {"error", e.what()}});
      return finish(*w, Error{ErrorCode::ACTOR_ERROR, e.what()});
    }
    MutexLock lock(w->mu);
    w->last_ms = steady_ms();
  }
}

void RemoteHosts::finish(TurnWait& w, std::optional<Error> failure) {
  {
    MutexLock lock(w.mu);
    if (w.done) return;
    w.done = true;
    w.draining = false;
    w.frames.clear();
  }
  if (auto host = w.host.lock()) host->close_turn(w.id);
  if (failure && failure->code != ErrorCode::CONNECT_REJECTED) {
    metrics_.turns_failed.fetch_add(1, std::memory_order_relaxed);
  }
  w.turn->end(std::move(failure));
}

// A call's reply or a fetch's response, from the host's `done`.
void RemoteHosts::answer(TurnContext& ctx, const Item& item, const json::object& done) {
  if (item.kind != Item::Kind::kCall) return;
  if (item.http) {
    const auto& res = object_at(done, "response");
    auto status = u64(res, "status", 200);
    if (status < 100 || status > 599) throw ProtocolError("response status out of 100..599");
    ctx.respond(ObjectReply{bytes_of(res, "body"), ContentType::kBytes, static_cast<std::uint16_t>(status),
                            headers_of(res)});
    return;
  }
  if (const auto* r = field(done, "reply"); r != nullptr && r->is_object()) {
    auto type = content_type(r->get_object());
    ctx.respond(ObjectReply{data_of(r->get_object(), type), type});
  }
}

// A frame's operations: "ops" (a batch), or the frame itself when it names an "op".
void RemoteHosts::apply_all(TurnContext& ctx, Conn& host, std::uint64_t turn, const json::object& f) {
  if (const auto* ops = field(f, "ops"); ops != nullptr) {
    if (!ops->is_array()) throw ProtocolError("\"ops\" must be an array");
    for (const auto& op : ops->get_array()) {
      if (!op.is_object()) throw ProtocolError("an op is an object");
      apply(ctx, host, turn, op.get_object());
    }
  }
  if (field(f, "op") != nullptr) apply(ctx, host, turn, f);
}

// One operation of the turn. Those with an "id" are answered with a "result".
void RemoteHosts::apply(TurnContext& ctx, Conn& host, std::uint64_t turn, const json::object& f) {
  auto op = str(f, "op");
  json::object out;
  auto& st = ctx.storage();
  if (op == "get") {
    auto v = st.get(str(f, "key"));
    out["value"] = v ? json::value(json::string(base64_encode(*v))) : json::value(nullptr);
  } else if (op == "get_many") {
    const auto* keys = field(f, "keys");
    if (keys == nullptr || !keys->is_array()) throw ProtocolError("\"keys\" must be an array");
    const auto& list = keys->get_array();
    for (const auto& k : list) {
      if (!k.is_string()) throw ProtocolError("keys are strings");
    }
    if (list.size() > options_.max_get_keys) {
      out["error"] = error_json(
          Error{ErrorCode::PAYLOAD_TOO_LARGE, "get_many asks " + std::to_string(list.size()) +
                                                  " keys; at most " + std::to_string(options_.max_get_keys)});
    } else {
      // Every value read before one is encoded: past the bound nothing more is read or built.
      std::vector<std::optional<std::string>> read;
      read.reserve(list.size());
      std::size_t bytes = 0;
      for (const auto& k : list) {
        read.push_back(st.get(std::string(k.get_string())));
        bytes += k.get_string().size() + (read.back() ? read.back()->size() : 0);
        if (bytes > options_.max_answer_bytes) break;
      }
      if (bytes > options_.max_answer_bytes) {
        out["error"] = error_json(too_large_answer("get_many"));
      } else {
        json::array values;
        for (auto& v : read) {
          values.push_back(v ? json::value(json::string(base64_encode(*v))) : json::value(nullptr));
        }
        out["values"] = std::move(values);
      }
    }
  } else if (op == "put") {
    st.put(str(f, "key"), bytes_of(f, "value"));
  } else if (op == "delete") {
    out["existed"] = st.del(str(f, "key"));
  } else if (op == "delete_all") {
    std::size_t n = 0;
    for (auto& [k, v] : st.list(ListOptions{})) n += st.del(k);
    out["deleted"] = n;
  } else if (op == "list") {
    auto prefix = str(f, "prefix", false), start = str(f, "start", false), end = str(f, "end", false);
    const auto* rev = field(f, "reverse");
    ListOptions lo{prefix, start, end, rev != nullptr && rev->is_bool() && rev->get_bool(),
                   static_cast<std::size_t>(u64(f, "limit"))};
    if (auto listed = ctx.list_within(lo, options_.max_answer_bytes)) {
      json::array entries;
      for (auto& [k, v] : *listed)
        entries.push_back(json::array{json::string(k), json::string(base64_encode(v))});
      out["entries"] = std::move(entries);
    } else {
      out["error"] = error_json(too_large_answer("list"));
    }
  } else if (op == "send") {
    ctx.send(Socket{u64(f, "socket")}, str(f, "data"));
  } else if (op == "broadcast") {
    ctx.broadcast(str(f, "data"), str(f, "tag", false));
  } else if (op == "close") {
    auto code = u64(f, "code", 1000);
    if (!sendable_close_code(code)) {
      throw ProtocolError("close code " + std::to_string(code) +
                          " may not be sent (1000-1003, 1007-1014, 3000-4999)");
    }
    ctx.close(Socket{u64(f, "socket")}, static_cast<std::uint16_t>(code), str(f, "reason", false));
  } else if (op == "tags") {
    std::vector<std::string> tags;
    if (const auto* a = field(f, "tags"); a != nullptr && a->is_array()) {
      for (const auto& t : a->get_array()) {
        if (!t.is_string()) throw ProtocolError("tags are strings");
        tags.emplace_back(t.get_string());
      }
    }
    ctx.set_tags(Socket{u64(f, "socket")}, std::move(tags));
  } else if (op == "attachment") {
    ctx.set_attachment(Socket{u64(f, "socket")}, str(f, "data", false));
  } else if (op == "auto_response") {
    ctx.set_auto_response(str(f, "request", false), str(f, "response", false));
  } else if (op == "publish") {
    auto subject = str(f, "subject");
    if (!host.grant().principal.may_publish(subject))
      throw std::runtime_error("not allowed to publish to " + subject);
    auto type = content_type(f);
    ctx.publish(subject, data_of(f, type), type);
  } else if (op == "enqueue") {
    auto queue = str(f, "queue");
    if (!host.grant().principal.may_use_queue(queue))
      throw std::runtime_error("not allowed to use queue " + queue);
    auto type = content_type(f);
    ctx.enqueue(queue, data_of(f, type), type);
  } else if (op == "tell") {
    auto cls = str(f, "class"), name = str(f, "object");
    check_reach(host, cls, name);
    auto type = content_type(f);
    ctx.tell(cls, name, data_of(f, type), type);
  } else if (op == "call" || op == "fetch") {
    auto cls = str(f, "class"), name = str(f, "object");
    check_reach(host, cls, name);
    try {
      if (op == "call") {
        auto type = content_type(f);
        auto r = ctx.call(cls, name, data_of(f, type), type, call_timeout(f));
        put_data(out, r.data, r.content_type);
      } else {
        auto req = request_of(object_at(f, "request"));
        req.client_address = host.grant().peer;
        req.claims = host.grant().principal.claims;
        out["response"] = response_json(ctx.fetch_object(cls, name, std::move(req), call_timeout(f)));
      }
    } catch (const CallError& e) {
      out["error"] = json::object{{"code", e.code()}, {"message", e.what()}};
    }
  } else if (op == "set_alarm") {
    ctx.set_alarm(str(f, "name"), i64(f, "time_ms"), u64(f, "every_ms"));
  } else if (op == "cancel_alarm") {
    ctx.cancel_alarm(str(f, "name"));
  } else if (op == "subscribe") {
    auto pattern = str(f, "pattern");
    if (!host.grant().principal.may_subscribe(pattern))
      throw std::runtime_error("not allowed to subscribe to " + pattern);
    ctx.subscribe(pattern);
  } else if (op == "unsubscribe") {
    ctx.unsubscribe(str(f, "pattern"));
  } else {
    throw ProtocolError("unknown op \"" + op + "\"");
  }
  if (const auto* id = field(f, "id"); id != nullptr && !id->is_null()) {
    out["t"] = "result";
    out["turn"] = turn;
    out["id"] = *id;
    host.send(out);
  }
}

std::uint64_t RemoteHosts::call_timeout(const json::object& f) const {
  auto asked = u64(f, "timeout_ms");
  return asked == 0 ? options_.call_timeout_ms : std::min(asked, options_.call_timeout_ms);
}

Error RemoteHosts::too_large_answer(std::string_view op) const {
  return Error{ErrorCode::PAYLOAD_TOO_LARGE, std::string(op) + ": the answer would pass " +
                                                 std::to_string(options_.max_answer_bytes) +
                                                 " bytes of keys and values; ask for fewer"};
}

void RemoteHosts::check_reach(const Conn& host, const std::string& cls, const std::string& name) {
  if (!host.may_reach(cls, name))
    throw std::runtime_error("this host may not use object " + cls + "/" + name);
}

RemoteHosts::RemoteHosts(ActorRuntime& runtime, Router& router, boost::asio::io_context& timers,
                         RemoteHostsOptions options)
    : rt_(runtime), router_(router), timers_(timers), options_(options) {
  watchdog_.emplace(timers_);
  watch();
}

void RemoteHosts::watch() {
  watchdog_->expires_after(std::chrono::milliseconds(250));
  watchdog_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    std::vector<std::shared_ptr<Conn>> stalled, paced;
    auto now = steady_ms();
    {
      MutexLock lock(mu_);
      if (stopped_) return;
      for (auto& [p, w] : conns_) {
        auto c = w.lock();
        if (c && c->alive() && c->stalled(now, static_cast<std::int64_t>(options_.turn_timeout_ms))) {
          stalled.push_back(std::move(c));
        } else if (c && c->alive()) {
          paced.push_back(std::move(c));
        }
      }
    }
    for (auto& c : paced) c->send_deferred();
    forget_unserved(now);
    for (auto& c : stalled) {
      metrics_.timeouts.fetch_add(1, std::memory_order_relaxed);
      module_logger("actors")->warn("remote host {} ({}) stalled: a turn unanswered for {} ms; closed",
                                    c->id(), c->grant().peer, options_.turn_timeout_ms);
      c->close(4008, "turn timeout");
      c->on_closed();  // its turns fail now (and run again elsewhere), not when the socket ends
    }
    watch();
  });
}

void RemoteHosts::forget_unserved(std::int64_t now) {
  constexpr std::size_t kPerSweep = 64;  // each costs a short read of the mailbox tables
  MutexLock changing(change_mu_);
  std::vector<std::string> due;
  {
    MutexLock lock(mu_);
    for (auto& [cls, since] : unserved_since_) {
      if (now - since < static_cast<std::int64_t>(options_.class_linger_ms)) continue;
      due.push_back(cls);
      since = now;  // when work still waits for it, look again a linger later
      if (due.size() == kPerSweep) break;
    }
  }
  for (const auto& cls : due) {
    bool served = false;
    {
      MutexLock lock(mu_);
      auto it = hosts_.find(cls);
      served = it != hosts_.end() && std::any_of(it->second.begin(), it->second.end(),
                                                 [](const std::weak_ptr<Conn>& w) { return !w.expired(); });
    }
    if (served || !rt_.forget_class(cls)) continue;
    metrics_.classes_forgotten.fetch_add(1, std::memory_order_relaxed);
    MutexLock lock(mu_);
    hosts_.erase(cls);
    unserved_since_.erase(cls);
  }
}

void RemoteHosts::front(ObjectHttpRequest request, Callback<FrontReply> done) {
  std::shared_ptr<Conn> best;
  {
    MutexLock lock(mu_);
    for (auto& [p, w] : conns_) {
      auto c = w.lock();
      if (!c || !c->alive() || !c->serves_front()) continue;
      if (!best || c->fronts_waiting() < best->fronts_waiting()) best = std::move(c);
    }
  }
  if (!best)
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "no host serves the app's routes now"}));
  metrics_.fronts.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t id = next_turn_.fetch_add(1);
  auto timer = std::make_shared<boost::asio::steady_timer>(
      timers_, std::chrono::milliseconds(options_.front_timeout_ms));
  std::weak_ptr<Conn> weak = best;
  timer->async_wait([this, weak, id](boost::system::error_code ec) {
    if (ec) return;
    if (auto c = weak.lock()) {
      metrics_.fronts_failed.fetch_add(1, std::memory_order_relaxed);
      c->finish_front(
          id, std::unexpected(Error{ErrorCode::TIMEOUT, "the app's front code did not answer in time"}));
    }
  });
  best->front(id, request, [timer, done = std::move(done)](Result<FrontReply> r) mutable {
    timer->cancel();
    done(std::move(r));
  });
}

RemoteHosts::~RemoteHosts() { stop(); }

void RemoteHosts::ensure_class(const std::string& cls, ActorClassOptions options) {
  bool added = rt_.add_class(
      cls, [this, cls] { return std::make_unique<RemoteActor>(*this, cls); }, std::move(options), this);
  (void)added;
}

void RemoteHosts::declare(const std::string& cls) {
  ensure_class(cls, {});
  rt_.set_class_available(cls, false);
  MutexLock lock(mu_);
  hosts_[cls];
  declared_.insert(cls);
}

std::shared_ptr<HostSession> RemoteHosts::connect(std::shared_ptr<HostLink> link, HostGrant grant) {
  metrics_.connects.fetch_add(1, std::memory_order_relaxed);
  auto c = std::make_shared<Conn>(*this, std::move(link), std::move(grant), next_host_.fetch_add(1));
  MutexLock lock(mu_);
  if (stopped_) {
    c->close(1001, "the node is shutting down");
    return c;
  }
  conns_.emplace(c.get(), c);
  return c;
}

std::optional<Error> RemoteHosts::add_host(const std::shared_ptr<Conn>& conn,
                                           const std::vector<std::string>& classes,
                                           const std::map<std::string, ActorClassOptions>& options) {
  MutexLock changing(change_mu_);
  std::size_t added = 0;
  for (const auto& cls : classes) {
    if (auto e = ActorRuntime::validate_class(cls)) return e;
    if (!conn->grant().may_host(cls)) {
      return Error{ErrorCode::FORBIDDEN, "this token may not host class " + cls + " (roost.host)"};
    }
    // A class's options are effects like any other: its dead letters go where the token may write.
    // (The default, "dead.<class>", belongs to the class the token may host.)
    if (const auto& dlq = options.at(cls).dead_letter_queue; !dlq.empty()) {
      if (auto e = durable::QueueStore::validate_name(dlq)) return e;
      if (dlq != "dead." + cls && !conn->grant().principal.may_use_queue(dlq)) {
        return Error{ErrorCode::FORBIDDEN, "class " + cls + ": this token may not use queue " + dlq +
                                               " (its dead_letter_queue needs the queues grant)"};
      }
    }
    bool remote = false;
    {
      MutexLock lock(mu_);
      remote = hosts_.contains(cls);
    }
    if (!remote && rt_.has_class(cls)) {
      return Error{ErrorCode::CONFLICT, "class " + cls + " is served in the node itself"};
    }
    if (!remote) ++added;
  }
  {
    MutexLock lock(mu_);
    if (added > 0 && hosts_.size() + added > options_.max_remote_classes) {
      return Error{ErrorCode::TOO_MANY_REQUESTS, "the node serves " + std::to_string(hosts_.size()) +
                                                     " remote classes already (max_remote_classes)"};
    }
  }
  for (const auto& cls : classes) {
    bool known = false;
    {
      MutexLock lock(mu_);
      if (stopped_) return Error{ErrorCode::UNAVAILABLE, "the node is shutting down"};
      auto& list = hosts_[cls];
      known = !list.empty() || rt_.has_class(cls);
      list.push_back(conn);
      unserved_since_.erase(cls);
    }
    if (!known) ensure_class(cls, options.at(cls));
    rt_.set_class_available(cls, true);
  }
  return std::nullopt;
}

void RemoteHosts::remove_host(const Conn* conn) {
  std::vector<std::string> unserved;
  {
    MutexLock lock(mu_);
    conns_.erase(conn);
    for (auto& [cls, list] : hosts_) {
      auto before = list.size();
      std::erase_if(list, [&](const std::weak_ptr<Conn>& w) {
        auto c = w.lock();
        return !c || c.get() == conn;
      });
      if (before != 0 && list.empty()) {
        unserved.push_back(cls);
        if (!declared_.contains(cls)) unserved_since_[cls] = steady_ms();
      }
    }
  }
  for (auto& cls : unserved) rt_.set_class_available(cls, false);
}

std::shared_ptr<RemoteHosts::Conn> RemoteHosts::pick(const std::string& cls) {
  MutexLock lock(mu_);
  auto it = hosts_.find(cls);
  if (it == hosts_.end()) return nullptr;
  std::shared_ptr<Conn> best;
  for (auto& w : it->second) {
    auto c = w.lock();
    if (!c || !c->alive()) continue;
    if (!best || c->objects.load() < best->objects.load()) best = std::move(c);
  }
  return best;
}

void RemoteHosts::stop() {
  std::vector<std::shared_ptr<Conn>> all;
  {
    MutexLock lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [p, w] : conns_) {
      if (auto c = w.lock()) all.push_back(std::move(c));
    }
  }
  for (auto& c : all) {
    c->close(1001, "the node is shutting down");
    c->on_closed();
  }
  if (watchdog_) watchdog_->cancel();
}

std::string RemoteHosts::metrics_text() const {
  MetricsWriter w;
  std::size_t hosts = 0;
  {
    MutexLock lock(mu_);
    hosts = conns_.size();
  }
  w.gauge("roost_remote_hosts", "Remote actor hosts connected.", std::uint64_t{hosts});
  w.counter("roost_remote_host_connects_total", "Remote host connections accepted.",
            metrics_.connects.load());
  w.counter("roost_remote_turns_total", "Turns sent to remote hosts.", metrics_.turns.load());
  w.counter("roost_remote_turns_failed_total", "Remote turns failed (host error, disconnect, timeout).",
            metrics_.turns_failed.load());
  w.counter("roost_remote_turn_timeouts_total", "Remote turns whose host stalled past turn_timeout_ms.",
            metrics_.timeouts.load());
  w.counter("roost_remote_releases_total", "Objects released by their host (hibernation, failure).",
            metrics_.releases.load());
  w.counter("roost_remote_host_requests_total", "Requests hosts sent outside turns.",
            metrics_.requests.load());
  w.counter("roost_remote_classes_forgotten_total",
            "Remote classes dropped after class_linger_ms without a host and with nothing waiting.",
            metrics_.classes_forgotten.load());
  {
    MutexLock lock(mu_);
    w.gauge("roost_remote_classes", "Object classes served by remote hosts (known to the node).",
            std::uint64_t{hosts_.size()});
  }
  w.counter("roost_front_requests_total", "Requests to app_routes handed to a host's front code.",
            metrics_.fronts.load());
  w.counter("roost_front_requests_failed_total", "Front requests that failed (error, timeout).",
            metrics_.fronts_failed.load());
  return std::move(w).text();
}

}  // namespace roost::broker
