#include "roost/broker/long_polls.h"

#include <boost/asio/steady_timer.hpp>

namespace roost::broker {

namespace asio = boost::asio;

struct LongPolls::Waiter {
  Waiter(asio::io_context& io, std::string q, PullOptions o, Callback<std::vector<LeasedMessage>> cb,
         std::chrono::steady_clock::time_point until, std::shared_ptr<const std::atomic<bool>> g)
      : queue(std::move(q)),
        options(o),
        done(std::move(cb)),
        deadline(until),
        timer(io),
        gone(std::move(g)) {}
  std::string queue;
  PullOptions options;
  Callback<std::vector<LeasedMessage>> done;
  std::chrono::steady_clock::time_point deadline;
  asio::steady_timer timer;
  std::shared_ptr<const std::atomic<bool>> gone;  // the client went away: lease nothing more
  std::atomic<bool> finished{false};

  bool abandoned() const { return gone && gone->load(); }
  bool timer_armed = false;  // under the polls' mu_ (not named here: a Waiter has no LongPolls)
  bool timer_fired = false;  // under the polls' mu_

  void finish(Result<std::vector<LeasedMessage>> r) {
    if (finished.exchange(true)) return;
    done(std::move(r));
  }
};

LongPolls::~LongPolls() { shutdown(); }

void LongPolls::shutdown() {
  std::unordered_map<std::string, std::vector<std::shared_ptr<Waiter>>> waiting;
  {
    MutexLock lock(mu_);
    shut_down_ = true;
    waiting.swap(waiters_);
  }
  for (auto& [q, list] : waiting) {
    for (auto& w : list) {
      w->timer.cancel();
      w->finish(std::vector<LeasedMessage>{});
    }
  }
}

std::uint64_t LongPolls::ready_epoch(const std::string& queue) {
  MutexLock lock(mu_);
  auto it = epochs_.find(queue);
  return it == epochs_.end() ? 0 : it->second;
}

void LongPolls::pull(std::string name, PullOptions options, std::uint64_t wait_ms,
                     Callback<std::vector<LeasedMessage>> done,
                     std::shared_ptr<const std::atomic<bool>> gone) {
  if (gone && gone->load()) {
    done(std::vector<LeasedMessage>{});
    return;
  }
  if (wait_ms == 0) {
    queues_.pull(std::move(name), options, std::move(done));
    return;
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  auto w = std::make_shared<Waiter>(timers_, std::move(name), options, std::move(done),
                                    std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms),
                                    std::move(gone));
  attempt(std::move(w));
}

// One pull for a long-polling waiter. Empty and still in time: park it until the queue has ready
// messages (on_ready) or the deadline passes. The epoch closes the race between an empty pull and
// a notification that arrived while it was in flight.
void LongPolls::attempt(std::shared_ptr<Waiter> w) {
  if (w->abandoned()) {
    abandoned_.fetch_add(1, std::memory_order_relaxed);
    w->finish(std::vector<LeasedMessage>{});
    return;
  }
  std::uint64_t epoch = ready_epoch(w->queue);
  queues_.pull(w->queue, w->options, [this, w, epoch](Result<std::vector<LeasedMessage>> r) {
    if (!r || !r->empty() || std::chrono::steady_clock::now() >= w->deadline) {
      w->finish(std::move(r));
      return;
    }
    MutexLock lock(mu_);
    if (shut_down_ || w->timer_fired) {
      lock.unlock();
      w->finish(std::move(r));
      return;
    }
    auto it = epochs_.find(w->queue);
    if (it != epochs_.end() && it->second != epoch) {
      lock.unlock();
      attempt(w);  // something became ready meanwhile: try again now
      return;
    }
    waiters_[w->queue].push_back(w);
    if (!w->timer_armed) {
      w->timer_armed = true;
      w->timer.expires_at(w->deadline);
      w->timer.async_wait([this, w](boost::system::error_code ec) {
        if (ec) return;  // cancelled at shutdown
        bool parked = false;
        {
          MutexLock lock2(mu_);
          w->timer_fired = true;
          if (auto found = waiters_.find(w->queue); found != waiters_.end()) {
            parked = std::erase(found->second, w) > 0;
            if (found->second.empty()) waiters_.erase(found);
          }
        }
        // Not parked: a pull is in flight and will answer, as the deadline has passed.
        if (parked) w->finish(std::vector<LeasedMessage>{});
      });
    }
  });
}

void LongPolls::on_ready(const std::string& queue) {
  std::vector<std::shared_ptr<Waiter>> woken;
  {
    MutexLock lock(mu_);
    ++epochs_[queue];
    auto it = waiters_.find(queue);
    if (it == waiters_.end()) return;
    woken.swap(it->second);
    waiters_.erase(it);
  }
  // Runs on the committer thread: submit the retries, do not wait for them.
  for (auto& w : woken) attempt(w);
}

}  // namespace roost::broker
