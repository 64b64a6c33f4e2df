// Cloudflare Queues' HTTP API on a real node: requests and answers as Cloudflare's documentation
// writes them (developers.cloudflare.com/queues: pull consumers, publish over HTTP, pause and
// purge, error codes; the API reference's field names), checked field by field.
#include <roost/core/base64.h>

#include <chrono>
#include <thread>

#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;

namespace {

const std::string kBase = "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/queues";
const std::string kTokens = "consumer-token-1:jobs,mail.>;admin-token-2:>";

struct Cf {
  Server s{{"--cf-tokens", kTokens}};
  roost::client::HttpClient& h = s.http();
  Cf() { h.set_header("Authorization", "Bearer consumer-token-1"); }

  json::object call(const std::string& method, const std::string& path, const std::string& body,
                    unsigned status) {
    auto r = h.request(method, kBase + path, body);
    INFO(method << " " << path << " " << body << " → " << r.status << " " << r.body);
    CHECK(r.status == status);
    auto v = body_json(r).as_object();
    // The envelope of every answer.
    CHECK(v.at("success").as_bool() == (status < 300));
    CHECK(v.at("errors").is_array());
    CHECK(v.at("messages").is_array());
    CHECK(v.contains("result"));
    return v;
  }
  json::object ok(const std::string& path, const std::string& body) { return call("POST", path, body, 200); }
  // The error of a refused request: its Cloudflare code.
  std::int64_t refused(const std::string& method, const std::string& path, const std::string& body,
                       unsigned status) {
    auto v = call(method, path, body, status);
    REQUIRE(v.at("errors").as_array().size() == 1);
    CHECK(v.at("errors").as_array()[0].at("message").is_string());
    CHECK(v.at("result").is_null());
    return v.at("errors").as_array()[0].at("code").as_int64();
  }
  json::array pull(const std::string& q, const std::string& body) {
    return ok("/" + q + "/messages/pull", body).at("result").at("messages").as_array();
  }
};

std::string decoded(const json::value& body) {
  auto raw = roost::base64_decode(std::string_view(body.as_string()));
  REQUIRE(raw);
  return *raw;
}

}  // namespace

TEST_CASE("Cloudflare: publish, pull, ack and retry as the pull-consumer guide shows them",
          "[integration][cloudflare]") {
  Cf cf;
  // "Publish to a Queue via HTTP": curl … /messages --data '{ "body": { "greeting": "hello" } }'.
  auto pub = cf.ok("/jobs/messages", R"({ "body": { "greeting": "hello" } })");
  const auto& metrics = pub.at("result").at("metadata").at("metrics");
  CHECK(metrics.at("backlog_count") == 1);
  CHECK(metrics.at("backlog_bytes").as_int64() > 0);
  CHECK(metrics.at("oldest_message_timestamp_ms").as_int64() > 1'600'000'000'000);
  // messages/batch: one content type each, text as a string, bytes as base64.
  cf.ok("/jobs/messages/batch", R"({"messages":[{"body":"world","content_type":"text"},
                                                {"body":"AAEC/w==","content_type":"bytes"},
                                                {"body":[1,2,3]}]})");

  // "Pull messages": { "visibility_timeout": 6000, "batch_size": 50 } (the guide's field name).
  auto pulled = cf.ok("/jobs/messages/pull", R"({ "visibility_timeout": 6000, "batch_size": 50 })");
  const auto& result = pulled.at("result").as_object();
  auto msgs = result.at("messages").as_array();
  REQUIRE(msgs.size() == 4);
  CHECK(result.at("message_backlog_count") == 4);
  for (const auto& m : msgs) {
    // "Each message object has five fields" (+ metadata).
    CHECK(m.at("body").is_string());
    CHECK(m.at("id").is_string());
    CHECK(m.at("timestamp_ms").as_int64() > 1'600'000'000'000);
    CHECK(m.at("attempts") == 1);
    CHECK(m.at("lease_id").is_string());
    CHECK(m.at("metadata").at("CF-sourceMessageSource").is_string());
  }
  // json and bytes bodies come base64-encoded, text as plain UTF-8; CF-Content-Type says which.
  CHECK(json::parse(decoded(msgs[0].at("body"))) == json::parse(R"({"greeting":"hello"})"));
  CHECK(msgs[0].at("metadata").at("CF-Content-Type") == "json");
  CHECK(msgs[1].at("body") == "world");
  CHECK(msgs[1].at("metadata").at("CF-Content-Type") == "text");
  CHECK(decoded(msgs[2].at("body")) == std::string("\x00\x01\x02\xff", 4));
  CHECK(msgs[2].at("metadata").at("CF-Content-Type") == "bytes");
  CHECK(decoded(msgs[3].at("body")) == "[1,2,3]");
  // Leased: the next pull gets nothing ("short polling": an empty answer at once).
  auto t0 = std::chrono::steady_clock::now();
  CHECK(cf.pull("jobs", "{}").empty());
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);

  // "Acknowledge messages": acks, and a retry with delay_seconds.
  json::object ack{
      {"acks", json::array{json::object{{"lease_id", msgs[0].at("lease_id")}},
                           json::object{{"lease_id", msgs[1].at("lease_id")}},
                           json::object{{"lease_id", msgs[3].at("lease_id")}}}},
      {"retries", json::array{json::object{{"lease_id", msgs[2].at("lease_id")}, {"delay_seconds", 2}}}}};
  auto acked = cf.ok("/jobs/messages/ack", json::serialize(ack)).at("result").as_object();
  CHECK(acked.at("ackCount") == 3);
  CHECK(acked.at("retryCount") == 1);
  CHECK(acked.at("warnings").as_object().empty());
  // The retry's delay holds (it was ignored once: the message came back at once).
  CHECK(cf.pull("jobs", "{}").empty());
  CHECK(cf.s.stats("jobs").at("delayed") == 1);
  std::vector<json::value> back;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (back.empty() && std::chrono::steady_clock::now() < deadline) {
    for (auto& m : cf.pull("jobs", "{}")) back.push_back(m);
    if (back.empty()) std::this_thread::sleep_for(100ms);
  }
  REQUIRE(back.size() == 1);
  CHECK(back[0].at("attempts") == 2);
  CHECK(back[0].at("id") == msgs[2].at("id"));
  CHECK(std::chrono::steady_clock::now() - t0 >= 2s);
  cf.ok("/jobs/messages/ack",
        json::serialize(
            json::object{{"acks", json::array{json::object{{"lease_id", back[0].at("lease_id")}}}}}));
  CHECK(cf.s.stats("jobs").at("messages") == 0);
}

TEST_CASE("Cloudflare: delay_seconds on publish, defaults and limits of a pull",
          "[integration][cloudflare]") {
  Cf cf;
  auto t0 = std::chrono::steady_clock::now();
  cf.ok("/jobs/messages", R"({"body":"later","content_type":"text","delay_seconds":2})");
  cf.ok("/jobs/messages/batch",
        R"({"messages":[{"body":1},{"body":2,"delay_seconds":0}],"delay_seconds":2})");
  // Only the message whose own delay_seconds (0) overrides the batch's is visible now.
  auto now = cf.pull("jobs", "{}");
  REQUIRE(now.size() == 1);
  CHECK(decoded(now[0].at("body")) == "2");
  CHECK(cf.s.stats("jobs").at("delayed") == 2);
  std::size_t seen = 1;
  while (seen < 3 && std::chrono::steady_clock::now() - t0 < 10s) {
    seen += cf.pull("jobs", "{}").size();
    std::this_thread::sleep_for(100ms);
  }
  CHECK(seen == 3);
  CHECK(std::chrono::steady_clock::now() - t0 >= 2s);

  // batch_size defaults to 5 and is at most 100; visibility_timeout_ms (the API reference's name)
  // sets the lease.
  std::string batch = R"({"messages":[)";
  for (int i = 0; i < 100; ++i) batch += std::string(i ? "," : "") + R"({"body":)" + std::to_string(i) + "}";
  batch += "]}";
  cf.ok("/mail.in/messages/batch", batch);
  CHECK(cf.pull("mail.in", "{}").size() == 5);
  CHECK(cf.pull("mail.in", R"({"batch_size":100,"visibility_timeout_ms":60000})").size() == 95);
  CHECK(cf.refused("POST", "/mail.in/messages/pull", R"({"batch_size":101})", 400) == 10207);
  CHECK(cf.refused("POST", "/mail.in/messages/pull", R"({"visibility_timeout_ms":0})", 400) == 10207);
}

TEST_CASE("Cloudflare: an ack after the lease ran out counts until the message is delivered again",
          "[integration][cloudflare]") {
  Cf cf;
  cf.ok("/jobs/messages/batch", R"({"messages":[{"body":"a"},{"body":"b"}]})");
  auto first = cf.pull("jobs", R"({"batch_size":2,"visibility_timeout_ms":300})");
  REQUIRE(first.size() == 2);
  std::this_thread::sleep_for(500ms);  // both leases ran out; nothing was delivered again yet
  json::object late{{"acks", json::array{json::object{{"lease_id", first[0].at("lease_id")}}}}};
  auto r = cf.ok("/jobs/messages/ack", json::serialize(late)).at("result").as_object();
  CHECK(r.at("ackCount") == 1);
  CHECK(r.at("warnings").as_object().empty());
  // "b" is delivered again; its first lease then no longer counts (a warning, not an error).
  auto again = cf.pull("jobs", "{}");
  REQUIRE(again.size() == 1);
  CHECK(decoded(again[0].at("body")) == "\"b\"");
  json::object stale{{"acks", json::array{json::object{{"lease_id", first[1].at("lease_id")}}}}};
  r = cf.ok("/jobs/messages/ack", json::serialize(stale)).at("result").as_object();
  CHECK(r.at("ackCount") == 0);
  CHECK(r.at("warnings").as_object().contains(std::string(first[1].at("lease_id").as_string())));
  CHECK(cf.s.stats("jobs").at("in_flight") == 1);
}

TEST_CASE("Cloudflare: errors come in Cloudflare's envelope with its codes", "[integration][cloudflare]") {
  Cf cf;
  cf.ok("/jobs/messages", R"({"body":1})");
  // 10104 QueueNotFound (a queue the token grants, that does not exist).
  CHECK(cf.refused("POST", "/mail.none/messages/pull", "{}", 404) == 10104);
  // 10208 JSONRequestBodyMalformed, 10207 JSONRequestBodyInvalid.
  CHECK(cf.refused("POST", "/jobs/messages", "{oops", 400) == 10208);
  CHECK(cf.refused("POST", "/jobs/messages", R"({"nobody":1})", 400) == 10207);
  CHECK(cf.refused("POST", "/jobs/messages/ack", R"({"acks":[{"lease":"x"}]})", 400) == 10207);
  // 10203 MessageMetadataInvalid: a delay over 12 hours, the v8 content type.
  CHECK(cf.refused("POST", "/jobs/messages", R"({"body":1,"delay_seconds":43201})", 400) == 10203);
  CHECK(cf.refused("POST", "/jobs/messages", R"({"body":"x","content_type":"v8"})", 400) == 10203);
  CHECK(cf.refused("POST", "/jobs/messages/batch", R"({"messages":[{"body":1}],"delay_seconds":-1})", 400) ==
        10203);
  // 10204 MessageSizeOutOfBounds (128 KB), 10206 BatchCountOutOfBounds (100), 10205 (256 KB).
  std::string big =
      json::serialize(json::object{{"body", std::string(128 * 1024 + 1, 'x')}, {"content_type", "text"}});
  CHECK(cf.refused("POST", "/jobs/messages", big, 413) == 10204);
  std::string many = R"({"messages":[)";
  for (int i = 0; i < 101; ++i) many += std::string(i ? "," : "") + R"({"body":1})";
  CHECK(cf.refused("POST", "/jobs/messages/batch", many + "]}", 400) == 10206);
  std::string heavy = R"({"messages":[)";
  for (int i = 0; i < 3; ++i)
    heavy += std::string(i ? "," : "") + R"({"content_type":"text","body":")" + std::string(100 * 1024, 'y') +
             "\"}";
  CHECK(cf.refused("POST", "/jobs/messages/batch", heavy + "]}", 413) == 10205);
  // 10000 authentication: an unknown token, a token without this queue, no token from a token node.
  cf.h.set_header("Authorization", "Bearer not-a-token");
  CHECK(cf.refused("POST", "/jobs/messages/pull", "{}", 403) == 10000);
  cf.h.set_header("Authorization", "Bearer consumer-token-1");
  CHECK(cf.refused("POST", "/other/messages/pull", "{}", 403) == 10000);
  // 7003 No route for the URI; a known route with the wrong method.
  CHECK(cf.refused("POST", "/jobs/messages/nothing", "{}", 404) == 7003);
  CHECK(cf.refused("GET", "/jobs/messages/pull", "", 405) == 7001);
  // Nothing refused was enqueued.
  CHECK(cf.s.stats("jobs").at("messages") == 1);
}

TEST_CASE("Cloudflare: queues, purge and peek routes", "[integration][cloudflare]") {
  Cf cf;
  cf.h.set_header("Authorization", "Bearer admin-token-2");
  // POST /queues {"queue_name"}: created; its id is its name.
  auto made = cf.ok("", R"({"queue_name":"orders"})").at("result").as_object();
  CHECK(made.at("queue_id") == "orders");
  CHECK(made.at("queue_name") == "orders");
  CHECK(made.at("consumers").as_array()[0].at("type") == "http_pull");
  CHECK(cf.refused("POST", "", R"({"queue_name":"orders"})", 409) == 10207);
  auto listed = cf.call("GET", "", "", 200);
  CHECK(listed.at("result").as_array().size() == 1);
  CHECK(listed.at("result_info").at("total_count") == 1);
  auto got = cf.call("GET", "/orders", "", 200).at("result").as_object();
  CHECK(got.at("settings").at("message_retention_period") == 345600);
  auto patched = cf.call("PATCH", "/orders", R"({"settings":{"message_retention_period":3600}})", 200);
  CHECK(patched.at("result").at("settings").at("message_retention_period") == 3600);
  CHECK(cf.s.stats("orders").at("messages") == 0);

  // Peek leases nothing; purge needs its confirmation and deletes every message.
  cf.ok("/orders/messages/batch", R"({"messages":[{"body":1},{"body":2},{"body":3}]})");
  auto peeked = cf.ok("/orders/messages/peek", R"({"batch_size":2})").at("result").at("messages").as_array();
  REQUIRE(peeked.size() == 2);
  CHECK(peeked[0].at("ref").is_string());
  CHECK_FALSE(peeked[0].as_object().contains("lease_id"));
  CHECK(cf.s.stats("orders").at("in_flight") == 0);
  CHECK(cf.refused("POST", "/orders/purge", "{}", 400) == 10207);
  CHECK(cf.s.stats("orders").at("messages") == 3);
  auto purged = cf.ok("/orders/purge", R"({"delete_messages_permanently":true})").at("result").as_object();
  CHECK(purged.at("queue_name") == "orders");
  CHECK(cf.s.stats("orders").at("messages") == 0);
  auto status = cf.call("GET", "/orders/purge", "", 200).at("result").as_object();
  CHECK(status.at("completed") == "true");
  CHECK(status.at("started_at").as_string().ends_with("Z"));

  cf.call("DELETE", "/orders", "", 200);
  CHECK(cf.refused("GET", "/orders", "", 404) == 10104);
  // A restricted token lists only its own queues.
  cf.ok("", R"({"queue_name":"secret"})");
  cf.h.set_header("Authorization", "Bearer consumer-token-1");
  cf.ok("/jobs/messages", R"({"body":1})");
  auto mine = cf.call("GET", "", "", 200).at("result").as_array();
  REQUIRE(mine.size() == 1);
  CHECK(mine[0].at("queue_name") == "jobs");
}
