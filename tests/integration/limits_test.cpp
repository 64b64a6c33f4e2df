// Connection limits and a real full disk (a small tmpfs), against the real binary.
#include <sys/mount.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>

#include <thread>

#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;

TEST_CASE("connections beyond max_connections are closed at once", "[integration]") {
  Server s({"--max-connections", "2"});
  roost::client::HttpClient a(s.proc().url());
  roost::client::HttpClient b(s.proc().url());
  REQUIRE(a.get("/healthz").status == 200);
  REQUIRE(b.get("/healthz").status == 200);
  // Both keep-alive connections are open; a third is accepted and closed without an answer.
  roost::client::HttpClient c(s.proc().url(), 5s);
  CHECK_THROWS(c.get("/healthz"));
  auto metrics = a.get("/metrics").body;
  CHECK(metrics.find("roost_http_connections_rejected_total 0") == std::string::npos);
  // The first two still work.
  CHECK(b.get("/healthz").status == 200);
}

TEST_CASE("a full disk answers 507 storage_full; what was acknowledged survives kill -9", "[integration]") {
  TempDir dir("roost-fulldisk");
  auto mnt = dir.path() / "mnt";
  std::filesystem::create_directories(mnt);
  // Needs CAP_SYS_ADMIN: CI runs as root. Elsewhere this test cannot make a full disk.
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=3m") != 0) {
    FAIL("cannot mount a tmpfs (run as root): " << std::strerror(errno));
  }
  struct Unmount {
    std::filesystem::path p;
    ~Unmount() { umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  int stored = 0;
  {
    RoostProcess proc(mnt / "data");
    roost::client::HttpClient h(proc.url());
    std::string body = R"({"body":")" + std::string(50000, 'y') + R"(","content_type":"text"})";
    roost::client::HttpResponse last;
    for (int i = 0; i < 200; ++i) {
      last = h.post("/v1/queues/disk/messages", body);
      if (last.status != 201) break;
      ++stored;
    }
    INFO(last.body);
    CHECK(last.status == 507);
    CHECK(error_code(last) == "storage_full");
    CHECK(stored > 5);
    CHECK(h.get("/healthz").status == 200);
    // Consuming still works on a full disk, and frees room.
    auto r = h.post("/v1/queues/disk/messages/pull", R"({"batch_size":5})");
    REQUIRE(r.status == 200);
    auto msgs = body_json(r).at("messages").as_array();
    json::array acks;
    for (auto& m : msgs) acks.push_back(json::object{{"lease_id", m.at("lease_id")}});
    auto a = h.post("/v1/queues/disk/messages/ack", json::serialize(json::object{{"acks", acks}}));
    CHECK(a.status == 200);
    CHECK(body_json(a).at("acked") == msgs.size());
    stored -= static_cast<int>(msgs.size());
    proc.stop(SIGKILL);
  }
  RoostProcess again(mnt / "data");
  roost::client::HttpClient h(again.url());
  auto st = body_json(h.get("/v1/queues/disk")).at("stats");
  CHECK(st.at("messages") == stored);
}
