// A QueueStore on a fresh LMDB environment with a manual clock, and blocking wrappers over the
// store's asynchronous calls. restart() closes everything and opens the same directory again.
#pragma once

#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/queue_store.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <set>

#include "../support/temp_dir.h"

namespace roost::test {

template <class T, class F>
durable::Result<T> wait_for(F&& call) {
  std::promise<durable::Result<T>> promise;
  auto future = promise.get_future();
  call([&promise](durable::Result<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}

class StoreFixture {
 public:
  explicit StoreFixture(durable::EnvOptions env_options = {}, durable::QueueStoreOptions opts = {})
      : env_options_(std::move(env_options)), store_options_(opts) {
    if (env_options_.dir.empty()) env_options_.dir = dir_.path() / "data";
    open();
  }
  ~StoreFixture() { close(); }

  void open() {
    env_ = std::make_unique<durable::Env>(env_options_);
    durable::CommitterOptions copts;
    copts.maintenance_interval = std::chrono::milliseconds(3'600'000);  // tests call maintain()
    auto clock = [this] { return now_.load(); };
    committer_ = std::make_unique<durable::Committer>(*env_, copts, clock);
    store_ = std::make_unique<durable::QueueStore>(*env_, *committer_, store_options_, clock);
    store_->set_gate([this](std::string_view q) {
      std::lock_guard lock(gate_mu_);
      return closed_.contains(std::string(q));
    });
    committer_->start();
  }
  void close() {
    if (committer_) committer_->stop();
    store_.reset();
    committer_.reset();
    env_.reset();
  }
  void restart() {
    close();
    open();
  }
  // Runs one maintenance pass (promotions, expiries) and waits for it.
  void maintain() {
    committer_->poke();
    // A no-op write queued behind the poke: when it completes, the pass has run.
    (void)wait_for<QueueInfo>([&](auto cb) { store_->put_queue("__sync", {}, std::move(cb)); });
  }
  void advance(std::int64_t ms) { now_ += ms; }
  // Closes a queue as a shard move does (the store's gate), or opens it again.
  void set_closed(const std::string& q, bool closed) {
    std::lock_guard lock(gate_mu_);
    if (closed) {
      closed_.insert(q);
    } else {
      closed_.erase(q);
    }
  }

  durable::Result<QueueInfo> put(const std::string& q, QueueConfigPatch patch = {}) {
    return wait_for<QueueInfo>([&](auto cb) { store_->put_queue(q, patch, std::move(cb)); });
  }
  durable::Result<std::vector<std::string>> enqueue(const std::string& q, std::vector<NewMessage> msgs) {
    return wait_for<std::vector<std::string>>(
        [&](auto cb) { store_->enqueue(q, std::move(msgs), std::move(cb)); });
  }
  durable::Result<std::vector<std::string>> enqueue1(const std::string& q, std::string body,
                                                     std::string key = {}, std::string id = {},
                                                     std::uint64_t delay = 0) {
    NewMessage m;
    m.body = std::move(body);
    m.key = std::move(key);
    m.id = std::move(id);
    m.delay_ms = delay;
    return enqueue(q, {std::move(m)});
  }
  durable::Result<std::vector<LeasedMessage>> pull(const std::string& q, std::uint32_t n = 10,
                                                   std::optional<std::uint64_t> vis = {}) {
    PullOptions o;
    o.batch_size = n;
    o.visibility_timeout_ms = vis;
    return wait_for<std::vector<LeasedMessage>>([&](auto cb) { store_->pull(q, o, std::move(cb)); });
  }
  durable::Result<AckResult> ack(const std::string& q, std::vector<std::string> acks,
                                 std::vector<RetryRequest> retries = {}) {
    return wait_for<AckResult>(
        [&](auto cb) { store_->ack(q, std::move(acks), std::move(retries), std::move(cb)); });
  }
  durable::Result<std::uint64_t> redrive(const std::string& from, const std::string& to,
                                         std::uint64_t max = 0) {
    return wait_for<std::uint64_t>([&](auto cb) { store_->redrive(from, to, max, std::move(cb)); });
  }
  durable::Result<bool> del(const std::string& q) {
    return wait_for<bool>([&](auto cb) { store_->delete_queue(q, std::move(cb)); });
  }
  durable::Result<std::uint64_t> purge(const std::string& q) {
    return wait_for<std::uint64_t>([&](auto cb) { store_->purge(q, std::move(cb)); });
  }
  durable::Result<std::vector<LeasedMessage>> peek(const std::string& q, std::uint32_t n = 10) {
    return wait_for<std::vector<LeasedMessage>>([&](auto cb) { store_->peek(q, n, std::move(cb)); });
  }
  QueueStats stats(const std::string& q) { return store_->get_queue(q).value().stats; }

  durable::QueueStore& store() { return *store_; }
  durable::Committer& committer() { return *committer_; }
  durable::Env& env() { return *env_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_{"roost-store"};
  durable::EnvOptions env_options_;
  durable::QueueStoreOptions store_options_;
  std::atomic<std::int64_t> now_{1'700'000'000'000};
  std::mutex gate_mu_;
  std::set<std::string> closed_;
  std::unique_ptr<durable::Env> env_;
  std::unique_ptr<durable::Committer> committer_;
  std::unique_ptr<durable::QueueStore> store_;
};

}  // namespace roost::test
