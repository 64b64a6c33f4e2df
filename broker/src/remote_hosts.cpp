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

#include <chrono>
#include <condition_variable>
#include <deque>
#include <stdexcept>

namespace roost::broker {

namespace json = boost::json;

namespace {

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

// The frames of one turn, from the host's connection to the worker that runs the turn.
struct RemoteHosts::TurnWait {
  Mutex mu;
  std::condition_variable cv;
  std::deque<json::object> frames ROOST_GUARDED_BY(mu);
  bool closed ROOST_GUARDED_BY(mu) = false;    // the host went away
  bool overflow ROOST_GUARDED_BY(mu) = false;  // it sent more than a turn may
  std::size_t received ROOST_GUARDED_BY(mu) = 0;
};

class RemoteHosts::Conn final : public HostSession, public std::enable_shared_from_this<Conn> {
 public:
  Conn(RemoteHosts& reg, std::shared_ptr<HostLink> link, HostGrant grant, std::uint64_t id)
      : reg_(reg), link_(std::move(link)), grant_(std::move(grant)), id_(id) {}

  void on_frame(std::string text) override {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return protocol_error("a frame is a JSON object");
    auto& o = v.get_object();
    try {
      auto t = str(o, "t");
      if (t == "op" || t == "done" || t == "fail") {
        auto turn = u64(o, "turn");  // before `o` is moved from
        return to_turn(turn, std::move(o));
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
    }
    for (auto& [id, done] : fronts) {
      done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the host disconnected before it answered"}));
    }
    for (auto& w : waits) {
      MutexLock lock(w->mu);
      w->closed = true;
      w->cv.notify_all();
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

  bool send(const json::object& frame) { return alive_.load() && link_->send(json::serialize(frame)); }
  void close(std::uint16_t code, std::string reason) {
    alive_ = false;
    link_->close(code, std::move(reason));
  }

  std::shared_ptr<TurnWait> open_turn(std::uint64_t turn) {
    auto w = std::make_shared<TurnWait>();
    MutexLock lock(mu_);
    turns_.emplace(turn, w);
    return w;
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

  void to_turn(std::uint64_t turn, json::object frame) {
    std::shared_ptr<TurnWait> w;
    {
      MutexLock lock(mu_);
      auto it = turns_.find(turn);
      if (it == turns_.end()) return;  // a turn that failed or timed out: its late frames are void
      w = it->second;
    }
    MutexLock lock(w->mu);
    if (++w->received > reg_.options_.max_turn_frames) {
      w->overflow = true;
    } else {
      w->frames.push_back(std::move(frame));
    }
    w->cv.notify_all();
  }

  void on_register(const json::object& o) {
    if (registered_) throw ProtocolError("registered already");
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
    if (auto e = reg_.add_host(shared_from_this(), names, options)) {
      send(json::object{{"t", "error"}, {"error", error_json(*e)}});
      close(e->code == ErrorCode::FORBIDDEN ? 4403 : 4400, e->message);
      return;
    }
    registered_ = true;
    front_ = serves_front;
    json::array classes;
    for (auto& n : names) classes.push_back(json::string(n));
    send(json::object{{"t", "registered"}, {"host", id_}, {"classes", std::move(classes)}});
    module_logger("actors")->info("remote host {} ({}) serves {} classes", id_, grant_.peer, names.size());
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
    if (requests_.fetch_add(1) >= reg_.options_.max_host_requests) {
      requests_.fetch_sub(1);
      return fail(
          Error{ErrorCode::TOO_MANY_REQUESTS, "too many requests outstanding on this host connection"});
    }
    reg_.metrics_.requests.fetch_add(1, std::memory_order_relaxed);
    auto& router = reg_.router_;
    if (t == "tell") {
      auto type = content_type(o);
      router.object_tell(
          std::move(cls), std::move(name), data_of(o, type), type, [answer](Result<std::uint64_t> r) {
            answer(r ? json::object{{"seq", *r}} : json::object{{"error", error_json(r.error())}});
          });
    } else if (t == "call") {
      auto type = content_type(o);
      router.object_call(std::move(cls), std::move(name), data_of(o, type), type, u64(o, "timeout_ms"),
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
      auto req = request_of(object_at(o, "request"));
      req.client_address = grant_.peer;
      req.claims = grant_.principal.claims;
      router.object_fetch(std::move(cls), std::move(name), std::move(req), u64(o, "timeout_ms"),
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
  bool registered_ = false;  // frames arrive one at a time (the gateway's strand)
  std::atomic<std::size_t> requests_{0};
  Mutex mu_;
  std::map<std::uint64_t, std::shared_ptr<TurnWait>> turns_ ROOST_GUARDED_BY(mu_);
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

// One object of a remote class while it is in memory: it sends each turn to its host and applies
// the host's answer to the turn.
class RemoteHosts::RemoteActor final : public Actor {
 public:
  RemoteActor(RemoteHosts& reg, std::string cls) : reg_(reg), cls_(std::move(cls)) {}
  ~RemoteActor() override { unbind(true); }

  void on_message(Context& ctx, const Message& m) override {
    json::object f{
        {"kind", m.subject.empty() ? "message" : "channel"}, {"seq", m.seq}, {"attempt", m.attempt}};
    put_data(f, m.data, m.content_type);
    if (!m.subject.empty()) f["subject"] = m.subject;
    turn(ctx, std::move(f));
  }
  void on_call(Context& ctx, const Message& m) override {
    json::object f{{"kind", "call"}};
    put_data(f, m.data, m.content_type);
    auto done = turn(ctx, std::move(f));
    if (const auto* r = field(done, "reply"); r != nullptr && r->is_object()) {
      auto type = content_type(r->get_object());
      ctx.reply(data_of(r->get_object(), type), type);
    }
  }
  HttpResponse on_fetch(Context& ctx, const HttpRequest& r) override {
    ObjectHttpRequest req{std::string(r.method), std::string(r.path),
                          std::string(r.query),  {r.headers.begin(), r.headers.end()},
                          std::string(r.body),   std::string(r.client_address),
                          std::string(r.claims)};
    auto done = turn(ctx, json::object{{"kind", "fetch"}, {"request", request_json(req)}});
    const auto& res = object_at(done, "response");
    HttpResponse out;
    auto status = u64(res, "status", 200);
    if (status < 100 || status > 599) throw std::invalid_argument("response status out of 100..599");
    out.status = static_cast<std::uint16_t>(status);
    out.headers = headers_of(res);
    out.body = bytes_of(res, "body");
    return out;
  }
  void on_connect(Context& ctx, Socket s, const ConnectRequest& r) override {
    json::object req{{"query", r.query},
                     {"origin", r.origin},
                     {"protocol", r.protocol},
                     {"path", r.path},
                     {"headers", headers_json(r.headers)},
                     {"client_address", r.client_address},
                     {"claims", r.claims}};
    connecting_ = s.id;
    turn(ctx, json::object{{"kind", "connect"}, {"socket", s.id}, {"request", std::move(req)}});
  }
  void on_socket_message(Context& ctx, Socket s, std::string_view text) override {
    turn(ctx, json::object{{"kind", "socket_message"}, {"socket", s.id}, {"data", text}});
  }
  void on_disconnect(Context& ctx, Socket s, const CloseInfo& info) override {
    json::array tags;
    for (auto& t : ctx.tags(s)) tags.push_back(json::string(t));
    turn(ctx, json::object{{"kind", "disconnect"},
                           {"socket", s.id},
                           {"code", info.code},
                           {"reason", info.reason},
                           {"was_clean", info.was_clean},
                           {"tags", std::move(tags)},
                           {"attachment", ctx.attachment(s)}});
  }
  void on_alarm(Context& ctx, const AlarmInfo& a) override {
    turn(ctx, json::object{{"kind", "alarm"},
                           {"name", a.name},
                           {"scheduled_ms", a.scheduled_ms},
                           {"retry_count", a.retry_count},
                           {"missed", a.missed}});
  }

 private:
  using TurnContext = ActorRuntime::TurnContext;

  // Sends the turn to the host and serves it until it is done; returns the `done` frame.
  json::object turn(Context& ctx, json::object frame) {
    auto& tc = dynamic_cast<TurnContext&>(ctx);
    if (object_.empty()) object_ = std::string(ctx.object_name());
    bind();
    auto host = host_;
    std::uint64_t id = reg_.next_turn_.fetch_add(1);
    auto wait = host->open_turn(id);
    struct Close {
      Conn& c;
      std::uint64_t id;
      ~Close() { c.close_turn(id); }
    } closer{*host, id};
    frame["t"] = "turn";
    frame["turn"] = id;
    frame["class"] = cls_;
    frame["object"] = ctx.object_name();
    frame["now_ms"] = ctx.now_ms();
    if (!host_knows_) frame["activate"] = snapshot(tc);
    reg_.metrics_.turns.fetch_add(1, std::memory_order_relaxed);
    if (!host->send(frame)) fail_turn("the host's connection is closed");
    host_knows_ = true;
    try {
      return serve(tc, *host, *wait, id);
    } catch (const Reject&) {
      throw;
    } catch (const std::exception& e) {
      reg_.metrics_.turns_failed.fetch_add(1, std::memory_order_relaxed);
      // The host drops what it did in this turn; the runtime gives the object a fresh actor,
      // whose first turn brings the host a new snapshot.
      host->send(json::object{{"t", "abort"}, {"turn", id}, {"error", e.what()}});
      throw;
    }
  }

  json::object serve(TurnContext& ctx, Conn& host, TurnWait& wait, std::uint64_t id) {
    const auto timeout = std::chrono::milliseconds(reg_.options_.turn_timeout_ms);
    for (;;) {
      json::object f;
      {
        MutexLock lock(wait.mu);
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (wait.frames.empty() && !wait.closed && !wait.overflow) {
          if (wait.cv.wait_until(lock.native(), deadline) == std::cv_status::timeout && wait.frames.empty()) {
            lock.unlock();
            reg_.metrics_.timeouts.fetch_add(1, std::memory_order_relaxed);
            module_logger("actors")->warn(
                "remote host {} stalled: no answer to a turn of {}/{} in {} ms; closed", host.id(), cls_,
                ctx.object_name(), reg_.options_.turn_timeout_ms);
            host.close(4008, "turn timeout");
            fail_turn("the host did not answer within turn_timeout_ms");
          }
        }
        if (wait.overflow) fail_turn("the turn sent more than max_turn_frames frames");
        if (wait.frames.empty()) fail_turn("the host disconnected during the turn");
        f = std::move(wait.frames.front());
        wait.frames.pop_front();
      }
      auto t = str(f, "t");
      if (t == "done") return f;
      if (t == "fail") {
        auto message = str(f, "error", false);
        if (message.empty()) message = "the host failed the turn";
        if (ctx.item().kind == ActorRuntime::Item::Kind::kConnect && field(f, "reject") != nullptr &&
            f["reject"].is_bool() && f["reject"].get_bool()) {
          throw Reject(message);
        }
        throw std::runtime_error(message);
      }
      apply(ctx, host, id, f);
    }
  }

  // One operation of the turn. Those with an "id" are answered with a "result".
  void apply(TurnContext& ctx, Conn& host, std::uint64_t turn, const json::object& f) {
    auto op = str(f, "op");
    json::object out;
    auto& st = ctx.storage();
    if (op == "get") {
      auto v = st.get(str(f, "key"));
      out["value"] = v ? json::value(json::string(base64_encode(*v))) : json::value(nullptr);
    } else if (op == "get_many") {
      const auto* keys = field(f, "keys");
      if (keys == nullptr || !keys->is_array()) throw ProtocolError("\"keys\" must be an array");
      json::array values;
      for (const auto& k : keys->get_array()) {
        if (!k.is_string()) throw ProtocolError("keys are strings");
        auto v = st.get(std::string(k.get_string()));
        values.push_back(v ? json::value(json::string(base64_encode(*v))) : json::value(nullptr));
      }
      out["values"] = std::move(values);
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
      json::array entries;
      for (auto& [k, v] : st.list(lo))
        entries.push_back(json::array{json::string(k), json::string(base64_encode(v))});
      out["entries"] = std::move(entries);
    } else if (op == "send") {
      ctx.send(Socket{u64(f, "socket")}, str(f, "data"));
    } else if (op == "broadcast") {
      ctx.broadcast(str(f, "data"), str(f, "tag", false));
    } else if (op == "close") {
      ctx.close(Socket{u64(f, "socket")}, static_cast<std::uint16_t>(u64(f, "code", 1000)),
                str(f, "reason", false));
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
          auto r = ctx.call(cls, name, data_of(f, type), type, u64(f, "timeout_ms"));
          put_data(out, r.data, r.content_type);
        } else {
          auto req = request_of(object_at(f, "request"));
          req.client_address = host.grant().peer;
          req.claims = host.grant().principal.claims;
          out["response"] = response_json(ctx.fetch_object(cls, name, std::move(req), u64(f, "timeout_ms")));
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

  static void check_reach(const Conn& host, const std::string& cls, const std::string& name) {
    if (!host.may_reach(cls, name))
      throw std::runtime_error("this host may not use object " + cls + "/" + name);
  }

  // What a host needs to serve an object it did not have: its sockets (the one being connected
  // comes with its turn) and its alarms.
  json::object snapshot(TurnContext& ctx) {
    json::array sockets;
    for (auto s : ctx.sockets({})) {
      if (s.id == connecting_) continue;
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

  // Keeps the host that has this object, or takes the least loaded one of its class.
  void bind() {
    if (host_ && host_->alive()) return;
    unbind(false);
    host_ = reg_.pick(cls_);
    if (!host_) throw Unserved("no host serves class " + cls_);
    host_->objects.fetch_add(1);
    host_knows_ = false;
  }
  void unbind(bool release) {
    if (!host_) return;
    host_->objects.fetch_sub(1);
    if (release && host_knows_) {
      reg_.metrics_.releases.fetch_add(1, std::memory_order_relaxed);
      host_->send(json::object{{"t", "release"}, {"class", cls_}, {"object", object_}});
    }
    host_.reset();
    host_knows_ = false;
  }
  [[noreturn]] static void fail_turn(const std::string& why) { throw std::runtime_error(why); }

  RemoteHosts& reg_;
  std::string cls_;
  std::string object_;  // known after the first turn
  std::shared_ptr<Conn> host_;
  bool host_knows_ = false;  // the host got this object's snapshot
  std::uint64_t connecting_ = 0;
};

RemoteHosts::RemoteHosts(ActorRuntime& runtime, Router& router, boost::asio::io_context& timers,
                         RemoteHostsOptions options)
    : rt_(runtime), router_(router), timers_(timers), options_(options) {}

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
      cls, [this, cls] { return std::make_unique<RemoteActor>(*this, cls); }, std::move(options));
  (void)added;
}

void RemoteHosts::declare(const std::string& cls) {
  ensure_class(cls, {});
  rt_.set_class_available(cls, false);
  MutexLock lock(mu_);
  hosts_[cls];
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
  for (const auto& cls : classes) {
    if (auto e = ActorRuntime::validate_class(cls)) return e;
    if (!conn->grant().may_host(cls)) {
      return Error{ErrorCode::FORBIDDEN, "this token may not host class " + cls + " (roost.host)"};
    }
    bool remote = false;
    {
      MutexLock lock(mu_);
      remote = hosts_.contains(cls);
    }
    if (!remote && rt_.has_class(cls)) {
      return Error{ErrorCode::CONFLICT, "class " + cls + " is served in the node itself"};
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
      if (before != 0 && list.empty()) unserved.push_back(cls);
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
  w.counter("roost_front_requests_total", "Requests to app_routes handed to a host's front code.",
            metrics_.fronts.load());
  w.counter("roost_front_requests_failed_total", "Front requests that failed (error, timeout).",
            metrics_.fronts_failed.load());
  return std::move(w).text();
}

}  // namespace roost::broker
