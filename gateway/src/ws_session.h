// A WebSocket connection speaking the browser protocol (JSON text frames):
//   client → server  {"op":"subscribe","id":1,"channel":"chat.*","since":{"epoch":"…","offset":41}}
//                    {"op":"unsubscribe","id":2,"channel":"chat.*"}
//                    {"op":"publish","id":3,"channel":"chat.room1","data":<JSON>}
//                      (without an id: no ok is sent, only an error if it fails)
//                    {"op":"ping","id":4}
//   server → client  {"op":"message","channel":…,"data":…,"offset":…,"epoch":…}
//                    {"op":"ok","id":1,…}  {"op":"error","id":1,"code":"…","message":"…"}
//                    {"op":"lagged","dropped":n}  {"op":"reset","channel":…,"epoch":…,"offset":…}
//                    {"op":"pong","id":4}
// Frames queued together leave in one WebSocket message, separated by '\n' (newline-delimited
// JSON), so a burst costs one write and one read event instead of one per frame.
// Lives on its own strand; one write in flight; a bounded outgoing queue with the channel's
// slow-consumer policy; WebSocket pings keep it alive and an idle timeout closes it.
#pragma once

#include <roost/channels/hub.h>
#include <roost/channels/outgoing_queue.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <memory>
#include <string>
#include <unordered_map>

#include <roost/core/auth.h>
#include "session_tap.h"
#include "state.h"

namespace roost::gateway {

using roost::Authenticator;
using roost::Principal;

class WsSession : public Closable, public std::enable_shared_from_this<WsSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  WsSession(boost::beast::tcp_stream stream, std::shared_ptr<Server::State> state,
            std::unique_ptr<ConnectionSlot> slot, Principal principal);
  ~WsSession() override;

  // Completes the WebSocket handshake for `req` and starts reading.
  void run(Request req);
  void shutdown() override;

  // Writes what is queued (State::offer calls it too).
  void flush();
  // The subscriber fell behind under a disconnect policy: close it (State::offer calls this).
  void drop_slow();

 private:
  template <class>
  friend class SessionTap;
  void on_accept(boost::beast::error_code ec);
  void read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void handle(std::string_view text);
  void on_channel_message(const channels::MessagePtr& m, bool flush_now = true);
  void send_control(std::string frame);
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void close(boost::beast::websocket::close_code code, const char* reason);
  void cleanup();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<Server::State> state_;
  std::unique_ptr<ConnectionSlot> slot_;
  Principal principal_;
  channels::OutgoingQueue out_;
  std::shared_ptr<channels::Subscriber> tap_;
  std::unordered_map<std::string, std::uint64_t> subscriptions_;  // pattern → hub id
  bool writing_ = false;
  std::size_t batch_frames_ = 0;  // frames of out_ in the write in flight
  std::string batch_;             // the joined message when a batch holds several
  bool closed_ = false;
  static constexpr std::size_t kMaxPublishesWaiting = 1024;
  std::size_t publishes_waiting_ = 0;  // publishes with an id whose answer has not come yet
  bool cleaned_ = false;
};

}  // namespace roost::gateway
