// roost::Host (the C++ SDK's remote host) against the real binary: roost::Actor subclasses served
// from this process keep the object contract — storage with reads of the turn's own writes, list,
// socket tags and attachments, calls, fetch, alarms — and a refused token fails start().
#include <roost/client/host.h>

#include <atomic>
#include <string>
#include <thread>

#include <roost/core/auth.h>

#include "../support/eventually.h"
#include "http_fixture.h"

namespace roost::test {
namespace {

// Counts tells in storage; answers calls with the count and the keys it lists; on fetch, echoes
// the path and a header; sets an alarm that records it fired.
class Tally : public roost::Actor {
 public:
  void on_message(Context& ctx, const Message& m) override {
    auto v = ctx.storage().get("n");
    auto n = (v ? std::stoll(*v) : 0) + 1;
    ctx.storage().put("n", std::to_string(n));
    ctx.storage().put("item:" + std::to_string(n), std::string(m.data));
    if (ctx.storage().get("n") != std::to_string(n))
      throw std::runtime_error("a read missed this turn's write");
    if (m.data == "\"alarm\"") ctx.set_alarm("a", ctx.now_ms() + 200);
  }
  void on_call(Context& ctx, const Message&) override {
    auto items = ctx.storage().list(ListOptions{.prefix = "item:", .reverse = true, .limit = 2});
    json::array keys;
    for (auto& [k, v] : items) keys.push_back(json::string(k));
    auto fired = ctx.storage().get("fired");
    ctx.reply(json::serialize(json::object{{"n", std::stoll(ctx.storage().get("n").value_or("0"))},
                                           {"last", std::move(keys)},
                                           {"fired", fired.value_or("")}}));
  }
  HttpResponse on_fetch(Context&, const HttpRequest& r) override {
    return HttpResponse{201, {{"X-Path", std::string(r.path)}}, std::string(r.header("x-who"))};
  }
  void on_alarm(Context& ctx, const AlarmInfo& a) override {
    ctx.storage().put("fired", std::string(a.name));
  }
};

TEST_CASE("hosts: a C++ class served by roost::Host keeps the object contract", "[integration][hosts]") {
  Server server;
  roost::Host host({.url = server.proc().url()});
  host.add<Tally>("tally");
  host.start();
  CHECK(host.connections() == 1);
  auto& http = server.http();
  for (int i = 0; i < 3; ++i) {
    auto r = http.post("/v1/objects/tally/t1/messages",
                       i == 2 ? "\"alarm\"" : "{\"i\":" + std::to_string(i) + "}");
    REQUIRE(r.status == 202);
  }
  json::value v;
  REQUIRE(eventually([&] {
    auto r = http.post("/v1/objects/tally/t1/call", "{}");
    if (r.status != 200) return false;
    v = body_json(r);
    return v.at("n").as_int64() == 3 && v.at("fired").as_string() == "a";
  }));
  CHECK(v.at("last") == json::array{"item:3", "item:2"});

  http.set_header("X-Who", "me");
  auto f = http.request("POST", "/v1/objects/tally/t1/fetch/some/path?x=1", "body");
  http.set_header("X-Who", "");
  CHECK(f.status == 201);
  CHECK(f.header("X-Path") == "/some/path");
  CHECK(f.body == "me");
  host.stop();
  // Without a host the mail waits; a new host serves it.
  REQUIRE(http.post("/v1/objects/tally/t1/messages", "{}").status == 202);
  roost::Host again({.url = server.proc().url()});
  again.add<Tally>("tally");
  again.start();
  REQUIRE(eventually([&] {
    auto r = http.post("/v1/objects/tally/t1/call", "{}");
    return r.status == 200 && body_json(r).at("n").as_int64() == 4;
  }));
}

// Enqueues its message's text as a queue name: what a turn may reach is the host token's grant.
class Enqueuer : public roost::Actor {
 public:
  void on_message(Context& ctx, const Message& m) override { ctx.enqueue(m.data, "{}", ContentType::kJson); }
};

TEST_CASE("hosts: a turn's effects reach only what the host's token grants", "[integration][hosts]") {
  Server server({"--auth-secret", "s3cret"});
  auto admin = sign_jwt("s3cret", R"({"exp":4102444800,"roost":{"queues":[">"],"objects":[">"]}})");
  server.http().set_header("Authorization", "Bearer " + admin);
  roost::Host host(
      {.url = server.proc().url(),
       .token = sign_jwt("s3cret", R"({"exp":4102444800,"roost":{"host":["enq"],"queues":["ok.>"]}})")});
  host.add<Enqueuer>("enq", ActorClassOptions{.max_retries = 0});
  host.start();
  auto& http = server.http();
  REQUIRE(http.request("POST", "/v1/objects/enq/e1/messages", "ok.q", "text/plain").status == 202);
  REQUIRE(http.request("POST", "/v1/objects/enq/e1/messages", "secret.q", "text/plain").status == 202);
  // The granted queue gets its message; the other one never does: that turn fails, and with no
  // retries left its message goes to the class's dead-letter queue.
  REQUIRE(eventually([&] {
    auto r = http.post("/v1/queues/ok.q/messages/pull", "{}");
    return r.status == 200 && body_json(r).at("messages").as_array().size() == 1;
  }));
  REQUIRE(eventually([&] {
    auto r = http.post("/v1/queues/dead.enq/messages/pull", "{}");
    if (r.status != 200 || body_json(r).at("messages").as_array().empty()) return false;
    auto body =
        std::string(body_json(r).at("messages").at(0).at("body").at("error").at("message").as_string());
    return body.find("not allowed to use queue secret.q") != std::string::npos;
  }));
  auto q = http.get("/v1/queues/secret.q");
  CHECK((q.status == 404 || body_json(q).at("depth").as_int64() == 0));
}

// Subscribes durably on its first message; keeps what arrives on the channel.
class Listener : public roost::Actor {
 public:
  void on_message(Context& ctx, const Message& m) override {
    if (m.subject.empty()) return ctx.subscribe("news.*");
    ctx.storage().put("last", std::string(m.subject) + " " + std::string(m.data));
  }
  void on_call(Context& ctx, const Message&) override {
    ctx.reply(json::serialize(json::value(ctx.storage().get("last").value_or(""))));
  }
};

TEST_CASE("hosts: a remote object's durable subscription delivers into its mailbox", "[integration][hosts]") {
  Server server;
  roost::Host host({.url = server.proc().url()});
  host.add<Listener>("listener");
  host.start();
  auto& http = server.http();
  REQUIRE(http.post("/v1/objects/listener/l1/messages", "{}").status == 202);
  REQUIRE(eventually([&] {
    http.post("/v1/channels/news.today/publish", R"({"headline":"x"})");
    auto r = http.post("/v1/objects/listener/l1/call", "{}");
    return r.status == 200 && body_json(r).as_string().starts_with("news.today ");
  }));
}

TEST_CASE("hosts: a host whose token may not host its class fails to start", "[integration][hosts]") {
  Server server({"--auth-secret", "s3cret"});
  roost::Host host({.url = server.proc().url(),
                    .token = sign_jwt("s3cret", R"({"exp":4102444800,"roost":{"host":["other"]}})")});
  host.add<Tally>("tally");
  CHECK_THROWS_WITH(host.start(), Catch::Matchers::Contains("may not host class tally"));
}

}  // namespace
}  // namespace roost::test
