// EtcdClient against a real etcd (Debian's etcd-server, on loopback): the primitives the mesh's
// membership and ownership are built on.
#include <roost/broker/etcd_client.h>

#include <catch2/catch.hpp>

#include <thread>

#include "../support/etcd_process.h"

namespace roost::test {
namespace {

TEST_CASE("etcd client: put, get, list by prefix, delete", "[etcd]") {
  REQUIRE(etcd_installed());  // scripts/install-deps.sh --test installs etcd-server
  EtcdProcess etcd;
  broker::EtcdClient c(etcd.url());
  REQUIRE(c.put("/t/a", "1"));
  REQUIRE(c.put("/t/b", std::string("bin\0ary", 7)));
  REQUIRE(c.put("/u/x", "other"));
  auto a = c.get("/t/a");
  REQUIRE(a);
  REQUIRE(a->has_value());
  CHECK((*a)->value == "1");
  auto list = c.list("/t/");
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK((*list)[1].value == std::string("bin\0ary", 7));
  CHECK(*c.del("/t/a"));
  CHECK_FALSE(c.get("/t/a")->has_value());
  CHECK(broker::etcd_prefix_end("/t/") == "/t0");
}

TEST_CASE("etcd client: create is claim-if-absent, delete_if releases only one's own claim", "[etcd]") {
  REQUIRE(etcd_installed());  // scripts/install-deps.sh --test installs etcd-server
  EtcdProcess etcd;
  broker::EtcdClient c(etcd.url());
  auto first = c.create("/claims/s1", "node-a");
  REQUIRE(first);
  CHECK(first->created);
  auto second = c.create("/claims/s1", "node-b");
  REQUIRE(second);
  CHECK_FALSE(second->created);
  REQUIRE(second->existing);
  CHECK(second->existing->value == "node-a");
  auto epoch = second->existing->create_revision;      // the claim's epoch
  CHECK_FALSE(*c.delete_if("/claims/s1", epoch + 1));  // not our claim: it stays
  CHECK(c.get("/claims/s1")->has_value());
  CHECK(*c.delete_if("/claims/s1", epoch));
  auto third = c.create("/claims/s1", "node-b");
  REQUIRE(third->created);
  CHECK(c.get("/claims/s1")->value().create_revision > epoch);  // a new claim, a new epoch
}

TEST_CASE("etcd client: a lease keeps its keys until it is not renewed", "[etcd]") {
  REQUIRE(etcd_installed());  // scripts/install-deps.sh --test installs etcd-server
  EtcdProcess etcd;
  broker::EtcdClient c(etcd.url());
  auto lease = c.grant(1);
  REQUIRE(lease);
  REQUIRE(c.create("/members/n1", "{}", *lease)->created);
  for (int i = 0; i < 4; ++i) {  // 2 s renewed: still there
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(*c.keepalive(*lease) > 0);
  }
  CHECK(c.get("/members/n1")->has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // not renewed: gone
  CHECK_FALSE(c.get("/members/n1")->has_value());
  CHECK(*c.keepalive(*lease) == 0);
}

TEST_CASE("etcd client: an unreachable etcd is an error, not an exception", "[etcd]") {
  broker::EtcdClient c("http://127.0.0.1:" + std::to_string(free_port()), std::chrono::milliseconds(300));
  auto r = c.get("/x");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::UNAVAILABLE);
}

}  // namespace
}  // namespace roost::test
