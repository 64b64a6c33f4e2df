// kill -9 while producers enqueue and a consumer acks: after every restart, each message whose
// enqueue was acknowledged is there exactly once, and no message whose ack was acknowledged
// comes back.
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;

namespace {

// `producers` enqueue and `consumers` pull and ack while the node is killed (-9) `rounds` times.
void crash_loop(int rounds, int producers, int consumers) {
  TempDir dir("roost-crash");
  RoostProcess proc(dir.path() / "data");
  const int kRounds = rounds;
  const int kProducers = producers;
  std::mutex mu;
  std::set<std::string> enqueued;       // 201 received
  std::set<std::string> ack_sent;       // an ack was attempted for the token
  std::set<std::string> ack_confirmed;  // the ack answered, lease not unknown
  std::mt19937 rng(12345);

  {
    roost::client::HttpClient h(proc.url());
    REQUIRE(h.put("/v1/queues/crash", R"({"visibility_timeout_ms":600000})").status == 200);
  }
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < kProducers; ++p) {
      threads.emplace_back([&, p] {
        try {
          roost::client::HttpClient h(proc.url(), 3s);
          for (int n = 0; n < 100'000 && !stop; ++n) {
            std::string token =
                "r" + std::to_string(round) + "p" + std::to_string(p) + "n" + std::to_string(n);
            auto r = h.post("/v1/queues/crash/messages", R"({"body":")" + token + R"("})");
            if (r.status != 201) break;
            std::lock_guard lock(mu);
            enqueued.insert(token);
          }
        } catch (const std::exception&) {
          // the server died under us: expected
        }
      });
    }
    for (int c = 0; c < consumers; ++c)
      threads.emplace_back([&] {
        try {
          roost::client::HttpClient h(proc.url(), 3s);
          for (int n = 0; n < 100'000 && !stop; ++n) {
            auto r = h.post("/v1/queues/crash/messages/pull", R"({"batch_size":20})");
            if (r.status != 200) break;
            auto pulled = json::parse(r.body);
            auto msgs = pulled.at("messages").as_array();
            if (msgs.empty()) continue;
            json::array acks;
            std::map<std::string, std::string> lease_to_token;
            for (auto& m : msgs) {
              acks.push_back(json::object{{"lease_id", m.at("lease_id")}});
              lease_to_token[lease_of(m)] = std::string(m.at("body").as_string());
            }
            {
              std::lock_guard lock(mu);
              for (auto& [lease, token] : lease_to_token) ack_sent.insert(token);
            }
            auto a = h.post("/v1/queues/crash/messages/ack", json::serialize(json::object{{"acks", acks}}));
            if (a.status != 200) break;
            auto answer = json::parse(a.body);
            for (auto& u : answer.at("unknown").as_array()) {
              lease_to_token.erase(std::string(u.as_string()));
            }
            std::lock_guard lock(mu);
            for (auto& [lease, token] : lease_to_token) ack_confirmed.insert(token);
          }
        } catch (const std::exception&) {
        }
      });
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 300));
    proc.stop(SIGKILL);
    stop = true;
    for (auto& t : threads) t.join();
    proc.start();
  }

  // Drain what is left.
  std::map<std::string, int> remaining;
  roost::client::HttpClient h(proc.url());
  for (int i = 0; i < 10'000; ++i) {
    auto r = h.post("/v1/queues/crash/messages/pull", R"({"batch_size":1000})");
    REQUIRE(r.status == 200);
    auto msgs = json::parse(r.body).at("messages").as_array();
    if (msgs.empty()) break;
    for (auto& m : msgs) remaining[std::string(m.at("body").as_string())] += 1;
  }
  INFO("enqueued " << enqueued.size() << ", acks confirmed " << ack_confirmed.size() << ", remaining "
                   << remaining.size());
  CHECK(enqueued.size() > 100);  // the load was real
  CHECK(ack_confirmed.size() > 10);
  std::size_t lost = 0, duplicated = 0, resurrected = 0;
  for (const auto& t : enqueued) {
    auto it = remaining.find(t);
    if (it == remaining.end() && !ack_sent.contains(t)) ++lost;
  }
  for (const auto& [t, n] : remaining) {
    if (n > 1) ++duplicated;
    if (ack_confirmed.contains(t)) ++resurrected;
  }
  CHECK(lost == 0);
  CHECK(duplicated == 0);
  CHECK(resurrected == 0);
}

}  // namespace

TEST_CASE("kill -9 under load loses nothing acknowledged", "[integration][crash]") { crash_loop(6, 4, 1); }

// Many writers at once: enqueues and acks of 16 connections each share group commits when the
// kill comes.
TEST_CASE("kill -9 with 16 producers and 16 consumers acking loses nothing acknowledged",
          "[integration][crash]") {
  crash_loop(6, 16, 16);
}
