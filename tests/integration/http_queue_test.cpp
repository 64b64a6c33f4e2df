// The queue HTTP API against the real binary: every semantic, every error code.
#include <thread>

#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;
namespace json = boost::json;

TEST_CASE("queue lifecycle: create with defaults, configure, list, delete", "[integration]") {
  Server s;
  auto r = s.put_queue("orders");
  REQUIRE(r.status == 200);
  auto q = body_json(r).as_object();
  CHECK(q.at("name") == "orders");
  const auto& c = q.at("config").as_object();
  CHECK(c.at("visibility_timeout_ms") == 30000);
  CHECK(c.at("max_retries") == 3);
  CHECK(c.at("retry_delay_ms") == 0);
  CHECK(c.at("dead_letter_queue").is_null());
  CHECK(c.at("max_messages").is_null());
  CHECK(c.at("max_bytes").is_null());
  CHECK(c.at("message_ttl_ms") == 345600000);
  CHECK(c.at("dedup_window_ms") == 120000);

  r = s.put_queue("orders", R"({"max_retries":5,"dead_letter_queue":"orders-dlq"})");
  REQUIRE(r.status == 200);
  auto c2 = body_json(r).at("config");
  CHECK(c2.at("max_retries") == 5);
  CHECK(c2.at("dead_letter_queue") == "orders-dlq");
  CHECK(c2.at("visibility_timeout_ms") == 30000);

  s.put_queue("audit");
  auto list = body_json(s.http().get("/v1/queues")).at("queues").as_array();
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("name") == "audit");
  CHECK(list[1].at("stats").as_object().contains("in_flight"));

  CHECK(s.http().del("/v1/queues/audit").status == 200);
  CHECK(s.http().get("/v1/queues/audit").status == 404);
  CHECK(body_json(s.http().get("/v1/queues")).at("queues").as_array().size() == 1);
}

TEST_CASE("enqueue is acknowledged with ids; pull leases; ack removes", "[integration]") {
  Server s;
  auto r = s.send("jobs", R"({"body":{"task":"resize","w":640}})");
  REQUIRE(r.status == 201);
  auto ids = body_json(r).at("ids").as_array();
  REQUIRE(ids.size() == 1);
  r = s.send("jobs", R"({"messages":[{"body":"a","content_type":"text"},{"body":[1,2,3]},
                                    {"body":"AAEC/w==","content_type":"bytes"}]})");
  REQUIRE(r.status == 201);
  CHECK(body_json(r).at("ids").as_array().size() == 3);

  auto msgs = s.pull_messages("jobs", R"({"batch_size":10,"visibility_timeout_ms":60000})");
  REQUIRE(msgs.size() == 4);
  CHECK(msgs[0].at("id") == ids[0]);
  CHECK(msgs[0].at("body").at("task") == "resize");
  CHECK(msgs[0].at("content_type") == "json");
  CHECK(msgs[0].at("attempts") == 1);
  CHECK(msgs[0].at("timestamp_ms").as_int64() > 1'600'000'000'000);
  CHECK(msgs[0].at("key").is_null());
  CHECK(msgs[1].at("body") == "a");
  CHECK(msgs[1].at("content_type") == "text");
  CHECK(msgs[2].at("body") == json::array{1, 2, 3});
  CHECK(msgs[3].at("body") == "AAEC/w==");
  CHECK(msgs[3].at("content_type") == "bytes");

  auto st = s.stats("jobs");
  CHECK(st.at("in_flight") == 4);
  CHECK(st.at("ready") == 0);

  json::object body{
      {"acks", json::array{json::object{{"lease_id", msgs[0].at("lease_id")}},
                           json::object{{"lease_id", "0000000000000099-0000000000000001"}}}},
      {"retries", json::array{json::object{{"lease_id", msgs[1].at("lease_id")}, {"delay_ms", 0}}}}};
  r = s.ack("jobs", json::serialize(body));
  REQUIRE(r.status == 200);
  auto a = body_json(r);
  CHECK(a.at("acked") == 1);
  CHECK(a.at("retried") == 1);
  CHECK(a.at("unknown") == json::array{"0000000000000099-0000000000000001"});
  st = s.stats("jobs");
  CHECK(st.at("acked") == 1);
  CHECK(st.at("retried") == 1);
  CHECK(st.at("ready") == 1);
  CHECK(st.at("in_flight") == 2);
  CHECK(st.at("enqueued") == 4);
}

TEST_CASE("pull answers carry the backlog; peek leases nothing; purge empties the queue", "[integration]") {
  Server s;
  auto& h = s.http();
  s.put_queue("bk", R"({"visibility_timeout_ms":60000})");
  for (int i = 0; i < 5; ++i) REQUIRE(s.send("bk", json::serialize(json::object{{"body", i}})).status == 201);
  // backlog: the queue's unacknowledged messages after this pull (leased ones included).
  auto r = s.pull("bk", R"({"batch_size":2})");
  REQUIRE(r.status == 200);
  auto pulled = body_json(r);
  CHECK(pulled.at("messages").as_array().size() == 2);
  CHECK(pulled.at("backlog") == 5);
  s.ack_leases("bk", pulled.at("messages").as_array());
  r = s.pull("bk", R"({"batch_size":1})");
  CHECK(body_json(r).at("backlog") == 3);
  // An empty pull tells the backlog too (all 3 leased or waiting: none free here but 2).
  r = s.pull("bk", R"({"batch_size":10})");
  CHECK(body_json(r).at("messages").as_array().size() == 2);
  CHECK(body_json(r).at("backlog") == 3);
  r = s.pull("bk", R"({"batch_size":10})");
  CHECK(body_json(r).at("messages").as_array().empty());
  CHECK(body_json(r).at("backlog") == 3);

  // Peek: the next messages a pull would lease, no lease ids, nothing leased.
  s.put_queue("pk");
  for (int i = 0; i < 4; ++i) s.send("pk", json::serialize(json::object{{"body", i}}));
  r = h.post("/v1/queues/pk/messages/peek", R"({"batch_size":3})");
  REQUIRE(r.status == 200);
  auto peeked = body_json(r).at("messages").as_array();
  REQUIRE(peeked.size() == 3);
  CHECK(peeked[0].at("body") == 0);
  CHECK(peeked[2].at("body") == 2);
  CHECK_FALSE(peeked[0].as_object().contains("lease_id"));
  CHECK(peeked[0].at("attempts") == 0);
  CHECK(s.stats("pk").at("in_flight") == 0);
  CHECK(body_json(h.post("/v1/queues/pk/messages/peek", "")).at("messages").as_array().size() == 4);
  auto first = s.pull_messages("pk", R"({"batch_size":1})");
  CHECK(first[0].at("id") == peeked[0].at("id"));
  CHECK(error_code(h.post("/v1/queues/none/messages/peek", "{}")) == "queue_not_found");
  CHECK(h.get("/v1/queues/pk/messages/peek").status == 405);

  // Purge: every message goes (the leased one too: its ack no longer holds); the queue stays.
  r = h.post("/v1/queues/pk/purge", "");
  REQUIRE(r.status == 200);
  CHECK(body_json(r).at("purged") == 4);
  auto st = s.stats("pk");
  CHECK(st.at("messages") == 0);
  CHECK(st.at("in_flight") == 0);
  CHECK(st.at("purged") == 4);
  r = s.ack("pk", json::serialize(json::object{
                      {"acks", json::array{json::object{{"lease_id", first[0].at("lease_id")}}}}}));
  CHECK(body_json(r).at("unknown").as_array().size() == 1);
  CHECK(s.pull_messages("pk", R"({"batch_size":10})").empty());
  CHECK(s.send("pk", R"({"body":"after"})").status == 201);  // still a queue
  CHECK(s.pull_messages("pk").size() == 1);
  CHECK(error_code(h.post("/v1/queues/pk/purge", R"({"all":true})")) == "unknown_field");
  CHECK(error_code(h.post("/v1/queues/none/purge", "")) == "queue_not_found");
}

TEST_CASE("visibility timeout expiry redelivers with attempts counted", "[integration]") {
  Server s;
  s.put_queue("v", R"({"visibility_timeout_ms":300})");
  s.send("v", R"({"body":1})");
  auto first = s.pull_messages("v");
  REQUIRE(first.size() == 1);
  CHECK(s.pull_messages("v").empty());
  std::this_thread::sleep_for(450ms);
  auto second = s.pull_messages("v");
  REQUIRE(second.size() == 1);
  CHECK(second[0].at("attempts") == 2);
  CHECK(second[0].at("id") == first[0].at("id"));
  // The stale lease is unknown; the fresh one acks.
  auto r = s.ack("v", R"({"acks":[{"lease_id":")" + lease_of(first[0]) + R"("}]})");
  CHECK(body_json(r).at("unknown").as_array().size() == 1);
  s.ack_leases("v", second);
  CHECK(s.stats("v").at("messages") == 0);
}

TEST_CASE("after max_retries messages land in the dead-letter queue; redrive brings them back",
          "[integration]") {
  Server s;
  s.put_queue("work", R"({"max_retries":1,"dead_letter_queue":"work-dlq"})");
  s.send("work", R"({"messages":[{"body":"p1"},{"body":"p2"}]})");
  for (int round = 0; round < 2; ++round) {
    auto msgs = s.pull_messages("work");
    REQUIRE(msgs.size() == 2);
    CHECK(msgs[0].at("attempts") == round + 1);
    json::array retries;
    for (auto& m : msgs) retries.push_back(json::object{{"lease_id", m.at("lease_id")}, {"delay_ms", 0}});
    s.ack("work", json::serialize(json::object{{"retries", retries}}));
  }
  CHECK(s.pull_messages("work").empty());
  CHECK(s.stats("work").at("dead_lettered") == 2);
  CHECK(s.stats("work-dlq").at("ready") == 2);

  auto r = s.http().post("/v1/queues/work-dlq/redrive", R"({"to":"work","max":1})");
  REQUIRE(r.status == 200);
  CHECK(body_json(r).at("moved") == 1);
  r = s.http().post("/v1/queues/work-dlq/redrive", R"({"to":"work"})");
  CHECK(body_json(r).at("moved") == 1);
  auto back = s.pull_messages("work");
  REQUIRE(back.size() == 2);
  CHECK(back[0].at("body") == "p1");
  CHECK(back[0].at("attempts") == 1);
}

TEST_CASE("delayed messages and retry delays", "[integration]") {
  Server s;
  s.send("d", R"({"body":"later","delay_ms":400})");
  CHECK(s.pull_messages("d").empty());
  CHECK(s.stats("d").at("delayed") == 1);
  std::this_thread::sleep_for(550ms);
  auto msgs = s.pull_messages("d");
  REQUIRE(msgs.size() == 1);
  s.ack("d", R"({"retries":[{"lease_id":")" + lease_of(msgs[0]) + R"(","delay_ms":400}]})");
  CHECK(s.pull_messages("d").empty());
  std::this_thread::sleep_for(550ms);
  auto again = s.pull_messages("d");
  REQUIRE(again.size() == 1);
  CHECK(again[0].at("attempts") == 2);
}

TEST_CASE("dedup by producer id", "[integration]") {
  Server s;
  auto a = body_json(s.send("dd", R"({"body":1,"id":"order-1"})")).at("ids");
  auto b = body_json(s.send("dd", R"({"body":2,"id":"order-1"})")).at("ids");
  CHECK(a == b);
  CHECK(s.stats("dd").at("messages") == 1);
  CHECK(s.stats("dd").at("deduplicated") == 1);
  s.put_queue("short", R"({"dedup_window_ms":200})");
  auto c = body_json(s.send("short", R"({"body":1,"id":"x"})")).at("ids");
  std::this_thread::sleep_for(300ms);
  auto d = body_json(s.send("short", R"({"body":1,"id":"x"})")).at("ids");
  CHECK(c != d);
}

TEST_CASE("per-key order: one in flight per key, in enqueue order", "[integration]") {
  Server s;
  s.send("k", R"({"messages":[{"body":"a1","key":"A"},{"body":"a2","key":"A"},{"body":"b1","key":"B"}]})");
  auto first = s.pull_messages("k", R"({"batch_size":10})");
  REQUIRE(first.size() == 2);
  CHECK(first[0].at("body") == "a1");
  CHECK(first[0].at("key") == "A");
  CHECK(first[1].at("body") == "b1");
  CHECK(s.stats("k").at("blocked") == 1);
  CHECK(s.pull_messages("k").empty());
  s.ack_leases("k", first);
  auto next = s.pull_messages("k");
  REQUIRE(next.size() == 1);
  CHECK(next[0].at("body") == "a2");
}

TEST_CASE("message TTL", "[integration]") {
  Server s;
  s.put_queue("t", R"({"message_ttl_ms":200})");
  s.send("t", R"({"body":"stale"})");
  std::this_thread::sleep_for(400ms);
  CHECK(s.pull_messages("t").empty());
  CHECK(s.stats("t").at("expired") == 1);
  CHECK(s.stats("t").at("messages") == 0);
}

TEST_CASE("long poll waits for a message and gives up after wait_ms", "[integration]") {
  Server s;
  s.put_queue("lp");
  auto t0 = std::chrono::steady_clock::now();
  CHECK(s.pull_messages("lp", R"({"wait_ms":300})").empty());
  CHECK(std::chrono::steady_clock::now() - t0 >= 280ms);

  std::thread producer([&] {
    std::this_thread::sleep_for(200ms);
    roost::client::HttpClient other(s.proc().url());
    other.post("/v1/queues/lp/messages", R"({"body":"wake"})");
  });
  t0 = std::chrono::steady_clock::now();
  auto msgs = s.pull_messages("lp", R"({"wait_ms":10000})");
  auto waited = std::chrono::steady_clock::now() - t0;
  producer.join();
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].at("body") == "wake");
  CHECK(waited < 5s);  // woken by the enqueue, not by the deadline
}

TEST_CASE("restart: unacked messages are visible again, acked ones never return", "[integration]") {
  Server s;
  s.put_queue("r", R"({"visibility_timeout_ms":600000})");
  s.send("r", R"({"messages":[{"body":1},{"body":2},{"body":3}]})");
  auto leased = s.pull_messages("r", R"({"batch_size":3})");
  REQUIRE(leased.size() == 3);
  s.ack("r", R"({"acks":[{"lease_id":")" + lease_of(leased[0]) + R"("}]})");
  s.restart();
  auto st = s.stats("r");
  CHECK(st.at("in_flight") == 0);
  CHECK(st.at("ready") == 2);
  auto again = s.pull_messages("r", R"({"batch_size":10})");
  REQUIRE(again.size() == 2);
  CHECK(again[0].at("body") == 2);
  CHECK(again[1].at("body") == 3);
  CHECK(again[0].at("attempts") == 2);
}

TEST_CASE("SIGTERM drains: a waiting long poll is answered and the process exits 0", "[integration]") {
  Server s;
  s.put_queue("g");
  std::thread killer([&] {
    std::this_thread::sleep_for(300ms);
    kill(s.proc().pid(), SIGTERM);
  });
  auto t0 = std::chrono::steady_clock::now();
  auto r = s.pull("g", R"({"wait_ms":15000})");
  killer.join();
  CHECK(r.status == 200);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(s.proc().stop(SIGTERM) == 0);
  CHECK(s.proc().log().find("stopped; storage closed") != std::string::npos);
}

TEST_CASE("a SIGTERM that comes while the node is exiting does not turn its clean exit into a kill",
          "[integration]") {
  // A supervisor may repeat its SIGTERM. One that lands after the node has stopped — while the
  // process is exiting (long under a sanitizer) — must not kill it: the exit status stays 0.
  Server s;
  s.put_queue("q");
  kill(s.proc().pid(), SIGTERM);
  bool stopped = false;
  for (int i = 0; i < 1000 && !stopped; ++i) {
    stopped = s.proc().log().find("stopped; storage closed") != std::string::npos;
    if (!stopped) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(stopped);
  CHECK(s.proc().stop(SIGTERM) == 0);
}

TEST_CASE("every error code over HTTP", "[integration]") {
  Server s({"--max-message-bytes", "1024", "--max-request-bytes", "65536", "--max-header-bytes", "2048"});
  auto& h = s.http();
  s.put_queue("e");

  SECTION("malformed JSON is 400 malformed") {
    auto r = s.send("e", "{not json");
    CHECK(r.status == 400);
    CHECK(error_code(r) == "malformed");
  }
  SECTION("wrong field types are 400 invalid_argument") {
    for (const char* body :
         {R"({"body":1,"delay_ms":-5})", R"({"body":1,"content_type":"xml"})", R"({"id":"x"})",
          R"({"messages":[]})", R"({"messages":"x"})", R"({"body":1,"delay_ms":99999999999})", R"([1,2])",
          R"({"body":"%%%","content_type":"bytes"})", R"({"body":5,"content_type":"text"})"}) {
      auto r = s.send("e", body);
      INFO(body);
      CHECK(r.status == 400);
      CHECK(error_code(r) == "invalid_argument");
    }
    auto r = s.pull("e", R"({"batch_size":0})");
    CHECK(error_code(r) == "invalid_argument");
    r = s.pull("e", R"({"wait_ms":20001})");
    CHECK(error_code(r) == "invalid_argument");
    r = s.ack("e", R"({"acks":[{}]})");
    CHECK(error_code(r) == "invalid_argument");
    r = s.put_queue("e", R"({"visibility_timeout_ms":0})");
    CHECK(error_code(r) == "invalid_argument");
    r = h.post("/v1/queues/e/redrive", "{}");
    CHECK(error_code(r) == "invalid_argument");
  }
  SECTION("a field the route does not know is 400 unknown_field naming it, and nothing happens") {
    // Each of these was silently ignored before: a typo (or another API's field name) changed
    // nothing and the request "worked".
    struct Case {
      std::string method, target, body, field;
    };
    for (const auto& c : std::vector<Case>{
             {"POST", "/v1/queues/e/messages", R"({"body":1,"delay_seconds":30})", "delay_seconds"},
             {"POST", "/v1/queues/e/messages", R"({"messages":[{"body":1,"dealy_ms":5}]})", "dealy_ms"},
             {"POST", "/v1/queues/e/messages", R"({"messages":[{"body":1}],"body":2})", "body"},
             {"POST", "/v1/queues/e/messages/pull", R"({"batch_size":1,"visibility_timeout":10})",
              "visibility_timeout"},
             {"POST", "/v1/queues/e/messages/ack", R"({"acks":[],"nacks":[]})", "nacks"},
             {"POST", "/v1/queues/e/messages/ack", R"({"acks":[{"lease_id":"x","extra":1}]})", "extra"},
             {"POST", "/v1/queues/e/messages/ack", R"({"retries":[{"lease_id":"x","delay_seconds":5}]})",
              "delay_seconds"},
             {"PUT", "/v1/queues/e", R"({"max_retires":9})", "max_retires"},
             {"POST", "/v1/queues/e/redrive", R"({"to":"x","limit":1})", "limit"},
             {"POST", "/v1/queues/e/messages/peek", R"({"batch_size":1,"wait_ms":5})", "wait_ms"},
             {"POST", "/v1/mesh/moves", R"({"shard":1,"to":"b","force":true})", "force"},
         }) {
      auto r = c.method == "PUT" ? h.put(c.target, c.body) : h.post(c.target, c.body);
      INFO(c.target << " " << c.body << " → " << r.body);
      CHECK(r.status == 400);
      CHECK(error_code(r) == "unknown_field");
      CHECK(r.body.find("\\\"" + c.field + "\\\"") != std::string::npos);
    }
    // Nothing was enqueued or changed by the refused requests.
    CHECK(s.stats("e").at("messages").as_int64() == 0);
    CHECK(body_json(h.get("/v1/queues/e")).at("config").at("max_retries").as_int64() == 3);
  }
  SECTION("bad queue names are 400 invalid_name") {
    auto r = s.put_queue("bad%20name");
    CHECK(r.status == 400);
    CHECK(error_code(r) == "invalid_name");
    r = s.send(std::string(200, 'x'), R"({"body":1})");
    CHECK(error_code(r) == "invalid_name");
  }
  SECTION("unknown routes are 404 not_found, unknown queues 404 queue_not_found") {
    auto r = h.get("/v2/nothing");
    CHECK(r.status == 404);
    CHECK(error_code(r) == "not_found");
    r = h.get("/v1/queues/ghost");
    CHECK(r.status == 404);
    CHECK(error_code(r) == "queue_not_found");
    CHECK(error_code(s.pull("ghost")) == "queue_not_found");
    CHECK(error_code(s.ack("ghost", "{}")) == "queue_not_found");
    CHECK(error_code(h.del("/v1/queues/ghost")) == "queue_not_found");
  }
  SECTION("wrong methods are 405 with Allow") {
    auto r = h.request("PATCH", "/v1/queues/e");
    CHECK(r.status == 405);
    CHECK(error_code(r) == "method_not_allowed");
    CHECK(h.get("/v1/queues/e/messages").status == 405);
  }
  SECTION("contradictions are 409 conflict") {
    auto r = s.put_queue("e", R"({"dead_letter_queue":"e"})");
    CHECK(r.status == 409);
    CHECK(error_code(r) == "conflict");
    r = h.post("/v1/queues/e/redrive", R"({"to":"e"})");
    CHECK(error_code(r) == "conflict");
  }
  SECTION("a message above max_message_bytes is 413 message_too_large") {
    auto r = s.send("e", R"({"body":")" + std::string(1100, 'x') + R"(","content_type":"text"})");
    CHECK(r.status == 413);
    CHECK(error_code(r) == "message_too_large");
    CHECK(s.stats("e").at("messages") == 0);
  }
  SECTION("a body above max_request_bytes is 413 payload_too_large") {
    auto r = s.send("e", std::string(70000, ' '));
    CHECK(r.status == 413);
    CHECK(error_code(r) == "payload_too_large");
  }
  SECTION("headers above max_header_bytes are 431 header_too_large") {
    std::string raw = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n";
    auto answer = h.raw_exchange(raw);
    CHECK(answer.starts_with("HTTP/1.1 431"));
    CHECK(answer.find("header_too_large") != std::string::npos);
  }
  SECTION("garbage instead of HTTP is 400 and the connection closes") {
    auto answer = h.raw_exchange("\x01\x02 NOT HTTP AT ALL\r\n\r\n");
    CHECK(answer.starts_with("HTTP/1.1 400"));
    CHECK(answer.find("malformed") != std::string::npos);
    CHECK(h.get("/healthz").status == 200);  // the server is fine
  }
  SECTION("a full queue is 429 queue_full") {
    s.put_queue("small", R"({"max_messages":2})");
    CHECK(s.send("small", R"({"messages":[{"body":1},{"body":2}]})").status == 201);
    auto r = s.send("small", R"({"body":3})");
    CHECK(r.status == 429);
    CHECK(error_code(r) == "queue_full");
  }
}

TEST_CASE("storage full is 507 storage_full, and what was acknowledged survives", "[integration]") {
  Server s({"--max-storage-bytes", "2097152"});
  std::string body = R"({"body":")" + std::string(60000, 'x') + R"(","content_type":"text"})";
  int stored = 0;
  roost::client::HttpResponse last;
  for (int i = 0; i < 200; ++i) {
    last = s.send("big", body);
    if (last.status != 201) break;
    ++stored;
  }
  CHECK(last.status == 507);
  CHECK(error_code(last) == "storage_full");
  CHECK(stored > 5);
  CHECK(s.http().get("/healthz").status == 200);
  s.restart(SIGKILL);
  CHECK(s.stats("big").at("messages") == stored);
}

TEST_CASE("auto_create_queues = false makes unknown queues 404", "[integration]") {
  Server s({"--auto-create-queues", "false"});
  auto r = s.send("nope", R"({"body":1})");
  CHECK(r.status == 404);
  CHECK(error_code(r) == "queue_not_found");
  s.put_queue("yes");
  CHECK(s.send("yes", R"({"body":1})").status == 201);
}

TEST_CASE("healthz and Prometheus metrics", "[integration]") {
  Server s;
  auto h = s.http().get("/healthz");
  CHECK(h.status == 200);
  CHECK(body_json(h).at("status") == "ok");
  s.send("m", R"({"body":1})");
  auto m = s.http().get("/metrics");
  CHECK(m.status == 200);
  CHECK(m.content_type.starts_with("text/plain"));
  for (const char* needle : {"roost_queue_ready{queue=\"m\"} 1", "roost_queue_enqueued_total{queue=\"m\"} 1",
                             "roost_commit_seconds_bucket{le=\"+Inf\"}", "roost_commit_batch_size_count",
                             "roost_queue_oldest_age_ms{queue=\"m\"}", "roost_http_connections"}) {
    INFO(needle);
    CHECK(m.body.find(needle) != std::string::npos);
  }
}

TEST_CASE("idle keep-alive connections are closed after idle_timeout_ms", "[integration]") {
  Server s({"--idle-timeout-ms", "300"});
  roost::client::HttpClient c(s.proc().url());
  auto t0 = std::chrono::steady_clock::now();
  // Send nothing: the server closes the connection, and raw_exchange sees EOF.
  auto answer = c.raw_exchange("");
  CHECK(answer.empty());
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}
