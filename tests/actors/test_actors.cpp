// Actor classes the integration tests load into the real binary as a plugin
// (`roost serve --actors libroost_test_actors.so`). Each exercises one part of the contract.
#include <roost/actor_plugin.h>

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

namespace json = boost::json;

namespace {

std::int64_t get_int(roost::Storage& s, std::string_view key) {
  auto v = s.get(key);
  return v ? std::stoll(*v) : 0;
}

json::value parse(std::string_view data) {
  boost::system::error_code ec;
  auto v = json::parse(data, ec);
  return ec ? json::value(nullptr) : v;
}

// Counts messages; "a" and "b" are always written together (atomicity under kill -9); broadcasts
// the count to attached sockets (output gate); sockets say "inc" to count too; calls answer the
// count. Sockets are tagged by ?tag= and keep the query as their attachment; "ping" frames are
// answered "pong" by the gateway once the object set its auto-response.
class Counter : public roost::Actor {
 public:
  void on_activate(roost::Context& ctx) override { ctx.set_auto_response("ping", R"({"auto":"pong"})"); }
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    auto n = bump(ctx);
    auto v = parse(m.data);
    if (v.is_object() && v.as_object().contains("publish")) {
      ctx.publish(json::value_to<std::string>(v.at("publish")), json::serialize(json::object{{"n", n}}));
    }
    if (v.is_object() && v.as_object().contains("enqueue")) {
      ctx.enqueue(json::value_to<std::string>(v.at("enqueue")), json::serialize(json::object{{"n", n}}));
    }
    if (v.is_object() && v.as_object().contains("enqueue_both")) {
      for (const auto& q : v.at("enqueue_both").as_array()) ctx.enqueue(json::value_to<std::string>(q), "{}");
    }
    if (v.is_object() && v.as_object().contains("tell")) {
      ctx.tell("counter", json::value_to<std::string>(v.at("tell")), "{}");
    }
  }
  void on_call(roost::Context& ctx, const roost::Message& m) override {
    auto v = parse(m.data);
    if (v.is_object() && v.as_object().contains("noreply")) {
      ctx.storage().put("a", "41");  // an effect that still commits
      return;                        // a handler bug: no ctx.reply()
    }
    if (v.is_object() && v.as_object().contains("big")) {
      // A value of this many bytes: up to 1 MiB is fine, more throws (actor_error).
      ctx.storage().put("big", std::string(v.at("big").to_number<std::size_t>(), 'b'));
      return ctx.reply(R"({"stored":true})");
    }
    if (v.is_object() && v.as_object().contains("sockets")) {
      std::string tag = json::value_to<std::string>(v.at("sockets"));
      json::array out;
      for (auto s : ctx.sockets(tag)) out.push_back(json::value(ctx.attachment(s)));
      return ctx.reply(json::serialize(out));
    }
    json::object o{{"n", get_int(ctx.storage(), "a")}, {"b", get_int(ctx.storage(), "b")}};
    ctx.reply(json::serialize(o));
  }
  void on_connect(roost::Context& ctx, roost::Socket s, const roost::ConnectRequest& req) override {
    if (req.query.find("deny") != std::string_view::npos) throw roost::Reject("no entry");
    if (req.query.find("toomanytags") != std::string_view::npos) {
      ctx.set_tags(s, std::vector<std::string>(11, "t"));  // the limit is 10: throws
    }
    if (req.query.find("bigattachment") != std::string_view::npos) {
      ctx.set_attachment(s, std::string((16 << 10) + 1, 'a'));  // the limit is 16 KiB: throws
    }
    std::string q(req.query);
    if (auto p = q.find("tag="); p != std::string::npos)
      ctx.set_tags(s, {q.substr(p + 4, q.find('&', p) - p - 4)});
    ctx.set_attachment(s, q);
    ctx.send(s, json::serialize(json::object{{"hello", get_int(ctx.storage(), "a")}}));
  }
  void on_socket_message(roost::Context& ctx, roost::Socket s, std::string_view text) override {
    if (text == "inc") {
      bump(ctx);
    } else if (text == "whoami") {
      ctx.send(s, json::serialize(json::object{{"attachment", ctx.attachment(s)}}));
    } else if (text == "bye") {
      ctx.close(s, 4000, "bye");
    }
  }
  void on_disconnect(roost::Context& ctx, roost::Socket, std::uint16_t code) override {
    ctx.storage().put("last_close", std::to_string(code));
    ctx.broadcast(json::serialize(json::object{{"left", code}}));
  }

 private:
  std::int64_t bump(roost::Context& ctx) {
    auto& st = ctx.storage();
    auto n = get_int(st, "a") + 1;
    st.put("a", std::to_string(n));
    st.put("b", std::to_string(n));
    ctx.broadcast(json::serialize(json::object{{"n", n}}));
    return n;
  }
};

// Appends every message to its log in storage; the call answers the log (ordering) and whether
// two turns of the object ever overlapped (one turn at a time).
class Log : public roost::Actor {
 public:
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    if (running_.fetch_add(1) != 0) ctx.storage().put("overlap", "1");
    if (m.data == "\"stall\"")
      std::this_thread::sleep_for(std::chrono::milliseconds(400));  // a backlog forms
    std::this_thread::sleep_for(std::chrono::microseconds(200));    // widen any overlap
    auto n = get_int(ctx.storage(), "count");
    char key[32];
    std::snprintf(key, sizeof key, "log/%08lld", static_cast<long long>(n));
    ctx.storage().put(key, std::string(m.data));
    ctx.storage().put("count", std::to_string(n + 1));
    running_.fetch_sub(1);
  }
  void on_call(roost::Context& ctx, const roost::Message&) override {
    json::array entries;
    for (auto& [k, v] : ctx.storage().list("log/")) entries.push_back(parse(v));
    json::object o{{"log", entries}, {"overlap", ctx.storage().get("overlap").has_value()}};
    ctx.reply(json::serialize(o));
  }

 private:
  std::atomic<int> running_{0};
};

// Throws on demand: {"fail":"always"} never succeeds (dead letter), {"fail":"once"} fails on its
// first attempt only. Successful messages are counted; a throwing turn's storage writes must not
// land.
class Flaky : public roost::Actor {
 public:
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    auto v = parse(m.data);
    std::string mode =
        v.is_object() && v.as_object().contains("fail") ? json::value_to<std::string>(v.at("fail")) : "";
    ctx.storage().put("poison", "written by a turn that may throw");
    if (mode == "always" || (mode == "once" && m.attempt == 1)) {
      ctx.storage().put("attempts", std::to_string(m.attempt));
      throw std::runtime_error("flaky failure on attempt " + std::to_string(m.attempt));
    }
    ctx.storage().del("poison");
    ctx.storage().put("ok", std::to_string(get_int(ctx.storage(), "ok") + 1));
    ctx.storage().put("last_attempt", std::to_string(m.attempt));
  }
  void on_call(roost::Context& ctx, const roost::Message& m) override {
    if (m.data == "\"throw\"") throw std::runtime_error("call failed on purpose");
    json::object o{{"ok", get_int(ctx.storage(), "ok")},
                   {"poison", ctx.storage().get("poison").has_value()},
                   {"last_attempt", get_int(ctx.storage(), "last_attempt")}};
    ctx.reply(json::serialize(o));
  }
};

// Sleeps in calls ({"sleep_ms":n}) to make calls time out; replies with text or bytes on demand.
class Slow : public roost::Actor {
 public:
  void on_call(roost::Context& ctx, const roost::Message& m) override {
    auto v = parse(m.data);
    if (v.is_object() && v.as_object().contains("sleep_ms")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(v.at("sleep_ms").to_number<int>()));
    }
    if (m.content_type == roost::ContentType::kText)
      return ctx.reply("text:" + std::string(m.data), roost::ContentType::kText);
    ctx.reply(R"({"slept":true})");
  }
};

// Alarms: {"name":…,"in_ms":…,"every_ms":…} sets one, {"cancel":…} cancels; {"fail_first":true}
// makes the next alarm turn throw once. Each firing is logged with its info.
class Alarm : public roost::Actor {
 public:
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    auto v = parse(m.data);
    if (!v.is_object()) return;
    auto& o = v.as_object();
    if (o.contains("fail_first")) ctx.storage().put("fail_first", "1");
    if (o.contains("cancel")) ctx.cancel_alarm(json::value_to<std::string>(o.at("cancel")));
    if (o.contains("name")) {
      std::uint64_t every = o.contains("every_ms") ? o.at("every_ms").to_number<std::uint64_t>() : 0;
      std::int64_t at = o.contains("at_ms") ? o.at("at_ms").to_number<std::int64_t>()
                                            : ctx.now_ms() + o.at("in_ms").to_number<std::int64_t>();
      ctx.set_alarm(json::value_to<std::string>(o.at("name")), at, every);
    }
  }
  void on_alarm(roost::Context& ctx, const roost::AlarmInfo& a) override {
    if (ctx.storage().get("fail_first") && a.retry_count == 0)
      throw std::runtime_error("alarm turn fails once");
    auto n = get_int(ctx.storage(), "fired");
    char key[32];
    std::snprintf(key, sizeof key, "fire/%06lld", static_cast<long long>(n));
    json::object o{{"name", std::string(a.name)},
                   {"missed", a.missed},
                   {"retry_count", a.retry_count},
                   {"scheduled_ms", a.scheduled_ms},
                   {"at_ms", ctx.now_ms()}};
    ctx.storage().put(key, json::serialize(o));
    ctx.storage().put("fired", std::to_string(n + 1));
  }
  void on_call(roost::Context& ctx, const roost::Message&) override {
    json::array fires;
    for (auto& [k, v] : ctx.storage().list("fire/")) fires.push_back(parse(v));
    ctx.reply(json::serialize(fires));
  }
};

// Durable subscriptions: {"subscribe":pattern} / {"unsubscribe":pattern}; channel messages are
// logged with their subject.
class Listener : public roost::Actor {
 public:
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    if (!m.subject.empty()) {
      auto n = get_int(ctx.storage(), "n");
      char key[32];
      std::snprintf(key, sizeof key, "got/%06lld", static_cast<long long>(n));
      ctx.storage().put(
          key, json::serialize(json::object{{"subject", std::string(m.subject)}, {"data", parse(m.data)}}));
      ctx.storage().put("n", std::to_string(n + 1));
      return;
    }
    auto v = parse(m.data);
    if (!v.is_object()) return;
    if (v.as_object().contains("subscribe")) ctx.subscribe(json::value_to<std::string>(v.at("subscribe")));
    if (v.as_object().contains("unsubscribe"))
      ctx.unsubscribe(json::value_to<std::string>(v.at("unsubscribe")));
  }
  void on_call(roost::Context& ctx, const roost::Message&) override {
    json::array got;
    for (auto& [k, v] : ctx.storage().list("got/")) got.push_back(parse(v));
    ctx.reply(json::serialize(got));
  }
};

// Storage listing. A tell {"put":[key,value]} or {"del":key} writes; a call {"list":{prefix, start,
// end, reverse, limit}} first applies the call's own "put"/"del" (this turn's writes, not
// committed), then answers the listed keys and values, and what the last disconnect left.
class KvList : public roost::Actor {
 public:
  void on_message(roost::Context& ctx, const roost::Message& m) override { apply(ctx, parse(m.data)); }
  void on_call(roost::Context& ctx, const roost::Message& m) override {
    auto v = parse(m.data);
    apply(ctx, v);
    json::array out;
    if (v.is_object() && v.as_object().contains("list")) {
      const auto& l = v.at("list").as_object();
      auto str = [&](const char* k) {
        return l.contains(k) ? json::value_to<std::string>(l.at(k)) : std::string();
      };
      std::string prefix = str("prefix"), start = str("start"), end = str("end");
      roost::ListOptions o;
      o.prefix = prefix;
      o.start = start;
      o.end = end;
      o.reverse = l.contains("reverse") && l.at("reverse").as_bool();
      o.limit = l.contains("limit") ? l.at("limit").to_number<std::size_t>() : 0;
      for (auto& [k, val] : ctx.storage().list(o))
        out.push_back(json::array{json::string(k), json::string(val)});
    }
    ctx.reply(json::serialize(json::object{{"entries", out},
                                           {"left", ctx.storage().get("left").value_or("")},
                                           {"connected", ctx.storage().get("connected").value_or("")}}));
  }
  void on_connect(roost::Context& ctx, roost::Socket s, const roost::ConnectRequest& req) override {
    auto query = std::string(req.query.substr(0, req.query.find('&')));
    ctx.set_tags(s, {"user:" + query});
    ctx.set_attachment(s, "attached:" + query);
    // What Cloudflare would show the object of the request.
    json::object seen{{"path", std::string(req.path)},
                      {"x_test", std::string(req.header("x-TEST"))},
                      {"has_authorization", !req.header("authorization").empty()},
                      {"client", std::string(req.client_address)},
                      {"claims", std::string(req.claims)}};
    ctx.storage().put("connected", json::serialize(seen));
  }
  // The new on_disconnect: tags, attachment, code and reason of the socket that left.
  void on_disconnect(roost::Context& ctx, roost::Socket s, const roost::CloseInfo& info) override {
    auto tags = ctx.tags(s);
    json::object o{{"tag", tags.empty() ? "" : tags[0]},
                   {"attachment", ctx.attachment(s)},
                   {"code", info.code},
                   {"reason", std::string(info.reason)},
                   {"clean", info.was_clean}};
    ctx.storage().put("left", json::serialize(o));
  }

 private:
  static void apply(roost::Context& ctx, const json::value& v) {
    if (!v.is_object()) return;
    if (v.as_object().contains("put")) {
      const auto& kv = v.at("put").as_array();
      ctx.storage().put(json::value_to<std::string>(kv[0]), json::value_to<std::string>(kv[1]));
    }
    if (v.as_object().contains("del")) ctx.storage().del(json::value_to<std::string>(v.at("del")));
  }
};

// Calls another object inside its turn: a call {"call":[class, name, body], "timeout_ms":n} answers
// {"got": <the reply>} or {"error": <code>}; a tell does the same and stores the answer (so a turn
// that waits on a call still commits its own writes with it), which {"last":true} reads.
class Caller : public roost::Actor {
 public:
  void on_call(roost::Context& ctx, const roost::Message& m) override {
    auto v = parse(m.data);
    if (v.is_object() && v.as_object().contains("last"))
      return ctx.reply(ctx.storage().get("last").value_or("null"));
    ctx.reply(run(ctx, v));
  }
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    ctx.storage().put("last", run(ctx, parse(m.data)));
  }

 private:
  static std::string run(roost::Context& ctx, const json::value& v) {
    if (!v.is_object() || !v.as_object().contains("call")) return R"({"idle":true})";
    const auto& c = v.at("call").as_array();
    std::uint64_t timeout =
        v.as_object().contains("timeout_ms") ? v.at("timeout_ms").to_number<std::uint64_t>() : 0;
    try {
      auto r = ctx.call(json::value_to<std::string>(c[0]), json::value_to<std::string>(c[1]),
                        json::serialize(c[2]), roost::ContentType::kJson, timeout);
      return json::serialize(json::object{{"got", parse(r.data)}});
    } catch (const roost::CallError& e) {
      return json::serialize(json::object{{"error", e.code()}});
    }
  }
};

// HTTP (on_fetch): counts requests in storage and echoes what it saw; "/teapot" answers 418 with a
// header; "/bad-header" answers a header value with a newline (the node must refuse it); "/throw"
// throws.
class Web : public roost::Actor {
 public:
  roost::HttpResponse on_fetch(roost::Context& ctx, const roost::HttpRequest& req) override {
    if (req.path == "/throw") throw std::runtime_error("fetch failed on purpose");
    if (req.path == "/bad-header") return {200, {{"X-Bad", "a\r\nInjected: yes"}}, "no"};
    auto n = get_int(ctx.storage(), "requests") + 1;
    ctx.storage().put("requests", std::to_string(n));
    json::object seen{{"method", std::string(req.method)},
                      {"path", std::string(req.path)},
                      {"query", std::string(req.query)},
                      {"body", std::string(req.body)},
                      {"x_test", std::string(req.header("x-test"))},
                      {"has_authorization", !req.header("Authorization").empty()},
                      {"client", std::string(req.client_address)},
                      {"requests", n}};
    roost::HttpResponse res;
    res.status = req.path == "/teapot" ? 418 : 200;
    res.headers = {{"Content-Type", "application/json"},
                   {"X-Object", std::string(ctx.object_name())},
                   {"Content-Length", "999"}};  // the node's to set: dropped
    res.body = json::serialize(seen);
    return res;
  }
};

}  // namespace

ROOST_ACTOR_PLUGIN(registry) {
  registry.add<Counter>("counter");
  registry.add<Log>("log");
  roost::ActorClassOptions flaky;
  flaky.max_retries = 2;
  flaky.retry_delay_ms = 20;
  registry.add<Flaky>("flaky", flaky);
  registry.add<Slow>("slow");
  roost::ActorClassOptions alarm;
  alarm.retry_delay_ms = 20;
  registry.add<Alarm>("alarm", alarm);
  registry.add<Listener>("listener");
  registry.add<KvList>("kvlist");
  registry.add<Caller>("caller");
  registry.add<Web>("web");
}
