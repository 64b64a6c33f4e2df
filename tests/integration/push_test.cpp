// Push delivery and channel webhooks (docs/sidecar.md) with the real binary and real HTTP services
// on loopback (tests/support/http_sink.h).
#include <roost/core/base64.h>

#include <chrono>
#include <set>
#include <thread>

#include "../support/http_sink.h"
#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;

namespace {

std::string push_config(const HttpSink& sink, const std::string& extra = "",
                        const std::string& queue_extra = "") {
  return R"({"push":{"url":")" + sink.url("/jobs") + "\"" + extra + "}" + queue_extra + "}";
}

// Waits until `pred` holds (bounded: 20 s).
template <class F>
bool until(F pred) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

double metric(Server& s, const std::string& line_prefix) {
  auto text = s.http().get("/metrics").body;
  auto at = text.find(line_prefix);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + line_prefix.size()));
}

}  // namespace

TEST_CASE("push: each message is POSTed once with its headers, and a 2xx acks it", "[integration][push]") {
  HttpSink sink;
  Server s;
  auto r = s.put_queue("jobs", push_config(sink, R"(,"concurrency":4)"));
  INFO(r.body);
  REQUIRE(r.status == 200);
  CHECK(body_json(r).at("config").at("push").at("concurrency") == 4);
  REQUIRE(s.send("jobs", R"({"messages":[{"body":{"n":1}},{"body":"two","content_type":"text"},
                                        {"body":"AAEC","content_type":"bytes"},{"body":4,"key":"k"}]})")
              .status == 201);
  for (int i = 5; i <= 40; ++i) s.send("jobs", json::serialize(json::object{{"body", i}}));
  REQUIRE(sink.wait_for(40));
  REQUIRE(until([&] { return s.stats("jobs").at("messages") == 0; }));
  auto reqs = sink.requests();
  CHECK(reqs.size() == 40);  // once each: every 2xx acked
  std::set<std::string> ids;
  for (const auto& q : reqs) {
    CHECK(q.target == "/jobs");
    CHECK(q.header("roost-attempts") == "1");
    CHECK(q.header("roost-queue") == "jobs");
    CHECK(std::stoll(q.header("roost-timestamp-ms")) > 1'600'000'000'000);
    ids.insert(q.header("roost-message-id"));
    if (q.header("roost-message-id") == "0000000000000001") {
      CHECK(q.body == R"({"n":1})");
      CHECK(q.header("content-type") == "application/json");
    }
    if (q.header("roost-message-id") == "0000000000000002") {
      CHECK(q.body == "two");
      CHECK(q.header("content-type").starts_with("text/plain"));
    }
    if (q.header("roost-message-id") == "0000000000000003") {
      CHECK(q.body == std::string("\x00\x01\x02", 3));
      CHECK(q.header("content-type") == "application/octet-stream");
    }
    if (q.header("roost-message-id") == "0000000000000004") CHECK(q.header("roost-key") == "k");
  }
  CHECK(ids.size() == 40);
  CHECK(sink.max_in_flight() <= 4);
  CHECK(s.stats("jobs").at("acked") == 40);
  CHECK(metric(s, R"(roost_push_delivered_total{queue="jobs",target=")" + sink.url("/jobs") + "\"} ") == 40);
  // A pushed queue is not pulled as well: 409, until its push target is removed.
  auto pulled = s.pull("jobs");
  CHECK(pulled.status == 409);
  CHECK(error_code(pulled) == "conflict");
  REQUIRE(s.put_queue("jobs", R"({"push":null})").status == 200);
  s.send("jobs", R"({"body":"pulled"})");
  CHECK(until([&] { return s.pull_messages("jobs").size() == 1; }));
  CHECK(sink.count() == 40);
}

TEST_CASE("push: 500s and timeouts retry with attempts counted, then dead-letter", "[integration][push]") {
  std::atomic<int> slow{1};
  HttpSink sink([&](const SinkRequest& r) {
    if (r.body == "\"bad\"") return SinkReply{500};
    if (r.body == "\"slow\"" && slow.fetch_sub(1) > 0) std::this_thread::sleep_for(1500ms);  // first try only
    return SinkReply{204};
  });
  Server s;
  s.put_queue("dead");
  REQUIRE(s.put_queue("jobs", push_config(sink, R"(,"timeout_ms":500)",
                                          R"(,"max_retries":2,"dead_letter_queue":"dead")"))
              .status == 200);
  s.send("jobs", R"({"body":"bad"})");
  s.send("jobs", R"({"body":"slow"})");
  REQUIRE(until([&] { return s.stats("dead").at("messages") == 1 && s.stats("jobs").at("messages") == 0; }));
  std::vector<std::string> bad_attempts, slow_attempts;
  for (const auto& q : sink.requests()) {
    (q.body == "\"bad\"" ? bad_attempts : slow_attempts).push_back(q.header("roost-attempts"));
  }
  CHECK(bad_attempts == std::vector<std::string>{"1", "2", "3"});  // max_retries 2: three deliveries
  CHECK(slow_attempts == std::vector<std::string>{"1", "2"});      // timed out once, then acked
  CHECK(s.stats("jobs").at("acked") == 1);
  CHECK(metric(s, R"(roost_push_failures_total{queue="jobs",target=")" + sink.url("/jobs") +
                      R"(",reason="status"} )") == 3);
  CHECK(metric(s, R"(roost_push_failures_total{queue="jobs",target=")" + sink.url("/jobs") +
                      R"(",reason="timeout"} )") == 1);
}

TEST_CASE("push: Retry-After is honoured, a redirect is a failure, a huge answer is cut",
          "[integration][push]") {
  std::atomic<int> n{0};
  HttpSink sink([&](const SinkRequest& r) {
    int i = n++;
    if (r.body == "\"later\"" && i == 0) return SinkReply{429, {{"Retry-After", "2"}}};
    if (r.body == "\"moved\"" && r.header("roost-attempts") == "1")
      return SinkReply{302, {{"Location", "http://127.0.0.1:1/elsewhere"}}};
    return SinkReply{200, {}, std::string(1 << 20, 'x')};  // 1 MiB: read up to the cap only
  });
  Server s;
  REQUIRE(s.put_queue("jobs", push_config(sink, R"(,"concurrency":1)")).status == 200);
  s.send("jobs", R"({"body":"later"})");
  REQUIRE(sink.wait_for(2));
  auto reqs = sink.requests();
  CHECK(reqs[1].body == "\"later\"");
  CHECK(reqs[1].header("roost-attempts") == "2");
  CHECK(reqs[1].at - reqs[0].at >= 1900ms);
  s.send("jobs", R"({"body":"moved"})");
  REQUIRE(sink.wait_for(4));
  reqs = sink.requests();
  CHECK(reqs[2].body == "\"moved\"");
  CHECK(reqs[3].body == "\"moved\"");
  CHECK(reqs[3].header("roost-attempts") == "2");
  for (const auto& q : reqs) CHECK(q.target == "/jobs");  // the Location was not followed
  REQUIRE(until([&] { return s.stats("jobs").at("messages") == 0; }));
}

TEST_CASE("push: per-key order holds with many requests in flight", "[integration][push]") {
  std::mutex mu;
  std::map<std::string, int> open;  // requests in flight per key
  bool overlap = false;
  HttpSink sink([&](const SinkRequest& r) {
    auto key = r.header("roost-key");
    {
      std::lock_guard lock(mu);
      if (++open[key] > 1 && !key.empty()) overlap = true;
    }
    std::this_thread::sleep_for(5ms);
    std::lock_guard lock(mu);
    --open[key];
    return SinkReply{200};
  });
  Server s;
  REQUIRE(s.put_queue("jobs", push_config(sink, R"(,"concurrency":8)")).status == 200);
  json::array batch;
  for (int i = 0; i < 60; ++i)
    batch.push_back(json::object{{"body", i}, {"key", "k" + std::to_string(i % 3)}});
  REQUIRE(s.send("jobs", json::serialize(json::object{{"messages", batch}})).status == 201);
  REQUIRE(sink.wait_for(60));
  std::map<std::string, std::vector<int>> order;
  for (const auto& q : sink.requests()) order[q.header("roost-key")].push_back(std::stoi(q.body));
  for (auto& [key, bodies] : order) {
    INFO(key);
    CHECK(std::is_sorted(bodies.begin(), bodies.end()));
    CHECK(bodies.size() == 20);
  }
  CHECK_FALSE(overlap);  // one in flight per key
}

TEST_CASE("push: a hanging target does not delay another queue's", "[integration][push]") {
  HttpSink* self = nullptr;
  HttpSink hanging([&](const SinkRequest&) {
    self->hold();  // until the test releases it
    return SinkReply{200};
  });
  self = &hanging;
  HttpSink fast;
  Server s;
  REQUIRE(s.put_queue("slow",
                      R"({"push":{"url":")" + hanging.url("/x") + R"(","concurrency":2,"timeout_ms":60000}})")
              .status == 200);
  REQUIRE(s.put_queue("quick", R"({"push":{"url":")" + fast.url("/y") + R"(","concurrency":2}})").status ==
          200);
  for (int i = 0; i < 10; ++i) s.send("slow", R"({"body":1})");
  REQUIRE(hanging.wait_for(2));  // both of its slots hang now
  for (int i = 0; i < 50; ++i) s.send("quick", R"({"body":2})");
  // The other queue is delivered in full while the first target still hangs.
  REQUIRE(fast.wait_for(50));
  CHECK(until([&] { return s.stats("quick").at("messages") == 0; }));
  CHECK(hanging.count() == 2);
  CHECK(hanging.in_flight() == 2);
  hanging.release();
  REQUIRE(hanging.wait_for(10));
  CHECK(until([&] { return s.stats("slow").at("messages") == 0; }));
}

TEST_CASE("push: batches arrive as a JSON array", "[integration][push]") {
  HttpSink sink;
  Server s;
  // Messages first, push after: the first request takes a whole batch.
  REQUIRE(
      s.send(
           "jobs",
           R"({"messages":[{"body":{"a":1}},{"body":"t","content_type":"text"},{"body":"AP8=","content_type":"bytes"}]})")
          .status == 201);
  REQUIRE(s.put_queue("jobs", push_config(sink, R"(,"batch_size":10,"concurrency":1)")).status == 200);
  REQUIRE(sink.wait_for(1));
  auto q = sink.requests()[0];
  CHECK(q.header("roost-batch-size") == "3");
  CHECK(q.header("content-type") == "application/json");
  auto arr = json::parse(q.body).as_array();
  REQUIRE(arr.size() == 3);
  CHECK(arr[0].at("body") == json::parse(R"({"a":1})"));
  CHECK(arr[1].at("body") == "t");
  CHECK(arr[2].at("body") == "AP8=");
  CHECK(arr[2].at("content_type") == "bytes");
  CHECK(arr[0].at("attempts") == 1);
  REQUIRE(until([&] { return s.stats("jobs").at("messages") == 0; }));
}

TEST_CASE("push: targets outside push_allowed_hosts are refused where they are configured",
          "[integration][push]") {
  HttpSink sink;
  {
    Server s;
    auto r = s.put_queue("jobs", R"({"push":{"url":"http://192.0.2.7:8080/jobs"}})");
    CHECK(r.status == 403);
    CHECK(error_code(r) == "forbidden");
    r = s.put_queue("jobs", R"({"push":{"url":"https://127.0.0.1/jobs"}})");
    CHECK(r.status == 400);
    r = s.put_queue("jobs", R"({"push":{"url":"http://127.0.0.1:1/x","concurrency":0}})");
    CHECK(error_code(r) == "invalid_argument");
    r = s.put_queue("jobs", R"({"push":{"url":"http://127.0.0.1:1/x","retries":3}})");
    CHECK(error_code(r) == "unknown_field");
    CHECK(s.http().get("/v1/queues/jobs").status == 404);  // nothing was created
  }
  // The node's own configuration is checked when it starts.
  TempDir dir("roost-push-cfg");
  auto roost = std::string(ROOST_BINARY);
  auto bad = std::system(
      (roost + " serve --data-dir " + (dir.path() / "d").string() +
       " --http-listen 127.0.0.1:0 --endpoint off --queue-push 'jobs=http://192.0.2.7/x' > /dev/null 2>&1")
          .c_str());
  CHECK(bad != 0);
  // queue_push with an allowed host sets the queue up at start.
  Server s2({"--queue-push", "jobs=" + sink.url("/jobs") + ",concurrency=2,timeout_ms=5000",
             "--push-allowed-hosts", "127.0.0.1"});
  auto cfg = body_json(s2.http().get("/v1/queues/jobs")).at("config").at("push");
  CHECK(cfg.at("url").as_string() == sink.url("/jobs"));
  CHECK(cfg.at("concurrency") == 2);
  s2.send("jobs", R"({"body":1})");
  CHECK(sink.wait_for(1));
}

TEST_CASE("channel webhooks: matching publishes are POSTed; a full queue drops, counted",
          "[integration][push]") {
  HttpSink sink;
  HttpSink* self = nullptr;
  std::atomic<bool> block{false};
  HttpSink blocked([&](const SinkRequest&) {
    if (block.load()) self->hold();
    return SinkReply{200};
  });
  self = &blocked;
  Server s({"--channel-webhooks", "news.>=" + sink.url("/hook") + ";bulk.*=" + blocked.url("/bulk")});
  auto r = s.http().post("/v1/channels/news.world/publish", R"({"title":"hi"})");
  REQUIRE(r.status == 200);
  s.http().post("/v1/channels/other.x/publish", "1");  // not matched
  REQUIRE(sink.wait_for(1));
  auto q = sink.requests()[0];
  CHECK(q.target == "/hook");
  auto body = json::parse(q.body);
  CHECK(body.at("channel") == "news.world");
  CHECK(body.at("data") == json::parse(R"({"title":"hi"})"));
  CHECK(body.at("offset").as_int64() >= 1);
  std::this_thread::sleep_for(200ms);
  CHECK(sink.count() == 1);
  // A target that does not answer: its queue (1024) fills and later messages are dropped.
  block = true;
  for (int i = 0; i < 2000; ++i) s.http().post("/v1/channels/bulk.a/publish", std::to_string(i));
  auto dropped =
      metric(s, R"(roost_webhook_dropped_total{pattern="bulk.*",target=")" + blocked.url("/bulk") + "\"} ");
  CHECK(dropped >= 2000 - 1024 - 4);
  CHECK(dropped <= 2000 - 1024);
  blocked.release();
  CHECK(until([&] {
    return metric(s, R"(roost_webhook_delivered_total{pattern="bulk.*",target=")" + blocked.url("/bulk") +
                         "\"} ") +
               dropped ==
           2000;
  }));
}
