// The `roost` command line against a running node.
#include <cstdio>

#include <zmq.h>

#include "http_fixture.h"

using namespace roost::test;

namespace {
struct Run {
  int status;
  std::string out;
};
Run run(const std::string& args) {
  std::string cmd = std::string(ROOST_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = pclose(p);
  return {WEXITSTATUS(rc), out};
}
}  // namespace

TEST_CASE("roost --help and --version", "[integration]") {
  auto v = run("--version");
  CHECK(v.status == 0);
  CHECK(v.out.starts_with("roost "));
  auto h = run("--help");
  CHECK(h.status == 0);
  CHECK(h.out.find("--data-dir") != std::string::npos);
  CHECK(h.out.find("ROOST_HTTP_LISTEN") != std::string::npos);
  CHECK(run("serve --no-such-flag").status == 2);
  CHECK(run("frobnicate").status == 2);
}

TEST_CASE("roost queue create, push, pull, ack, stats, list, redrive", "[integration]") {
  Server s;
  std::string url = " --url " + s.proc().url();
  auto c = run("queue create jobs --max-retries 0 --dead-letter-queue dead" + url);
  REQUIRE(c.status == 0);
  CHECK(c.out.find(R"("max_retries":0)") != std::string::npos);
  auto p = run("queue push jobs '{\"n\":1}'" + url);
  REQUIRE(p.status == 0);
  CHECK(p.out.find(R"("ids")") != std::string::npos);
  CHECK(run("queue push jobs 'hello' --content-type text --key k1" + url).status == 0);
  auto pulled = run("queue pull jobs --batch-size 10" + url);
  REQUIRE(pulled.status == 0);
  auto msgs = json::parse(pulled.out).at("messages").as_array();
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[1].at("body") == "hello");
  auto a = run("queue ack jobs " + lease_of(msgs[0]) + " --retry " + lease_of(msgs[1]) + url);
  REQUIRE(a.status == 0);
  CHECK(a.out.find(R"("acked":1)") != std::string::npos);
  CHECK(run("queue stats dead" + url).out.find(R"("ready":1)") != std::string::npos);
  auto r = run("queue redrive dead --to jobs" + url);
  CHECK(r.out.find(R"("moved":1)") != std::string::npos);
  CHECK(run("queue list" + url).out.find(R"("name":"dead")") != std::string::npos);
  auto missing = run("queue stats nope" + url);
  CHECK(missing.status == 1);
  CHECK(missing.out.find("queue_not_found") != std::string::npos);
  CHECK(run("queue push jobs '{bad' " + url).status == 2);
  CHECK(run("queue list --url http://127.0.0.1:1").status == 1);
}

TEST_CASE("hardening: small things a new user hits with the CLI", "[integration][hardening][cli]") {
  Server s({"--actors", ROOST_TEST_ACTORS});
  std::string tcp = " --url " + s.proc().endpoint();
  REQUIRE(run("queue create gone" + tcp).status == 0);
  // `queue delete` prints the same JSON over tcp:// as over HTTP.
  auto d = run("queue delete gone" + tcp);
  CHECK(d.status == 0);
  CHECK(d.out == "{\"deleted\":true}\n");
  REQUIRE(run("queue create gone2 --url " + s.proc().url()).status == 0);
  CHECK(run("queue delete gone2 --url " + s.proc().url()).out == "{\"deleted\":true}\n");
  // `roost sub` says on stderr that it is subscribed, so a user knows it is waiting.
  std::string cmd = "timeout -s INT 2 " + std::string(ROOST_BINARY) + " sub 'quiet.*'" + tcp + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  CHECK(out.find("subscribed to quiet.*") != std::string::npos);
  // A bare POST tells an object null, as the README shows.
  CHECK(s.http().request("POST", "/v1/objects/counter/bare/messages", "", "application/json").status == 202);
  // The short command's session ends with its connection, not 3 heartbeats later with a log line.
  CHECK(s.proc().log().find("silent for 3 heartbeats") == std::string::npos);
  // A plain client against a CURVE endpoint is told what may be missing; the node logs it.
  char pub[41], sec[41];
  REQUIRE(zmq_curve_keypair(pub, sec) == 0);
  Server curve({"--endpoint-curve-secret", sec});
  auto plain = run("queue list --url " + curve.proc().endpoint());
  CHECK(plain.status != 0);
  CHECK(plain.out.find("--server-key") != std::string::npos);
  CHECK(curve.proc().log().find("native handshake failed") != std::string::npos);
  CHECK(run("queue list --server-key '" + std::string(pub) + "' --url " + curve.proc().endpoint()).status ==
        0);
}
