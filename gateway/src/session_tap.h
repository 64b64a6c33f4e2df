// The hub's handle on a WebSocket or SSE session: holds the session weakly and hands it messages
// on its strand. Messages arriving while a hand-off is pending join it. A message that reached few
// subscriptions (audience ≤ kDirectAudience), to a session that was quiet, is handed off at once —
// one post, no added latency; the rest go through the DeliveryBatcher, so that a burst reaches
// each session — and leaves in one write — together, and a large fan-out's thousands of posts do
// not crowd out the publishers' reads.
#pragma once

#include <roost/core/channel_types.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "delivery_batcher.h"

namespace roost::gateway {

// Session must have on_channel_message(const MessagePtr&, bool flush_now) and flush(), run on
// its strand (`executor`).
template <class Session>
class SessionTap final : public channels::Subscriber {
 public:
  SessionTap(std::weak_ptr<Session> session, boost::asio::any_io_executor executor, DeliveryBatcher& batcher)
      : session_(std::move(session)), executor_(std::move(executor)), batcher_(batcher) {}

  void deliver(const channels::MessagePtr& m) override {
    bool direct = false;
    {
      MutexLock lock(mu_);
      inbox_.push_back(m);
      if (inbox_.size() > 1) return;  // a hand-off is already on its way
      if (m->audience != 0 && m->audience <= kDirectAudience) {
        auto now = std::chrono::steady_clock::now();
        if (now - last_direct_ >= kDirectGap) {
          direct = true;
          last_direct_ = now;
        }
      }
    }
    auto s = session_.lock();
    if (!s) {
      MutexLock lock(mu_);
      inbox_.clear();
      return;
    }
    if (direct) {
      boost::asio::post(executor_, [this, s = std::move(s)] { take(*s); });
      return;
    }
    batcher_.add([this, s = std::move(s)](DeliveryBatcher::Done done) mutable {
      boost::asio::post(executor_, [this, s = std::move(s), done = std::move(done)] {
        take(*s);
        done();
      });
    });
  }

  static constexpr std::size_t kDirectAudience = 64;
  // At most one direct hand-off per session per gap: a session that keeps receiving (a busy
  // stream) gets the rest of its messages gathered by the batcher, many to a write.
  static constexpr std::chrono::microseconds kDirectGap{1000};

 private:
  // On the session's strand: everything in the inbox, then one write.
  void take(Session& s) {
    std::vector<channels::MessagePtr> batch;
    {
      MutexLock lock(mu_);
      batch.swap(inbox_);
    }
    for (const auto& msg : batch) s.on_channel_message(msg, false);
    s.flush();  // the whole batch leaves in one write
  }

  std::weak_ptr<Session> session_;
  boost::asio::any_io_executor executor_;
  DeliveryBatcher& batcher_;
  Mutex mu_;
  std::vector<channels::MessagePtr> inbox_ ROOST_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_direct_ ROOST_GUARDED_BY(mu_){};
};

}  // namespace roost::gateway
