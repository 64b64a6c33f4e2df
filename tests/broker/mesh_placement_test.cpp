// Placement arithmetic of the mesh (no etcd): shards of queues and objects, and rendezvous homes.
#include <roost/broker/mesh.h>

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

using roost::shard_of_object;
using roost::shard_of_queue;
using roost::broker::Mesh;
using roost::broker::MeshMember;

namespace {
std::map<std::string, int> homes(const std::vector<std::string>& names, std::uint32_t shards) {
  std::vector<MeshMember> members;
  for (const auto& n : names) members.push_back(MeshMember{n, "", "", "", 0});
  std::map<std::string, int> count;
  for (std::uint32_t s = 0; s < shards; ++s) count[Mesh::rendezvous(members, s)] += 1;
  return count;
}
}  // namespace

TEST_CASE("mesh placement: rendezvous spreads new shards evenly over the members, whatever their names",
          "[mesh]") {
  // Uniform would be shards / members each; allow ±35 % (binomial noise is ~±15 % here).
  for (const auto& names : std::vector<std::vector<std::string>>{{"a", "b", "c"},
                                                                 {"a", "b", "c", "d"},
                                                                 {"node-1", "node-2", "node-3"},
                                                                 {"n1", "n2"},
                                                                 {"broker-east", "broker-west"}}) {
    auto count = homes(names, 256);
    INFO("members " << names.size() << ", first " << names[0]);
    REQUIRE(count.size() == names.size());  // every member homes some
    const double fair = 256.0 / static_cast<double>(names.size());
    for (const auto& [name, n] : count) {
      INFO(name << " homes " << n);
      CHECK(n > fair * 0.65);
      CHECK(n < fair * 1.35);
    }
  }
}

TEST_CASE("mesh placement: a member that joins takes shards only from the others, about 1/n of them",
          "[mesh]") {
  std::vector<MeshMember> three{{"a", "", "", "", 0}, {"b", "", "", "", 0}, {"c", "", "", "", 0}};
  auto four = three;
  four.push_back({"d", "", "", "", 0});
  int moved = 0;
  for (std::uint32_t s = 0; s < 256; ++s) {
    auto before = Mesh::rendezvous(three, s), after = Mesh::rendezvous(four, s);
    if (before != after) {
      CHECK(after == "d");  // nothing moves between the old members
      ++moved;
    }
  }
  CHECK(moved > 40);  // a quarter would be 64
  CHECK(moved < 90);
}

TEST_CASE("mesh placement: queues and objects spread over the shards", "[mesh]") {
  std::map<std::uint32_t, int> q, o;
  for (int i = 0; i < 6400; ++i) {
    q[shard_of_queue("work" + std::to_string(i), 64)] += 1;
    o[shard_of_object("counter", "o" + std::to_string(i), 64)] += 1;
  }
  REQUIRE(q.size() == 64);
  REQUIRE(o.size() == 64);
  for (auto& [s, n] : q) CHECK((n > 60 && n < 140));
  for (auto& [s, n] : o) CHECK((n > 60 && n < 140));
  CHECK(shard_of_queue("x", 1) == 0);
}
