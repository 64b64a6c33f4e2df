// Mesh membership with real binaries and a real etcd on loopback: nodes join with their
// addresses, a killed node leaves when its lease runs out, a stopped one at once, a restarted one
// rejoins; etcd out of reach shows in /healthz; the shard count is fixed by the first node.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <roost/broker/etcd_client.h>
#include <roost/broker/mesh.h>
#include <roost/client/client.h>
#include <roost/client/host.h>
#include <roost/client/peer.h>
#include <roost/core/auth.h>
#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/outbox_store.h>
#include <roost/durable/queue_store.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "../support/etcd_process.h"
#include "../support/eventually.h"
#include "../support/http_sink.h"
#include "../support/tcp_proxy.h"
#include "../support/temp_dir.h"
#include "../support/ws_client.h"
#include "http_fixture.h"

namespace roost::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> member_names(Server& s) {
  auto r = s.http().get("/v1/mesh");
  if (r.status != 200) return {};
  std::vector<std::string> out;
  auto body = body_json(r);  // (a temporary in the for's range would die before the loop)
  for (const auto& m : body.at("members").as_array()) out.emplace_back(m.at("name").as_string());
  return out;
}

std::vector<std::string> mesh_args(const EtcdProcess& etcd, const std::string& name,
                                   const std::string& shards = "64", const std::string& ttl_ms = "2000",
                                   const std::string& listen = "tcp://127.0.0.1:*") {
  return {"--mesh-etcd",
          etcd.url(),
          "--mesh-cluster",
          "test",
          "--node-name",
          name,
          "--mesh-shards",
          shards,
          "--mesh-lease-ttl-ms",
          ttl_ms,
          "--mesh-listen",
          listen,
          "--actors",
          ROOST_TEST_ACTORS,
          "--mesh-insecure",
          "true"};
}

// Nodes named `names` of one mesh (each with `extra` arguments), once every one lists them all.
std::map<std::string, std::unique_ptr<Server>> start_mesh(const EtcdProcess& etcd,
                                                          std::vector<std::string> names,
                                                          std::vector<std::string> extra = {}) {
  std::map<std::string, std::unique_ptr<Server>> nodes;
  for (const auto& n : names) {
    auto args = mesh_args(etcd, n);
    args.insert(args.end(), extra.begin(), extra.end());
    nodes[n] = std::make_unique<Server>(args);
  }
  REQUIRE(eventually([&] {
    for (auto& [n, s] : nodes) {
      if (member_names(*s).size() != names.size()) return false;
    }
    return true;
  }));
  return nodes;
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
  // Fenced, it serves none of its shards: it cannot know it still owns them.
  auto refused = a.send("local", R"({"body":1})");
  CHECK(refused.status == 503);
  etcd.start();
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "ok"; },
                     std::chrono::seconds(10)));
  REQUIRE(eventually([&] { return member_names(a) == std::vector<std::string>{"a"}; }));
  CHECK(eventually([&] { return a.send("local", R"({"body":2})").status == 201; }));
}

json::value placement(Server& s, const std::string& queue, const std::string& kind = "queue") {
  auto r = s.http().get("/v1/mesh?" + kind + "=" + queue);
  REQUIRE(r.status == 200);
  return body_json(r);
}

std::uint64_t metric(Server& s, const std::string& name) {
  auto body = s.http().get("/metrics").body;
  auto at = body.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::stoull(body.substr(at + name.size() + 2));
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

TEST_CASE("mesh: any node serves any queue and object — requests go to the shard's owner",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  std::map<std::string, std::unique_ptr<Server>> nodes;
  for (const char* n : {"a", "b", "c"}) nodes[n] = std::make_unique<Server>(mesh_args(etcd, n));
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  REQUIRE(eventually([&] { return member_names(a).size() == 3 && member_names(c).size() == 3; }));

  // Twelve queues created through a, fed through b, drained through c, acknowledged through a.
  constexpr int kQueues = 12, kEach = 5;
  std::set<std::string> homes;
  for (int i = 0; i < kQueues; ++i) {
    auto q = "work" + std::to_string(i);
    auto r = a.put_queue(q, R"({"visibility_timeout_ms":60000})");
    INFO(r.body);
    REQUIRE(r.status == 200);
    homes.insert(std::string(placement(a, q).at("home").as_string()));
  }
  REQUIRE(homes.size() >= 2);  // some requests had to cross the mesh
  for (int i = 0; i < kQueues; ++i) {
    for (int k = 0; k < kEach; ++k) {
      auto r = b.send("work" + std::to_string(i),
                      json::serialize(json::object{{"body", json::object{{"q", i}, {"k", k}}}}));
      INFO(r.body);
      REQUIRE(r.status == 201);
    }
  }
  std::set<std::pair<int, int>> seen;
  for (int i = 0; i < kQueues; ++i) {
    auto q = "work" + std::to_string(i);
    auto got = c.pull_messages(q, R"({"batch_size":100})");
    CHECK(got.size() == kEach);
    for (const auto& m : got) {
      auto inserted = seen.insert({static_cast<int>(m.at("body").at("q").as_int64()),
                                   static_cast<int>(m.at("body").at("k").as_int64())});
      CHECK(inserted.second);  // no duplicate
      CHECK(m.at("body").at("q").as_int64() == i);
    }
    a.ack_leases(q, got);
    // Peek and purge through a node that may not own the queue reach its owner.
    if (i == 0) {
      for (int k = 0; k < 3; ++k) REQUIRE(b.send(q, R"({"body":"p"})").status == 201);
      auto peeked = body_json(c.http().post("/v1/queues/" + q + "/messages/peek", "{}"));
      CHECK(peeked.at("messages").as_array().size() == 3);
      auto purged = body_json(a.http().post("/v1/queues/" + q + "/purge", ""));
      CHECK(purged.at("purged") == 3);
      CHECK(body_json(b.pull(q)).at("backlog") == 0);
    }
    // Every node tells the same story about the queue: its owner's.
    for (auto* n : {&a, &b, &c}) {
      auto st = n->stats(q);
      CHECK(st.at("acked") == kEach);
      CHECK(st.at("messages") == 0);
    }
  }
  CHECK(seen.size() == kQueues * kEach);  // no loss
  CHECK(metric(b, "roost_mesh_forwarded_total") > 0);
  {
    // The status shows b's links to its peers and where every shard in use lives.
    auto st = body_json(b.http().get("/v1/mesh"));
    std::set<std::string> linked;
    for (const auto& l : st.at("links").as_array())
      if (l.at("connected").as_bool()) linked.insert(std::string(l.at("node").as_string()));
    CHECK(linked.size() >= 1);
    CHECK_FALSE(linked.contains("b"));
    CHECK(st.at("placements").as_array().size() >= static_cast<std::size_t>(homes.size()));
  }
  CHECK(metric(a, "roost_mesh_requests_received_total") + metric(b, "roost_mesh_requests_received_total") +
            metric(c, "roost_mesh_requests_received_total") >
        0);

  // A long poll through a node that does not own the queue answers when a message arrives
  // through a third node.
  std::string far;  // a queue c does not own
  for (int i = 0; far.empty(); ++i) {
    auto q = "far" + std::to_string(i);
    if (placement(c, q).at("home").as_string() != "c") far = q;
  }
  REQUIRE(a.put_queue(far).status == 200);
  auto poll = std::async(std::launch::async, [&] {
    client::HttpClient h(c.proc().url());
    return h.post("/v1/queues/" + far + "/messages/pull", R"({"wait_ms":8000})");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(b.send(far, R"({"body":"late"})").status == 201);
  auto answered = poll.get();
  INFO(answered.body);
  REQUIRE(answered.status == 200);
  auto msgs = body_json(answered).at("messages");
  REQUIRE(msgs.as_array().size() == 1);
  CHECK(msgs.at(0).at("body") == "late");

  // Objects: tells through every node reach the one object on its owner, in one mailbox.
  std::string obj;
  for (int i = 0; obj.empty(); ++i) {
    auto name = "o" + std::to_string(i);
    if (placement(a, "counter/" + name, "object").at("home").as_string() != "a") obj = name;
  }
  for (auto* n : {&a, &b, &c}) {
    auto r = n->http().post("/v1/objects/counter/" + obj + "/messages", "{}");
    INFO(r.body);
    CHECK(r.status == 202);
  }
  auto called = a.http().post("/v1/objects/counter/" + obj + "/call", "{}");
  INFO(called.body);
  REQUIRE(called.status == 200);
  CHECK(body_json(called).at("n") == 3);
  // The native protocol forwards too.
  auto client = Client::connect({.url = b.proc().endpoint()});
  REQUIRE(client);
  auto seq = (*client)->tell("counter", obj, "{}");
  REQUIRE(seq);
  auto reply = (*client)->call("counter", obj, "{}");
  REQUIRE(reply);
  CHECK(json::parse(reply->data).at("n") == 4);
  auto info = (*client)->get_queue(far);
  REQUIRE(info);
  // b's links to its peers are driven by its client endpoint's thread (a forwarded request crosses
  // no other thread of b): no link has an I/O thread of its own.
  {
    std::multiset<std::string> threads;
    for (const auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(b.proc().pid()) + "/task")) {
      std::ifstream comm(t.path() / "comm");
      std::string name;
      std::getline(comm, name);
      threads.insert(name);
    }
    CHECK(threads.count("roost-endpoint") == 1);
    CHECK(threads.count("roost-peer-io") == 0);
  }
  CHECK(info->stats.enqueued == 1);
  // HTTP to an object's on_fetch through a node that does not own it: method, path, query, body
  // and headers go there; its status and headers come back.
  std::string w;
  for (int i = 0; w.empty(); ++i) {
    auto name = "w" + std::to_string(i);
    if (placement(a, "web/" + name, "object").at("home").as_string() != "a") w = name;
  }
  a.http().set_header("X-Test", "through");
  auto fetched =
      a.http().request("PUT", "/v1/objects/web/" + w + "/fetch/items/7?x=1", "payload", "text/plain");
  a.http().set_header("X-Test", "");
  INFO(fetched.body);
  REQUIRE(fetched.status == 200);
  auto echo = body_json(fetched);
  CHECK(echo.at("method") == "PUT");
  CHECK(echo.at("path") == "/items/7");
  CHECK(echo.at("query") == "x=1");
  CHECK(echo.at("body") == "payload");
  CHECK(echo.at("x_test") == "through");
  CHECK(fetched.header("x-object") == w);
  auto teapot = c.http().get("/v1/objects/web/" + w + "/fetch/teapot");
  CHECK(teapot.status == 418);
  CHECK(body_json(teapot).at("requests") == 2);  // one object, wherever it is reached from
  // A push consumer on a node that does not own the queue: deliveries come through the mesh, acks
  // go back to the owner.
  {
    std::string pq;
    for (int i = 0; pq.empty(); ++i) {
      auto name = "push" + std::to_string(i);
      if (placement(a, name).at("home").as_string() == "b") pq = name;
    }
    REQUIRE(b.put_queue(pq).status == 200);
    auto consumer = Client::connect({.url = a.proc().endpoint()});
    REQUIRE(consumer);
    std::mutex mu;
    std::set<std::string> delivered;
    auto stream = (*consumer)->consume(pq, [&](const Delivery& d) {
      {
        std::lock_guard lock(mu);
        delivered.insert(d.message.body);
      }
      d.ack();
    });
    REQUIRE(stream);
    for (int i = 0; i < 10; ++i) REQUIRE(b.send(pq, R"({"body":)" + std::to_string(i) + "}").status == 201);
    REQUIRE(eventually([&] {
      std::lock_guard lock(mu);
      return delivered.size() == 10;
    }));
    REQUIRE(eventually([&] { return b.stats(pq).at("acked") == 10; }));
    CHECK(b.stats(pq).at("messages") == 0);
  }
  // Redrive between queues of two nodes (through a third): every message moves, once.
  std::string src, dst;
  for (int i = 0; src.empty() || dst.empty(); ++i) {
    auto name = "rd" + std::to_string(i);
    auto home = std::string(placement(a, name).at("home").as_string());
    if (home == "b" && src.empty()) src = name;
    if (home != "b" && dst.empty()) dst = name;
  }
  REQUIRE(a.put_queue(src).status == 200);
  REQUIRE(a.put_queue(dst).status == 200);
  for (int i = 0; i < 5; ++i) REQUIRE(a.send(src, R"({"body":)" + std::to_string(i) + "}").status == 201);
  auto moved = c.http().post("/v1/queues/" + src + "/redrive", json::serialize(json::object{{"to", dst}}));
  INFO(moved.body);
  REQUIRE(moved.status == 200);
  CHECK(body_json(moved).at("moved") == 5);
  std::set<std::int64_t> redriven;
  for (const auto& m : a.pull_messages(dst, R"({"batch_size":10})")) redriven.insert(m.at("body").as_int64());
  CHECK(redriven == std::set<std::int64_t>{0, 1, 2, 3, 4});
  CHECK(a.stats(src).at("messages") == 0);
  // Every node lists the mesh's queues, wherever they live (HTTP and native).
  for (auto* n : {&a, &b, &c}) {
    auto listed = body_json(n->http().get("/v1/queues"));
    std::set<std::string> names;
    for (const auto& q : listed.at("queues").as_array()) names.insert(std::string(q.at("name").as_string()));
    for (int i = 0; i < kQueues; ++i) CHECK(names.contains("work" + std::to_string(i)));
    CHECK(names.contains(far));
  }
  auto natively = (*client)->list_queues();
  REQUIRE(natively);
  CHECK(natively->size() == kQueues + 4);  // the work queues, far, the push queue, src and dst
}

TEST_CASE("mesh: a mesh socket serves peers only, routed requests only, for shards it owns under their epoch",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto args = [&](const char* n) {
    auto v = mesh_args(etcd, n);
    v.insert(v.end(), {"--auth-secret", "s3cret"});
    return v;
  };
  Server a(args("a")), b(args("b"));
  std::string mesh_of_a;
  // (the mesh view needs the operator grant)
  a.http().set_header("Authorization",
                      "Bearer " + sign_jwt("s3cret", R"({"roost":{"queues":[">"],"objects":[">"]}})"));
  REQUIRE(eventually([&] {
    auto r = a.http().get("/v1/mesh");
    if (r.status != 200) return false;
    auto body = body_json(r);
    if (body.at("members").as_array().size() != 2) return false;
    for (const auto& m : body.at("members").as_array())
      if (m.at("name") == "a") mesh_of_a = std::string(m.at("mesh").as_string());
    return true;
  }));
  // The mesh socket speaks CURVE with the key the cluster secret derives. An application's token
  // may not use it, nor a token that only claims the mesh grant (no mesh audience).
  const auto server_key = mesh_curve_keys("s3cret").public_key;
  auto user = Client::connect({.url = mesh_of_a,
                               .token = sign_jwt("s3cret", R"({"roost":{"queues":[">"],"publish":[">"]}})"),
                               .curve_server_key = server_key});
  REQUIRE_FALSE(user);
  CHECK(user.error().code == ErrorCode::UNAUTHORIZED);
  auto claimed = Client::connect({.url = mesh_of_a,
                                  .token = sign_jwt("s3cret", R"({"roost":{"mesh":true}})"),
                                  .curve_server_key = server_key});
  REQUIRE_FALSE(claimed);
  CHECK(claimed.error().code == ErrorCode::UNAUTHORIZED);
  const auto peer_token = sign_mesh_token("s3cret", "b", std::time(nullptr), 300);
  // A peer's request without its route is refused, as is anything but queues and objects.
  auto bare = Client::connect({.url = mesh_of_a, .token = peer_token, .curve_server_key = server_key});
  REQUIRE(bare);
  auto unrouted = (*bare)->enqueue("x", {NewMessage{.body = "{}"}});
  REQUIRE_FALSE(unrouted);
  CHECK(unrouted.error().code == ErrorCode::INVALID_ARGUMENT);
  auto redriven = (*bare)->redrive("x", "y");
  REQUIRE_FALSE(redriven);
  CHECK(redriven.error().code == ErrorCode::INVALID_ARGUMENT);
  // A publish is a peer's to send (the channel's home sequences it): served, never passed on.
  auto published = (*bare)->publish_sync("news", "{}");
  REQUIRE(published);
  CHECK(published->offset >= 1);

  // Find a queue owned by a and one owned by b, with their epochs (through a's HTTP API).
  auto where = [&](const std::string& q) {
    json::value p;
    REQUIRE(eventually([&] {
      auto r = a.http().get("/v1/mesh?queue=" + q);
      if (r.status != 200) return false;
      p = body_json(r);
      return p.at("owner").is_string();
    }));
    return p;
  };
  std::string mine, theirs;
  json::value pm, pt;
  for (int i = 0; mine.empty() || theirs.empty(); ++i) {
    auto q = "r" + std::to_string(i);
    auto p = where(q);
    if (p.at("owner") == "a" && mine.empty()) mine = q, pm = p;
    if (p.at("owner") == "b" && theirs.empty()) theirs = q, pt = p;
  }
  auto route_of = [](const json::value& p) {
    return Route{static_cast<std::uint32_t>(p.at("shard").as_int64()), p.at("epoch").as_int64()};
  };
  PeerLink link({.url = mesh_of_a, .token = peer_token, .curve_server_key = server_key});
  auto enqueue = [&](const std::string& q, Route r) {
    std::promise<Result<std::vector<std::string>>> done;
    link.enqueue(r, q, {NewMessage{.body = R"({"x":1})"}},
                 [&](Result<std::vector<std::string>> got) { done.set_value(std::move(got)); });
    return done.get_future().get();
  };
  auto ok = enqueue(mine, route_of(pm));
  INFO((ok ? std::string() : ok.error().message));
  CHECK(ok);
  auto stale = route_of(pm);
  stale.epoch -= 1;
  auto r1 = enqueue(mine, stale);
  REQUIRE_FALSE(r1);
  CHECK(r1.error().code == ErrorCode::OWNER_UNAVAILABLE);
  auto wrong_shard = route_of(pm);
  wrong_shard.shard = (wrong_shard.shard + 1) % 64;
  auto r2 = enqueue(mine, wrong_shard);
  REQUIRE_FALSE(r2);
  CHECK(r2.error().code == ErrorCode::OWNER_UNAVAILABLE);
  auto r3 = enqueue(theirs, route_of(pt));  // a does not own it: it does not pass it on either
  REQUIRE_FALSE(r3);
  CHECK(r3.error().code == ErrorCode::OWNER_UNAVAILABLE);
  CHECK(metric(a, "roost_mesh_route_refused_total") >= 2);  // (/metrics is loopback-open)

  // Moving shards is an operator's: an application's token is refused, before anything starts.
  {
    client::HttpClient app(a.proc().url());
    app.set_header("Authorization", "Bearer " + sign_jwt("s3cret", R"({"roost":{"queues":["r*"]}})"));
    auto r =
        app.post("/v1/mesh/moves", json::serialize(json::object{{"shard", route_of(pm).shard}, {"to", "b"}}));
    CHECK(r.status == 403);
    CHECK(app.get("/v1/mesh/moves").status == 403);
    CHECK(body_json(a.http().get("/v1/mesh/moves")).at("moves").as_array().empty());
  }

  // Shard copies (a move's steps): malformed data, an unknown step, a shard a owns, a finish
  // whose source does not hold the shard's claim — each refused, nothing built.
  auto copy = [&](ShardCopy step, std::string payload) {
    std::promise<Result<std::uint64_t>> done;
    link.shard_copy(step, std::move(payload), [&](Result<std::uint64_t> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  };
  const auto theirs_shard = route_of(pt).shard;
  auto bad = copy({7, theirs_shard, ShardCopyPhase::kBodies, "b", 0}, std::string(5, 'x'));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::MALFORMED);
  auto bad_objects = copy({7, theirs_shard, ShardCopyPhase::kObjects, "b", 0}, std::string(12, '\x07'));
  REQUIRE(bad_objects);  // kept for the finish, which checks the rows
  auto unknown = copy({7, theirs_shard, static_cast<ShardCopyPhase>(9), "b", 0}, "");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == ErrorCode::INVALID_ARGUMENT);
  auto owned = copy({8, route_of(pm).shard, ShardCopyPhase::kBodies, "b", 0}, "");
  REQUIRE_FALSE(owned);
  CHECK(owned.error().code == ErrorCode::CONFLICT);
  auto finish = copy({7, theirs_shard, ShardCopyPhase::kFinish, "b", route_of(pt).epoch}, "");
  REQUIRE_FALSE(finish);
  CHECK(finish.error().code == ErrorCode::MALFORMED);  // the object rows sent were not rows
  auto forged = copy({9, theirs_shard, ShardCopyPhase::kFinish, "nobody", route_of(pt).epoch}, "");
  REQUIRE_FALSE(forged);
  CHECK(forged.error().code == ErrorCode::CONFLICT);  // "nobody" does not hold the claim in etcd
  CHECK(where(theirs).at("owner") == "b");            // the shard did not move
  CHECK(where(theirs).at("epoch") == pt.at("epoch"));
}

TEST_CASE("mesh: a dead owner's shards answer owner_unavailable; back, it serves its data under a new epoch",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  // a renews rarely (its tables of members and owners go stale for 20 s; it starts after b, so it
  // knows b), b has a fixed mesh port (a's member list keeps its address across b's restart).
  Server b(mesh_args(etcd, "b", "64", "2000", "tcp://127.0.0.1:" + std::to_string(free_port())));
  REQUIRE(eventually([&] { return member_names(b).size() == 1; }));
  Server a(mesh_args(etcd, "a", "64", "60000"));
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }));
  std::string q;
  for (int i = 0; q.empty(); ++i) {
    auto name = "d" + std::to_string(i);
    if (placement(a, name).at("home") == "b") q = name;
  }
  REQUIRE(eventually([&] { return placement(a, q).at("owner") == "b"; }));
  REQUIRE(a.send(q, R"({"body":"before"})").status == 201);
  auto epoch = placement(a, q).at("epoch").as_int64();

  // kill -9 and back at once: the new b drops its predecessor's claim and claims the shard under a
  // new epoch; a still holds the old one, is refused, reads etcd again and retries.
  b.proc().stop(SIGKILL);
  b.proc().start();
  auto refreshed = metric(a, "roost_mesh_refreshed_total");
  REQUIRE(eventually(
      [&] {
        auto r = a.send(q, R"({"body":"after"})");
        return r.status == 201;
      },
      std::chrono::seconds(10)));
  CHECK(metric(a, "roost_mesh_refreshed_total") > refreshed);
  CHECK(placement(b, q).at("epoch").as_int64() > epoch);

  // Killed for good: once its lease is over the shard has no owner and says so.
  b.proc().stop(SIGKILL);
  REQUIRE(eventually(
      [&] {
        auto r = a.send(q, R"({"body":"never"})");
        return r.status == 503 && body_json(r).at("error").at("code") == "owner_unavailable";
      },
      std::chrono::seconds(15)));
  // The SDK sends a request answered owner_unavailable again with backoff (owner_retry): made
  // while the owner is down, it succeeds once the owner is back; without retries it fails at once.
  auto impatient = Client::connect({.url = a.proc().endpoint(), .owner_retry = std::chrono::milliseconds(0)});
  auto patient = Client::connect({.url = a.proc().endpoint(), .owner_retry = std::chrono::seconds(10)});
  REQUIRE((impatient && patient));
  auto refused = (*impatient)->enqueue(q, {NewMessage{.body = R"("impatient")"}});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::OWNER_UNAVAILABLE);
  // Back (its disk still holds what it acknowledged) while the patient request waits.
  std::thread restart([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    b.proc().start();
  });
  auto waited = (*patient)->enqueue(q, {NewMessage{.body = R"("patient")"}});
  restart.join();
  INFO((waited ? std::string() : waited.error().message));
  CHECK(waited);
  std::set<std::string> bodies;
  REQUIRE(eventually(
      [&] {
        auto r = a.pull(q, R"({"batch_size":10})");
        UNSCOPED_INFO(r.status << " " << r.body);
        if (r.status != 200) return false;
        auto body = body_json(r);
        for (const auto& m : body.at("messages").as_array())
          bodies.insert(std::string(m.at("body").as_string()));
        return bodies.size() >= 3;
      },
      std::chrono::seconds(10)));
  CHECK(bodies == std::set<std::string>{"before", "after", "patient"});
}

// What one subscriber received: the "i" of each message (probes left out), in order.
struct Received {
  std::mutex mu;
  std::vector<std::int64_t> seq;
  std::size_t probes = 0;
  void add(const ChannelMessage& m) {
    auto v = json::parse(m.data);
    std::lock_guard lock(mu);
    if (v.as_object().contains("probe")) {
      ++probes;
    } else {
      seq.push_back(v.at("i").as_int64());
    }
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return seq.size();
  }
};

TEST_CASE("mesh: a publish on any node reaches every node's subscribers once, in the publisher's order",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a")), b(mesh_args(etcd, "b")), c(mesh_args(etcd, "c"));
  REQUIRE(eventually([&] {
    return member_names(a).size() == 3 && member_names(b).size() == 3 && member_names(c).size() == 3;
  }));
  auto ca = Client::connect({.url = a.proc().endpoint()});
  auto cb = Client::connect({.url = b.proc().endpoint()});
  auto cc = Client::connect({.url = c.proc().endpoint()});
  REQUIRE((ca && cb && cc));
  Received on_a, on_c1, on_c2;
  auto sa = (*ca)->subscribe("news.>", [&](const ChannelMessage& m) { on_a.add(m); });
  auto sc1 = (*cc)->subscribe("news.today", [&](const ChannelMessage& m) { on_c1.add(m); });
  auto sc2 = (*cc)->subscribe("news.*", [&](const ChannelMessage& m) { on_c2.add(m); });  // overlaps
  REQUIRE((sa && sc1 && sc2));
  // Interest reaches the peers within a moment: probe until every subscriber heard one.
  REQUIRE(eventually([&] {
    (*cb)->publish("news.today", R"({"probe":true})");
    std::lock_guard la(on_a.mu), l1(on_c1.mu), l2(on_c2.mu);
    return on_a.probes > 0 && on_c1.probes > 0 && on_c2.probes > 0;
  }));
  constexpr int kCount = 500;
  for (int i = 0; i < kCount; ++i) (*cb)->publish("news.today", json::serialize(json::object{{"i", i}}));
  REQUIRE(
      eventually([&] { return on_a.size() >= kCount && on_c1.size() >= kCount && on_c2.size() >= kCount; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a duplicate would have come by now
  std::vector<std::int64_t> expected(kCount);
  for (int i = 0; i < kCount; ++i) expected[static_cast<std::size_t>(i)] = i;
  for (auto* r : {&on_a, &on_c1, &on_c2}) {
    std::lock_guard lock(r->mu);
    CHECK(r->seq == expected);  // each exactly once, in order
  }
  // Published where a subscriber is: it gets it once (no echo from the peers), and so does c.
  REQUIRE((*ca)->publish_sync("news.local", R"({"i":1000})"));
  REQUIRE(eventually([&] { return on_a.size() == kCount + 1 && on_c2.size() == kCount + 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(on_a.size() == kCount + 1);
  CHECK(on_c2.size() == kCount + 1);
  CHECK(on_c1.size() == kCount);  // news.local is not news.today
  CHECK(metric(c, "roost_mesh_channel_relayed_total") >= kCount);
  // An object's durable subscription (its node is b) hears what is published on c.
  std::string l;
  for (int i = 0; l.empty(); ++i) {
    auto n = "l" + std::to_string(i);
    if (placement(a, "listener/" + n, "object").at("home").as_string() == "b") l = n;
  }
  REQUIRE(a.http().post("/v1/objects/listener/" + l + "/messages", R"({"subscribe":"alerts.>"})").status ==
          202);
  REQUIRE(eventually([&] {
    (*cc)->publish("alerts.fire", R"({"x":1})");
    auto r = a.http().post("/v1/objects/listener/" + l + "/call", "{}");
    return r.status == 200 && !body_json(r).as_array().empty();
  }));
  // Interest leaves with the last subscriber: b stops sending to c.
  sc1->reset();
  sc2->reset();
  REQUIRE(eventually([&] {
    auto before = metric(c, "roost_mesh_channel_relayed_total");
    (*cb)->publish_sync("news.today", R"({"probe":true})");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return metric(c, "roost_mesh_channel_relayed_total") == before;
  }));
}

TEST_CASE(
    "mesh: a turn's tells and enqueues to other nodes' shards happen exactly once, across kill -9 of either side",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a", "64", "2000", "tcp://127.0.0.1:" + std::to_string(free_port())));
  Server b(mesh_args(etcd, "b", "64", "2000", "tcp://127.0.0.1:" + std::to_string(free_port())));
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }));
  auto owned_by = [&](const std::string& kind, const std::string& prefix, const std::string& node,
                      const std::string& cls = "counter") {
    for (int i = 0;; ++i) {
      auto name = prefix + std::to_string(i);
      auto p = placement(a, kind == "object" ? cls + "/" + name : name, kind);
      if (p.at("home").as_string() == node) return name;
    }
  };
  auto x = owned_by("object", "x", "a");  // the object whose turns have the effects
  auto y = owned_by("object", "y", "b");  // told by x's turns
  auto q = owned_by("queue", "q", "b");   // enqueued to by x's turns
  REQUIRE(eventually([&] { return placement(a, q).at("owner") == "b"; }));
  REQUIRE(a.put_queue(q).status == 200);
  constexpr int kTurns = 60;
  auto tell_x = [&](int i) {
    auto r = a.http().post("/v1/objects/counter/" + x + "/messages",
                           json::serialize(json::object{{"enqueue", q}, {"tell", y}, {"i", i}}));
    INFO(r.body);
    REQUIRE(r.status == 202);
  };
  for (int i = 0; i < kTurns / 3; ++i) tell_x(i);
  b.proc().stop(SIGKILL);  // the target goes away: the effects wait in a's outbox
  for (int i = kTurns / 3; i < 2 * kTurns / 3; ++i) tell_x(i);
  b.proc().start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  a.proc().stop(SIGKILL);  // the origin goes away mid-delivery: what b applied must not come twice
  a.proc().start();
  for (int i = 2 * kTurns / 3; i < kTurns; ++i) {
    REQUIRE(eventually([&] {
      auto r = a.http().post("/v1/objects/counter/" + x + "/messages",
                             json::serialize(json::object{{"enqueue", q}, {"tell", y}, {"i", i}}));
      return r.status == 202;
    }));
  }
  // y was told once per turn of x, and q got one message per turn, numbered 1..kTurns by x.
  REQUIRE(eventually(
      [&] {
        auto r = b.http().post("/v1/objects/counter/" + y + "/call", "{}");
        return r.status == 200 && body_json(r).at("n") == kTurns;
      },
      std::chrono::seconds(20)));
  std::multiset<std::int64_t> ns;
  REQUIRE(eventually([&] {
    auto r = b.pull(q, R"({"batch_size":100})");
    if (r.status != 200) return false;
    auto body = body_json(r);
    for (const auto& m : body.at("messages").as_array()) ns.insert(m.at("body").at("n").as_int64());
    return ns.size() >= kTurns;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  {
    auto more = body_json(b.pull(q, R"({"batch_size":100})"));
    for (const auto& m : more.at("messages").as_array()) ns.insert(m.at("body").at("n").as_int64());
  }
  std::multiset<std::int64_t> expected;
  for (int i = 1; i <= kTurns; ++i) expected.insert(i);
  CHECK(ns == expected);  // each once: none lost, none twice
  CHECK(body_json(b.http().post("/v1/objects/counter/" + y + "/call", "{}")).at("n") == kTurns);
  CHECK(metric(a, "roost_mesh_outbox_entries") == 0);
  CHECK(metric(a, "roost_mesh_outbox_delivered_total") > 0);

  // A call made within a turn on a goes to y on b: y is not brought to life on a (one instance).
  auto caller = owned_by("object", "c", "a", "caller");
  auto called =
      a.http().post("/v1/objects/caller/" + caller + "/call",
                    json::serialize(json::object{{"call", json::array{"counter", y, json::object{}}}}));
  INFO(called.body);
  REQUIRE(called.status == 200);
  CHECK(body_json(called).at("got").at("n") == kTurns);
  CHECK(body_json(a.http().get("/v1/objects/counter/" + y)).at("in_memory") == false);
}

TEST_CASE("mesh: a peer's effects are applied once each, whatever is sent again", "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a"));
  REQUIRE(eventually([&] { return member_names(a).size() == 1; }));
  std::string q = "inbox";
  REQUIRE(eventually([&] { return placement(a, q).at("owner") == "a"; }));
  REQUIRE(a.put_queue(q).status == 200);
  auto p = placement(a, q);
  Route route{static_cast<std::uint32_t>(p.at("shard").as_int64()), p.at("epoch").as_int64()};
  std::string mesh_of_a;
  auto status = body_json(a.http().get("/v1/mesh"));  // (named: a temporary would die in the for)
  for (const auto& m : status.at("members").as_array()) mesh_of_a = std::string(m.at("mesh").as_string());
  PeerLink link({.url = mesh_of_a});
  auto send = [&](std::vector<std::uint64_t> seqs) {
    std::vector<MeshEffect> effects;
    for (auto seq : seqs) {
      MeshEffect e;
      e.seq = seq;
      e.queue = q;
      e.message.body = json::serialize(json::object{{"seq", seq}});
      effects.push_back(std::move(e));
    }
    std::promise<Result<std::uint64_t>> done;
    link.effects(route, "z", effects, [&](Result<std::uint64_t> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  };
  auto r1 = send({1, 2, 3});
  REQUIRE(r1);
  CHECK(*r1 == 3);
  auto r2 = send({2, 3, 4});  // 2 and 3 again (their answer was "lost"), 4 new
  REQUIRE(r2);
  CHECK(*r2 == 4);
  auto r3 = send({1});
  REQUIRE(r3);
  CHECK(*r3 == 4);
  auto got = a.pull_messages(q, R"({"batch_size":100})");
  std::vector<std::int64_t> seqs;
  for (const auto& m : got) seqs.push_back(m.at("body").at("seq").as_int64());
  std::sort(seqs.begin(), seqs.end());
  CHECK(seqs == std::vector<std::int64_t>{1, 2, 3, 4});
  // A stale route is refused like any forwarded request.
  route.epoch -= 1;
  auto stale = send({5});
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code == ErrorCode::OWNER_UNAVAILABLE);
}

TEST_CASE(
    "mesh: an owner paused past its lease commits nothing it received meanwhile; acknowledged writes stay once",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server b(mesh_args(etcd, "b"));
  REQUIRE(eventually([&] { return member_names(b).size() == 1; }));
  Server a(mesh_args(etcd, "a"));
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }));
  std::string q;
  for (int i = 0; q.empty(); ++i) {
    auto name = "p" + std::to_string(i);
    if (placement(a, name).at("home").as_string() == "b") q = name;
  }
  REQUIRE(eventually([&] { return placement(a, q).at("owner") == "b"; }));
  REQUIRE(a.put_queue(q).status == 200);
  std::set<std::string> acked;
  auto send = [&](client::HttpClient& h, const std::string& body) {
    auto r = h.post("/v1/queues/" + q + "/messages", json::serialize(json::object{{"body", body}}));
    if (r.status == 201) acked.insert(body);
    return r.status;
  };
  for (int i = 0; i < 20; ++i) REQUIRE(send(a.http(), "before-" + std::to_string(i)) == 201);

  // Paused for twice the TTL (2 s): what a forwards meanwhile waits in b's socket, then a says
  // owner_unavailable. Resumed, b's lease is gone: it must refuse what waited, not commit it.
  REQUIRE(kill(b.proc().pid(), SIGSTOP) == 0);
  std::vector<int> statuses;
  std::vector<std::string> paused;
  {
    std::vector<std::thread> senders;
    std::mutex mu;
    for (int t = 0; t < 4; ++t) {
      senders.emplace_back([&, t] {
        client::HttpClient h(a.proc().url());
        for (int i = 0; i < 5; ++i) {
          auto body = "paused-" + std::to_string(t) + "-" + std::to_string(i);
          auto r = h.post("/v1/queues/" + q + "/messages", json::serialize(json::object{{"body", body}}));
          std::lock_guard lock(mu);
          statuses.push_back(r.status);
          if (r.status == 201) acked.insert(body);
          paused.push_back(body);
        }
      });
    }
    for (auto& th : senders) th.join();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(4000));
  auto during = a.send(q, R"({"body":"during"})");
  CHECK(during.status == 503);
  CHECK(body_json(during).at("error").at("code") == "owner_unavailable");
  REQUIRE(kill(b.proc().pid(), SIGCONT) == 0);
  REQUIRE(eventually([&] { return send(a.http(), "after-0") == 201; }, std::chrono::seconds(10)));
  for (int i = 1; i < 20; ++i) REQUIRE(send(a.http(), "after-" + std::to_string(i)) == 201);
  for (int st : statuses) CHECK(st != 201);  // nothing was acknowledged while b was paused
  // (What a had sent before it saw b go silent either never reached b's mesh socket — the link
  // reconnected — or was refused there: b's route check, roost_mesh_route_refused_total.)
  INFO("refused by b's route check: " << metric(b, "roost_mesh_route_refused_total"));

  std::multiset<std::string> in_queue;
  REQUIRE(eventually([&] {
    auto r = a.pull(q, R"({"batch_size":100})");
    if (r.status != 200) return false;
    auto body = body_json(r);
    auto& msgs = body.at("messages").as_array();
    for (const auto& m : msgs) in_queue.insert(std::string(m.at("body").as_string()));
    return msgs.empty();
  }));
  for (const auto& body : acked) CHECK(in_queue.count(body) == 1);   // every acknowledged write, once
  for (const auto& body : paused) CHECK(in_queue.count(body) == 0);  // fenced: none committed late
  CHECK(in_queue.size() == acked.size());
}

TEST_CASE(
    "mesh: etcd with three members — one lost changes nothing; quorum lost is reported and fences; back, all serves again",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdCluster etcd;
  std::vector<std::string> args = {"--mesh-etcd",         etcd.url(),
                                   "--mesh-cluster",      "test",
                                   "--node-name",         "a",
                                   "--mesh-lease-ttl-ms", "2000",
                                   "--mesh-listen",       "tcp://127.0.0.1:*",
                                   "--mesh-insecure",     "true"};
  Server a(args);
  REQUIRE(eventually([&] { return member_names(a) == std::vector<std::string>{"a"}; }));
  std::string q = "quorum";
  REQUIRE(eventually([&] { return placement(a, q).at("owner") == "a"; }));
  REQUIRE(a.put_queue(q).status == 200);
  REQUIRE(a.send(q, R"({"body":"one"})").status == 201);

  // One member down (the first the node talks to): the node goes on as before.
  etcd.stop(0);
  for (int i = 0; i < 6; ++i) {  // over three lease periods
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    CHECK(body_json(a.http().get("/healthz")).at("status") == "ok");
  }
  CHECK(a.send(q, R"({"body":"two"})").status == 201);

  // Quorum lost: etcd cannot renew the lease, the node says so and serves none of its shards once
  // its lease could have run out; channels (no owner needed) keep working.
  etcd.stop(1);
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "degraded"; },
                     std::chrono::seconds(15)));
  REQUIRE(
      eventually([&] { return a.send(q, R"({"body":"never"})").status == 503; }, std::chrono::seconds(10)));
  auto client = Client::connect({.url = a.proc().endpoint()});
  REQUIRE(client);
  std::atomic<int> heard{0};
  auto sub = (*client)->subscribe("alerts.>", [&](const ChannelMessage&) { heard++; });
  REQUIRE(sub);
  REQUIRE((*client)->publish_sync("alerts.etcd", R"({"quorum":false})"));
  CHECK(eventually([&] { return heard.load() == 1; }));

  // Back: the node rejoins and serves its shard again, with what it had.
  etcd.start(0);
  etcd.start(1);
  REQUIRE(eventually([&] { return body_json(a.http().get("/healthz")).at("status") == "ok"; },
                     std::chrono::seconds(30)));
  REQUIRE(
      eventually([&] { return a.send(q, R"({"body":"three"})").status == 201; }, std::chrono::seconds(10)));
  std::set<std::string> bodies;
  for (const auto& m : a.pull_messages(q, R"({"batch_size":10})"))
    bodies.insert(std::string(m.at("body").as_string()));
  CHECK(bodies == std::set<std::string>{"one", "two", "three"});
}

// Node b's arguments with its mesh socket reached only through `proxy` (a cuttable link).
std::vector<std::string> behind_proxy(const EtcdProcess& etcd, int b_port, const TcpProxy& proxy) {
  auto args = mesh_args(etcd, "b", "64", "2000", "tcp://127.0.0.1:" + std::to_string(b_port));
  args.insert(args.end(), {"--mesh-advertise", "tcp://127.0.0.1:" + std::to_string(proxy.port())});
  return args;
}

// A queue whose shard `node` owns (placed through `via`).
std::string queue_owned_by(Server& via, const std::string& node, const std::string& prefix) {
  std::string q;
  for (int i = 0; q.empty(); ++i) {
    auto name = prefix + std::to_string(i);
    if (placement(via, name).at("home").as_string() == node) q = name;
  }
  REQUIRE(eventually([&] { return placement(via, q).at("owner") == node.c_str(); }));
  return q;
}

TEST_CASE("mesh: a peer that was never reachable is down for forwarding, and is used once it is reachable",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  const int b_port = free_port();
  TcpProxy proxy(b_port);  // what a dials to reach b's mesh socket: cut before a ever does
  proxy.cut();
  Server b(behind_proxy(etcd, b_port, proxy));
  Server a(mesh_args(etcd, "a"));
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }));
  const auto q = queue_owned_by(a, "b", "far");
  REQUIRE(b.put_queue(q).status == 200);
  // a's link to b has tried for longer than its connect timeout (2 s): the shard's requests answer
  // owner_unavailable (what a client retries), not a timeout of the request waiting for the link.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto r = a.send(q, R"({"body":"never"})");
  CHECK(r.status == 503);
  CHECK(error_code(r) == "owner_unavailable");
  {
    auto st = body_json(a.http().get("/v1/mesh"));
    bool down = false;
    for (const auto& l : st.at("links").as_array())
      down = down || (l.at("node") == "b" && l.at("down").as_bool());
    CHECK(down);
  }
  proxy.restore();
  REQUIRE(eventually([&] { return a.send(q, R"({"body":"now"})").status == 201; }, std::chrono::seconds(10)));
  auto got = b.pull_messages(q, R"({"batch_size":10})");
  REQUIRE(got.size() == 1);
  CHECK(got[0].at("body") == "now");
}

TEST_CASE(
    "mesh: a cut link between two live nodes: the far side's shards answer owner_unavailable there, are served at home, and come back",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  const int b_port = free_port();
  TcpProxy proxy(b_port);  // what a dials to reach b's mesh socket
  Server b(behind_proxy(etcd, b_port, proxy));
  Server a(mesh_args(etcd, "a"));
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }));
  const auto q = queue_owned_by(a, "b", "cut");
  REQUIRE(a.put_queue(q).status == 200);
  std::set<std::string> acked;
  auto send = [&](Server& via, const std::string& body) {
    auto r = via.send(q, json::serialize(json::object{{"body", body}}));
    if (r.status == 201) acked.insert(body);
    return r;
  };
  REQUIRE(send(a, "through-1").status == 201);

  proxy.cut();
  // a cannot reach b: once its link says so, b's shards answer owner_unavailable on a…
  REQUIRE(eventually(
      [&] {
        auto r = send(a, "cut-" + std::to_string(acked.size()));
        return r.status == 503 && body_json(r).at("error").at("code") == "owner_unavailable";
      },
      std::chrono::seconds(10)));
  // …while b, alive and owning them, serves them to its own clients.
  REQUIRE(send(b, "at-home").status == 201);

  proxy.restore();
  REQUIRE(eventually([&] { return send(a, "through-2").status == 201; }, std::chrono::seconds(10)));
  std::multiset<std::string> in_queue;
  REQUIRE(eventually([&] {
    auto r = b.pull(q, R"({"batch_size":100})");
    if (r.status != 200) return false;
    auto body = body_json(r);
    auto& msgs = body.at("messages").as_array();
    for (const auto& m : msgs) in_queue.insert(std::string(m.at("body").as_string()));
    return msgs.empty();
  }));
  for (const auto& body : acked) CHECK(in_queue.count(body) == 1);  // nothing acknowledged lost or doubled
  CHECK(in_queue.count("through-2") == 1);
  CHECK(in_queue.count("at-home") == 1);
}

// What one subscriber saw of a channel: (epoch, offset, data) in arrival order.
struct Sequence {
  std::mutex mu;
  std::vector<std::tuple<std::string, std::uint64_t, std::string>> got;
  void add(const ChannelMessage& m) {
    std::lock_guard lock(mu);
    got.emplace_back(m.epoch, m.offset, m.data);
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return got.size();
  }
};

TEST_CASE(
    "mesh: publishers on three nodes, one order per channel — the same epoch, offsets and order at every subscriber; resume on another node",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  // Room for the whole run in a subscriber's buffer: relayed copies arrive in bursts, and a
  // subscriber that falls behind loses messages by design (at most once, counted as lag).
  auto nodes =
      start_mesh(etcd, {"a", "b", "c"}, {"--channel-history", "1000", "--channel-buffer-messages", "8192"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  std::map<std::string, std::shared_ptr<Client>> clients;
  for (auto* n : {&a, &b, &c}) {
    auto cl = Client::connect({.url = n->proc().endpoint()});
    REQUIRE(cl);
    clients[n == &a ? "a" : n == &b ? "b" : "c"] = std::move(*cl);
  }
  Sequence on_a, on_b, on_c;
  std::atomic<std::uint64_t> lagged{0};
  SubscribeOptions lag;
  lag.on_lag = [&](std::uint64_t n) { lagged += n; };
  auto sa = clients["a"]->subscribe(
      "chat.>", [&](const ChannelMessage& m) { on_a.add(m); }, lag);
  auto sb = clients["b"]->subscribe(
      "chat.room", [&](const ChannelMessage& m) { on_b.add(m); }, lag);
  auto sc = clients["c"]->subscribe(
      "chat.room", [&](const ChannelMessage& m) { on_c.add(m); }, lag);
  REQUIRE((sa && sb && sc));
  // Interest reaches every node (probes from each publisher's node).
  REQUIRE(eventually([&] {
    for (auto& [n, cl] : clients) cl->publish("chat.room", R"({"probe":true})");
    return on_a.size() >= 3 && on_b.size() >= 3 && on_c.size() >= 3;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::size_t probes_a = on_a.size(), probes_b = on_b.size(), probes_c = on_c.size();

  // Three publishers at once, one per node, to one channel.
  constexpr int kEach = 400;
  {
    std::vector<std::thread> pubs;
    for (auto& [n, cl] : clients) {
      pubs.emplace_back([&, name = n, client = cl.get()] {
        for (int i = 0; i < kEach; ++i)
          client->publish("chat.room", json::serialize(json::object{{"from", name}, {"i", i}}));
      });
    }
    for (auto& t : pubs) t.join();
  }
  auto all_there = eventually([&] {
    return on_a.size() >= probes_a + 3 * kEach && on_b.size() >= probes_b + 3 * kEach &&
           on_c.size() >= probes_c + 3 * kEach;
  });
  INFO("received a " << on_a.size() - probes_a << ", b " << on_b.size() - probes_b << ", c "
                     << on_c.size() - probes_c << "; lagged " << lagged.load() << "; peer links lagged "
                     << metric(a, "roost_mesh_channel_lagged_total") +
                            metric(b, "roost_mesh_channel_lagged_total") +
                            metric(c, "roost_mesh_channel_lagged_total")
                     << "; unroutable "
                     << metric(a, "roost_mesh_publishes_unroutable_total") +
                            metric(b, "roost_mesh_publishes_unroutable_total") +
                            metric(c, "roost_mesh_publishes_unroutable_total"));
  REQUIRE(all_there);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a duplicate would have come by now
  auto tail = [](Sequence& s, std::size_t from) {
    std::lock_guard lock(s.mu);
    return std::vector(s.got.begin() + static_cast<std::ptrdiff_t>(from), s.got.end());
  };
  auto seq_a = tail(on_a, probes_a), seq_b = tail(on_b, probes_b), seq_c = tail(on_c, probes_c);
  REQUIRE(seq_a.size() == 3 * kEach);
  CHECK(seq_b == seq_a);  // the same messages, numbers and order everywhere
  CHECK(seq_c == seq_a);
  std::map<std::string, int> next;
  for (std::size_t k = 0; k < seq_a.size(); ++k) {
    const auto& [epoch, offset, data] = seq_a[k];
    CHECK(epoch == std::get<0>(seq_a[0]));
    if (k > 0) CHECK(offset == std::get<1>(seq_a[k - 1]) + 1);  // no gap, no duplicate
    auto v = json::parse(data);
    auto from = std::string(v.at("from").as_string());
    CHECK(v.at("i").as_int64() == next[from]++);  // each publisher's order kept
  }
  CHECK(metric(a, "roost_mesh_publishes_forwarded_total") +
            metric(b, "roost_mesh_publishes_forwarded_total") +
            metric(c, "roost_mesh_publishes_forwarded_total") >=
        2 * kEach);  // two of the three publishers were not on the home

  // An answered publish (HTTP) on each node: its offset is the one the subscribers see.
  for (auto* n : {&a, &b, &c}) {
    auto r = n->http().post("/v1/channels/chat.room/publish", R"({"answered":true})");
    INFO(r.body);
    REQUIRE(r.status == 200);
    auto ans = body_json(r);
    REQUIRE(eventually([&] {
      std::lock_guard lock(on_c.mu);
      return !on_c.got.empty() &&
             std::get<1>(on_c.got.back()) == static_cast<std::uint64_t>(ans.at("offset").as_int64());
    }));
    std::lock_guard lock(on_c.mu);
    CHECK(std::get<0>(on_c.got.back()) == ans.at("epoch").as_string().c_str());
  }
  // The same over a browser's WebSocket: a publish with an id is answered with the home's offset.
  for (auto* n : {&a, &b, &c}) {
    WsClient ws(n->proc().port());
    ws.send(json::object{{"op", "publish"}, {"id", 9}, {"channel", "chat.room"}, {"data", "ws"}});
    auto ok = ws.expect("ok");
    CHECK(ok.at("id") == 9);
    const auto off = static_cast<std::uint64_t>(ok.at("offset").as_int64());
    REQUIRE(eventually([&] {
      std::lock_guard lock(on_c.mu);
      return !on_c.got.empty() && std::get<1>(on_c.got.back()) == off;
    }));
    std::lock_guard lock(on_c.mu);
    CHECK(std::get<0>(on_c.got.back()) == ok.at("epoch").as_string().c_str());
    CHECK(std::get<2>(on_c.got.back()) == "\"ws\"");
  }

  // Resume on another node: a client that saw up to some offset on c continues on a (which kept
  // the channel's history under the home's numbers) and gets exactly what it missed.
  auto [epoch, offset, data] = seq_c[seq_c.size() - 11];
  Sequence resumed;
  SubscribeOptions o;
  o.since = std::pair{epoch, offset};
  auto sr = clients["a"]->subscribe(
      "chat.room", [&](const ChannelMessage& m) { resumed.add(m); }, o);
  REQUIRE(sr);
  REQUIRE(eventually([&] { return resumed.size() >= 10 + 3; }));  // 10 of the run + 3 answered
  {
    std::lock_guard lock(resumed.mu);
    for (std::size_t k = 0; k < 10; ++k) CHECK(resumed.got[k] == seq_c[seq_c.size() - 10 + k]);
  }

  // Presence counts the whole mesh, the same on every node: chat.> on a, chat.room on b and c, and
  // the resumed chat.room on a (peers' interest is not counted).
  for (auto* n : {&a, &b, &c}) {
    auto p = body_json(n->http().get("/v1/channels/chat.room/presence"));
    CHECK(p.at("subscribers") == 4);
    CHECK(p.at("direct") == 3);
  }

  // A channel nobody listens to: its namespace keeps history, so every node keeps it (the home
  // sends it to all), and a client resumes on each node — whichever node published.
  std::vector<json::value> answers;
  for (int i = 0; i < 5; ++i) {
    auto* via = i % 2 == 0 ? &a : &b;
    auto r = via->http().post("/v1/channels/quiet.room/publish", json::serialize(json::object{{"q", i}}));
    REQUIRE(r.status == 200);
    answers.push_back(body_json(r));
  }
  CHECK(answers[4].at("offset").as_int64() == answers[0].at("offset").as_int64() + 4);
  for (auto& [name, cl] : clients) {
    Sequence got;
    SubscribeOptions so;
    so.since = std::pair{std::string(answers[1].at("epoch").as_string()),
                         static_cast<std::uint64_t>(answers[1].at("offset").as_int64())};
    INFO("resume on " << name);
    REQUIRE(eventually([&] {
      auto s = cl->subscribe(
          "quiet.room", [&](const ChannelMessage& m) { got.add(m); }, so);
      if (!s) return false;
      bool ok = eventually([&] { return got.size() >= 3; }, std::chrono::milliseconds(500));
      (*s)->cancel();
      if (!ok) {
        std::lock_guard lock(got.mu);
        got.got.clear();
      }
      return ok;
    }));
    std::lock_guard lock(got.mu);
    REQUIRE(got.got.size() == 3);
    for (int k = 0; k < 3; ++k) {
      CHECK(std::get<1>(got.got[static_cast<std::size_t>(k)]) ==
            static_cast<std::uint64_t>(answers[static_cast<std::size_t>(k + 2)].at("offset").as_int64()));
      CHECK(json::parse(std::get<2>(got.got[static_cast<std::size_t>(k)])).at("q") == k + 2);
    }
  }
}

// Producers and a consumer over HTTP on a set of queues, for the tests that change the mesh under
// load: what the nodes acknowledged, and every copy the consumer got. Bounded: at most `max_sends`
// per producer, and everything stops at finish().
struct QueueLoad {
  std::vector<std::string> queues;
  int max_sends = 4000;
  int send_attempts = 1;  // more: a refused send (owner_unavailable) goes again after 20 ms, as the SDK's
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::set<std::string> acked;
  std::multiset<std::string> consumed;
  std::atomic<int> refused{0}, lost_sends{0};
  std::vector<std::thread> threads;

  ~QueueLoad() { finish(); }
  void produce(std::string url, std::string tag) {
    threads.emplace_back([this, url, tag] {
      client::HttpClient h(url);
      for (int i = 0; i < max_sends && !stop; ++i) {
        const auto& q = queues[static_cast<std::size_t>(i) % queues.size()];
        auto body = tag + std::to_string(i);
        bool ok = false;
        for (int attempt = 0; attempt < send_attempts && !ok; ++attempt) {
          auto r = h.post("/v1/queues/" + q + "/messages", json::serialize(json::object{{"body", body}}));
          ok = r.status == 201;
          if (!ok) {
            refused += 1;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        }
        if (!ok) {
          lost_sends += 1;
          continue;
        }
        std::lock_guard lock(mu);
        acked.insert(body);
      }
    });
  }
  // One pull (and ack) of up to 100 from each queue: how many came.
  std::size_t drain_once(client::HttpClient& h) {
    std::size_t got = 0;
    for (const auto& q : queues) {
      auto r = h.post("/v1/queues/" + q + "/messages/pull", R"({"batch_size":100})");
      if (r.status != 200) continue;
      auto body = json::parse(r.body);
      json::array acks;
      for (const auto& m : body.at("messages").as_array()) {
        std::lock_guard lock(mu);
        consumed.insert(std::string(m.at("body").as_string()));
        acks.push_back(json::object{{"lease_id", m.at("lease_id")}});
        ++got;
      }
      if (!acks.empty())
        h.post("/v1/queues/" + q + "/messages/ack", json::serialize(json::object{{"acks", acks}}));
    }
    return got;
  }
  void consume(std::string url) {
    threads.emplace_back([this, url] {
      client::HttpClient h(url);
      for (int round = 0; round < 100'000 && !stop; ++round) {
        if (drain_once(h) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  void finish() {
    stop = true;
    for (auto& t : threads) t.join();
    threads.clear();
  }
  // Every acknowledged message was consumed (at least once).
  bool all_consumed() {
    std::lock_guard lock(mu);
    return std::all_of(acked.begin(), acked.end(),
                       [&](const std::string& x) { return consumed.contains(x); });
  }
};

TEST_CASE(
    "mesh: a fourth node joins under producers and consumers — nothing acknowledged lost, existing shards stay, new ones reach it",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b", "c"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  QueueLoad load;
  std::map<std::string, json::value> before;  // placement of each queue before the join
  for (int i = 0; i < 8; ++i) {
    auto q = "j" + std::to_string(i);
    REQUIRE(a.put_queue(q, R"({"visibility_timeout_ms":30000})").status == 200);
    before[q] = placement(a, q);
    load.queues.push_back(q);
  }
  // Two producers (through a and b) and a consumer (through c) run while d joins.
  // A subscriber on c (held across the join) for channels whose home may become the newcomer.
  auto sub_c = Client::connect({.url = c.proc().endpoint()});
  REQUIRE(sub_c);
  Sequence feed;
  auto feed_sub = (*sub_c)->subscribe("feed.>", [&](const ChannelMessage& m) { feed.add(m); });
  REQUIRE(feed_sub);
  load.produce(a.proc().url(), "a-");
  load.produce(b.proc().url(), "b-");
  load.consume(c.proc().url());
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  Server d(mesh_args(etcd, "d"));
  REQUIRE(eventually([&] {
    return member_names(a).size() == 4 && member_names(b).size() == 4 && member_names(c).size() == 4 &&
           member_names(d).size() == 4;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // load goes on with four members
  load.finish();
  CHECK(load.refused == 0);  // the join interrupted nothing

  // Existing shards did not move: same home, owner and epoch, seen from the newcomer too.
  for (const auto& [q, p] : before) {
    auto now = placement(d, q);
    CHECK(now.at("home") == p.at("home"));
    CHECK(now.at("owner") == p.at("owner"));
    CHECK(now.at("epoch") == p.at("epoch"));
  }
  // Every acknowledged message is there to consume (drained through the newcomer).
  {
    client::HttpClient h(d.proc().url());
    REQUIRE(eventually([&] {
      load.drain_once(h);
      return load.all_consumed();
    }));
  }
  INFO("acknowledged " << load.acked.size() << ", consumed " << load.consumed.size());
  CHECK(load.acked.size() > 100);
  // New shards are homed on the newcomer too, and it serves them to any node.
  std::string on_d;
  for (int i = 0; on_d.empty() && i < 500; ++i) {
    auto q = "new" + std::to_string(i);
    if (placement(a, q).at("home").as_string() == "d") on_d = q;
  }
  REQUIRE_FALSE(on_d.empty());
  REQUIRE(eventually([&] { return placement(b, on_d).at("owner") == "d"; }));
  REQUIRE(b.send(on_d, R"({"body":"to-d"})").status == 201);
  auto got = c.pull_messages(on_d);
  REQUIRE(got.size() == 1);
  CHECK(got[0].at("body") == "to-d");

  // Channels whose home is now the newcomer: published on a, sequenced on d, heard on c (whose
  // interest reached d when it joined) in order, once.
  std::string feed_ch;
  for (int i = 0; feed_ch.empty() && i < 200; ++i) {
    auto ch = "feed.c" + std::to_string(i);
    auto r = a.http().get("/v1/mesh?channel=" + ch);
    REQUIRE(r.status == 200);
    if (body_json(r).at("home") == "d") feed_ch = ch;
  }
  REQUIRE_FALSE(feed_ch.empty());
  auto pub = Client::connect({.url = a.proc().endpoint()});
  REQUIRE(pub);
  std::vector<std::uint64_t> offsets;
  for (int i = 0; i < 20; ++i) {
    auto r = (*pub)->publish_sync(feed_ch, json::serialize(json::object{{"i", i}}));
    REQUIRE(r);
    offsets.push_back(r->offset);
  }
  REQUIRE(eventually([&] { return feed.size() >= 20; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::lock_guard lock(feed.mu);
  REQUIRE(feed.got.size() == 20);
  for (std::size_t i = 0; i < 20; ++i) {
    CHECK(std::get<1>(feed.got[i]) == offsets[i]);  // d's numbers
    CHECK(json::parse(std::get<2>(feed.got[i])).at("i") == static_cast<std::int64_t>(i));
  }
  CHECK(metric(d, "roost_mesh_channel_relayed_total") == 0);  // d sequenced them: nothing came to it
}

TEST_CASE("mesh: join and leave events reach every node's subscribers with the whole mesh's count",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b", "c"}, {"--channel-namespaces", "room.:join_leave=true"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  struct Events {
    std::mutex mu;
    std::vector<std::pair<std::string, std::uint64_t>> got;  // ("join"/"leave", subscribers)
    std::size_t messages = 0;
    std::vector<std::pair<std::string, std::uint64_t>> seen() {
      std::lock_guard lock(mu);
      return got;
    }
  };
  auto watch = [](Client& cl, const std::string& pattern, Events& ev) {
    SubscribeOptions o;
    o.on_presence = [&ev](const ChannelMessage& m) {
      std::lock_guard lock(ev.mu);
      ev.got.emplace_back(m.kind == ChannelEventKind::kJoin ? "join" : "leave", m.subscribers);
    };
    return cl.subscribe(
        pattern,
        [&ev](const ChannelMessage&) {
          std::lock_guard lock(ev.mu);
          ++ev.messages;
        },
        o);
  };
  auto ca = Client::connect({.url = a.proc().endpoint()});
  auto cb = Client::connect({.url = b.proc().endpoint()});
  auto cc = Client::connect({.url = c.proc().endpoint()});
  REQUIRE((ca && cb && cc));
  Events on_a, on_b, on_c, on_w;
  auto sa = watch(**ca, "room.x", on_a);
  REQUIRE(sa);
  auto sw = watch(**cc, "room.>", on_w);  // a wildcard watcher on c: hears events, is no member
  REQUIRE(sw);
  // Interest in room.x from a and c reached every node: a publish from b is heard on both.
  REQUIRE(eventually([&] {
    (*cb)->publish("room.x", "{}");
    std::lock_guard la(on_a.mu), lw(on_w.mu);
    return on_a.messages > 0 && on_w.messages > 0;
  }));
  using E = std::vector<std::pair<std::string, std::uint64_t>>;
  // b joins: a (another node) hears it, with the mesh's count; so does the watcher on c.
  auto sb = watch(**cb, "room.x", on_b);
  REQUIRE(sb);
  REQUIRE(eventually([&] { return on_a.seen().size() >= 1 && on_w.seen().size() >= 1; }));
  CHECK(on_a.seen() == E{{"join", 2}});
  // c joins: a and b hear it (3 in the room over three nodes); c does not hear its own join.
  auto sc = watch(**cc, "room.x", on_c);
  REQUIRE(sc);
  REQUIRE(eventually([&] { return on_a.seen().size() >= 2 && on_b.seen().size() >= 1; }));
  CHECK(on_a.seen() == E{{"join", 2}, {"join", 3}});
  CHECK(on_b.seen() == E{{"join", 3}});
  // b leaves: a and c hear it with 2 left.
  (*sb)->cancel();
  REQUIRE(eventually([&] { return on_a.seen().size() >= 3 && on_c.seen().size() >= 1; }));
  CHECK(on_a.seen() == E{{"join", 2}, {"join", 3}, {"leave", 2}});
  CHECK(on_c.seen() == E{{"leave", 2}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // nothing twice
  CHECK(on_a.seen().size() == 3);
  CHECK(on_w.seen() == E{{"join", 2}, {"join", 3}, {"leave", 2}});
  // The count query agrees (HTTP and the native request, on every node).
  for (auto* n : {&a, &b, &c})
    CHECK(body_json(n->http().get("/v1/channels/room.x/presence")).at("direct") == 2);
  for (auto* cl : {&*ca, &*cb, &*cc}) {
    auto p = (*cl)->presence("room.x");
    REQUIRE(p);
    CHECK(p->direct == 2);
    CHECK(p->subscribers == 3);  // and c's wildcard watcher
  }

  // A fourth node joins and becomes the home of a busy channel: the nodes report their counts to
  // it, so its first event already counts the whole mesh.
  std::string moved;
  for (int i = 0; moved.empty() && i < 1000; ++i) {
    auto ch = "room.m" + std::to_string(i);
    if (broker::Mesh::channel_home({"a", "b", "c", "d"}, ch) == "d") moved = ch;
  }
  REQUIRE_FALSE(moved.empty());
  Events m_a, m_b, m_c;
  auto ma = watch(**ca, moved, m_a);
  REQUIRE(ma);
  REQUIRE(eventually([&] {  // a's interest in it reached every node
    (*cb)->publish(moved, "{}");
    std::lock_guard lock(m_a.mu);
    return m_a.messages > 0;
  }));
  auto mb = watch(**cb, moved, m_b);
  REQUIRE(mb);
  REQUIRE(eventually([&] { return m_a.seen().size() >= 1; }));  // b's join, before the move
  CHECK(m_a.seen() == E{{"join", 2}});
  auto dargs = mesh_args(etcd, "d");
  dargs.insert(dargs.end(), {"--channel-namespaces", "room.:join_leave=true"});
  Server d(dargs);
  REQUIRE(eventually([&] {
    return member_names(a).size() == 4 && member_names(b).size() == 4 && member_names(c).size() == 4 &&
           member_names(d).size() == 4;
  }));
  REQUIRE(eventually([&] { return body_json(c.http().get("/v1/mesh?channel=" + moved)).at("home") == "d"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // reports and interest reach d
  auto mc = watch(**cc, moved, m_c);
  REQUIRE(mc);
  REQUIRE(eventually([&] { return m_a.seen().size() >= 2 && m_b.seen().size() >= 1; }));
  CHECK(m_a.seen() == E{{"join", 2}, {"join", 3}});  // d counted a and b, which joined before it
  CHECK(m_b.seen() == E{{"join", 3}});
}

// The name of an object of `cls` whose shard `owner` owns (placed through `via`).
std::string object_owned_by(Server& via, const std::string& cls, const std::string& owner,
                            const std::string& prefix) {
  for (int i = 0; i < 500; ++i) {
    auto name = prefix + std::to_string(i);
    if (placement(via, cls + "/" + name, "object").at("home").as_string() != owner) continue;
    REQUIRE(
        eventually([&] { return placement(via, cls + "/" + name, "object").at("owner") == owner.c_str(); }));
    return name;
  }
  FAIL("no object of " << cls << " homed on " << owner);
  return {};
}

json::value object_call(Server& s, const std::string& path, const std::string& body = "{}") {
  auto r = s.http().post("/v1/objects/" + path + "/call", body);
  INFO(r.body);
  REQUIRE(r.status == 200);
  return body_json(r);
}

TEST_CASE(
    "mesh: a WebSocket on any node attaches to an object on its owner — frames both ways, close codes, hibernation, and a lost link or node",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b", "c"}, {"--actor-idle-ms", "150"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  const std::string obj = object_owned_by(a, "counter", "c", "ws");
  const std::string path = "/v1/objects/counter/" + obj + "/connect";

  // Browsers on a and b (not the owner) and on c (the owner): on_connect runs on c for each.
  WsClient red(a.proc().port(), WsOptions{path + "?tag=red"});
  CHECK(red.recv()->at("hello").as_int64() == 0);
  WsClient blue(b.proc().port(), WsOptions{path + "?tag=blue"});
  CHECK(blue.recv()->at("hello").as_int64() == 0);
  WsClient green(c.proc().port(), WsOptions{path + "?tag=green"});
  CHECK(green.recv()->at("hello").as_int64() == 0);
  CHECK(object_call(c, "counter/" + obj, R"({"sockets":""})").as_array().size() == 3);
  CHECK(metric(c, "roost_mesh_peer_object_sockets") == 2);
  CHECK(metric(a, "roost_mesh_sockets_forwarded_total") == 1);

  // The object's outputs reach every socket, wherever the browser is; a browser's frame on a
  // runs a turn on c.
  REQUIRE(b.http().post("/v1/objects/counter/" + obj + "/messages", "{}").status == 202);
  for (auto* ws : {&red, &blue, &green}) CHECK(ws->recv()->at("n").as_int64() == 1);
  for (int i = 2; i <= 20; ++i) {
    red.send("inc");
    for (auto* ws : {&red, &blue, &green}) CHECK(ws->recv()->at("n").as_int64() == i);  // in order
  }
  blue.send("whoami");
  CHECK(blue.recv()->at("attachment") == "tag=blue");
  auto tagged = object_call(a, "counter/" + obj, R"({"sockets":"red"})");
  REQUIRE(tagged.as_array().size() == 1);
  CHECK(tagged.at(0) == "tag=red");

  // Hibernation on the owner keeps the sockets where they are; a frame wakes the object.
  REQUIRE(eventually([&] { return metric(c, "roost_actor_hibernations_total") >= 1; }));
  CHECK_FALSE(body_json(c.http().get("/v1/objects/counter/" + obj)).at("active").as_bool());
  red.send("inc");
  for (auto* ws : {&red, &blue, &green}) CHECK(ws->recv()->at("n").as_int64() == 21);

  // The object closes b's browser with its own code; the others hear it (the code went c → b →
  // browser, and the close came back to c's on_close).
  blue.send("bye");
  CHECK(blue.wait_closed() == 4000);
  CHECK(red.recv()->at("left").as_int64() == 4000);
  CHECK(green.recv()->at("left").as_int64() == 4000);
  REQUIRE(eventually([&] { return metric(c, "roost_mesh_peer_object_sockets") == 1; }));

  // A browser's close code and reason reach on_disconnect on the owner; a dropped connection is 1006.
  const std::string kv = object_owned_by(a, "kvlist", "c", "kv");
  auto left = [&] {
    auto l = object_call(c, "kvlist/" + kv).at("left").as_string();
    return l.empty() ? json::value() : json::parse(l);
  };
  auto kv_sockets = [&] {
    return body_json(c.http().get("/v1/objects/kvlist/" + kv)).at("sockets").as_int64();
  };
  {
    WsClient alice(a.proc().port(), WsOptions{"/v1/objects/kvlist/" + kv + "/connect?alice"});
    REQUIRE(eventually([&] { return kv_sockets() == 1; }));
    // What on_connect saw on c came from the browser's request on a.
    auto seen = json::parse(object_call(c, "kvlist/" + kv).at("connected").as_string());
    CHECK(seen.at("path").as_string() == "/v1/objects/kvlist/" + kv + "/connect");
    CHECK(seen.at("client").as_string().starts_with("127.0.0.1"));
    alice.close(4001, "gone home");
  }
  REQUIRE(eventually([&] { return !left().is_null(); }));
  CHECK(left().at("tag") == "user:alice");
  CHECK(left().at("code") == 4001);
  CHECK(left().at("reason") == "gone home");
  CHECK(left().at("clean") == true);

  // On_connect's refusal on the owner is the browser's answer on a.
  {
    WsOptions o{path + "?deny=1"};
    CHECK_THROWS(WsClient(a.proc().port(), o));
  }

  // The node a browser is on dies: the owner's object hears 1006 for that socket.
  {
    WsClient bob(b.proc().port(), WsOptions{"/v1/objects/kvlist/" + kv + "/connect?bob"});
    REQUIRE(eventually([&] { return kv_sockets() == 1; }));
    b.proc().stop(SIGKILL);
    REQUIRE(eventually([&] { return left().at("tag") == "user:bob"; }, std::chrono::seconds(10)));
    CHECK(left().at("code") == 1006);
    bob.drop();
  }

  // The owner dies: browsers on other nodes are closed with 1012 (service restart: reconnect),
  // once the link says it is gone; after the owner is back, a new socket attaches again.
  c.proc().stop(SIGKILL);
  CHECK(red.wait_closed(10'000) == 1012);
  CHECK(metric(a, "roost_mesh_socket_link_losses_total") == 1);
  c.proc().start();
  REQUIRE(eventually(
      [&] {
        try {
          WsClient again(a.proc().port(), WsOptions{path + "?tag=again"});
          return again.recv()->at("hello").as_int64() == 21;
        } catch (const std::exception&) {
          return false;
        }
      },
      std::chrono::seconds(15)));
}

// A shard move through POST /v1/mesh/moves on the owner, until it ends: the move's status.
json::value move_shard(Server& owner, std::uint32_t shard, const std::string& to) {
  auto r = owner.http().post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", to}}));
  INFO(r.body);
  REQUIRE(r.status == 202);
  auto id = std::string(body_json(r).at("id").as_string());
  json::value last;
  REQUIRE(eventually(
      [&] {
        auto moves = body_json(owner.http().get("/v1/mesh/moves"));
        for (const auto& m : moves.at("moves").as_array()) {
          if (m.at("id") != id.c_str()) continue;
          last = m;
          return m.at("state") == "done" || m.at("state") == "failed";
        }
        return false;
      },
      std::chrono::seconds(60)));
  return last;
}

std::string run_roost(const std::string& args, int* status) {
  std::string cmd = std::string(ROOST_BINARY) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  *status = WEXITSTATUS(pclose(p));
  return out;
}

TEST_CASE(
    "mesh: a shard moves to another node with its messages — order, attempts, delays, keys, dedup — under a new "
    "epoch, and the source keeps no copy",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b", "c"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  const std::string q = queue_owned_by(a, "a", "mv");
  REQUIRE(b.put_queue(q, R"({"visibility_timeout_ms":60000,"dedup_window_ms":600000})").status == 200);
  // 200 plain messages (through b: forwarded), one delayed by a minute, one with a producer id,
  // three with an ordering key.
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    auto r = b.send(q, json::serialize(json::object{{"body", "m" + std::to_string(i)}}));
    REQUIRE(r.status == 201);
    ids.emplace_back(body_json(r).at("ids").at(0).as_string());
  }
  REQUIRE(b.send(q, R"({"body":"late","delay_ms":60000})").status == 201);
  auto first = b.send(q, R"({"body":"once","id":"producer-1"})");
  REQUIRE(first.status == 201);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(
        b.send(q, json::serialize(json::object{{"body", "k" + std::to_string(i)}, {"key", "k"}})).status ==
        201);
  }
  // Five leased (not acked) when the move starts: their leases are void after it.
  auto leased = c.pull_messages(q, R"({"batch_size":5})");
  REQUIRE(leased.size() == 5);
  const auto before = placement(c, q);
  const auto shard = before.at("shard").to_number<std::uint32_t>();

  SECTION("moved") {
    // An SDK push consumer (through c) of another queue of the shard keeps consuming across the
    // move: its stream, ended with owner_unavailable when the shard closes, is opened again.
    std::string qc;
    for (int i = 0; qc.empty(); ++i) {
      auto n = "mvc" + std::to_string(i);
      if (shard_of_queue(n, 64) == shard) qc = n;
    }
    REQUIRE(a.put_queue(qc).status == 200);
    auto consumer = Client::connect({.url = c.proc().endpoint()});
    REQUIRE(consumer);
    std::mutex cmu;
    std::vector<std::string> consumed;
    std::atomic<int> consumer_errors{0};
    ConsumeOptions copts;
    copts.on_error = [&](const Error&) { consumer_errors += 1; };
    auto stream = (*consumer)->consume(
        qc,
        [&](const Delivery& d) {
          d.ack();
          std::lock_guard lock(cmu);
          consumed.push_back(d.message.body);
        },
        copts);
    REQUIRE(stream);
    REQUIRE(b.send(qc, R"({"body":"before"})").status == 201);
    REQUIRE(eventually([&] {
      std::lock_guard lock(cmu);
      return consumed.size() == 1;
    }));

    auto m = move_shard(a, shard, "b");
    INFO(json::serialize(m));
    REQUIRE(m.at("state") == "done");
    CHECK(m.at("queues") == 2);
    REQUIRE(eventually([&] { return placement(c, qc).at("owner") == "b"; }));
    REQUIRE(a.send(qc, R"({"body":"after"})").status == 201);
    REQUIRE(eventually([&] {
      std::lock_guard lock(cmu);
      return consumed.size() == 2;
    }));
    CHECK(consumed.back() == R"("after")");  // the body as JSON text
    CHECK(consumer_errors == 0);
    CHECK(m.at("messages") == 205);
    CHECK(m.at("bytes").to_number<std::int64_t>() > 0);
    // Home and owner b, under a new epoch, seen from every node.
    for (Server* s : {&a, &b, &c}) {
      REQUIRE(eventually([&] {
        auto p = placement(*s, q);
        return p.at("home") == "b" && p.at("owner") == "b" &&
               p.at("epoch").to_number<std::int64_t>() > before.at("epoch").to_number<std::int64_t>();
      }));
    }
    // One copy only: the mesh's queue list has it once (a deleted its own).
    auto listed = body_json(c.http().get("/v1/queues"));
    int copies = 0;
    for (const auto& x : listed.at("queues").as_array()) copies += x.at("name") == q.c_str();
    CHECK(copies == 1);
    auto info = body_json(a.http().get("/v1/queues/" + q));
    CHECK(info.at("stats").at("messages") == 205);
    CHECK(info.at("stats").at("delayed") == 1);
    CHECK(info.at("stats").at("blocked") == 2);
    // The producer id still deduplicates.
    REQUIRE(a.send(q, R"({"body":"once","id":"producer-1"})").status == 201);
    // Everything, in order: the five once leased first (visible again, a second attempt), then
    // the rest; the keyed ones one at a time; the delayed one not yet.
    std::vector<std::string> bodies;
    std::map<std::string, std::int64_t> attempts;
    for (int round = 0; round < 10; ++round) {
      auto got = c.pull_messages(q, R"({"batch_size":100})");
      if (got.empty()) break;
      json::array acks;
      for (const auto& x : got) {
        bodies.emplace_back(x.at("body").as_string());
        attempts[std::string(x.at("body").as_string())] = x.at("attempts").as_int64();
        acks.push_back(json::object{{"lease_id", x.at("lease_id")}});
      }
      REQUIRE(c.ack(q, json::serialize(json::object{{"acks", acks}})).status == 200);
    }
    std::vector<std::string> want;
    for (int i = 0; i < 200; ++i) want.push_back("m" + std::to_string(i));
    want.push_back("once");
    for (int i = 0; i < 3; ++i) want.push_back("k" + std::to_string(i));
    CHECK(bodies == want);  // k1 and k2 came in later pulls, each after the previous one's ack
    for (int i = 0; i < 5; ++i) CHECK(attempts["m" + std::to_string(i)] == 2);
    CHECK(attempts["m5"] == 1);
    auto after = body_json(b.http().get("/v1/queues/" + q));
    CHECK(after.at("stats").at("messages") == 1);  // the delayed one
    CHECK(after.at("stats").at("deduplicated").to_number<std::int64_t>() >= 1);
    // a no longer owns it: moving it from a is refused; the metrics count the move.
    auto again =
        a.http().post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", "c"}}));
    CHECK(again.status == 409);
    CHECK(metric(a, "roost_mesh_moves_out_total") == 1);
    CHECK(metric(b, "roost_mesh_moves_in_total") == 1);
    // And back, with the CLI: the shard returns to a (closed there since it left) and serves.
    int status = 0;
    auto out = run_roost("mesh move " + std::to_string(shard) + " --to a --url " + c.proc().url(), &status);
    INFO(out);
    CHECK(status == 0);
    CHECK(out.find(R"("state":"done")") != std::string::npos);
    REQUIRE(eventually([&] { return placement(c, q).at("owner") == "a"; }));
    REQUIRE(b.send(q, R"({"body":"back"})").status == 201);
    auto back = c.pull_messages(q, R"({"batch_size":10})");
    REQUIRE(back.size() == 1);
    CHECK(back[0].at("body") == "back");
  }
  SECTION("refused") {
    CHECK(a.http().post("/v1/mesh/moves", R"({"shard":1,"to":"nobody"})").status == 404);
    CHECK(a.http()
              .post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", "a"}}))
              .status == 409);
    CHECK(a.http().post("/v1/mesh/moves", R"({"shard":1,"to":"b","extra":1})").status == 400);
    CHECK(b.http()
              .post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", "c"}}))
              .status == 409);  // b does not own it
    CHECK(metric(a, "roost_mesh_moves_failed_total") == 0);
  }
  SECTION("objects move with their shard") {
    // An object with storage (two tells), a WebSocket to it from c (forwarded to a), mail
    // waiting: all of it moves; the socket closes with 1012 and reconnects to the new owner.
    const std::string obj = object_owned_by(a, "counter", "a", "mvobj");
    const std::string path = "/v1/objects/counter/" + obj + "/connect";
    for (int i = 0; i < 2; ++i) {
      REQUIRE(b.http().post("/v1/objects/counter/" + obj + "/messages", "{}").status == 202);
    }
    REQUIRE(eventually([&] { return object_call(c, "counter/" + obj).at("n") == 2; }));
    WsClient browser(c.proc().port(), WsOptions{path});
    CHECK(browser.recv()->at("hello").as_int64() == 2);
    auto oshard = placement(a, "counter/" + obj, "object").at("shard").to_number<std::uint32_t>();
    const auto oepoch = placement(a, "counter/" + obj, "object").at("epoch").to_number<std::int64_t>();
    auto m = move_shard(a, oshard, "b");
    INFO(json::serialize(m));
    REQUIRE(m.at("state") == "done");
    CHECK(m.at("objects").to_number<std::int64_t>() >= 1);
    CHECK(browser.wait_closed() == 1012);  // service restart: the browser reconnects
    for (Server* s : {&a, &b, &c}) {
      REQUIRE(eventually([&] {
        auto p = placement(*s, "counter/" + obj, "object");
        return p.at("owner") == "b" && p.at("epoch").to_number<std::int64_t>() > oepoch;
      }));
    }
    // Its storage came along; it runs on b now, reached from every node.
    CHECK(object_call(a, "counter/" + obj).at("n") == 2);
    REQUIRE(c.http().post("/v1/objects/counter/" + obj + "/messages", "{}").status == 202);
    REQUIRE(eventually([&] { return object_call(c, "counter/" + obj).at("n") == 3; }));
    CHECK(body_json(b.http().get("/v1/objects/counter/" + obj)).at("in_memory").as_bool());
    WsClient again(c.proc().port(), WsOptions{path});
    CHECK(again.recv()->at("hello").as_int64() == 3);
    // a keeps nothing of it in memory (GET object info answers what the node itself holds).
    CHECK_FALSE(body_json(a.http().get("/v1/objects/counter/" + obj)).at("in_memory").as_bool());
    CHECK(metric(a, "roost_mesh_moves_out_total") == 1);
    CHECK(metric(b, "roost_mesh_moves_in_total") == 1);
  }
}

TEST_CASE(
    "mesh: a fourth node joins and `roost mesh rebalance` moves shards to it under producers and consumers — "
    "nothing acknowledged lost",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b", "c"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  // 16 queues, the first 4 in shards that rendezvous gives to d once it is a member (so that the
  // rebalance has work whatever the names hash to), the others anywhere.
  constexpr int kQueues = 16;
  std::vector<broker::MeshMember> four;
  for (const char* n : {"a", "b", "c", "d"}) four.push_back(broker::MeshMember{n, {}, {}, {}, 0});
  std::vector<std::string> names;
  for (int i = 0; names.size() < 4; ++i) {
    auto n = "rbd" + std::to_string(i);
    if (broker::Mesh::rendezvous(four, shard_of_queue(n, 64)) == "d") names.push_back(n);
  }
  for (int i = 0; names.size() < kQueues; ++i) names.push_back("rb" + std::to_string(i));
  for (const auto& n : names) REQUIRE(a.put_queue(n, R"({"visibility_timeout_ms":30000})").status == 200);
  Server d(mesh_args(etcd, "d"));
  REQUIRE(eventually([&] {
    for (Server* s : {&a, &b, &c, &d}) {
      if (member_names(*s).size() != 4) return false;
    }
    return true;
  }));
  // Producers through a and b retry a refused send (owner_unavailable while a shard is closed for
  // its move), as the SDK does; a consumer through c acks what it pulls. Bounded in count.
  QueueLoad load;
  load.queues = names;
  load.max_sends = 20'000;
  load.send_attempts = 200;
  // A backlog first (300 per queue), so that the moves copy while the producers go on.
  for (const auto& q : names) {
    for (int batch = 0; batch < 3; ++batch) {
      json::array msgs;
      for (int i = 0; i < 100; ++i) {
        auto body = "pre-" + q + "-" + std::to_string(batch * 100 + i);
        msgs.push_back(json::object{{"body", body}});
        load.acked.insert(body);
      }
      REQUIRE(a.http()
                  .post("/v1/queues/" + q + "/messages", json::serialize(json::object{{"messages", msgs}}))
                  .status == 201);
    }
  }
  load.produce(a.proc().url(), "a-");
  load.produce(b.proc().url(), "b-");
  load.consume(c.proc().url());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int status = 0;
  auto out = run_roost("mesh rebalance --url " + c.proc().url(), &status);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // load goes on after it
  load.finish();
  INFO(out);
  REQUIRE(status == 0);
  auto summary = json::parse(out);
  CHECK(summary.at("failed").as_array().empty());
  CHECK(summary.at("moved").as_array().size() >= 1);
  for (const auto& m : summary.at("moved").as_array()) CHECK(m.at("to") == "d");  // none between a, b, c
  // Every shard in use is where rendezvous over the four members puts it.
  auto mesh = body_json(a.http().get("/v1/mesh"));
  for (const auto& p : mesh.at("placements").as_array()) {
    CHECK(p.at("home").as_string() ==
          broker::Mesh::rendezvous(four, p.at("shard").to_number<std::uint32_t>()));
  }
  // A plan now is empty.
  auto plan = json::parse(run_roost("mesh rebalance --dry-run --url " + a.proc().url(), &status));
  CHECK(status == 0);
  CHECK(plan.at("plan").as_array().empty());
  // Nothing acknowledged lost: everything is consumed (through the newcomer).
  {
    client::HttpClient h(d.proc().url());
    REQUIRE(eventually([&] {
      load.drain_once(h);
      return load.all_consumed();
    }));
  }
  std::size_t redelivered =
      load.consumed.size() - std::set<std::string>(load.consumed.begin(), load.consumed.end()).size();
  INFO("acknowledged " << load.acked.size() << ", consumed " << load.consumed.size() << ", redelivered "
                       << redelivered << ", sends refused and retried " << load.refused.load());
  CHECK(load.acked.size() > 200);
  CHECK(load.lost_sends == 0);
  // At least once: only leases in flight at a move come again (bounded by the consumer's batches).
  CHECK(redelivered <= 100 * summary.at("moved").as_array().size());
}

TEST_CASE(
    "mesh: a move whose target fails is undone — the source serves all of the shard again (under a new epoch "
    "once it had closed it); the target keeps nothing",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b", "c"});
  auto &a = *nodes["a"], &b = *nodes["b"], &c = *nodes["c"];
  const std::string q = queue_owned_by(a, "a", "undo");
  REQUIRE(c.put_queue(q).status == 200);
  // 40 MB (40,000 × 1 KB): a copy, and a closed phase, that take a while.
  constexpr int kCount = 40'000;
  const std::string pad(1000, 'x');
  for (int batch = 0; batch < kCount / 100; ++batch) {
    json::array msgs;
    for (int i = 0; i < 100; ++i)
      msgs.push_back(json::object{{"body", std::to_string(batch * 100 + i) + pad}});
    REQUIRE(a.http()
                .post("/v1/queues/" + q + "/messages", json::serialize(json::object{{"messages", msgs}}))
                .status == 201);
  }
  const auto before = placement(c, q);
  const auto shard = before.at("shard").to_number<std::uint32_t>();
  auto r = a.http().post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", "b"}}));
  INFO(r.body);
  REQUIRE(r.status == 202);
  const auto id = std::string(body_json(r).at("id").as_string());
  auto state = [&] {
    auto moves = body_json(a.http().get("/v1/mesh/moves"));  // (kept: the loop reads into it)
    for (const auto& m : moves.at("moves").as_array()) {
      if (m.at("id") == id.c_str()) return m;
    }
    return json::value();
  };
  bool closed = false;
  SECTION("the target dies while the bodies are copied: the source never stopped serving") {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    b.proc().stop(SIGKILL);
  }
  SECTION("the target stops answering once the shard is closed: the source claims it again") {
    // Paused as soon as the move has closed the shard (before the target could switch it).
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!closed && std::chrono::steady_clock::now() < until) {
      auto m = state();
      REQUIRE(m.is_object());
      REQUIRE(m.at("state") != "done");
      closed = m.at("state") == "closing" || m.at("state") == "finishing";
    }
    REQUIRE(closed);
    ::kill(b.proc().pid(), SIGSTOP);
  }
  json::value last;
  REQUIRE(eventually(
      [&] {
        last = state();
        return last.at("state") == "done" || last.at("state") == "failed";
      },
      std::chrono::seconds(60)));
  INFO(json::serialize(last));
  REQUIRE(last.at("state") == "failed");
  CHECK(metric(a, "roost_mesh_moves_failed_total") == 1);
  if (closed) {
    // The claim was made again: a new epoch, seen from the other node (a finish the target still
    // completed now would fail its compare in etcd).
    REQUIRE(eventually([&] {
      auto p = placement(c, q);
      return p.at("owner") == "a" && p.at("home") == "a" &&
             p.at("epoch").as_int64() > before.at("epoch").as_int64();
    }));
    ::kill(b.proc().pid(), SIGCONT);
  } else {
    auto p = placement(c, q);
    CHECK(p.at("owner") == "a");
    CHECK(p.at("epoch") == before.at("epoch"));
  }
  // The source serves the whole queue, in order, and takes new messages.
  REQUIRE(eventually([&] { return c.stats(q).at("messages") == kCount; }));
  auto head = c.pull_messages(q, R"({"batch_size":10})");
  REQUIRE(head.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(head[i].at("body").as_string() == std::to_string(i) + pad);
  a.ack_leases(q, head);
  REQUIRE(c.send(q, R"({"body":"after"})").status == 201);
  CHECK(c.stats(q).at("messages") == kCount - 10 + 1);
  // The target (restarted, or resumed) holds no copy: the mesh's queue list has the queue once,
  // with a's count.
  if (!closed) b.proc().start();
  REQUIRE(eventually([&] { return member_names(c).size() == 3; }));
  REQUIRE(eventually([&] {
    auto list = body_json(c.http().get("/v1/queues"));
    int copies = 0;
    for (const auto& one : list.at("queues").as_array()) {
      if (one.at("name") != q.c_str()) continue;
      ++copies;
      if (one.at("stats").at("messages") != kCount - 10 + 1) return false;
    }
    return copies == 1;
  }));
}

TEST_CASE(
    "mesh: a source that stops between the switch and removing its copy removes the stale copy when it starts "
    "again — it never serves it",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  // a exits (as a kill -9 there would) right after the target switched a shard it moved away,
  // before it removed its own copy.
  ::setenv("ROOST_FAILPOINT", "move.after_switch", 1);
  Server a(mesh_args(etcd, "a"));
  ::unsetenv("ROOST_FAILPOINT");
  Server b(mesh_args(etcd, "b"));
  Server c(mesh_args(etcd, "c"));
  REQUIRE(eventually([&] {
    for (Server* s : {&a, &b, &c}) {
      if (member_names(*s).size() != 3) return false;
    }
    return true;
  }));
  const std::string q = queue_owned_by(c, "a", "stale");
  REQUIRE(c.put_queue(q).status == 200);
  constexpr int kCount = 50;
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(c.send(q, json::serialize(json::object{{"body", "m" + std::to_string(i)}})).status == 201);
  }
  const auto shard = placement(c, q).at("shard").to_number<std::uint32_t>();
  std::string obj;  // an object of the same shard, with state
  for (int i = 0; obj.empty(); ++i) {
    auto name = "st" + std::to_string(i);
    if (shard_of_object("counter", name, 64) == shard) obj = name;
  }
  for (int i = 0; i < 3; ++i)
    REQUIRE(c.http().post("/v1/objects/counter/" + obj + "/messages", "{}").status == 202);
  REQUIRE(eventually([&] {
    auto r = c.http().post("/v1/objects/counter/" + obj + "/call", "{}");
    return r.status == 200 && body_json(r).at("n") == 3;
  }));
  auto r = a.http().post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", "b"}}));
  INFO(r.body);
  REQUIRE(r.status == 202);
  REQUIRE(eventually(
      [&] {
        auto p = placement(c, q);
        return p.at("home") == "b" && p.at("owner") == "b";
      },
      std::chrono::seconds(20)));
  // b serves the shard: five messages consumed there (a's stale copy still has them).
  auto first = c.pull_messages(q, R"({"batch_size":5})");
  REQUIRE(first.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(first[i].at("body") == ("m" + std::to_string(i)).c_str());
  c.ack_leases(q, first);
  a.restart(SIGKILL);  // (it has exited at the failpoint already)
  REQUIRE(a.proc().log().find("unsettled") != std::string::npos);
  // a keeps the shard closed until etcd says it is b's, then removes its stale copy: the mesh's
  // queue list, asked through a (which lists its own queues first), has the queue once — b's.
  REQUIRE(eventually(
      [&] {
        auto list = body_json(a.http().get("/v1/queues"));
        int copies = 0;
        for (const auto& one : list.at("queues").as_array()) {
          if (one.at("name") != q.c_str()) continue;
          ++copies;
          if (one.at("stats").at("messages") != kCount - 5) return false;
        }
        return copies == 1 && member_names(a).size() == 3;
      },
      std::chrono::seconds(20)));
  CHECK(eventually([&] {
    return a.proc().log().find("removed this node's stale copy (1 queues, 1 objects)") != std::string::npos;
  }));
  // Everything is b's and served from any node: the messages in order, the object's state.
  auto head = a.pull_messages(q, R"({"batch_size":5})");
  REQUIRE(head.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(head[i].at("body") == ("m" + std::to_string(5 + i)).c_str());
  auto called = a.http().post("/v1/objects/counter/" + obj + "/call", "{}");
  INFO(called.body);
  REQUIRE(called.status == 200);
  CHECK(body_json(called).at("n") == 3);
  // Restarted once more, a has nothing left to settle.
  a.restart();
  REQUIRE(eventually([&] { return member_names(a).size() == 3; }));
  CHECK(a.proc().log().find("unsettled") == std::string::npos);
  // a's disk holds nothing of the shard: no queue, no object rows, no mark.
  a.proc().stop();
  durable::EnvOptions eo;
  eo.dir = a.dir().path() / "data";
  durable::Env env(eo);
  durable::Committer committer(env, {}, [] { return std::int64_t{0}; });
  durable::QueueStore queues(env, committer, {}, [] { return std::int64_t{0}; });
  for (const auto& one : queues.list_queues()) CHECK(one.name != q);
  durable::MailboxStore mailboxes(env);
  CHECK(mailboxes.object_keys([&](const durable::ObjectRef& ref) { return ref.name == obj; }).empty());
  CHECK(durable::OutboxStore(env).move_marks().empty());
}

// Counts its tells in storage; a call answers the count and which host ran it.
class HostedTally : public roost::Actor {
 public:
  explicit HostedTally(std::string host) : host_(std::move(host)) {}
  void on_message(Context& ctx, const Message&) override {
    auto v = ctx.storage().get("n");
    ctx.storage().put("n", std::to_string((v ? std::stoll(*v) : 0) + 1));
  }
  void on_call(Context& ctx, const Message&) override {
    ctx.reply(json::serialize(
        json::object{{"n", std::stoll(ctx.storage().get("n").value_or("0"))}, {"host", host_}}));
  }

 private:
  std::string host_;
};

TEST_CASE(
    "mesh: objects of a class only remote hosts serve run on their shard's owner, through the host connected "
    "to that node; without one their mail waits there",
    "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b"}, {"--remote-classes", "tally"});
  auto &a = *nodes["a"], &b = *nodes["b"];
  std::vector<std::string> of_a, of_b;  // three objects owned by each node
  for (int i = 0; of_a.size() < 3 || of_b.size() < 3; ++i) {
    auto name = "h" + std::to_string(i);
    auto home = placement(a, "tally/" + name, "object").at("home");  // (new shards: where they will be)
    auto& list = home == "a" ? of_a : of_b;
    if (list.size() < 3) list.push_back(name);
  }
  auto host_for = [](Server& node, const std::string& label) {
    auto h = std::make_unique<roost::Host>(roost::HostOptions{.url = node.proc().url()});
    h->add("tally", [label] { return std::make_unique<HostedTally>(label); });
    h->start();
    return h;
  };
  // Only a has a host. Tells through b to all six objects are accepted; a's run there.
  auto on_a = host_for(a, "a");
  for (const auto& name : of_a) {
    for (int i = 0; i < 2; ++i)
      REQUIRE(b.http().post("/v1/objects/tally/" + name + "/messages", "{}").status == 202);
  }
  for (const auto& name : of_b) {
    for (int i = 0; i < 2; ++i)
      REQUIRE(b.http().post("/v1/objects/tally/" + name + "/messages", "{}").status == 202);
  }
  for (const auto& name : of_a) {
    REQUIRE(eventually([&] {
      auto r = b.http().post("/v1/objects/tally/" + name + "/call", "{}");
      return r.status == 200 && body_json(r).at("n") == 2 && body_json(r).at("host") == "a";
    }));
  }
  // b's objects wait on b (its owner), their mail kept: b has no host for the class.
  for (const auto& name : of_b) {
    auto info = body_json(b.http().get("/v1/objects/tally/" + name));
    CHECK(info.at("waiting") == 2);
  }
  // A host connects to b: it serves b's objects, their waiting mail first.
  auto on_b = host_for(b, "b");
  for (const auto& name : of_b) {
    REQUIRE(eventually([&] {
      auto r = a.http().post("/v1/objects/tally/" + name + "/call", "{}");
      return r.status == 200 && body_json(r).at("n") == 2 && body_json(r).at("host") == "b";
    }));
  }
  // a's objects still run on a's host, whichever node is asked.
  for (const auto& name : of_a) {
    REQUIRE(a.http().post("/v1/objects/tally/" + name + "/messages", "{}").status == 202);
    REQUIRE(eventually([&] {
      auto r = b.http().post("/v1/objects/tally/" + name + "/call", "{}");
      return r.status == 200 && body_json(r).at("n") == 3 && body_json(r).at("host") == "a";
    }));
  }
}

TEST_CASE("mesh: a pushed queue is pushed by its owner, configured and fed through other nodes",
          "[integration][mesh][push]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  HttpSink sink;
  auto nodes = start_mesh(etcd, {"a", "b"});
  auto &a = *nodes["a"], &b = *nodes["b"];
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }));
  // A queue homed on b, set up through a: the target is checked, and stored, by the owner.
  std::string q;
  for (int i = 0; i < 200 && q.empty(); ++i) {
    auto name = "pq" + std::to_string(i);
    if (placement(a, name).at("home") == "b") q = name;
  }
  REQUIRE_FALSE(q.empty());
  CHECK(a.put_queue(q, R"({"push":{"url":"http://192.0.2.1/x"}})").status == 403);
  auto r = a.put_queue(q, R"({"push":{"url":")" + sink.url("/in") + R"(","concurrency":4}})");
  INFO(r.body);
  REQUIRE(r.status == 200);
  for (int i = 0; i < 30; ++i) REQUIRE(a.send(q, json::serialize(json::object{{"body", i}})).status == 201);
  REQUIRE(sink.wait_for(30));
  REQUIRE(eventually([&] { return a.stats(q).at("messages") == 0; }));
  std::set<std::string> bodies;
  for (const auto& req : sink.requests()) bodies.insert(req.body);
  CHECK(bodies.size() == 30);
  CHECK(sink.count() == 30);
  // b (the owner) pushed; a did not; a pull through a is refused like one on b.
  auto text_b = b.http().get("/metrics").body;
  auto text_a = a.http().get("/metrics").body;
  CHECK(text_b.find("roost_push_delivered_total{queue=\"" + q + "\"") != std::string::npos);
  CHECK(text_a.find("roost_push_delivered_total{queue=\"" + q + "\"") == std::string::npos);
  CHECK(a.pull(q).status == 409);
}

TEST_CASE("mesh: a single node has no mesh status", "[integration][mesh]") {
  Server a;
  auto r = a.http().get("/v1/mesh");
  CHECK(r.status == 404);
  CHECK(body_json(a.http().get("/healthz")).at("status") == "ok");
}

// ---- issue 26 §1 and §3: the mesh socket trusts only what the cluster secret proves ----

std::vector<std::string> secure_mesh_args(const EtcdProcess& etcd, const std::string& name) {
  auto v = mesh_args(etcd, name);
  v.pop_back();  // not insecure: a cluster secret
  v.pop_back();
  v.insert(v.end(), {"--auth-secret", "s3cret"});
  return v;
}
const std::string kAdmin =
    sign_jwt("s3cret", R"({"roost":{"queues":[">"],"objects":[">"],"publish":[">"]}})");

// A secured node alone in its mesh, once it lists itself: its mesh address (its HTTP client gets
// the admin token).
std::string lone_member(Server& a) {
  a.http().set_header("Authorization", "Bearer " + kAdmin);
  std::string mesh;
  REQUIRE(eventually([&] {
    auto r = a.http().get("/v1/mesh");
    if (r.status != 200 || body_json(r).at("members").as_array().size() != 1) return false;
    mesh = std::string(body_json(r).at("members").at(0).at("mesh").as_string());
    return true;
  }));
  return mesh;
}

TEST_CASE(
    "hardening 26.1: a member entry that cannot prove the cluster secret is not dialled nor homed shards",
    "[integration][mesh][hardening]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  // What dials a fake member would reach: a listener that counts connections.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor fake(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  fake.non_blocking(true);
  auto fake_port = fake.local_endpoint().port();
  std::atomic<int> dialled{0};
  std::atomic<bool> stop{false};
  std::thread watch([&] {
    while (!stop) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket sock(io);
      fake.accept(sock, ec);
      if (!ec) ++dialled;
      std::this_thread::sleep_for(10ms);
    }
  });
  // Written straight into etcd, as a push into etcd's API once could (issue 26 §1).
  broker::EtcdClient etcd_client(etcd.url());
  auto mesh = "tcp://127.0.0.1:" + std::to_string(fake_port);
  REQUIRE(etcd_client.put(
      "/test/members/evil",
      json::serialize(json::object{{"mesh", mesh}, {"http", "http://127.0.0.1:1"}, {"native", ""}})));
  Server a(secure_mesh_args(etcd, "a")), b(secure_mesh_args(etcd, "b"));
  a.http().set_header("Authorization", "Bearer " + kAdmin);
  b.http().set_header("Authorization", "Bearer " + kAdmin);
  REQUIRE(eventually([&] { return member_names(a).size() == 2 && member_names(b).size() == 2; }, 10s));
  CHECK(member_names(a) == std::vector<std::string>{"a", "b"});
  // New shards are homed on members that proved the secret only; links between them work.
  for (int i = 0; i < 24; ++i) {
    auto q = "h" + std::to_string(i);
    REQUIRE(b.put_queue(q).status == 200);
    REQUIRE(b.send(q, R"({"body":1})").status == 201);
    auto home = placement(a, q).at("home");
    CHECK((home == "a" || home == "b"));
  }
  CHECK(a.stats("h0").at("messages") == 1);
  stop = true;
  watch.join();
  CHECK(dialled == 0);
  CHECK(a.proc().log().find("does not prove the cluster secret") != std::string::npos);
}

TEST_CASE("hardening 26.1: mesh credentials are for mesh sockets only, and expire",
          "[integration][mesh][hardening]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server a(secure_mesh_args(etcd, "a"));
  auto mesh_of_a = lone_member(a);
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto node_token = sign_mesh_token("s3cret", "b", now, 300);
  // Not a bearer on the REST API, WebSockets or the native endpoint.
  client::HttpClient rest(a.proc().url());
  rest.set_header("Authorization", "Bearer " + node_token);
  auto r = rest.get("/v1/queues");
  CHECK(r.status == 401);
  CHECK(error_code(r) == "unauthorized");
  auto native = Client::connect({.url = a.proc().endpoint(), .token = node_token});
  REQUIRE_FALSE(native);
  CHECK(native.error().code == ErrorCode::UNAUTHORIZED);
  // On the mesh socket: with the cluster's CURVE key, and while it lasts.
  const auto key = mesh_curve_keys("s3cret").public_key;
  CHECK(Client::connect({.url = mesh_of_a, .token = node_token, .curve_server_key = key}));
  auto expired = Client::connect(
      {.url = mesh_of_a, .token = sign_mesh_token("s3cret", "b", now - 600, 300), .curve_server_key = key});
  REQUIRE_FALSE(expired);
  CHECK(expired.error().code == ErrorCode::UNAUTHORIZED);
  // Without the key (a plain connection) nothing is answered at all.
  auto plain = Client::connect({.url = mesh_of_a, .token = node_token, .connect_timeout = 500ms});
  CHECK_FALSE(plain);
}

TEST_CASE("hardening 26.3: mesh effects are the authenticated peer's, a seq that jumps is refused",
          "[integration][mesh][hardening]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server a(secure_mesh_args(etcd, "a"));
  auto mesh_of_a = lone_member(a);
  REQUIRE(a.put_queue("inbox").status == 200);
  auto p = placement(a, "inbox");
  REQUIRE(p.at("owner") == "a");
  Route route{static_cast<std::uint32_t>(p.at("shard").as_int64()), p.at("epoch").as_int64()};
  PeerLink link({.url = mesh_of_a,
                 .token = sign_mesh_token("s3cret", "b", std::time(nullptr), 300),
                 .curve_server_key = mesh_curve_keys("s3cret").public_key});
  auto send = [&](const std::string& origin, std::uint64_t seq) {
    MeshEffect e;
    e.seq = seq;
    e.queue = "inbox";
    e.message.body = R"({"seq":)" + std::to_string(seq) + "}";
    std::promise<Result<std::uint64_t>> done;
    link.effects(route, origin, {e}, [&](Result<std::uint64_t> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  };
  auto forged = send("n2", 1);  // this link is b's: n2's effects are not its to send
  REQUIRE_FALSE(forged);
  CHECK(forged.error().code == ErrorCode::FORBIDDEN);
  auto first = send("b", 1);
  REQUIRE(first);
  CHECK(*first == 1);
  auto jump = send("b", 1'000'000);
  REQUIRE_FALSE(jump);
  CHECK(jump.error().code == ErrorCode::INVALID_ARGUMENT);
  auto next = send("b", 2);  // the jump recorded nothing: b's next effect is applied
  REQUIRE(next);
  CHECK(*next == 2);
  CHECK(a.stats("inbox").at("messages") == 2);
}

TEST_CASE("hardening 26.3: a mesh without auth_secret needs mesh_insecure, and says so",
          "[integration][mesh][hardening]") {
  TempDir dir("roost-mesh-cfg");
  auto roost = std::string(ROOST_BINARY);
  auto refused = std::system((roost + " serve --data-dir " + (dir.path() / "d").string() +
                              " --http-listen 127.0.0.1:0 --endpoint off --mesh-etcd http://127.0.0.1:1 > " +
                              (dir.path() / "log").string() + " 2>&1")
                                 .c_str());
  CHECK(refused != 0);
  std::ifstream in(dir.path() / "log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(log.find("needs auth_secret") != std::string::npos);
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  Server a(mesh_args(etcd, "a"));
  CHECK(a.proc().log().find("mesh_insecure") != std::string::npos);
}

TEST_CASE("mesh: a traced enqueue forwarded to its shard's owner carries the owner's instants (mesh_hops.sh)",
          "[integration][mesh]") {
  REQUIRE(etcd_installed());
  EtcdProcess etcd;
  auto nodes = start_mesh(etcd, {"a", "b"});
  auto& a = *nodes.at("a");
  // A queue b owns, enqueued through a.
  std::string q;
  for (int i = 0; q.empty() && i < 100; ++i) {
    auto name = "traced" + std::to_string(i);
    std::string owner;
    REQUIRE(eventually([&] {  // homed on first use, then claimed by its home
      auto r = a.http().get("/v1/mesh?queue=" + name);
      if (r.status != 200) return false;
      auto p = body_json(r);
      if (!p.at("owner").is_string() || p.at("owner").as_string().empty()) return false;
      owner = p.at("owner").as_string();
      return true;
    }));
    if (owner == "b") q = name;
  }
  REQUIRE(!q.empty());
  auto c = Client::connect({.url = a.proc().endpoint()});
  REQUIRE(c);
  for (int i = 0; i < 10; ++i) {
    auto t = (*c)->trace_enqueue(q, NewMessage{.body = std::to_string(i)});
    INFO("trace: " << (t ? "" : t.error().message));
    REQUIRE(t);
    // The entry's twelve (it commits nothing: no group of its own), then the link's sent, the
    // owner's eight (read … answered), the link's received.
    REQUIRE(t->size() == 22);
    const auto& v = *t;
    CHECK(v[4] == 0);       // a's write group: none
    CHECK(v[12] >= v[2]);   // a's link took it after a's endpoint read it
    CHECK(v[13] >= v[12]);  // b read it after a's link sent it
    for (std::size_t k = 15; k <= 20; ++k) CHECK(v[k] >= v[k == 15 ? 13 : k - 1]);  // b's group, answer
    CHECK(v[21] >= v[20]);  // a's link had b's answer after b sent it
    CHECK(v[8] >= v[21]);   // a's completion after that
    CHECK(v[11] >= v[10]);  // and the client's return last
  }
  auto got = (*c)->pull(q, roost::PullOptions{.batch_size = 100});
  REQUIRE(got);
  CHECK(got->size() == 10);
}

}  // namespace
}  // namespace roost::test
