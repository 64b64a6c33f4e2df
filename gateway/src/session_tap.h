// The hub's handle on a WebSocket or SSE session: holds the session weakly and hands it messages
// on its strand. Messages arriving while a hand-off is pending join it. A message that reached few
// subscriptions (audience ≤ kDirectAudience) is handed off at once — one post, no added latency;
// a large fan-out goes through the DeliveryBatcher, so that a burst reaches each session — and
// leaves in one write — together, and ten thousand posts do not crowd out the publishers' reads.
#pragma once

#include <roost/channels/message.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

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
    {
      std::lock_guard lock(mu_);
      inbox_.push_back(m);
      if (inbox_.size() > 1) return;  // a hand-off is already on its way
    }
    auto s = session_.lock();
    if (!s) {
      std::lock_guard lock(mu_);
      inbox_.clear();
      return;
    }
    if (m->audience != 0 && m->audience <= kDirectAudience) {
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

 private:
  // On the session's strand: everything in the inbox, then one write.
  void take(Session& s) {
    std::vector<channels::MessagePtr> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(inbox_);
    }
    for (const auto& msg : batch) s.on_channel_message(msg, false);
    s.flush();  // the whole batch leaves in one write
  }

  std::weak_ptr<Session> session_;
  boost::asio::any_io_executor executor_;
  DeliveryBatcher& batcher_;
  std::mutex mu_;
  std::vector<channels::MessagePtr> inbox_;  // GUARDED_BY(mu_)
};

}  // namespace roost::gateway
