#include <catch2/catch.hpp>

#include <boost/asio/ip/address.hpp>

#include <roost/core/auth.h>

using namespace roost;
using boost::asio::ip::make_address;
using roost::ErrorCode;

TEST_CASE("grant patterns cover requests", "[gateway][auth]") {
  CHECK(pattern_covers("chat.>", "chat.room1"));
  CHECK(pattern_covers("chat.>", "chat.*"));
  CHECK(pattern_covers("chat.>", "chat.a.>"));
  CHECK_FALSE(pattern_covers("chat.>", "chat"));
  CHECK_FALSE(pattern_covers("chat.>", ">"));
  CHECK(pattern_covers("chat.*", "chat.room1"));
  CHECK(pattern_covers("chat.*", "chat.*"));
  CHECK_FALSE(pattern_covers("chat.*", "chat.>"));
  CHECK_FALSE(pattern_covers("chat.*", "chat.a.b"));
  CHECK(pattern_covers(">", "anything.at.all"));
  CHECK(pattern_covers("jobs", "jobs"));
  CHECK_FALSE(pattern_covers("jobs", "jobs2"));
  CHECK_FALSE(pattern_covers("chat.room1", "chat.*"));
}

TEST_CASE("without a secret only loopback clients are let in, with every right", "[gateway][auth]") {
  Authenticator auth("");
  auto local = auth.authenticate("", make_address("127.0.0.1"));
  REQUIRE(local);
  CHECK(local->unrestricted);
  CHECK(auth.authenticate("", make_address("::1")));
  auto remote = auth.authenticate("", make_address("192.0.2.10"));
  REQUIRE_FALSE(remote);
  CHECK(remote.error().code == ErrorCode::UNAUTHORIZED);
}

TEST_CASE("HS256 tokens: signature, algorithm, expiry, grants", "[gateway][auth]") {
  Authenticator auth("s3cret", [] { return std::int64_t{1000}; });
  auto remote = make_address("192.0.2.10");
  auto good =
      sign_jwt("s3cret", R"({"exp":2000,"roost":{"publish":["a.b"],"subscribe":["a.>"],"queues":["q"]}})");
  auto p = auth.authenticate(good, remote);
  REQUIRE(p);
  CHECK_FALSE(p->unrestricted);
  CHECK(p->may_publish("a.b"));
  CHECK_FALSE(p->may_publish("a.c"));
  CHECK(p->may_subscribe("a.*"));
  CHECK(p->may_use_queue("q"));
  CHECK_FALSE(p->may_use_queue("r"));
  CHECK(auth.authenticate(sign_jwt("s3cret", R"({"exp":999})"), remote).error().code ==
        ErrorCode::UNAUTHORIZED);
  CHECK_FALSE(auth.authenticate(sign_jwt("other", R"({})"), remote));
  CHECK_FALSE(auth.authenticate("", remote));
  CHECK_FALSE(auth.authenticate("a.b", remote));
  CHECK_FALSE(auth.authenticate("a.b.c.d", remote));
  // alg must be HS256: a token claiming "none" is refused even with a valid-looking body.
  CHECK_FALSE(auth.authenticate("eyJhbGciOiJub25lIn0.e30.", remote));
  // No exp: accepted (the issuer chose a token that does not expire).
  CHECK(auth.authenticate(sign_jwt("s3cret", R"({"roost":{}})"), remote));
}

TEST_CASE("hardening 12: nbf is checked; an IPv4-mapped loopback address is loopback",
          "[gateway][auth][hardening]") {
  Authenticator auth("k", [] { return std::int64_t{1'000'000}; });
  CHECK_FALSE(auth.authenticate(sign_jwt("k", R"({"nbf":1000060})"), make_address("10.0.0.1")));
  CHECK(auth.authenticate(sign_jwt("k", R"({"nbf":1000000})"), make_address("10.0.0.1")));
  CHECK_FALSE(auth.authenticate(sign_jwt("k", R"({"nbf":"soon"})"), make_address("10.0.0.1")));
  CHECK(is_loopback(make_address("::ffff:127.0.0.1")));
  CHECK(is_loopback(make_address("::1")));
  CHECK_FALSE(is_loopback(make_address("::ffff:10.0.0.1")));
  Authenticator open("");
  CHECK(open.authenticate("", make_address("::ffff:127.0.0.1")));
  CHECK_FALSE(open.authenticate("", make_address("::ffff:192.168.1.2")));
}
