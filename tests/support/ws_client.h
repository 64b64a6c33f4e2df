// A blocking WebSocket client for integration tests (Beast), with timeouts on every step.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>

namespace roost::test {

struct WsOptions {
  std::string target = "/v1/ws";
  std::string origin;
  std::string token;                                         // sent as ?token=
  bool compression = false;                                  // offer permessage-deflate
  std::vector<std::pair<std::string, std::string>> headers;  // more request headers
};

class WsClient {
 public:
  using Options = WsOptions;

  explicit WsClient(int port, WsOptions options = WsOptions{}) : ws_(io_) {
    namespace beast = boost::beast;
    boost::asio::ip::tcp::resolver resolver(io_);
    auto& tcp = beast::get_lowest_layer(ws_);
    tcp.expires_after(std::chrono::seconds(5));
    tcp.connect(resolver.resolve("127.0.0.1", std::to_string(port)));
    tcp.expires_never();
    std::string origin = options.origin;
    auto headers = options.headers;
    ws_.set_option(
        beast::websocket::stream_base::decorator([origin, headers](beast::websocket::request_type& req) {
          if (!origin.empty()) req.set(beast::http::field::origin, origin);
          for (const auto& [k, v] : headers) req.set(k, v);
        }));
    if (options.compression) {
      beast::websocket::permessage_deflate pmd;
      pmd.client_enable = true;
      ws_.set_option(pmd);
    }
    std::string target = options.target;
    if (!options.token.empty()) target += "?token=" + options.token;
    beast::error_code ec;
    run([&](auto h) { ws_.async_handshake(response_, "127.0.0.1:" + std::to_string(port), target, h); }, 5000,
        ec);
    if (ec) throw std::runtime_error("handshake failed: HTTP " + std::to_string(response_.result_int()));
    ws_.text(true);
  }

  unsigned handshake_status() const { return response_.result_int(); }
  std::string handshake_header(boost::beast::http::field f) const { return std::string(response_[f]); }

  void send(const std::string& text) {
    boost::beast::error_code ec;
    run(
        [&](auto h) {
          ws_.async_write(boost::asio::buffer(text), [h](auto e, std::size_t) mutable { h(e); });
        },
        5000, ec);
    if (ec) throw boost::system::system_error(ec);
  }
  void send_binary(const std::string& bytes) {
    ws_.binary(true);
    send(bytes);
    ws_.text(true);
  }
  void send(const boost::json::value& v) { send(boost::json::serialize(v)); }
  void send(const char* text) { send(std::string(text)); }

  // The next frame, or nullopt on timeout (the read stays pending for the next call: a cancelled
  // WebSocket read would fail the stream). Throws when the connection closed.
  std::optional<boost::json::value> recv(int timeout_ms = 3000) {
    if (!queued_.empty()) {
      auto first = std::move(queued_.front());
      queued_.pop_front();
      return boost::json::parse(first);
    }
    if (!reading_) {
      reading_ = true;
      read_done_ = false;
      ws_.async_read(buffer_, [this](boost::beast::error_code e, std::size_t) {
        read_ec_ = e;
        read_done_ = true;
      });
    }
    io_.restart();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!read_done_ && std::chrono::steady_clock::now() < deadline) {
      io_.run_one_for(std::chrono::milliseconds(20));
    }
    if (!read_done_) return std::nullopt;
    reading_ = false;
    if (read_ec_) throw boost::system::system_error(read_ec_);
    auto text = boost::beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    last_binary_ = ws_.got_binary();
    // One message may carry several frames, one per line: hand them out one at a time.
    std::size_t start = 0;
    for (;;) {
      auto nl = text.find('\n', start);
      queued_.push_back(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    auto first = std::move(queued_.front());
    queued_.pop_front();
    return boost::json::parse(first);
  }
  // The next frame whose op is `op`, skipping others; throws if none comes in time.
  boost::json::value expect(const std::string& op, int timeout_ms = 3000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto f = recv(static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         deadline - std::chrono::steady_clock::now())
                                         .count()) +
                    1);
      if (!f) break;
      if (f->at("op") == op.c_str()) return *f;
    }
    throw std::runtime_error("no '" + op + "' frame in time");
  }
  // Reads until the server closes; returns the close code (0 if it did not close in time).
  int wait_closed(int timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        if (!recv(100)) continue;
      } catch (const boost::system::system_error&) {
        return ws_.reason().code;
      }
    }
    return 0;
  }
  void close() {
    boost::beast::error_code ec;
    run([&](auto h) { ws_.async_close(boost::beast::websocket::close_code::normal, h); }, 2000, ec);
  }
  // A close handshake with this code and reason.
  void close(std::uint16_t code, const std::string& reason) {
    boost::beast::error_code ec;
    boost::beast::websocket::close_reason cr;
    cr.code = code;
    cr.reason = reason;
    run([&](auto h) { ws_.async_close(cr, h); }, 2000, ec);
  }
  // Drops the TCP connection without a close handshake (the server sees 1006).
  void drop() {
    boost::beast::error_code ec;
    boost::beast::get_lowest_layer(ws_).socket().close(ec);
  }

 private:
  // Runs one async operation to completion or timeout (then cancels it). True if it completed.
  template <class Start>
  bool run(Start start, int timeout_ms, boost::beast::error_code& ec) {
    bool done = false;
    start([&](boost::beast::error_code e) {
      ec = e;
      done = true;
    });
    io_.restart();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!done && std::chrono::steady_clock::now() < deadline)
      io_.run_one_for(std::chrono::milliseconds(20));
    if (!done) {
      boost::beast::get_lowest_layer(ws_).cancel();
      io_.restart();
      while (!done) io_.run_one();
      return false;
    }
    return true;
  }

  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::websocket::response_type response_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> queued_;  // frames of a message not handed out yet
  bool reading_ = false;
  bool read_done_ = false;
  bool last_binary_ = false;
  boost::beast::error_code read_ec_;
};

}  // namespace roost::test
