// Broadcast channels against the real binary: WebSocket, SSE, HTTP publish, presence, resume,
// slow consumers, every error code, JWT and Origin checks.
#include <thread>

#include <roost/core/auth.h>
#include "../support/ws_client.h"
#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
json::value sub(const char* channel, int id = 1) {
  return json::object{{"op", "subscribe"}, {"id", id}, {"channel", channel}};
}
json::value pub(const char* channel, json::value data, int id = 2) {
  return json::object{{"op", "publish"}, {"id", id}, {"channel", channel}, {"data", data}};
}
// Reads an SSE stream's raw bytes until `needle` shows up or the time is over.
std::string sse_read_until(boost::asio::ip::tcp::socket& s, const std::string& needle,
                           int timeout_ms = 3000) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  s.non_blocking(true);
  while (got.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    char buf[4096];
    boost::system::error_code ec;
    auto n = s.read_some(boost::asio::buffer(buf), ec);
    if (ec == boost::asio::error::would_block) {
      std::this_thread::sleep_for(10ms);
      continue;
    }
    if (ec) break;
    got.append(buf, n);
  }
  return got;
}
boost::asio::ip::tcp::socket sse_open(boost::asio::io_context& io, int port, const std::string& path,
                                      const std::string& extra_headers = "") {
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
  boost::asio::write(s, boost::asio::buffer(req));
  return s;
}
}  // namespace

TEST_CASE("WebSocket publish and subscribe, wildcards, unsubscribe, ping", "[integration][channels]") {
  Server s;
  WsClient a(s.proc().port()), b(s.proc().port());
  a.send(sub("chat.*", 1));
  auto ok = a.expect("ok");
  CHECK(ok.at("id") == 1);
  a.send(sub("chat.room1", 2));  // overlapping: still one copy per message
  a.expect("ok");
  b.send(pub("chat.room1", json::object{{"text", "hi"}}, 7));
  auto bok = b.expect("ok");
  CHECK(bok.at("id") == 7);
  CHECK(bok.at("offset") == 1);
  CHECK(bok.at("subscribers") == 1);
  auto m = a.expect("message");
  CHECK(m.at("channel") == "chat.room1");
  CHECK(m.at("data").at("text") == "hi");
  CHECK(m.at("offset") == 1);
  CHECK(m.at("epoch").is_string());
  CHECK_FALSE(a.recv(200));  // no duplicate
  b.send(pub("chat.room2", 5));
  CHECK(a.expect("message").at("channel") == "chat.room2");
  b.send(pub("news.today", 5));
  CHECK_FALSE(a.recv(200));
  a.send(json::object{{"op", "unsubscribe"}, {"id", 3}, {"channel", "chat.*"}});
  a.expect("ok");
  a.send(json::object{{"op", "unsubscribe"}, {"id", 4}, {"channel", "chat.room1"}});
  a.expect("ok");
  b.send(pub("chat.room1", 6));
  CHECK_FALSE(a.recv(200));
  a.send(json::object{{"op", "ping"}, {"id", 9}});
  CHECK(a.expect("pong").at("id") == 9);
}

TEST_CASE("WebSocket publish without an id is answered only when it fails", "[integration][channels]") {
  Server s;
  WsClient a(s.proc().port()), b(s.proc().port());
  a.send(sub("fire.*", 1));
  a.expect("ok");
  for (int i = 1; i <= 50; ++i) {
    b.send(json::object{{"op", "publish"}, {"channel", "fire.x"}, {"data", i}});
  }
  for (int i = 1; i <= 50; ++i) {
    auto m = a.expect("message");
    CHECK(m.at("data") == i);  // every one delivered, in order
    CHECK(m.at("offset") == i);
  }
  // Nothing came back for them: the next frame b receives answers its ping.
  b.send(json::object{{"op", "ping"}, {"id", 5}});
  auto next = b.recv();
  REQUIRE(next);
  CHECK(next->at("op") == "pong");
  CHECK(next->at("id") == 5);
  // A failing one is still answered, with a null id.
  b.send(json::object{{"op", "publish"}, {"channel", "fire.*"}, {"data", 1}});
  auto err = b.recv();
  REQUIRE(err);
  CHECK(err->at("op") == "error");
  CHECK(err->at("code") == "invalid_argument");
  CHECK(err->at("id").is_null());
  b.send(json::object{{"op", "publish"}, {"channel", "fire.y"}});
  CHECK(b.expect("error").at("code") == "invalid_argument");  // data is required
}

TEST_CASE("HTTP publish reaches WebSocket and SSE subscribers; presence counts them",
          "[integration][channels]") {
  Server s;
  WsClient ws(s.proc().port());
  ws.send(sub("orders.>"));
  ws.expect("ok");
  boost::asio::io_context io;
  auto sse = sse_open(io, s.proc().port(), "/v1/channels/orders.eu/events");
  CHECK(sse_read_until(sse, ": roost stream").find("text/event-stream") != std::string::npos);
  auto p = body_json(s.http().get("/v1/channels/orders.eu/presence"));
  CHECK(p.at("subscribers") == 2);
  CHECK(p.at("direct") == 1);
  auto r = s.http().post("/v1/channels/orders.eu/publish", R"({"id":42})");
  REQUIRE(r.status == 200);
  auto pr = body_json(r);
  CHECK(pr.at("subscribers") == 2);
  CHECK(pr.at("offset") == 1);
  CHECK(ws.expect("message").at("data").at("id") == 42);
  auto text = sse_read_until(sse, R"("id":42})");
  CHECK(text.find("id: ") != std::string::npos);
  CHECK(text.find(R"("data":{"id":42})") != std::string::npos);
}

TEST_CASE("resume from history after a disconnect, or reset when the gap can't be filled",
          "[integration][channels]") {
  Server s({"--channel-namespaces", "chat.:history=3"});
  std::string epoch;
  {
    WsClient a(s.proc().port());
    a.send(sub("chat.room1"));
    auto ok = a.expect("ok");
    epoch = std::string(ok.at("epoch").as_string());
    CHECK(ok.at("offset") == 0);
  }
  for (int i = 1; i <= 4; ++i) s.http().post("/v1/channels/chat.room1/publish", std::to_string(i));
  WsClient b(s.proc().port());
  b.send(json::object{{"op", "subscribe"},
                      {"id", 1},
                      {"channel", "chat.room1"},
                      {"since", json::object{{"epoch", epoch}, {"offset", 2}}}});
  auto ok = b.expect("ok");
  CHECK(ok.at("recovered") == 2);
  CHECK(b.expect("message").at("offset") == 3);
  CHECK(b.expect("message").at("offset") == 4);
  WsClient c(s.proc().port());
  c.send(json::object{{"op", "subscribe"},
                      {"id", 1},
                      {"channel", "chat.room1"},
                      {"since", json::object{{"epoch", epoch}, {"offset", 0}}}});  // 1 is gone
  auto reset = c.expect("reset");
  CHECK(reset.at("offset") == 4);
  WsClient d(s.proc().port());
  d.send(json::object{{"op", "subscribe"},
                      {"id", 1},
                      {"channel", "chat.room1"},
                      {"since", json::object{{"epoch", "stale"}, {"offset", 2}}}});
  CHECK(d.expect("reset").at("epoch") == epoch.c_str());
  // SSE resumes with Last-Event-ID.
  boost::asio::io_context io;
  auto sse =
      sse_open(io, s.proc().port(), "/v1/channels/chat.room1/events", "Last-Event-ID: " + epoch + ":3\r\n");
  auto text = sse_read_until(sse, ":4\n");
  CHECK(text.find("id: " + epoch + ":4") != std::string::npos);
  CHECK(text.find("id: " + epoch + ":3") == std::string::npos);
}

TEST_CASE("a slow subscriber is told what it lost and never slows the others", "[integration][channels]") {
  // The slow clients read nothing while the load runs, so they cannot answer pings: keep the idle
  // timeout out of the way (under sanitizers on a busy machine the load takes over a minute).
  Server s({"--channel-buffer-messages", "16", "--channel-namespaces", "strict.:policy=disconnect",
            "--ws-idle-timeout-ms", "600000"});
  WsClient slow(s.proc().port()), fast(s.proc().port()), strict(s.proc().port());
  slow.send(sub("load.x"));
  slow.expect("ok");
  fast.send(sub("load.x"));
  fast.expect("ok");
  strict.send(sub("strict.x"));
  strict.expect("ok");
  // ~24 MiB to each: far more than socket buffers hold, so the slow readers' queues fill.
  std::string big(1000, 'z');
  roost::client::HttpClient h(s.proc().url());
  int fast_got = 0;
  std::uint64_t fast_dropped = 0;
  std::thread reader([&] {
    for (;;) {
      try {
        auto f = fast.recv(2000);
        if (!f) break;
        if (f->at("op") == "message") ++fast_got;
        if (f->at("op") == "lagged") fast_dropped += f->at("dropped").to_number<std::uint64_t>();
      } catch (...) {
        break;
      }
    }
  });
  for (int i = 0; i < 24'000; ++i) {
    REQUIRE(h.post("/v1/channels/load.x/publish", "\"" + big + "\"").status == 200);
    if (i % 8 == 0) h.post("/v1/channels/strict.x/publish", "\"" + std::string(16'000, 's') + "\"");
  }
  reader.join();
  // The reading subscriber is told of anything it lost too (with a 16-message buffer, a loaded
  // machine — sanitizers, two cores — may let it fall behind now and then: how much depends on
  // the scheduler, so only the accounting is exact).
  // The slow one gets what fit in its buffer, then a lagged notice with the count it lost.
  int got = 0;
  std::uint64_t dropped = 0;
  for (;;) {
    auto f = slow.recv(1000);
    if (!f) break;
    if (f->at("op") == "message") ++got;
    if (f->at("op") == "lagged") dropped += f->at("dropped").to_number<std::uint64_t>();
  }
  CHECK(dropped > 0);
  CHECK(got + dropped == 24'000);
  CHECK(fast_got + fast_dropped == 24'000);
  CHECK(fast_got > got);                // reading got it more than the one that did not read
  CHECK(strict.wait_closed() == 1008);  // policy=disconnect
  auto metrics = s.http().get("/metrics").body;
  CHECK(metrics.find("roost_channel_slow_disconnects_total 1") != std::string::npos);
}

TEST_CASE("channel errors have stable codes", "[integration][channels]") {
  Server s({"--max-ws-message-bytes", "1024"});
  WsClient a(s.proc().port());
  a.send("{not json");
  CHECK(a.expect("error").at("code") == "malformed");
  a.send(R"({"op":"dance","channel":"x"})");
  CHECK(a.expect("error").at("code") == "invalid_argument");
  a.send(R"({"op":"subscribe","id":5})");
  auto e = a.expect("error");
  CHECK(e.at("code") == "invalid_argument");
  CHECK(e.at("id") == 5);
  a.send(sub("bad..channel"));
  CHECK(a.expect("error").at("message").as_string().find("empty token") != json::string::npos);
  a.send(pub("chat.*", 1));
  CHECK(a.expect("error").at("code") == "invalid_argument");
  a.send(json::object{{"op", "subscribe"},
                      {"id", 1},
                      {"channel", "chat.*"},
                      {"since", json::object{{"epoch", "x"}, {"offset", 1}}}});
  CHECK(a.expect("error").at("code") == "invalid_argument");
  a.send(sub("dup.x"));
  a.expect("ok");
  a.send(sub("dup.x"));
  CHECK(a.expect("error").at("code") == "conflict");
  a.send(json::object{{"op", "unsubscribe"}, {"id", 1}, {"channel", "never.x"}});
  CHECK(a.expect("error").at("code") == "not_found");
  // A field an op does not know is refused (not ignored), named, and the op does not happen.
  a.send(json::object{{"op", "subscribe"}, {"id", 7}, {"channel", "typo.x"}, {"resent", 5}});
  e = a.expect("error");
  CHECK(e.at("code") == "unknown_field");
  CHECK(e.at("id") == 7);
  CHECK(e.at("message").as_string().find("\"resent\"") != json::string::npos);
  a.send(json::object{
      {"op", "publish"}, {"id", 8}, {"channel", "typo.x"}, {"data", 1}, {"content_type", "text"}});
  CHECK(a.expect("error").at("code") == "unknown_field");
  a.send(json::object{{"op", "ping"}, {"id", 9}, {"channel", "x"}});
  CHECK(a.expect("error").at("code") == "unknown_field");
  a.send(json::object{{"op", "unsubscribe"}, {"id", 10}, {"channel", "typo.x"}});
  CHECK(a.expect("error").at("code") == "not_found");  // the subscribe above did not happen
  a.send_binary("\x01\x02");
  CHECK(a.expect("error").at("code") == "invalid_argument");
  a.send(pub("ok.x", json::string(std::string(2000, 'x'))));  // over max_ws_message_bytes
  CHECK(a.wait_closed() == 1009);
  // HTTP side.
  auto r = s.http().post("/v1/channels/news.x/publish", "{oops");
  CHECK(r.status == 400);
  CHECK(error_code(r) == "malformed");
  r = s.http().post("/v1/channels/news.*/publish", "1");
  CHECK(error_code(r) == "invalid_argument");
  CHECK(s.http().get("/v1/channels/news.x/publish").status == 405);
  CHECK(error_code(s.http().get("/v1/channels/news.x/nothing")) == "not_found");
  CHECK_THROWS(WsClient(s.proc().port(), {.target = "/v1/other"}));
}

TEST_CASE("JWT: tokens are verified and their grants enforced", "[integration][auth]") {
  const std::string secret = "test-secret-please-change";
  Server s({"--auth-secret", secret});
  auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto token = roost::sign_jwt(
      secret, R"({"exp":)" + std::to_string(now + 600) +
                  R"(,"roost":{"publish":["chat.room1"],"subscribe":["chat.>"],"queues":["jobs"]}})");
  auto expired = roost::sign_jwt(secret, R"({"exp":)" + std::to_string(now - 10) + R"(,"roost":{}})");
  auto forged = roost::sign_jwt("other-secret", R"({"roost":{"publish":[">"]}})");

  CHECK_THROWS(WsClient(s.proc().port()));
  CHECK_THROWS(WsClient(s.proc().port(), {.token = expired}));
  CHECK_THROWS(WsClient(s.proc().port(), {.token = forged}));
  CHECK_THROWS(WsClient(s.proc().port(), {.token = "not.a.jwt"}));
  WsClient a(s.proc().port(), {.token = token});
  a.send(sub("chat.room9"));
  a.expect("ok");
  a.send(sub("news.x"));
  CHECK(a.expect("error").at("code") == "forbidden");
  a.send(sub(">"));  // wider than the grant
  CHECK(a.expect("error").at("code") == "forbidden");
  a.send(pub("chat.room2", 1));
  CHECK(a.expect("error").at("code") == "forbidden");
  a.send(pub("chat.room1", 1));
  a.expect("ok");

  auto& h = s.http();
  auto r = h.post("/v1/queues/jobs/messages", R"({"body":1})");
  CHECK(r.status == 401);
  CHECK(error_code(r) == "unauthorized");
  // Over REST the token travels in the Authorization header only (?token= is for WebSocket and
  // SSE, where browsers cannot set headers): a token in a URL ends up in logs.
  r = h.request("POST", "/v1/queues/jobs/messages?token=" + token, R"({"body":1})");
  CHECK(r.status == 401);
  roost::client::HttpClient bearer(s.proc().url());
  bearer.set_header("Authorization", "Bearer " + expired);
  r = bearer.request("POST", "/v1/queues/jobs/messages", R"({"body":1})");
  CHECK(r.status == 401);
  bearer.set_header("Authorization", "Bearer " + token);
  r = bearer.request("POST", "/v1/queues/jobs/messages", R"({"body":1})");
  CHECK(r.status == 201);
  r = bearer.request("POST", "/v1/queues/other/messages", R"({"body":1})");
  CHECK(r.status == 403);
  CHECK(error_code(r) == "forbidden");
  r = bearer.request("GET", "/v1/queues");
  CHECK(body_json(r).at("queues").as_array().size() == 1);
  r = bearer.request("POST", "/v1/channels/chat.room2/publish", "1");
  CHECK(r.status == 403);
  CHECK(h.get("/healthz").status == 200);  // health needs no token
}

TEST_CASE("WebSocket Origin allow-list", "[integration][auth]") {
  {
    Server s;  // no list: same host only
    int port = s.proc().port();
    CHECK_THROWS(WsClient(port, {.origin = "http://evil.example"}));
    CHECK_NOTHROW(WsClient(port, {.origin = "http://127.0.0.1:" + std::to_string(port)}));
    CHECK_NOTHROW(WsClient(port));  // no Origin: not a browser
  }
  Server s({"--allowed-origins", "http://app.example, http://other.example"});
  CHECK_NOTHROW(WsClient(s.proc().port(), {.origin = "http://app.example"}));
  CHECK_THROWS(WsClient(s.proc().port(), {.origin = "http://evil.example"}));
}

TEST_CASE("connections per IP are limited", "[integration]") {
  Server s({"--max-connections-per-ip", "2"});
  WsClient a(s.proc().port());
  WsClient b(s.proc().port());
  CHECK_THROWS(WsClient(s.proc().port()));
  a.close();
  std::this_thread::sleep_for(200ms);
  CHECK_NOTHROW(WsClient(s.proc().port()));
}

TEST_CASE("static files and the browser client", "[integration]") {
  TempDir site("roost-site");
  std::ofstream(site.path() / "index.html") << "<h1>hello</h1>";
  std::filesystem::create_directories(site.path() / "js");
  std::ofstream(site.path() / "js" / "app.js") << "console.log(1)";
  Server s({"--static", site.path().string()});
  auto r = s.http().get("/");
  CHECK(r.status == 200);
  CHECK(r.body == "<h1>hello</h1>");
  CHECK(r.content_type.starts_with("text/html"));
  CHECK(s.http().get("/js/app.js").content_type.starts_with("text/javascript"));
  CHECK(s.http().get("/../etc/passwd").status == 404);
  CHECK(s.http().get("/%2e%2e/%2e%2e/etc/passwd").status == 404);
  CHECK(s.http().get("/missing.html").status == 404);
  auto js = s.http().get("/roost.js");
  CHECK(js.status == 200);
  CHECK(js.body.find("export function connect") != std::string::npos);
}

TEST_CASE("permessage-deflate when enabled", "[integration][channels]") {
  Server s({"--ws-compression", "true"});
  WsClient a(s.proc().port(), {.compression = true});
  CHECK(a.handshake_header(boost::beast::http::field::sec_websocket_extensions).find("permessage-deflate") !=
        std::string::npos);
  WsClient b(s.proc().port());  // a client without it still works
  CHECK(b.handshake_header(boost::beast::http::field::sec_websocket_extensions).empty());
  a.send(sub("z.x"));
  a.expect("ok");
  std::string big(20'000, 'r');
  b.send(pub("z.x", json::string(big)));
  b.expect("ok");
  CHECK(a.expect("message").at("data") == big.c_str());
}

TEST_CASE("a client that publishes without reading its answers is cut off", "[integration][channels]") {
  Server s;
  WsClient a(s.proc().port());
  std::string frame = R"({"op":"publish","id":1,"channel":"nobody.here","data":1})";
  bool cut = false;
  for (int i = 0; i < 400'000 && !cut; ++i) {
    try {
      a.send(frame);
    } catch (const boost::system::system_error&) {
      cut = true;  // the server closed the connection
    }
  }
  int code = a.wait_closed(10'000);
  CHECK((cut || code != 0));
  if (code != 0) CHECK(code == 1008);
  CHECK(s.http().get("/healthz").status == 200);
}

TEST_CASE("join and leave events over WebSocket and SSE (namespace join_leave)", "[integration][channels]") {
  Server s({"--channel-namespaces", "room.:join_leave=true"});
  WsClient a(s.proc().port());
  a.send(sub("room.1", 1));
  a.expect("ok");
  boost::asio::io_context io;
  auto sse = sse_open(io, s.proc().port(), "/v1/channels/room.1/events");  // joins as well
  auto j1 = a.expect("join");
  CHECK(j1.at("channel") == "room.1");
  CHECK(j1.at("subscribers") == 2);
  {
    WsClient b(s.proc().port());
    b.send(sub("room.1", 1));
    b.expect("ok");
    CHECK(a.expect("join").at("subscribers") == 3);
    CHECK(sse_read_until(sse, "event: join").find("\"subscribers\":3") != std::string::npos);
  }  // b disconnects
  auto l = a.expect("leave");
  CHECK(l.at("subscribers") == 2);
  CHECK(sse_read_until(sse, "event: leave").find("event: leave") != std::string::npos);
  // Elsewhere no events: a subscribes to another namespace, c joins it.
  a.send(sub("plain.x", 2));
  a.expect("ok");
  WsClient c(s.proc().port());
  c.send(sub("plain.x", 1));
  c.expect("ok");
  c.send(pub("plain.x", json::value(1), 3));
  auto m = a.expect("message");  // the first frame a sees is the message, not a join
  CHECK(m.at("channel") == "plain.x");
}

TEST_CASE("channels unused for channel_idle_ms are forgotten; subscribed ones stay",
          "[integration][channels]") {
  Server s({"--channel-idle-ms", "300"});
  auto channels = [&] {
    auto text = s.http().get("/metrics").body;
    auto at = text.find("\nroost_channels ");
    return at == std::string::npos ? -1L : std::stol(text.substr(at + 16));
  };
  WsClient a(s.proc().port());
  a.send(sub("inbox.kept", 1));
  auto ok = a.expect("ok");
  std::string epoch(ok.at("epoch").as_string());
  auto& h = s.http();
  for (int i = 0; i < 200; ++i) {
    REQUIRE(h.post("/v1/channels/inbox.u" + std::to_string(i) + "/publish", "1").status == 200);
  }
  CHECK(channels() == 201);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (channels() > 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  CHECK(channels() == 1);  // the 200 are gone, the subscribed one stays
  auto r = h.post("/v1/channels/inbox.kept/publish", "2");
  auto body = json::parse(r.body);
  CHECK(body.at("epoch") == epoch.c_str());  // same channel, same numbering
  CHECK(body.at("offset") == 1);
  CHECK(a.expect("message").at("data") == 2);
}
