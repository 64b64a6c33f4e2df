// The hub's handle on a WebSocket or SSE session: holds the session weakly and hands it messages
// on its strand. Messages arriving while a hand-off is pending join it; hand-offs go through the
// DeliveryBatcher, so a burst reaches the session — and leaves in one write — together.
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
    batcher_.add([this, s = std::move(s)](DeliveryBatcher::Done done) mutable {
      boost::asio::post(executor_, [this, s = std::move(s), done = std::move(done)] {
        std::vector<channels::MessagePtr> batch;
        {
          std::lock_guard lock(mu_);
          batch.swap(inbox_);
        }
        for (const auto& msg : batch) s->on_channel_message(msg, false);
        s->flush();  // the whole batch leaves in one write
        done();
      });
    });
  }

 private:
  std::weak_ptr<Session> session_;
  boost::asio::any_io_executor executor_;
  DeliveryBatcher& batcher_;
  std::mutex mu_;
  std::vector<channels::MessagePtr> inbox_;  // GUARDED_BY(mu_)
};

}  // namespace roost::gateway
