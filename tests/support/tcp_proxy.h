// A userspace TCP proxy on 127.0.0.1 for link-cut tests: it forwards every connection to a target
// port until cut() — then it closes what it carries and refuses new connections (they are accepted
// and closed at once) — and forwards again after restore(). One thread, poll(), bounded buffers.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <thread>
#include <vector>

namespace roost::test {

class TcpProxy {
 public:
  explicit TcpProxy(int target_port) : target_(target_port) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_, 64) != 0) {
      throw std::runtime_error("proxy: cannot listen");
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TcpProxy() {
    stop_ = true;
    thread_.join();
    for (auto& p : pairs_) close_pair(p);
    ::close(listen_);
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  void cut() { cut_ = true; }
  void restore() { cut_ = false; }

 private:
  struct Pair {
    int a = -1, b = -1;
  };

  static void close_pair(Pair& p) {
    if (p.a >= 0) ::close(p.a);
    if (p.b >= 0) ::close(p.b);
    p.a = p.b = -1;
  }

  int dial() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in t{};
    t.sin_family = AF_INET;
    t.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t.sin_port = htons(static_cast<std::uint16_t>(target_));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&t), sizeof t) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // Copies what is readable on `from` to `to`; false when either side is done.
  static bool pump(int from, int to) {
    char buf[64 * 1024];
    auto n = ::read(from, buf, sizeof buf);
    if (n <= 0) return false;
    for (ssize_t off = 0; off < n;) {
      auto w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      off += w;
    }
    return true;
  }

  void run() {
    while (!stop_) {
      if (cut_) {
        for (auto& p : pairs_) close_pair(p);
        pairs_.clear();
      }
      std::vector<pollfd> fds{{listen_, POLLIN, 0}};
      for (auto& p : pairs_) {
        fds.push_back({p.a, POLLIN, 0});
        fds.push_back({p.b, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept(listen_, nullptr, nullptr);
        if (c >= 0) {
          int t = cut_ ? -1 : dial();
          if (t < 0) {
            ::close(c);
          } else {
            pairs_.push_back({c, t});
          }
        }
      }
      for (std::size_t i = 0; i < pairs_.size() && 1 + 2 * i + 1 < fds.size(); ++i) {
        auto& p = pairs_[i];
        bool ok = true;
        if (fds[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) ok = pump(p.a, p.b);
        if (ok && (fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))) ok = pump(p.b, p.a);
        if (!ok) close_pair(p);
      }
      std::erase_if(pairs_, [](const Pair& p) { return p.a < 0; });
    }
  }

  int target_;
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, cut_{false};
  std::vector<Pair> pairs_;  // proxy thread only
  std::thread thread_;
};

}  // namespace roost::test
