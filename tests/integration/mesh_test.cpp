// Mesh membership with real binaries and a real etcd on loopback: nodes join with their
// addresses, a killed node leaves when its lease runs out, a stopped one at once, a restarted one
// rejoins; etcd out of reach shows in /healthz; the shard count is fixed by the first node.
#include <catch2/catch.hpp>

#include <map>
#include <set>
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
          "--mesh-lease-ttl-ms", "2000",     "--mesh-shards",  shards};
}

TEST_CASE("mesh: nodes join through etcd, leave with their lease, and rejoin", "[integration][mesh]") {
  REQUIRE(etcd_installed());  // scripts/install-deps.sh --test installs etcd-server
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a"));
  Server b(mesh_args(etcd, "b", "128"));  // the mesh exists with 64: b's setting is ignored
  Server c(mesh_args(etcd, "c"));
  using V = std::vector<std::string>;
  REQUIRE(eventually([&] { return member_names(a) == V{"a", "b", "c"}; }));
  REQUIRE(eventually([&] { return member_names(b) == V{"a", "b", "c"}; }));  // b's own list too
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

  // kill -9: gone once its lease (2 s) runs out, not before it could have.
  b.proc().stop(SIGKILL);
  CHECK(member_names(a) == V{"a", "b", "c"});
  REQUIRE(eventually([&] { return member_names(a) == V{"a", "c"}; }, std::chrono::seconds(8)));
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
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "ok"; }));
  etcd.stop();
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "degraded"; }));
  CHECK(body_json(a.http().get("/v1/mesh")).at("etcd") == "unreachable");
  // Fenced once its last renewal's TTL (minus the margin) is over: it may own nothing then.
  CHECK(eventually([&] { return body_json(a.http().get("/v1/mesh")).at("lease_valid_ms") == 0; },
                   std::chrono::seconds(3)));
  // Queues keep working on the node itself meanwhile.
  CHECK(a.send("local", R"({"body":1})").status == 201);
  etcd.start();
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "ok"; },
                     std::chrono::seconds(10)));
  REQUIRE(eventually([&] { return member_names(a) == std::vector<std::string>{"a"}; }));
}

json::value placement(Server& s, const std::string& queue) {
  auto r = s.http().get("/v1/mesh?queue=" + queue);
  REQUIRE(r.status == 200);
  return body_json(r);
}

TEST_CASE("mesh: shards are homed by rendezvous on first use, owned by their home, and fenced by its lease",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  std::map<std::string, std::unique_ptr<Server>> nodes;
  for (const char* n : {"a", "b", "c"}) nodes[n] = std::make_unique<Server>(mesh_args(etcd, n));
  REQUIRE(eventually([&] { return member_names(*nodes["a"]).size() == 3; }));
  // Twenty-four queues, placed through node a: their shards spread over the nodes, and every
  // node sees the same home, owner and epoch.
  std::map<std::string, std::string> home_of;
  std::set<std::string> homes;
  for (int i = 0; i < 24; ++i) {
    auto q = "q" + std::to_string(i);
    auto p = placement(*nodes["a"], q);
    home_of[q] = std::string(p.at("home").as_string());
    homes.insert(home_of[q]);
  }
  CHECK(homes.size() >= 2);
  for (auto& [q, home] : home_of) {
    REQUIRE(eventually([&] {
      auto p = placement(*nodes["b"], q);
      return p.at("home").as_string() == home && p.at("owner").is_string() &&
             p.at("owner").as_string() == home;
    }));
    auto pb = placement(*nodes["b"], q), pc = placement(*nodes["c"], q);
    CHECK(pb.at("epoch") == pc.at("epoch"));
    CHECK(pb.at("epoch").as_int64() > 0);
  }
  // The owner of q0 killed: its shard has no owner once its lease ran out (nobody else takes it:
  // the data is on its disk); back, it claims it again under a new epoch.
  auto victim = home_of["q0"];
  auto before = placement(*nodes[victim == "a" ? "b" : "a"], "q0").at("epoch").as_int64();
  auto& witness = *nodes[victim == "a" ? "b" : "a"];
  nodes[victim]->proc().stop(SIGKILL);
  REQUIRE(
      eventually([&] { return placement(witness, "q0").at("owner").is_null(); }, std::chrono::seconds(8)));
  CHECK(placement(witness, "q0").at("home").as_string() == victim);
  nodes[victim]->proc().start();
  REQUIRE(eventually(
      [&] {
        auto p = placement(witness, "q0");
        return p.at("owner").is_string() && p.at("owner").as_string() == victim;
      },
      std::chrono::seconds(8)));
  CHECK(placement(witness, "q0").at("epoch").as_int64() > before);
  CHECK(eventually(
      [&] { return witness.http().get("/metrics").body.find("roost_mesh_members 3") != std::string::npos; }));
  auto metrics = witness.http().get("/metrics").body;
  CHECK(metrics.find("roost_mesh_etcd_up 1") != std::string::npos);
  CHECK(metrics.find("roost_mesh_owners_lost_total 0") == std::string::npos);  // it saw q0's owner go
}

TEST_CASE("mesh: a single node has no mesh status", "[integration][mesh]") {
  Server a;
  auto r = a.http().get("/v1/mesh");
  CHECK(r.status == 404);
  CHECK(body_json(a.http().get("/healthz")).at("status") == "ok");
}

}  // namespace
}  // namespace roost::test
