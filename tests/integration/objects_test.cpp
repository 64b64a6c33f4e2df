// Object mailboxes against the real binary, with the test actor classes loaded as a plugin
// (tests/actors/test_actors.cpp): tell/call over HTTP, WebSockets attached to objects, ordering,
// one turn at a time, throwing turns, dead letters, call timeouts, hibernation, alarms across
// restarts, durable subscriptions, effects under kill -9, plugin loading.
#include <atomic>
#include <mutex>
#include <regex>
#include <thread>

#include <roost/client/client.h>
#include <roost/core/auth.h>
#include <roost/core/object_id.h>
#include "../support/eventually.h"
#include "../support/ws_client.h"
#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::vector<std::string> actor_args(std::vector<std::string> more = {}) {
  std::vector<std::string> a{"--actors", ROOST_TEST_ACTORS};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

json::value call(roost::client::HttpClient& h, const std::string& obj, const std::string& body = "{}") {
  auto r = h.post("/v1/objects/" + obj + "/call", body);
  INFO("call " << obj << " → " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  return body_json(r);
}

void tell(roost::client::HttpClient& h, const std::string& obj, const std::string& body = "{}") {
  auto r = h.post("/v1/objects/" + obj + "/messages", body);
  INFO("tell " << obj << " → " << r.body);
  REQUIRE(r.status == 202);
}

std::uint64_t metric(roost::client::HttpClient& h, const std::string& name) {
  auto text = h.get("/metrics").body;
  std::smatch m;
  std::regex re("\n" + name + " (\\d+)");
  if (!std::regex_search(text, m, re)) return 0;
  return std::stoull(m[1]);
}

}  // namespace

TEST_CASE("objects: tell is durable and acknowledged after commit; call answers", "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  auto r = h.post("/v1/objects/counter/a/messages", "{}");
  REQUIRE(r.status == 202);
  CHECK(body_json(r).at("seq").as_int64() == 1);
  r = h.post("/v1/objects/counter/a/messages", "{}");
  CHECK(body_json(r).at("seq").as_int64() == 2);
  REQUIRE(eventually([&] { return call(h, "counter/a").at("n").as_int64() == 2; }));
  // Objects are independent.
  CHECK(call(h, "counter/b").at("n").as_int64() == 0);
  // Non-JSON bodies by content type; a call with a text body gets a text reply.
  auto t = h.request("POST", "/v1/objects/slow/x/call", "hello", "text/plain");
  CHECK(t.status == 200);
  CHECK(t.body == "text:hello");
  // A new unique name.
  r = h.post("/v1/objects/counter", "");
  REQUIRE(r.status == 201);
  auto name = std::string(body_json(r).at("name").as_string());
  CHECK(std::regex_match(name, std::regex("[0-9a-f]{64}")));  // as Cloudflare's newUniqueId()
  CHECK(roost::is_unique_object_id(name));
  CHECK(body_json(h.post("/v1/objects/counter", "")).at("name").as_string() != name);
  CHECK(call(h, "counter/" + name).at("n").as_int64() == 0);
  // The state survives a restart.
  s.restart();
  CHECK(call(s.http(), "counter/a").at("n").as_int64() == 2);
}

TEST_CASE("objects: bad requests get stable error codes", "[integration][objects]") {
  Server s(actor_args({"--max-message-bytes", "1000"}));
  auto& h = s.http();
  auto r = h.post("/v1/objects/nosuch/a/messages", "{}");
  CHECK(r.status == 404);
  CHECK(error_code(r) == "class_not_found");
  r = h.post("/v1/objects/bad%20class/a/messages", "{}");
  CHECK(r.status == 400);
  CHECK(error_code(r) == "invalid_name");
  r = h.post("/v1/objects/counter/a/messages", "{not json");
  CHECK(r.status == 400);
  CHECK(error_code(r) == "malformed");
  r = h.post("/v1/objects/counter/a/messages", "\"" + std::string(2000, 'x') + "\"");
  CHECK(r.status == 413);
  CHECK(error_code(r) == "message_too_large");
  r = h.get("/v1/objects/counter/a/messages");
  CHECK(r.status == 405);
  r = h.post("/v1/objects/counter/a/nothing", "{}");
  CHECK(r.status == 404);
  r = h.post("/v1/objects/slow/a/call?timeout_ms=abc", "{}");
  CHECK(error_code(r) == "invalid_argument");
  r = h.post("/v1/objects/flaky/a/call", "\"throw\"");
  CHECK(r.status == 500);
  CHECK(error_code(r) == "actor_error");
  CHECK(body_json(r).at("error").at("message").as_string().find("call failed on purpose") !=
        std::string::npos);
}

TEST_CASE("objects: per-object FIFO, one turn at a time, many objects in parallel",
          "[integration][objects]") {
  Server s(actor_args());
  constexpr int kObjects = 4;
  constexpr int kPerObject = 60;
  std::vector<std::thread> threads;
  for (int o = 0; o < kObjects; ++o) {
    threads.emplace_back([&, o] {
      roost::client::HttpClient h(s.proc().url());
      for (int i = 0; i < kPerObject; ++i) {
        auto r = h.post("/v1/objects/log/obj" + std::to_string(o) + "/messages", std::to_string(i));
        if (r.status != 202) throw std::runtime_error("tell failed: " + r.body);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto& h = s.http();
  for (int o = 0; o < kObjects; ++o) {
    json::value v;
    REQUIRE(eventually([&] {
      v = call(h, "log/obj" + std::to_string(o));
      return v.at("log").as_array().size() == kPerObject;
    }));
    auto& log = v.at("log").as_array();
    for (int i = 0; i < kPerObject; ++i) CHECK(log[i].as_int64() == i);
    CHECK(v.at("overlap").as_bool() == false);
  }
}

TEST_CASE("objects: a backlog past mail_memory_bytes waits on disk and keeps its order",
          "[integration][objects]") {
  Server s(actor_args({"--actor-mail-memory-bytes", "8192"}));
  auto& h = s.http();
  tell(h, "log/backlog", "\"stall\"");
  constexpr int kMessages = 40;
  for (int i = 0; i < kMessages; ++i) {
    tell(h, "log/backlog", R"({"i":)" + std::to_string(i) + R"(,"pad":")" + std::string(2000, 'p') + "\"}");
  }
  CHECK(body_json(h.get("/v1/objects/log/backlog")).at("waiting").as_int64() > 0);  // behind the stall
  json::value v;
  REQUIRE(eventually(
      [&] {
        v = call(h, "log/backlog");
        return v.at("log").as_array().size() == kMessages + 1;
      },
      10s));
  auto& log = v.at("log").as_array();
  CHECK(log[0] == "stall");
  for (int i = 0; i < kMessages; ++i) {
    CHECK(log[i + 1].at("i").as_int64() == i);
    CHECK(log[i + 1].at("pad").as_string().size() == 2000);  // the data came back whole from disk
  }
  CHECK(metric(h, "roost_actor_mail_read_from_disk_total") > 0);
  // After a restart with a backlog, start-up leaves data past the budget on disk too.
  tell(h, "log/backlog2", "\"stall\"");
  for (int i = 0; i < 10; ++i)
    tell(h, "log/backlog2", R"({"i":)" + std::to_string(i) + R"(,"pad":")" + std::string(2000, 'q') + "\"}");
  s.restart(SIGKILL);
  REQUIRE(eventually([&] { return call(s.http(), "log/backlog2").at("log").as_array().size() >= 11; }, 10s));
  auto log2 = call(s.http(), "log/backlog2").at("log").as_array();
  for (std::size_t i = 1; i < log2.size(); ++i) CHECK(log2[i].at("pad").as_string().size() == 2000);
  CHECK(log2.size() == 11);  // exactly once in storage, though delivered again after the kill
  CHECK(metric(s.http(), "roost_actor_mail_read_from_disk_total") > 0);  // loaded lazily at start-up
}

TEST_CASE("objects: storage full answers 507 to tells, the node keeps serving, nothing acknowledged is lost",
          "[integration][objects]") {
  TempDir dir("roost-objects-full");
  std::string big = "\"" + std::string(60'000, 'x') + "\"";
  int acked = 0;
  {
    RoostProcess proc(dir.path() / "data", actor_args({"--max-storage-bytes", "2097152"}));
    roost::client::HttpClient h(proc.url());
    roost::client::HttpResponse last;
    for (int i = 0; i < 200; ++i) {
      last = h.post("/v1/objects/log/full/messages", big);
      if (last.status != 202) break;
      ++acked;
    }
    CHECK(last.status == 507);
    CHECK(error_code(last) == "storage_full");
    CHECK(acked > 3);
    // Other objects and the rest of the node keep serving (a call with nothing to write).
    CHECK(h.post("/v1/objects/slow/other/call", "{}").status == 200);
    CHECK(h.get("/healthz").status == 200);
    proc.stop(SIGKILL);
  }
  // More room: every acknowledged message is consumed, exactly once.
  RoostProcess proc(dir.path() / "data", actor_args({"--max-storage-bytes", "67108864"}));
  roost::client::HttpClient h(proc.url());
  REQUIRE(eventually(
      [&] { return call(h, "log/full").at("log").as_array().size() == static_cast<std::size_t>(acked); },
      20s));
}

TEST_CASE("objects: a throwing turn has no effects, is retried, then dead-lettered",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  tell(h, "flaky/f", R"({"fail":"once"})");
  REQUIRE(eventually([&] { return call(h, "flaky/f").at("ok").as_int64() == 1; }));
  auto v = call(h, "flaky/f");
  CHECK(v.at("last_attempt").as_int64() == 2);
  CHECK(v.at("poison").as_bool() == false);  // the failed attempt's write never landed

  tell(h, "flaky/g", R"({"fail":"always","tag":7})");
  tell(h, "flaky/g", R"({})");  // behind the poisoned one: runs once it is dead-lettered
  REQUIRE(eventually([&] { return call(h, "flaky/g").at("ok").as_int64() == 1; }));
  CHECK(call(h, "flaky/g").at("poison").as_bool() == false);
  auto p = s.pull("dead.flaky", R"({"batch_size":10})");
  REQUIRE(p.status == 200);
  auto msgs = body_json(p).at("messages").as_array();
  REQUIRE(msgs.size() == 1);
  auto dead = msgs[0].at("body");
  CHECK(dead.at("object").at("class") == "flaky");
  CHECK(dead.at("object").at("name") == "g");
  CHECK(dead.at("attempts").as_int64() == 3);  // first try + max_retries (2)
  CHECK(dead.at("data").at("tag").as_int64() == 7);
  CHECK(dead.at("error").at("code") == "actor_error");
  CHECK(dead.at("error").at("message").as_string().find("flaky failure") != std::string::npos);
  CHECK(metric(h, "roost_actor_dead_lettered_total") == 1);
}

TEST_CASE("objects: a turn whose enqueue is refused commits nothing, and runs again later",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  REQUIRE(s.put_queue("qb", R"({"max_messages":1})").status == 200);
  REQUIRE(s.send("qb", R"({"body":1})").status == 201);
  tell(h, "counter/q", R"({"enqueue_both":["qa","qb"]})");  // qb is full: the whole turn waits
  REQUIRE(eventually([&] { return metric(h, "roost_actor_rollbacks_total") >= 1; }));
  auto qa = h.get("/v1/queues/qa");
  if (qa.status == 200) CHECK(body_json(qa).at("stats").at("messages").as_int64() == 0);  // nothing partial
  // (A call now would wait behind the blocked turn: per-object FIFO.)
  // Room in qb: the turn runs again and commits whole.
  auto lease = body_json(s.pull("qb")).at("messages").as_array()[0].at("lease_id");
  REQUIRE(s.ack("qb", json::serialize(json::object{{"acks", json::array{json::object{{"lease_id", lease}}}}}))
              .status == 200);
  REQUIRE(eventually([&] { return call(h, "counter/q").at("n").as_int64() == 1; }));
  CHECK(body_json(h.get("/v1/queues/qa")).at("stats").at("messages").as_int64() == 1);
  CHECK(body_json(h.get("/v1/queues/qb")).at("stats").at("messages").as_int64() == 1);
}

TEST_CASE("objects: a call that gets no reply in time answers 504 call_timeout", "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  auto r = h.post("/v1/objects/slow/s/call?timeout_ms=200", R"({"sleep_ms":1500})");
  CHECK(r.status == 504);
  CHECK(error_code(r) == "call_timeout");
  // The object keeps serving: the next call waits its turn and is answered.
  auto ok = h.post("/v1/objects/slow/s/call?timeout_ms=5000", "{}");
  CHECK(ok.status == 200);
  CHECK(metric(h, "roost_actor_calls_timed_out_total") == 1);
  for (int i = 0; i < 20; ++i) CHECK(h.post("/v1/objects/slow/s/call?timeout_ms=60000", "{}").status == 200);
  CHECK(metric(h, "roost_actor_calls_waiting") == 0);  // answered calls leave no timer behind
}

TEST_CASE("objects: WebSockets attach, get outputs after commit, tags, attachment, close",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  WsClient red(s.proc().port(), WsOptions{"/v1/objects/counter/w/connect?tag=red"});
  CHECK(red.recv()->at("hello").as_int64() == 0);
  WsClient blue(s.proc().port(), WsOptions{"/v1/objects/counter/w/connect?tag=blue"});
  CHECK(blue.recv()->at("hello").as_int64() == 0);
  tell(h, "counter/w");
  CHECK(red.recv()->at("n").as_int64() == 1);
  CHECK(blue.recv()->at("n").as_int64() == 1);
  red.send("inc");
  CHECK(red.recv()->at("n").as_int64() == 2);
  CHECK(blue.recv()->at("n").as_int64() == 2);
  auto tagged = call(h, "counter/w", R"({"sockets":"red"})").as_array();
  REQUIRE(tagged.size() == 1);
  CHECK(tagged[0] == "tag=red");
  CHECK(call(h, "counter/w", R"({"sockets":""})").as_array().size() == 2);
  blue.send("whoami");
  CHECK(blue.recv()->at("attachment") == "tag=blue");
  // The object closes a socket with its own code; the other socket hears of it.
  blue.send("bye");
  CHECK(blue.wait_closed() == 4000);
  CHECK(red.recv()->at("left").as_int64() == 4000);
  // An oversized frame (over max_ws_message_bytes, 64 KiB) closes that socket with 1009.
  WsClient big(s.proc().port(), WsOptions{"/v1/objects/counter/w/connect?tag=big"});
  REQUIRE(big.recv()->as_object().contains("hello"));
  big.send(std::string(70'000, 'x'));
  CHECK(big.wait_closed() == 1009);
  CHECK(red.recv()->at("left").as_int64() == 1009);  // the object heard why
  // A client that goes away: on_disconnect runs.
  red.close();
  REQUIRE(eventually([&] { return call(h, "counter/w", R"({"sockets":""})").as_array().empty(); }));
}

TEST_CASE("objects: on_connect can refuse; unknown classes and forbidden origins are refused",
          "[integration][objects]") {
  Server s(actor_args());
  auto port = s.proc().port();
  auto status_of = [&](WsOptions o) {
    try {
      WsClient c(port, o);
      return 101u;
    } catch (const std::exception& e) {
      std::string what = e.what();
      auto p = what.find("HTTP ");
      return p == std::string::npos ? 0u : static_cast<unsigned>(std::stoul(what.substr(p + 5)));
    }
  };
  CHECK(status_of(WsOptions{"/v1/objects/counter/c/connect?deny=1"}) == 403);
  CHECK(status_of(WsOptions{"/v1/objects/nosuch/c/connect"}) == 404);
  CHECK(status_of(WsOptions{"/v1/objects/counter/c/connect", "http://evil.example"}) == 403);
  // Past the limits (10 tags, 16 KiB of attachment) on_connect fails: 500 actor_error.
  CHECK(status_of(WsOptions{"/v1/objects/counter/c/connect?toomanytags=1"}) == 500);
  CHECK(status_of(WsOptions{"/v1/objects/counter/c/connect?bigattachment=1"}) == 500);
  // Storage values up to 1 MiB.
  CHECK(s.http().post("/v1/objects/counter/c/call", R"({"big":1048576})").status == 200);
  auto big = s.http().post("/v1/objects/counter/c/call", R"({"big":1048577})");
  CHECK(big.status == 500);
  CHECK(error_code(big) == "actor_error");
  // Raw: the refusal carries the stable code.
  auto raw = s.http().raw_exchange(
      "GET /v1/objects/counter/c/connect?deny=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  CHECK(raw.find("connect_rejected") != std::string::npos);
  CHECK(raw.find("no entry") != std::string::npos);
}

TEST_CASE("objects: JWT objects claim applies to tell, call and connect", "[integration][objects]") {
  const std::string secret = "objects-secret";
  Server s(actor_args({"--auth-secret", secret}));
  auto token = roost::sign_jwt(secret, R"({"roost":{"objects":["counter.mine"]}})");
  roost::client::HttpClient h(s.proc().url());
  h.set_header("Authorization", "Bearer " + token);
  CHECK(h.post("/v1/objects/counter/mine/messages", "{}").status == 202);
  auto r = h.post("/v1/objects/counter/other/messages", "{}");
  CHECK(r.status == 403);
  CHECK(error_code(r) == "forbidden");
  h.set_header("Authorization", "");
  CHECK(h.post("/v1/objects/counter/mine/messages", "{}").status == 401);
  WsClient ok(s.proc().port(), WsOptions{"/v1/objects/counter/mine/connect", "", token});
  CHECK(ok.recv()->as_object().contains("hello"));
  CHECK_THROWS(WsClient(s.proc().port(), WsOptions{"/v1/objects/counter/other/connect", "", token}));
}

TEST_CASE("objects: hibernation frees the actor, sockets stay, auto-response does not wake",
          "[integration][objects]") {
  Server s(actor_args({"--actor-idle-ms", "150"}));
  auto& h = s.http();
  WsClient ws(s.proc().port(), WsOptions{"/v1/objects/counter/h/connect?tag=t"});
  REQUIRE(ws.recv()->as_object().contains("hello"));
  ws.send("inc");
  CHECK(ws.recv()->at("n").as_int64() == 1);
  REQUIRE(eventually([&] { return metric(h, "roost_actor_hibernations_total") >= 1; }));
  auto seen = body_json(h.get("/v1/objects/counter/h"));
  CHECK(seen.at("in_memory").as_bool());     // it holds a socket…
  CHECK_FALSE(seen.at("active").as_bool());  // …but no actor
  CHECK(seen.at("sockets").as_int64() == 1);
  auto activations = metric(h, "roost_actor_activations_total");
  ws.send("ping");
  CHECK(ws.recv()->at("auto") == "pong");
  CHECK(metric(h, "roost_actor_activations_total") == activations);  // not woken
  CHECK(metric(h, "roost_actor_auto_responses_total") == 1);
  // A real message wakes it; the socket and its attachment survived the hibernation.
  ws.send("whoami");
  CHECK(ws.recv()->at("attachment") == "tag=t");
  CHECK(metric(h, "roost_actor_activations_total") == activations + 1);
  ws.send("inc");
  CHECK(ws.recv()->at("n").as_int64() == 2);  // storage, not memory, carried the count
  // With no socket and no work, the object leaves memory entirely.
  ws.close();
  REQUIRE(eventually([&] { return metric(h, "roost_actor_objects_in_memory") == 0; }));
}

TEST_CASE("objects: effects are atomic and outputs never run ahead of the commit under kill -9",
          "[integration][objects][crash]") {
  TempDir dir("roost-objects-crash");
  RoostProcess proc(dir.path() / "data", actor_args());
  std::int64_t acked = 0;
  std::int64_t seen_on_socket = 0;
  for (int round = 0; round < 3; ++round) {
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> round_acked{0};
    std::thread producer([&] {
      try {
        roost::client::HttpClient h(proc.url(), 3s);
        for (int i = 0; i < 100'000 && !stop; ++i) {
          if (h.post("/v1/objects/counter/k/messages", "{}").status == 202) round_acked.fetch_add(1);
        }
      } catch (const std::exception&) {
      }
    });
    {
      WsClient ws(proc.port(), WsOptions{"/v1/objects/counter/k/connect"});
      auto deadline = std::chrono::steady_clock::now() + 1500ms;
      while (std::chrono::steady_clock::now() < deadline) {
        auto f = ws.recv(100);
        if (f && f->as_object().contains("n"))
          seen_on_socket = std::max(seen_on_socket, f->at("n").as_int64());
      }
      proc.restart(SIGKILL);
    }
    stop = true;
    producer.join();
    acked += round_acked.load();
    roost::client::HttpClient h(proc.url());
    auto v = call(h, "counter/k");
    INFO("round " << round << " acked " << acked << " seen " << seen_on_socket);
    CHECK(v.at("n").as_int64() == v.at("b").as_int64());  // nothing partial
    // Every acknowledged tell is consumed eventually (none lost); the count never falls below what
    // a socket was told (outputs leave after the commit).
    REQUIRE(eventually([&] { return call(h, "counter/k").at("n").as_int64() >= acked; }, 10s));
    CHECK(call(h, "counter/k").at("n").as_int64() >= seen_on_socket);
  }
  CHECK(acked > 0);
  CHECK(seen_on_socket > 0);
}

TEST_CASE("objects: alarms fire, repeat, retry, and fire once with a missed count after downtime",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  tell(h, "alarm/a", R"({"name":"once","in_ms":100})");
  REQUIRE(eventually([&] { return call(h, "alarm/a").as_array().size() == 1; }));
  auto fires = call(h, "alarm/a").as_array();
  CHECK(fires[0].at("name") == "once");
  CHECK(fires[0].at("missed").as_int64() == 0);
  std::this_thread::sleep_for(300ms);
  CHECK(call(h, "alarm/a").as_array().size() == 1);  // one-shot

  // Cancelled before it is due: never fires.
  tell(h, "alarm/c", R"({"name":"x","in_ms":300})");
  tell(h, "alarm/c", R"({"cancel":"x"})");

  // A throwing alarm turn is retried with retry_count.
  tell(h, "alarm/r", R"({"fail_first":true,"name":"r","in_ms":50})");
  REQUIRE(eventually([&] { return call(h, "alarm/r").as_array().size() == 1; }));
  CHECK(call(h, "alarm/r").as_array()[0].at("retry_count").as_int64() == 1);

  // A repeating alarm across 1.5 s of downtime fires once, with the skipped occurrences counted.
  tell(h, "alarm/p", R"({"name":"tick","in_ms":100,"every_ms":100})");
  REQUIRE(eventually([&] { return call(h, "alarm/p").as_array().size() >= 2; }));
  auto info = body_json(h.get("/v1/objects/alarm/p"));
  REQUIRE(info.at("alarms").as_array().size() == 1);
  CHECK(info.at("alarms").as_array()[0].at("name") == "tick");
  CHECK(info.at("alarms").as_array()[0].at("every_ms").as_int64() == 100);
  CHECK(info.at("waiting").as_int64() <= 1);
  CHECK(body_json(h.get("/v1/objects/alarm/never-used")).at("alarms").as_array().empty());
  CHECK(h.get("/v1/objects/nosuch/x").status == 404);
  s.proc().stop();
  std::this_thread::sleep_for(1500ms);
  s.proc().start();
  roost::client::HttpClient h2(s.proc().url());
  REQUIRE(eventually([&] {
    auto now_fires = call(h2, "alarm/p");
    for (auto& f : now_fires.as_array()) {
      if (f.at("missed").as_int64() >= 8) return true;
    }
    return false;
  }));
  std::size_t late = 0;
  auto fires_after = call(h2, "alarm/p");
  for (auto& f : fires_after.as_array()) late += f.at("missed").as_int64() > 0;
  CHECK(late == 1);  // not a flood
  tell(h2, "alarm/p", R"({"cancel":"tick"})");
  CHECK(call(h2, "alarm/c").as_array().empty());
}

TEST_CASE("objects: durable subscriptions survive a restart; publish, enqueue and tell effects",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  tell(h, "listener/l", R"({"subscribe":"news.>"})");
  REQUIRE(eventually([&] {
    h.post("/v1/channels/news.a/publish", R"({"k":1})");
    return !call(h, "listener/l").as_array().empty();
  }));
  s.restart();
  auto& h2 = s.http();
  auto before = call(h2, "listener/l").as_array().size();
  REQUIRE(h2.post("/v1/channels/news.b/publish", R"({"k":2})").status == 200);
  REQUIRE(eventually([&] { return call(h2, "listener/l").as_array().size() == before + 1; }));
  CHECK(call(h2, "listener/l").as_array().back().at("subject") == "news.b");
  tell(h2, "listener/l", R"({"unsubscribe":"news.>"})");
  REQUIRE(eventually(
      [&] { return body_json(h2.get("/v1/channels/news.c/presence")).at("subscribers").as_int64() == 0; }));

  // publish / enqueue / tell from a turn.
  WsClient sub(s.proc().port());
  sub.send(R"({"op":"subscribe","id":1,"channel":"ctr.x"})");
  sub.expect("ok");
  tell(h2, "counter/e", R"({"publish":"ctr.x","enqueue":"ctr-out","tell":"e2"})");
  CHECK(sub.expect("message").at("data").at("n").as_int64() == 1);
  REQUIRE(eventually([&] { return call(h2, "counter/e2").at("n").as_int64() == 1; }));
  auto p = s.pull("ctr-out");
  REQUIRE(body_json(p).at("messages").as_array().size() == 1);
  CHECK(body_json(p).at("messages").as_array()[0].at("body").at("n").as_int64() == 1);
}

TEST_CASE("objects: plugins built for another ABI, or missing, stop the node at start",
          "[integration][objects]") {
  TempDir dir("roost-plugin");
  CHECK_THROWS_WITH(RoostProcess(dir.path() / "data", {"--actors", ROOST_WRONG_ABI}),
                    Catch::Contains("actor ABI 999"));
  CHECK_THROWS_WITH(RoostProcess(dir.path() / "data", {"--actors", (dir.path() / "nope.so").string()}),
                    Catch::Contains("cannot load actor plugin"));
}

TEST_CASE("objects: the SDK tells and calls over the native protocol", "[integration][objects][native]") {
  Server s(actor_args());
  auto client = roost::Client::connect({.url = s.proc().endpoint()});
  REQUIRE(client);
  auto& c = **client;
  auto seq = c.tell("counter", "sdk", "{}");
  REQUIRE(seq);
  CHECK(*seq == 1);
  REQUIRE(eventually([&] {
    auto r = c.call("counter", "sdk", "{}");
    return r && json::parse(r->data).at("n").as_int64() == 1;
  }));
  auto text = c.call("slow", "x", "hi", std::chrono::milliseconds(2000), roost::ContentType::kText);
  REQUIRE(text);
  CHECK(text->data == "text:hi");
  CHECK(text->content_type == roost::ContentType::kText);
  auto late = c.call("slow", "x", R"({"sleep_ms":800})", std::chrono::milliseconds(100));
  REQUIRE_FALSE(late);
  CHECK(late.error().code == roost::ErrorCode::CALL_TIMEOUT);
  auto missing = c.tell("nosuch", "x", "{}");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == roost::ErrorCode::CLASS_NOT_FOUND);
  auto bad = c.tell("counter", "bad\x01name", "{}");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == roost::ErrorCode::INVALID_NAME);
  auto threw = c.call("flaky", "x", "\"throw\"");
  REQUIRE_FALSE(threw);
  CHECK(threw.error().code == roost::ErrorCode::ACTOR_ERROR);
}

TEST_CASE("objects: the counter example runs embedded and as a plugin", "[integration][objects][examples]") {
  for (bool embedded : {true, false}) {
    TempDir dir("roost-counter");
    RoostProcess proc(
        dir.path() / "data",
        embedded ? std::vector<std::string>{} : std::vector<std::string>{"--actors", ROOST_COUNTER_PLUGIN},
        embedded ? ROOST_COUNTER_BINARY : ROOST_BINARY);
    roost::client::HttpClient h(proc.url());
    WsClient ws(proc.port(), WsOptions{"/v1/objects/counter/clicks/connect"});
    tell(h, "counter/clicks", R"({"add":5})");
    CHECK(ws.recv()->at("value").as_int64() == 5);  // the broadcast, after the commit
    tell(h, "counter/clicks");
    CHECK(ws.recv()->at("value").as_int64() == 6);
    CHECK(call(h, "counter/clicks").at("value").as_int64() == 6);
  }
}

TEST_CASE("objects: storage lists backwards with a limit, seeing the turn's own writes",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  for (int i = 0; i < 30; ++i) {
    char k[16];
    std::snprintf(k, sizeof k, "k/%03d", i);
    tell(h, "kvlist/l", json::serialize(json::object{{"put", json::array{k, std::to_string(i)}}}));
  }
  tell(h, "kvlist/l", R"({"put":["z","after the prefix"]})");
  auto keys = [&](const std::string& body) {
    std::vector<std::string> out;
    const auto answer = call(h, "kvlist/l", body);
    for (const auto& e : answer.at("entries").as_array()) {
      out.push_back(json::value_to<std::string>(e.as_array()[0]));
    }
    return out;
  };
  using V = std::vector<std::string>;
  REQUIRE(eventually([&] { return keys(R"({"list":{}})").size() == 31; }));
  // The last three of a prefix, newest first.
  CHECK(keys(R"({"list":{"prefix":"k/","reverse":true,"limit":3}})") == V{"k/029", "k/028", "k/027"});
  // This turn's own writes and deletes count, before they commit.
  CHECK(keys(R"({"put":["k/100","new"],"del":"k/029","list":{"prefix":"k/","reverse":true,"limit":3}})") ==
        V{"k/100", "k/028", "k/027"});
  // Range (end exclusive), both directions; the whole object backwards starts with its last key.
  CHECK(keys(R"({"list":{"start":"k/010","end":"k/013"}})") == V{"k/010", "k/011", "k/012"});
  CHECK(keys(R"({"list":{"start":"k/010","end":"k/013","reverse":true}})") == V{"k/012", "k/011", "k/010"});
  CHECK(keys(R"({"list":{"reverse":true,"limit":2}})") == V{"z", "k/100"});
  CHECK(keys(R"({"list":{"prefix":"k/","limit":2}})") == V{"k/000", "k/001"});
}

TEST_CASE(
    "objects: on_disconnect still reads the socket's tags and attachment, with the close code and reason",
    "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  auto left = [&] {
    auto l = call(h, "kvlist/d").at("left").as_string();
    return l.empty() ? json::value() : json::parse(l);
  };
  {
    WsClient alice(s.proc().port(), WsOptions{"/v1/objects/kvlist/d/connect?alice"});
    alice.close(4001, "gone home");
  }
  REQUIRE(eventually([&] { return !left().is_null(); }));
  auto l = left();
  CHECK(l.at("tag") == "user:alice");
  CHECK(l.at("attachment") == "attached:alice");
  CHECK(l.at("code") == 4001);
  CHECK(l.at("reason") == "gone home");
  CHECK(l.at("clean") == true);
  // A connection that drops: 1006, no reason, not clean — and still who it was.
  WsClient bob(s.proc().port(), WsOptions{"/v1/objects/kvlist/d/connect?bob"});
  bob.drop();
  REQUIRE(eventually([&] { return left().at("tag") == "user:bob"; }));
  l = left();
  CHECK(l.at("attachment") == "attached:bob");
  CHECK(l.at("code") == 1006);
  CHECK(l.at("reason") == "");
  CHECK(l.at("clean") == false);
}

TEST_CASE("objects: an object calls another and uses the reply in the same turn; cycles fail at once",
          "[integration][objects]") {
  // A long call timeout: a cycle that waited for it instead of failing at once would answer
  // call_timeout, not call_cycle.
  Server s(actor_args({"--call-timeout-ms", "30000"}));
  auto& h = s.http();
  tell(h, "counter/x");
  tell(h, "counter/x");
  REQUIRE(eventually([&] { return call(h, "counter/x").at("n").as_int64() == 2; }));
  // A → counter: the reply, inside A's turn.
  auto r = call(h, "caller/a", R"({"call":["counter","x",{}]})");
  CHECK(r.at("got").at("n") == 2);
  // A → B → A: B's call back into A fails at once with call_cycle (A is waiting on B).
  r = call(h, "caller/a", R"({"call":["caller","b",{"call":["caller","a",{}]}]})");
  CHECK(r.at("got").at("error") == "call_cycle");
  // A → A.
  CHECK(call(h, "caller/a", R"({"call":["caller","a",{}]})").at("error") == "call_cycle");
  // A → B → C → A: the whole chain counts.
  r = call(h, "caller/a", R"({"call":["caller","b",{"call":["caller","c",{"call":["caller","a",{}]}]}]})");
  CHECK(r.at("got").at("got").at("error") == "call_cycle");
  // A chain without a cycle works: A → B → counter.
  r = call(h, "caller/a", R"({"call":["caller","b",{"call":["counter","x",{}]}]})");
  CHECK(r.at("got").at("got").at("n") == 2);
  // The callee's failures reach the caller with their codes.
  CHECK(call(h, "caller/a", R"({"call":["slow","z",{"sleep_ms":1000}],"timeout_ms":100})").at("error") ==
        "call_timeout");
  CHECK(call(h, "caller/a", R"({"call":["nope","z",{}]})").at("error") == "class_not_found");
  CHECK(call(h, "caller/a", R"({"call":["flaky","z","throw"]})").at("error") == "actor_error");
  // A tell whose turn calls: the answer commits with the turn's own write.
  tell(h, "caller/t", R"({"call":["counter","x",{}]})");
  REQUIRE(eventually([&] { return call(h, "caller/t", R"({"last":true})").is_object(); }));
  CHECK(call(h, "caller/t", R"({"last":true})").at("got").at("n") == 2);
}

TEST_CASE("objects: on_connect sees the path, the headers, the client address and the token's claims",
          "[integration][objects]") {
  const std::string secret = "connect-secret";
  auto token = roost::sign_jwt(secret, R"({"sub":"user-7","roost":{"objects":["kvlist.>"]}})");
  auto seen = [&](Server& s) {
    roost::client::HttpClient h(s.proc().url());
    h.set_header("Authorization", "Bearer " + token);
    json::value v;
    REQUIRE(eventually([&] {
      auto r = h.post("/v1/objects/kvlist/p/call", "{}");
      if (r.status != 200) return false;
      auto c = body_json(r).at("connected").as_string();
      if (c.empty()) return false;
      v = json::parse(c);
      return true;
    }));
    return v;
  };
  WsOptions o{"/v1/objects/kvlist/p/connect?carol"};
  o.headers = {{"Authorization", "Bearer " + token},
               {"X-Test", "hello"},
               {"X-Forwarded-For", "198.51.100.7, 203.0.113.9"}};
  {
    // Behind a proxy the node trusts: the client is the right-most address the proxy did not add.
    Server s(actor_args({"--auth-secret", secret, "--trusted-proxies", "127.0.0.1"}));
    WsClient ws(s.proc().port(), o);
    auto v = seen(s);
    CHECK(v.at("path") == "/v1/objects/kvlist/p/connect");
    CHECK(v.at("x_test") == "hello");           // case-insensitive lookup
    CHECK(v.at("has_authorization") == false);  // the token is verified; its claims are given instead
    CHECK(v.at("client") == "203.0.113.9");
    auto claims = json::parse(v.at("claims").as_string());
    CHECK(claims.at("sub") == "user-7");
  }
  {
    // Without trusted_proxies an X-Forwarded-For header is the client's own word: ignored.
    Server s(actor_args({"--auth-secret", secret}));
    WsClient ws(s.proc().port(), o);
    CHECK(seen(s).at("client") == "127.0.0.1");
  }
}

TEST_CASE("objects: HTTP requests reach on_fetch; its status, headers and body come back after the commit",
          "[integration][objects]") {
  Server s(actor_args());
  auto& h = s.http();
  h.set_header("X-Test", "hi");
  auto r = h.request("PUT", "/v1/objects/web/w1/fetch/items/7?x=1&y=2", "payload", "text/plain");
  REQUIRE(r.status == 200);
  auto v = body_json(r);
  CHECK(v.at("method") == "PUT");
  CHECK(v.at("path") == "/items/7");
  CHECK(v.at("query") == "x=1&y=2");
  CHECK(v.at("body") == "payload");
  CHECK(v.at("x_test") == "hi");
  CHECK(v.at("client") == "127.0.0.1");
  CHECK(v.at("requests") == 1);
  // The turn's storage write committed: the next request sees it.
  CHECK(body_json(h.get("/v1/objects/web/w1/fetch")).at("requests") == 2);
  CHECK(body_json(h.get("/v1/objects/web/w1/fetch")).at("path") == "/");
  // The object's status and headers; Content-Length stays the node's.
  auto t = h.get("/v1/objects/web/w1/fetch/teapot");
  CHECK(t.status == 418);
  CHECK(body_json(t).at("path") == "/teapot");
  CHECK(t.header("x-object") == "w1");
  CHECK(t.header("Content-Length") == std::to_string(t.body.size()));
  // A throwing handler, a header with CR/LF: 500 actor_error, nothing injected.
  auto e = h.get("/v1/objects/web/w1/fetch/throw");
  CHECK(e.status == 500);
  CHECK(error_code(e) == "actor_error");
  auto b = h.get("/v1/objects/web/w1/fetch/bad-header");
  CHECK(b.status == 500);
  CHECK(error_code(b) == "actor_error");
  CHECK(b.header("Injected").empty());
  // A class without on_fetch answers 501; an unknown class 404.
  CHECK(h.get("/v1/objects/counter/c/fetch").status == 501);
  CHECK(h.get("/v1/objects/nope/c/fetch").status == 404);
}
