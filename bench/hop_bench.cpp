// What one hop between two threads over loopback costs, one message at a time: ZeroMQ (DEALER →
// ROUTER over tcp://127.0.0.1, the server thread polling as Roost's endpoint does) next to a plain
// TCP socket (blocking read/write, the server thread blocked in read). Every ZeroMQ message also
// crosses ZeroMQ's I/O thread on each side; a plain socket has no such thread. The gap is the floor
// under a mesh hop (docs/benchmarks.md, "Mesh").
//   hop_bench [--count 20000] [--runs 5] [--size 100]
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

// Round trips of `count` echoes through ZeroMQ, microseconds each.
std::vector<double> zmq_round_trips(int count, std::size_t size) {
  zmq::context_t server_ctx(1), client_ctx(1);
  zmq::socket_t router(server_ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  auto address = router.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::thread server([&] {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    std::vector<zmq::message_t> parts;
    while (!stop.load()) {
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      for (;;) {
        parts.clear();
        if (!zmq::recv_multipart(router, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
        zmq::send_multipart(router, parts);
      }
    }
  });
  zmq::socket_t dealer(client_ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(address);
  std::string body(size, 'x');
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count + 100; ++i) {  // the first 100 warm up
    auto t = Clock::now();
    dealer.send(zmq::buffer(body), zmq::send_flags::none);
    zmq::message_t reply;
    if (!dealer.recv(reply)) throw std::runtime_error("no echo");
    if (i >= 100) us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  stop = true;
  server.join();
  return us;
}

bool full_io(int fd, char* data, std::size_t n, bool write) {
  std::size_t done = 0;
  while (done < n) {
    auto r = write ? ::write(fd, data + done, n - done) : ::read(fd, data + done, n - done);
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

// Round trips of `count` echoes through a plain TCP connection, microseconds each.
std::vector<double> tcp_round_trips(int count, std::size_t size) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 1) != 0)
    throw std::runtime_error("bind");
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread server([&] {
    int fd = ::accept(listener, nullptr, nullptr);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::vector<char> buf(size);
    while (full_io(fd, buf.data(), size, false) && full_io(fd, buf.data(), size, true)) {
    }
    ::close(fd);
  });
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("connect");
  std::vector<char> buf(size, 'x');
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count + 100; ++i) {
    auto t = Clock::now();
    if (!full_io(fd, buf.data(), size, true) || !full_io(fd, buf.data(), size, false))
      throw std::runtime_error("no echo");
    if (i >= 100) us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  ::close(fd);
  server.join();
  ::close(listener);
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 20'000, runs = 5;
  std::size_t size = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--count") count = std::stoi(argv[i + 1]);
    if (k == "--runs") runs = std::stoi(argv[i + 1]);
    if (k == "--size") size = static_cast<std::size_t>(std::stoul(argv[i + 1]));
  }
  std::vector<double> zmq_p50, tcp_p50;
  for (int r = 0; r < runs; ++r) {
    // Which goes first alternates between runs.
    for (int k = 0; k < 2; ++k) {
      bool zmq_now = (k + r) % 2 == 0;
      auto us = zmq_now ? zmq_round_trips(count, size) : tcp_round_trips(count, size);
      std::printf("%s_round_trip_p50 %.1f us\n%s_round_trip_p99 %.1f us\n", zmq_now ? "zeromq" : "tcp",
                  percentile(us, 0.5), zmq_now ? "zeromq" : "tcp", percentile(us, 0.99));
      (zmq_now ? zmq_p50 : tcp_p50).push_back(percentile(us, 0.5));
    }
  }
  std::printf("# medians of %d runs (%d echoes of %zu bytes each)\n", runs, count, size);
  std::printf("zeromq_round_trip_p50_median %.1f us\ntcp_round_trip_p50_median %.1f us\n",
              percentile(zmq_p50, 0.5), percentile(tcp_p50, 0.5));
  return 0;
}
