// The Committer's group policy on a real LMDB environment: requests that arrive while a group is
// being written wait for the clients that group answered (gathering), and a lone client waiting
// for each answer is never held back.
#include <catch2/catch.hpp>

#include <roost/durable/committer.h>
#include <roost/durable/env.h>

#include <chrono>
#include <future>
#include <thread>

#include "../support/temp_dir.h"

using namespace roost;
using namespace roost::durable;
using namespace std::chrono_literals;

namespace {

// Records which commit (the committer's commit count when it completed) carried it; `during`
// runs inside the transaction, `after` on completion.
class ProbeOp final : public Op {
 public:
  ProbeOp(const Committer& c, std::function<void()> during, std::function<void()> after)
      : committer_(c), during_(std::move(during)), after_(std::move(after)) {}
  void apply(WriteContext&) override {
    if (during_) during_();
  }
  void complete(const Error*) override {
    done.set_value(committer_.metrics().commits.load());
    if (after_) after_();
  }
  std::promise<std::uint64_t> done;

 private:
  const Committer& committer_;
  std::function<void()> during_, after_;
};

struct Run {
  std::uint64_t b_commit = 0, c_commit = 0, gathers = 0;
};

// A's commit takes 100 ms; B arrives meanwhile; C (A's client sending again) `c_delay` after A's
// answer.
Run pipelined(std::chrono::microseconds max_gather, std::chrono::milliseconds c_delay) {
  test::TempDir dir;
  EnvOptions eo;
  eo.dir = dir.path();
  Env env(eo);
  CommitterOptions co;
  co.max_gather = max_gather;
  Committer committer(env, co, [] { return std::int64_t{0}; });
  committer.start();
  std::promise<void> a_started;
  std::thread sender;
  auto c = std::make_unique<ProbeOp>(committer, nullptr, nullptr);
  auto c_done = c->done.get_future();
  auto a = std::make_unique<ProbeOp>(
      committer,
      [&] {
        a_started.set_value();
        std::this_thread::sleep_for(100ms);
      },
      [&] {
        sender = std::thread([&committer, c_delay, &c] {
          std::this_thread::sleep_for(c_delay);
          committer.submit(std::move(c));
        });
      });
  auto b = std::make_unique<ProbeOp>(committer, nullptr, nullptr);
  auto b_done = b->done.get_future();
  committer.submit(std::move(a));
  a_started.get_future().wait();
  committer.submit(std::move(b));
  Run r;
  r.b_commit = b_done.get();
  r.c_commit = c_done.get();
  sender.join();
  r.gathers = committer.metrics().gathers.load();
  committer.stop();
  return r;
}

}  // namespace

TEST_CASE("committer: a request that arrived during a commit waits for the clients it answered", "[durable]") {
  auto on = pipelined(std::chrono::microseconds(50'000), 2ms);  // generous: 2 ms needed
  CHECK(on.gathers == 1);
  CHECK(on.b_commit == on.c_commit);  // B and C in one group: one flush for both
  auto off = pipelined(std::chrono::microseconds(0), 20ms);
  CHECK(off.gathers == 0);
  CHECK(off.c_commit == off.b_commit + 1);  // without gathering, C waits for the next group
}

TEST_CASE("committer: a lone client waiting for each answer is never held back", "[durable]") {
  test::TempDir dir;
  EnvOptions eo;
  eo.dir = dir.path();
  Env env(eo);
  CommitterOptions co;
  co.max_gather = std::chrono::microseconds(500'000);  // would show as half-second stalls
  Committer committer(env, co, [] { return std::int64_t{0}; });
  committer.start();
  for (int i = 0; i < 20; ++i) {
    auto op = std::make_unique<ProbeOp>(committer, nullptr, nullptr);
    auto done = op->done.get_future();
    committer.submit(std::move(op));
    done.get();
  }
  CHECK(committer.metrics().gathers.load() == 0);
  committer.stop();
}
