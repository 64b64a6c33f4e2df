// A hostile HTTP service on 127.0.0.1 for push tests: it reads each request's header block (and a
// Content-Length body), then hands the connection to the test's `answer`, which writes whatever
// bytes it wants — a broken answer, an endless one (bounded by the test), or a proper one. One
// connection at a time; the destructor ends what runs.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace roost::test {

class RawHttpServer {
 public:
  using tcp = boost::asio::ip::tcp;
  // `answer(socket, request_number, request_body)`: writes the answer; returns false to close the
  // connection after it (true keeps it for the next request).
  using Answer = std::function<bool(tcp::socket&, int, const std::string&)>;

  explicit RawHttpServer(Answer answer) : answer_(std::move(answer)) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
    acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { run(); });
  }
  ~RawHttpServer() {
    stopping_ = true;
    boost::system::error_code ec;
    {
      tcp::socket wake(io_);  // a blocked accept() is woken by a connection, not by close()
      wake.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    }
    thread_.join();
  }
  RawHttpServer(const RawHttpServer&) = delete;
  RawHttpServer& operator=(const RawHttpServer&) = delete;

  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int requests() const { return requests_.load(); }
  bool stopping() const { return stopping_.load(); }

 private:
  void run() {
    while (!stopping_) {
      tcp::socket s(io_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stopping_) return;
      for (;;) {
        boost::asio::streambuf buf;
        auto n = boost::asio::read_until(s, buf, "\r\n\r\n", ec);
        if (ec) break;
        std::string head(boost::asio::buffers_begin(buf.data()), boost::asio::buffers_begin(buf.data()) + n);
        buf.consume(n);
        std::size_t length = 0;
        if (auto at = head.find("Content-Length: "); at != std::string::npos) {
          length = std::stoul(head.substr(at + 16));
        }
        std::string body(boost::asio::buffers_begin(buf.data()), boost::asio::buffers_end(buf.data()));
        if (body.size() < length) {
          std::string rest(length - body.size(), '\0');
          boost::asio::read(s, boost::asio::buffer(rest), ec);
          body += rest;
        }
        if (ec) break;
        int number = ++requests_;
        bool keep = false;
        try {
          keep = answer_(s, number, body);
        } catch (const std::exception&) {
          keep = false;  // the node closed on us: fine
        }
        if (!keep || stopping_) break;
      }
      s.close(ec);
    }
  }

  boost::asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  unsigned short port_ = 0;
  Answer answer_;
  std::atomic<int> requests_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace roost::test
