// Gathers channel deliveries before sessions write them. A session with new messages registers
// once; a thread hands each registered session its batch in rounds, at most one round per
// `interval`, so a session receiving a burst of publishes writes them together (one system call
// and one WebSocket message) instead of one by one. The first round after a quiet spell starts at
// once; under load a delivery waits at most `interval` for its round.
//
// Thread-safe.
#pragma once

#include <roost/core/thread_annotations.h>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace roost::gateway {

class DeliveryBatcher {
 public:
  explicit DeliveryBatcher(std::chrono::microseconds interval = std::chrono::microseconds(1000))
      : interval_(interval), thread_([this] { run(); }) {}
  ~DeliveryBatcher() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  DeliveryBatcher(const DeliveryBatcher&) = delete;
  DeliveryBatcher& operator=(const DeliveryBatcher&) = delete;

  using Done = std::function<void()>;
  // `hand_off` runs on the batcher's thread within `interval`: it should post to the session and
  // call `done` once the session has taken its batch.
  void add(std::move_only_function<void(Done)> hand_off) {
    bool first;
    {
      MutexLock lock(mu_);
      first = due_.empty();
      due_.push_back(std::move(hand_off));
    }
    if (first) cv_.notify_one();
  }

 private:
  void run() {
    std::vector<std::move_only_function<void(Done)>> batch;
    auto last_round = std::chrono::steady_clock::time_point{};
    MutexLock lock(mu_);
    for (;;) {
      while (!stop_ && due_.empty()) cv_.wait(lock.native());
      if (stop_) break;
      // At most one round per interval: after a quiet spell the first deliveries leave at once;
      // under load a round waits out the rest of the interval, and the burst gathers meanwhile.
      auto next = last_round + interval_;
      if (std::chrono::steady_clock::now() < next) {
        lock.unlock();
        std::this_thread::sleep_until(next);
        lock.lock();
      }
      last_round = std::chrono::steady_clock::now();
      batch.swap(due_);
      lock.unlock();
      // Hand off in chunks and wait for each to be taken, so that the io threads also get to
      // the publishers' frames in between and later chunks carry more messages per session.
      for (std::size_t i = 0; i < batch.size(); i += kChunk) {
        std::size_t end = std::min(batch.size(), i + kChunk);
        {
          MutexLock g(done_mu_);
          outstanding_ = end - i;
        }
        for (std::size_t j = i; j < end; ++j) batch[j]([this] { taken(); });
        MutexLock d(done_mu_);
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
        while (outstanding_ != 0) {
          if (done_cv_.wait_until(d.native(), until) == std::cv_status::timeout) break;
        }
      }
      batch.clear();
      lock.lock();
    }
    for (auto& fn : due_) fn([] {});  // hand off what is left
    due_.clear();
  }

  void taken() {
    MutexLock g(done_mu_);
    if (outstanding_ > 0 && --outstanding_ == 0) done_cv_.notify_one();
  }

  static constexpr std::size_t kChunk = 256;
  Mutex done_mu_;
  std::condition_variable done_cv_;
  std::size_t outstanding_ ROOST_GUARDED_BY(done_mu_) = 0;

  std::chrono::microseconds interval_;
  Mutex mu_;
  std::condition_variable cv_;
  std::vector<std::move_only_function<void(Done)>> due_ ROOST_GUARDED_BY(mu_);
  bool stop_ ROOST_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace roost::gateway
