// Mesh membership with real binaries and a real etcd on loopback: nodes join with their
// addresses, a killed node leaves when its lease runs out, a stopped one at once, a restarted one
// rejoins; etcd out of reach shows in /healthz; the shard count is fixed by the first node.
#include <catch2/catch.hpp>

#include <thread>

#include "../support/etcd_process.h"
#include "../support/eventually.h"
#include "http_fixture.h"

namespace roost::test {
namespace {

std::vector<std::string> member_names(Server& s) {
  auto r = s.http().get("/v1/mesh");
  if (r.status != 200) return {};
  std::vector<std::string> out;
  auto body = body_json(r);  // (a temporary in the for's range would die before the loop)
  for (const auto& m : body.at("members").as_array()) out.emplace_back(m.at("name").as_string());
  return out;
}

std::vector<std::string> mesh_args(const EtcdProcess& etcd, const std::string& name,
                                   const std::string& shards = "64") {
  return {"--mesh-etcd",         etcd.url(), "--mesh-cluster", "test", "--node-name", name,
          "--mesh-lease-ttl-ms", "1000",     "--mesh-shards",  shards};
}

TEST_CASE("mesh: nodes join through etcd, leave with their lease, and rejoin", "[integration][mesh]") {
  REQUIRE(etcd_installed());  // scripts/install-deps.sh --test installs etcd-server
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a"));
  Server b(mesh_args(etcd, "b", "128"));  // the mesh exists with 64: b's setting is ignored
  Server c(mesh_args(etcd, "c"));
  using V = std::vector<std::string>;
  REQUIRE(eventually([&] { return member_names(a) == V{"a", "b", "c"}; }));
  auto status = body_json(b.http().get("/v1/mesh"));
  {
    // The CLI prints the same view.
    std::string cmd = std::string(ROOST_BINARY) + " mesh status --url " + b.proc().url() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    CHECK(WEXITSTATUS(pclose(p)) == 0);
    CHECK(out.find(R"("node":"b")") != std::string::npos);
    CHECK(out.find(R"("name":"c")") != std::string::npos);
  }
  CHECK(status.at("shards") == 64);
  CHECK(status.at("etcd") == "ok");
  for (const auto& m : status.at("members").as_array()) {  // `status` is a named value
    if (m.at("name") == "b") CHECK(m.at("http").as_string() == b.proc().url());
  }

  // kill -9: gone once its lease (1 s) runs out, not before it could have.
  b.proc().stop(SIGKILL);
  CHECK(member_names(a) == V{"a", "b", "c"});
  REQUIRE(eventually([&] { return member_names(a) == V{"a", "c"}; }, std::chrono::seconds(5)));
  // A clean stop leaves at once (the lease is revoked).
  c.proc().stop(SIGTERM);
  REQUIRE(eventually([&] { return member_names(a) == V{"a"}; }, std::chrono::milliseconds(1500)));
  b.proc().start();
  REQUIRE(eventually([&] { return member_names(a) == V{"a", "b"}; }));
}

TEST_CASE("mesh: etcd out of reach is reported, and the node rejoins when it is back",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());  // scripts/install-deps.sh --test installs etcd-server
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a"));
  REQUIRE(eventually([&] { return member_names(a) == std::vector<std::string>{"a"}; }));
  CHECK(body_json(a.http().get("/healthz")).at("status") == "ok");
  etcd.stop();
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "degraded"; }));
  CHECK(body_json(a.http().get("/v1/mesh")).at("etcd") == "unreachable");
  // Fenced once its last renewal's TTL (minus the margin) is over: it may own nothing then.
  CHECK(eventually([&] { return body_json(a.http().get("/v1/mesh")).at("lease_valid_ms") == 0; },
                   std::chrono::seconds(2)));
  // Queues keep working on the node itself meanwhile.
  CHECK(a.send("local", R"({"body":1})").status == 201);
  etcd.start();
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "ok"; },
                     std::chrono::seconds(10)));
  REQUIRE(eventually([&] { return member_names(a) == std::vector<std::string>{"a"}; }));
}

TEST_CASE("mesh: a single node has no mesh status", "[integration][mesh]") {
  Server a;
  auto r = a.http().get("/v1/mesh");
  CHECK(r.status == 404);
  CHECK(body_json(a.http().get("/healthz")).at("status") == "ok");
}

}  // namespace
}  // namespace roost::test
