// A Server-Sent Events stream: GET /v1/channels/{pattern}/events. Each message is
//   id: <epoch>:<offset>\ndata: {"op":"message",…}\n\n
// `Last-Event-ID` (or ?since=<epoch>:<offset>) resumes a concrete channel from history; when the
// gap can't be filled an `event: reset` comes first. Lost messages of a slow reader are reported
// as `event: lagged`. A comment line every 15 s keeps proxies from closing the stream.
#pragma once

#include <roost/channels/hub.h>
#include <roost/channels/outgoing_queue.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>

#include <memory>
#include <optional>
#include <string>

#include "session_tap.h"
#include "state.h"

namespace roost::gateway {

class SseSession : public Closable, public std::enable_shared_from_this<SseSession> {
 public:
  SseSession(boost::beast::tcp_stream stream, std::shared_ptr<Server::State> state,
             std::unique_ptr<ConnectionSlot> slot);
  ~SseSession() override;

  // Subscribes and starts streaming; answers an error response instead when subscribing fails.
  void run(std::string pattern, std::optional<channels::Since> since, unsigned http_version);
  void shutdown() override;

  // Writes what is queued (State::offer calls it too).
  void flush();
  // The subscriber fell behind under a disconnect policy: close it (State::offer calls this).
  void drop_slow();

 private:
  template <class>
  friend class SessionTap;
  void on_channel_message(const channels::MessagePtr& m, bool flush_now = true);
  void push_control(std::string event);
  void watch_peer();
  void keep_alive();
  void finish();

  boost::beast::tcp_stream stream_;
  std::shared_ptr<Server::State> state_;
  std::unique_ptr<ConnectionSlot> slot_;
  channels::OutgoingQueue out_;
  boost::asio::steady_timer ping_timer_;
  std::shared_ptr<channels::Subscriber> tap_;
  std::uint64_t subscription_ = 0;
  char peek_[64];
  bool writing_ = false;
  bool closed_ = false;
};

}  // namespace roost::gateway
