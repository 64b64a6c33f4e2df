// The LocalRouter's long polls: a pull that found nothing waits, parked per queue, until the
// queue has ready messages (the store's readiness notification, on the committer thread) or its
// deadline passes (a timer on the router's io_context); a client that went away ends its poll
// without leasing. An epoch per queue closes the race between an empty pull and a notification
// that arrived while it was in flight.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <roost/core/queue_types.h>
#include <roost/core/thread_annotations.h>
#include <roost/durable/queue_store.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace roost::broker {

class LongPolls {
 public:
  LongPolls(durable::QueueStore& queues, boost::asio::io_context& timers)
      : queues_(queues), timers_(timers) {}
  ~LongPolls();
  LongPolls(const LongPolls&) = delete;
  LongPolls& operator=(const LongPolls&) = delete;

  // A pull: at once (wait_ms 0), or waiting up to wait_ms for messages.
  void pull(std::string name, PullOptions options, std::uint64_t wait_ms,
            Callback<std::vector<LeasedMessage>> done, std::shared_ptr<const std::atomic<bool>> gone);
  // `queue` has ready messages: its parked polls pull again.
  void on_ready(const std::string& queue);
  // Answers every waiting poll (with no messages); new ones answer at once.
  void shutdown();
  std::uint64_t count() const { return count_.load(); }
  std::uint64_t abandoned() const { return abandoned_.load(); }

 private:
  struct Waiter;
  void attempt(std::shared_ptr<Waiter> w);
  std::uint64_t ready_epoch(const std::string& queue);

  durable::QueueStore& queues_;
  boost::asio::io_context& timers_;
  Mutex mu_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Waiter>>> waiters_ ROOST_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::uint64_t> epochs_ ROOST_GUARDED_BY(mu_);
  bool shut_down_ ROOST_GUARDED_BY(mu_) = false;
  std::atomic<std::uint64_t> count_{0};      // pulls that waited
  std::atomic<std::uint64_t> abandoned_{0};  // ended without leasing: the client went away
};

}  // namespace roost::broker
