// A remote actor host's connection: GET /v1/hosts/connect (docs/hosts.md).
//
// The gateway only carries the frames: JSON text frames in both directions, the protocol itself is
// the broker's (RemoteHosts). Frames may be larger than on /v1/ws (a storage value of 1 MiB in
// base64); outgoing frames wait in a bounded queue (65,536 frames or 64 MiB; past it the host is
// too slow: the broker is told at once and the socket is torn down, no close handshake behind a
// write that does not move). A close that waits behind a write is torn down after kCloseGrace.
// Ping/pong keep-alive and idle timeout as /v1/ws.
#pragma once

#include <roost/core/router.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "state.h"

namespace roost::gateway {

class HostWsSession : public Closable, public std::enable_shared_from_this<HostWsSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  HostWsSession(boost::beast::tcp_stream stream, std::shared_ptr<Server::State> state,
                std::unique_ptr<ConnectionSlot> slot);
  ~HostWsSession() override;

  void run(Request req, HostGrant grant);
  void shutdown() override;

  // The broker's side (any thread). send() refuses once the queue is over its bound.
  bool post_send(std::string text);
  void post_close(std::uint16_t code, std::string reason);
  std::size_t queued_bytes() const { return queued_bytes_.load(); }

 private:
  void on_accept(boost::beast::error_code ec);
  void read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void flush();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void close(std::uint16_t code, std::string reason);
  // Ends the connection now: the broker is told, waiting frames are dropped, the TCP socket closed.
  void teardown();
  void ended();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  std::shared_ptr<Server::State> state_;
  std::unique_ptr<ConnectionSlot> slot_;
  HostGrant grant_;
  std::shared_ptr<HostSession> session_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> out_;
  std::atomic<std::size_t> queued_frames_{0};
  std::atomic<std::size_t> queued_bytes_{0};
  std::atomic<bool> closing_{false};
  bool accepted_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool ended_ = false;
  std::optional<std::pair<std::uint16_t, std::string>> pending_close_;  // after the queued frames
  boost::asio::steady_timer close_timer_;  // a close waiting behind a stuck write
};

}  // namespace roost::gateway
