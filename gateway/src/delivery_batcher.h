// Gathers channel deliveries for a moment before sessions write them. A session with new
// messages registers once; a thread wakes every `interval` and hands each registered session
// its batch, so a session receiving a burst of publishes writes them together (one system call
// and one WebSocket message) instead of one by one. Costs at most `interval` of latency.
//
// Thread-safe.
#pragma once

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
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  DeliveryBatcher(const DeliveryBatcher&) = delete;
  DeliveryBatcher& operator=(const DeliveryBatcher&) = delete;

  // `hand_off` runs on the batcher's thread within `interval`: it should post to the session.
  void add(std::move_only_function<void()> hand_off) {
    bool first;
    {
      std::lock_guard lock(mu_);
      first = due_.empty();
      due_.push_back(std::move(hand_off));
    }
    if (first) cv_.notify_one();
  }

 private:
  void run() {
    std::vector<std::move_only_function<void()>> batch;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !due_.empty(); });
      if (stop_) break;
      lock.unlock();
      std::this_thread::sleep_for(interval_);  // let the burst gather
      lock.lock();
      batch.swap(due_);
      lock.unlock();
      for (auto& fn : batch) fn();
      batch.clear();
      lock.lock();
    }
    for (auto& fn : due_) fn();  // hand off what is left
    due_.clear();
  }

  std::chrono::microseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::move_only_function<void()>> due_;  // GUARDED_BY(mu_)
  bool stop_ = false;                                  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace roost::gateway
