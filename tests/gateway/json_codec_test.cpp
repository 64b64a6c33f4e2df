#include <catch2/catch.hpp>

#include <roost/core/base64.h>
#include <roost/gateway/cf_api.h>
#include <roost/gateway/json_codec.h>

using namespace roost::gateway;
using roost::base64_decode;
using roost::base64_encode;
using roost::ErrorCode;

TEST_CASE("base64 round trip and rejection", "[gateway]") {
  for (std::string s : {std::string(), std::string("f"), std::string("fo"), std::string("foo"),
                        std::string("foob"), std::string("\x00\xff\x10", 3)}) {
    auto enc = base64_encode(s);
    auto dec = base64_decode(enc);
    REQUIRE(dec);
    CHECK(*dec == s);
  }
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK_FALSE(base64_decode("abc"));
  CHECK_FALSE(base64_decode("ab=c"));
  CHECK_FALSE(base64_decode("a!cd"));
  CHECK_FALSE(base64_decode("=abc"));
}

TEST_CASE("enqueue bodies: single, batch, content types", "[gateway]") {
  auto one = parse_enqueue(R"({"body":{"a":[1,2]},"delay_ms":5,"id":"x","key":"k"})", 1024);
  REQUIRE(one);
  REQUIRE(one->size() == 1);
  CHECK((*one)[0].body == R"({"a":[1,2]})");
  CHECK((*one)[0].delay_ms == 5);
  CHECK((*one)[0].id == "x");
  CHECK((*one)[0].key == "k");
  auto text = parse_enqueue(R"({"body":"hi","content_type":"text"})", 1024);
  CHECK((*text)[0].body == "hi");
  CHECK((*text)[0].content_type == roost::ContentType::kText);
  auto bytes = parse_enqueue(R"({"body":"AP8=","content_type":"bytes"})", 1024);
  CHECK((*bytes)[0].body == std::string("\x00\xff", 2));
  auto batch = parse_enqueue(R"({"messages":[{"body":1},{"body":null}]})", 1024);
  REQUIRE(batch->size() == 2);
  CHECK((*batch)[1].body == "null");
  CHECK(parse_enqueue("[", 1024).error().code == ErrorCode::MALFORMED);
  CHECK(parse_enqueue(R"({"body":"xxxx","content_type":"text"})", 3).error().code ==
        ErrorCode::MESSAGE_TOO_LARGE);
}

TEST_CASE("queue config: null clears, absence keeps", "[gateway]") {
  auto p = parse_queue_config(R"({"dead_letter_queue":null,"max_messages":10})");
  REQUIRE(p);
  CHECK(p->dead_letter_queue == std::string());
  CHECK(p->max_messages == 10u);
  CHECK_FALSE(p->visibility_timeout_ms);
  auto empty = parse_queue_config("");
  REQUIRE(empty);
  CHECK_FALSE(empty->dead_letter_queue);
  CHECK(parse_queue_config(R"({"max_retries":"3"})").error().code == ErrorCode::INVALID_ARGUMENT);
}

TEST_CASE("pull responses keep stored JSON bodies verbatim", "[gateway]") {
  roost::LeasedMessage m{"01", "01-02", R"({"x":1})", roost::ContentType::kJson, 2, 7, "k\"q"};
  roost::LeasedMessage b{"02", "02-03", std::string("\x00\x01", 2), roost::ContentType::kBytes, 1, 8, ""};
  auto out = encode_messages({m, b});
  CHECK(out.find(R"("body":{"x":1})") != std::string::npos);
  CHECK(out.find(R"("key":"k\"q")") != std::string::npos);
  CHECK(out.find(R"("body":"AAE=")") != std::string::npos);
  CHECK(out.find(R"("key":null)") != std::string::npos);
  CHECK(encode_error({ErrorCode::QUEUE_FULL, "full"}) ==
        R"({"error":{"code":"queue_full","message":"full"}})");
}

TEST_CASE("every request body refuses fields it does not know, naming the first", "[gateway]") {
  auto named = [](const roost::Error& e, const std::string& field) {
    INFO(e.message);
    CHECK(e.code == ErrorCode::UNKNOWN_FIELD);
    CHECK(e.message.find("\"" + field + "\"") != std::string::npos);
  };
  named(parse_enqueue(R"({"body":1,"delay_seconds":3})", 1024).error(), "delay_seconds");
  named(parse_enqueue(R"({"messages":[{"body":1,"metadata":{}}]})", 1024).error(), "metadata");
  named(parse_enqueue(R"({"messages":[{"body":1}],"id":"x"})", 1024).error(), "id");
  named(parse_queue_config(R"({"visibility_timeout":5})").error(), "visibility_timeout");
  named(parse_pull(R"({"batch_size":1,"wait":5})").error(), "wait");
  named(parse_ack(R"({"acks":[],"retry":[]})").error(), "retry");
  named(parse_ack(R"({"acks":[{"lease_id":"a","delay_ms":1}]})").error(), "delay_ms");  // acks have no delay
  named(parse_ack(R"({"retries":[{"lease_id":"a","delay":1}]})").error(), "delay");
  named(parse_redrive(R"({"to":"q","count":1})").error(), "count");
  named(parse_peek(R"({"visibility_timeout_ms":1})").error(), "visibility_timeout_ms");
  // Known fields still parse; a key longer than 64 bytes is cut in the message.
  CHECK(parse_ack(R"({"acks":[{"lease_id":"a"}],"retries":[{"lease_id":"b","delay_ms":1}]})"));
  CHECK(*parse_peek(R"({"batch_size":7})") == 7u);
  CHECK(*parse_peek("") == 10u);
  auto long_key = parse_pull("{\"" + std::string(1000, 'k') + "\":1}").error();
  CHECK(long_key.code == ErrorCode::UNKNOWN_FIELD);
  CHECK(long_key.message.size() < 300);
}

TEST_CASE("cf_tokens: tokens and the queues each grants", "[gateway]") {
  auto t = roost::gateway::parse_cf_tokens(" t1:jobs, mail.> ; t2:>;");
  REQUIRE(t);
  REQUIRE(t->size() == 2);
  CHECK((*t)[0].token == "t1");
  CHECK((*t)[0].queues == std::vector<std::string>{"jobs", "mail.>"});
  CHECK((*t)[1].queues == std::vector<std::string>{">"});
  CHECK(roost::gateway::parse_cf_tokens("")->empty());
  CHECK_FALSE(roost::gateway::parse_cf_tokens(":q"));
  CHECK_FALSE(roost::gateway::parse_cf_tokens("t\n:q"));
}
