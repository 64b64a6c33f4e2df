#include "host_turns.h"

#include "actor_state.h"
#include "remote_host_conn.h"
#include "turn_context.h"

#include <roost/broker/actor_runtime.h>
#include <roost/core/base64.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <stdexcept>

namespace roost::broker {

namespace json = boost::json;

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

void HostTurns::begin(std::shared_ptr<ActorRuntime::AsyncTurn> turn) {
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
  turns_.fetch_add(1, std::memory_order_relaxed);
  if (!host->send_turn(w, std::move(frame))) {
    return finish(*w, Error{ErrorCode::ACTOR_ERROR, "the host's connection closed"});
  }
  actor->host_knows = true;
}

void HostTurns::post_drain(const std::shared_ptr<TurnWait>& w) {
  rt_.post([this, w] { drain(w); });
}

// On an actor worker: applies the frames the host sent for the turn, in order, until it is done.
void HostTurns::drain(const std::shared_ptr<TurnWait>& w) {
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

void HostTurns::finish(TurnWait& w, std::optional<Error> failure) {
  {
    MutexLock lock(w.mu);
    if (w.done) return;
    w.done = true;
    w.draining = false;
    w.frames.clear();
  }
  if (auto host = w.host.lock()) host->close_turn(w.id);
  if (failure && failure->code != ErrorCode::CONNECT_REJECTED) {
    turns_failed_.fetch_add(1, std::memory_order_relaxed);
  }
  w.turn->end(std::move(failure));
}

// A call's reply or a fetch's response, from the host's `done`.
void HostTurns::answer(TurnContext& ctx, const Item& item, const json::object& done) {
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
void HostTurns::apply_all(TurnContext& ctx, Conn& host, std::uint64_t turn, const json::object& f) {
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
void HostTurns::apply(TurnContext& ctx, Conn& host, std::uint64_t turn, const json::object& f) {
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

std::uint64_t HostTurns::call_timeout(const json::object& f) const {
  auto asked = u64(f, "timeout_ms");
  return asked == 0 ? options_.call_timeout_ms : std::min(asked, options_.call_timeout_ms);
}

Error HostTurns::too_large_answer(std::string_view op) const {
  return Error{ErrorCode::PAYLOAD_TOO_LARGE, std::string(op) + ": the answer would pass " +
                                                 std::to_string(options_.max_answer_bytes) +
                                                 " bytes of keys and values; ask for fewer"};
}

void HostTurns::check_reach(const Conn& host, const std::string& cls, const std::string& name) {
  if (!host.may_reach(cls, name))
    throw std::runtime_error("this host may not use object " + cls + "/" + name);
}

}  // namespace roost::broker
