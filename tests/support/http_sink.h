// A small HTTP/1.1 service on 127.0.0.1 for push and webhook tests: every request is recorded and
// answered by the test's handler (which may block, to play a slow or dead service). One thread per
// connection (keep-alive), all joined by the destructor.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace roost::test {

struct SinkRequest {
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::chrono::steady_clock::time_point at;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct SinkReply {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

class HttpSink {
 public:
  using Handler = std::function<SinkReply(const SinkRequest&)>;

  explicit HttpSink(Handler handler = nullptr) : handler_(std::move(handler)) {
    namespace asio = boost::asio;
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~HttpSink() {
    stopping_ = true;
    release();
    boost::system::error_code ec;
    {
      // A blocked accept() is not woken by close() from another thread: connect once instead.
      boost::asio::ip::tcp::socket wake(io_);
      wake.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    acceptor_.close(ec);
    {
      std::lock_guard lock(mu_);
      for (auto* s : sockets_) s->shutdown(boost::asio::socket_base::shutdown_both, ec);
    }
    for (auto& t : threads_) t.join();
  }

  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  unsigned short port() const { return port_; }

  std::vector<SinkRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  // Requests being handled right now, most at once so far.
  int in_flight() const { return in_flight_.load(); }
  int max_in_flight() const { return max_in_flight_.load(); }

  // A handler may call hold() to wait until the test calls release() (a service that hangs).
  void hold() {
    std::unique_lock lock(gate_mu_);
    gate_cv_.wait(lock, [this] { return released_ || stopping_; });
  }
  void release() {
    std::lock_guard lock(gate_mu_);
    released_ = true;
    gate_cv_.notify_all();
  }

  // Waits until `n` requests were recorded (or `limit` passed). True if they were.
  bool wait_for(std::size_t n, std::chrono::milliseconds limit = std::chrono::seconds(20)) const {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (count() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      auto socket = std::make_unique<boost::asio::ip::tcp::socket>(io_);
      boost::system::error_code ec;
      acceptor_.accept(*socket, ec);
      if (ec || stopping_) return;
      std::lock_guard lock(mu_);
      if (threads_.size() > 512) return;  // bounded: a test never needs more
      sockets_.push_back(socket.get());
      threads_.emplace_back([this, s = std::move(socket)]() mutable { serve(*s); });
    }
  }

  void serve(boost::asio::ip::tcp::socket& socket) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(socket, buffer, req, ec);
      if (ec) break;
      SinkRequest r;
      r.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      r.body = req.body();
      r.at = std::chrono::steady_clock::now();
      int now = ++in_flight_;
      for (int m = max_in_flight_.load(); now > m && !max_in_flight_.compare_exchange_weak(m, now);) {
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(r);
      }
      SinkReply reply = handler_ ? handler_(r) : SinkReply{};
      --in_flight_;
      http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
      for (auto& [k, v] : reply.headers) res.set(k, v);
      res.body() = reply.body;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(socket, res, ec);
      if (ec || !req.keep_alive() || stopping_) break;
    }
    boost::system::error_code ec;
    socket.shutdown(boost::asio::socket_base::shutdown_both, ec);
    std::lock_guard lock(mu_);
    std::erase(sockets_, &socket);
  }

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  unsigned short port_ = 0;
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<SinkRequest> requests_;
  std::vector<std::thread> threads_;
  std::vector<boost::asio::ip::tcp::socket*> sockets_;
  std::atomic<int> in_flight_{0}, max_in_flight_{0};
  std::atomic<bool> stopping_{false};
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool released_ = false;
};

}  // namespace roost::test
