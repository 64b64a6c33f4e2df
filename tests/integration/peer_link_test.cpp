// A PeerLink driven by another thread's poll loop (the LinkLoop contract the node's client endpoint
// implements, docs/mesh.md "Any node serves any queue and object"), against a real `roost` binary: answers
// come back on the loop's thread, a link whose loop has stopped fails what waits, close() from another thread
// returns once the loop ended it, and a link made while no loop runs gets its own thread.
#include <catch2/catch.hpp>

#include <roost/client/peer.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "../support/eventually.h"
#include "http_fixture.h"

namespace roost::test {
namespace {

// A minimal LinkLoop: one thread polling the links it adopted, as the endpoint's loop does.
class TestLoop final : public LinkLoop {
 public:
  TestLoop() {
    std::lock_guard lock(mu_);
    thread_ = std::thread([this] { run(); });
    id_ = thread_.get_id();
  }
  ~TestLoop() { stop(); }

  std::optional<std::thread::id> loop_thread() override {
    std::lock_guard lock(mu_);
    return id_;
  }
  bool adopt(std::shared_ptr<PeerLink> link) override {
    std::lock_guard lock(mu_);
    if (!id_) return false;
    adopted_.push_back(std::move(link));
    return true;
  }
  // Ends the loop: its links end on its thread (what waits on them fails).
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::thread::id id() {
    std::lock_guard lock(mu_);
    return id_.value_or(std::thread::id{});
  }

 private:
  void run() {
    std::vector<std::shared_ptr<PeerLink>> links;
    std::vector<zmq_pollitem_t> items;
    std::vector<std::size_t> counts;
    while (!stopping_) {
      {
        std::lock_guard lock(mu_);
        for (auto& l : adopted_) links.push_back(std::move(l));
        adopted_.clear();
      }
      items.clear();
      counts.clear();
      for (auto& l : links) {
        zmq_pollitem_t mine[2];
        counts.push_back(l->poll_items(mine));
        items.insert(items.end(), mine, mine + counts.back());
      }
      if (items.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else {
        zmq_poll(items.data(), static_cast<int>(items.size()), 20);
      }
      std::size_t at = 0;
      for (std::size_t i = 0; i < links.size(); ++i) {
        bool woke = counts[i] > 0 && (items[at + counts[i] - 1].revents & ZMQ_POLLIN) != 0;
        at += counts[i];
        if (!links[i]->turn(woke)) links[i] = nullptr;
      }
      std::erase(links, nullptr);
    }
    {
      std::lock_guard lock(mu_);
      id_.reset();
      for (auto& l : adopted_) links.push_back(std::move(l));
      adopted_.clear();
    }
    for (auto& l : links) l->end();
  }

  std::mutex mu_;
  std::optional<std::thread::id> id_;
  std::vector<std::shared_ptr<PeerLink>> adopted_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

Result<std::vector<std::string>> enqueue_one(PeerLink& link, const std::string& queue,
                                             std::thread::id* answered_on = nullptr) {
  std::promise<Result<std::vector<std::string>>> done;
  link.enqueue(Route{}, queue, {NewMessage{.body = R"({"x":1})"}}, [&](Result<std::vector<std::string>> r) {
    if (answered_on != nullptr) *answered_on = std::this_thread::get_id();
    done.set_value(std::move(r));
  });
  return done.get_future().get();
}

// A loop that is stopping: it answers its thread, then refuses the link (the race PeerLink::open
// must survive). Its ZeroMQ context must not be the link's: it goes away first.
class RefusingLoop final : public LinkLoop {
 public:
  std::optional<std::thread::id> loop_thread() override { return std::this_thread::get_id(); }
  bool adopt(std::shared_ptr<PeerLink>) override { return false; }
  zmq::context_t* zmq_context() override { return ctx.get(); }
  std::unique_ptr<zmq::context_t> ctx = std::make_unique<zmq::context_t>(1);
};

// The link works; then the node stops answering (SIGSTOP) and an enqueue waits on the link: its
// answer, to come.
std::future<Result<std::vector<std::string>>> stalled_enqueue(Server& node, PeerLink& link) {
  REQUIRE(enqueue_one(link, "jobs"));
  ::kill(node.proc().pid(), SIGSTOP);
  // (Stopped once every thread of it is: kill() returns before that.)
  REQUIRE(eventually([&] {
    for (const auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(node.proc().pid()) + "/task")) {
      std::ifstream stat(t.path() / "stat");
      std::string line;
      std::getline(stat, line);
      auto state = line.find(") ");
      if (state == std::string::npos || line[state + 2] != 'T') return false;
    }
    return true;
  }));
  auto waiting = std::make_shared<std::promise<Result<std::vector<std::string>>>>();
  link.enqueue(Route{}, "jobs", {NewMessage{.body = "{}"}},
               [waiting](Result<std::vector<std::string>> r) { waiting->set_value(std::move(r)); });
  return waiting->get_future();
}

}  // namespace

TEST_CASE("a peer link driven by a loop answers on the loop's thread and ends with the loop", "[link]") {
  Server node;
  REQUIRE(node.put_queue("jobs").status == 200);
  TestLoop loop;
  auto link = PeerLink::open({.url = node.proc().endpoint()}, &loop);

  SECTION("requests in flight are answered on the loop's thread, every one") {
    constexpr int kCount = 500;
    std::mutex mu;
    int ok = 0, elsewhere = 0;
    std::promise<void> all;
    std::atomic<int> left{kCount};
    for (int i = 0; i < kCount; ++i) {
      link->enqueue(Route{}, "jobs", {NewMessage{.body = R"({"n":)" + std::to_string(i) + "}"}},
                    [&](Result<std::vector<std::string>> r) {
                      {
                        std::lock_guard lock(mu);
                        ok += r && r->size() == 1;
                        elsewhere += std::this_thread::get_id() != loop.id();
                      }
                      if (--left == 0) all.set_value();
                    });
    }
    REQUIRE(all.get_future().wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    CHECK(ok == kCount);
    CHECK(elsewhere == 0);
    auto info = body_json(node.http().get("/v1/queues/jobs"));
    CHECK(info.at("stats").at("messages") == kCount);
  }

  SECTION("a loop that stops fails what waits on its links, and their close() returns") {
    auto answer = stalled_enqueue(node, *link);
    CHECK(answer.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
    loop.stop();
    REQUIRE(answer.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    auto r = answer.get();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::UNAVAILABLE);
    link->close();  // ended already: returns at once
    ::kill(node.proc().pid(), SIGCONT);
    // A link made now that the loop has stopped runs on its own thread, and works.
    auto own = PeerLink::open({.url = node.proc().endpoint()}, &loop);
    std::thread::id answered_on;
    REQUIRE(enqueue_one(*own, "jobs", &answered_on));
    CHECK(answered_on != std::thread::id{});
    CHECK(answered_on != std::this_thread::get_id());
  }

  SECTION("a link its loop refuses runs on its own thread, in its own ZeroMQ context") {
    RefusingLoop refusing;
    auto own = PeerLink::open({.url = node.proc().endpoint()}, &refusing);
    std::thread::id answered_on;
    REQUIRE(enqueue_one(*own, "jobs", &answered_on));
    CHECK(answered_on != std::this_thread::get_id());
    // The loop's context ends while the link lives (it would wait for the link's socket forever).
    auto ended = std::async(std::launch::async, [&] { refusing.ctx.reset(); });
    bool prompt = ended.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    if (!prompt) own->close();  // (so that the context can end, and the test with it)
    REQUIRE(prompt);
    REQUIRE(enqueue_one(*own, "jobs"));
  }

  SECTION("close() from another thread returns once the loop has ended the link") {
    auto answer = stalled_enqueue(node, *link);
    link->close();
    // close() returned: the loop ran the link's end, which failed the request.
    REQUIRE(answer.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready);
    CHECK(answer.get().error().code == ErrorCode::UNAVAILABLE);
    ::kill(node.proc().pid(), SIGCONT);
    // The loop goes on with its other links.
    auto other = PeerLink::open({.url = node.proc().endpoint()}, &loop);
    std::thread::id answered_on;
    REQUIRE(enqueue_one(*other, "jobs", &answered_on));
    CHECK(answered_on == loop.id());
  }
}

}  // namespace roost::test
