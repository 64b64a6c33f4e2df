// One HTTP/1.1 connection: reads a request, hands it to the routes, writes the response, and
// loops while keep-alive holds. One request in flight per connection; the session lives on its
// own strand. Request bodies and headers are bounded by the server's limits.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <memory>
#include <optional>

#include "state.h"

namespace roost::gateway {

class HttpSession : public Closable, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, std::shared_ptr<Server::State> state,
              std::unique_ptr<ConnectionSlot> slot);
  ~HttpSession() override;

  void start();
  // Closes the connection if idle; otherwise after the response in progress. Any thread.
  void shutdown() override;

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  void read();
  void parse_buffered();
  void watch_for_close(std::shared_ptr<std::atomic<bool>> gone);
  bool peer_closed(const std::shared_ptr<std::atomic<bool>>& gone);
  std::size_t read_limit() const;  // the most unparsed bytes buffer_ may hold
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void send(Response res);
  void on_write(bool close, boost::beast::error_code ec, std::size_t bytes);
  void close();
  // Hands the connection to a WebSocket or SSE session when `req` asks for one.
  bool upgrade(Request& req);
  // A WebSocket upgrade under app_routes: the front code names the object that takes it.
  void front_upgrade(Request req, std::string claims);
  void on_front_upgrade(Request req, std::string claims, Result<FrontReply> r);

  boost::beast::tcp_stream stream_;
  boost::asio::steady_timer watch_timer_;            // a long poll's periodic check for a closed client
  std::shared_ptr<std::atomic<bool>> gone_watched_;  // the request being watched (strand only)
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<Server::State> state_;
  std::unique_ptr<ConnectionSlot> slot_;
  boost::asio::ip::address remote_;
  bool busy_ = false;     // a request is being handled (strand only)
  bool closing_ = false;  // close after the current response (strand only)
  bool counted_ = false;  // in_flight incremented for the current request
  unsigned request_version_ = 11;
  bool request_keep_alive_ = true;
};

}  // namespace roost::gateway
