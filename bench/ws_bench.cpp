// WebSocket fan-out load client for Roost and, with the same load, nats-server's websocket
// listener. One publisher, N subscribers on one channel or on N channels; reports deliveries/s
// and publish→receive latency. With --idle N it opens N idle subscribed connections and reports
// the server's RSS per connection (--server-pid).
//
//   ws_bench --target roost|nats --port P [--subs N] [--channels 1|N] [--messages M]
//            [--window W] [--rate R] [--threads T] [--stalled K] [--idle N --server-pid PID]
//            [--label NAME]
// The subscribers' sockets are read by T threads (default 2), so that the client's own reading does
// not serialize the deliveries it times.
// Prints `name value unit` lines.
#include <sys/resource.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string target = "roost";
  int port = 0;
  int subs = 1;
  int channels = 1;
  int messages = 2000;
  int window = 64;
  int stalled = 0;
  int idle = 0;
  int rate = 0;     // publishes per second, paced; 0 = as fast as the window allows
  int threads = 2;  // client threads reading the subscribers' sockets
  int server_pid = 0;
  std::string label;
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Latency histogram: 10 µs buckets up to 1 s; updated from every client thread.
struct Histogram {
  std::vector<std::atomic<std::uint64_t>> buckets = std::vector<std::atomic<std::uint64_t>>(100'001);
  std::atomic<std::uint64_t> count{0};
  void add(std::int64_t ns) {
    auto b = std::clamp<std::int64_t>(ns / 10'000, 0, 100'000);
    buckets[static_cast<std::size_t>(b)].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
  }
  double percentile_ms(double p) const {
    std::uint64_t want = static_cast<std::uint64_t>(p * static_cast<double>(count.load()));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      seen += buckets[i].load(std::memory_order_relaxed);
      if (seen > want) return static_cast<double>(i) * 0.01;
    }
    return 1000;
  }
};

std::uint64_t rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

std::string channel_name(int i) { return "bench.c" + std::to_string(i); }

// Finds "t":<number> (Roost JSON) or the leading number of a NATS payload.
std::int64_t extract_ts(std::string_view s) {
  auto pos = s.find("\"t\":");
  if (pos == std::string_view::npos) return -1;
  pos += 4;
  std::int64_t v = 0;
  std::from_chars(s.data() + pos, s.data() + s.size(), v);
  return v;
}

struct Conn {
  explicit Conn(asio::io_context& io) : ws(io) {}
  websocket::stream<beast::tcp_stream> ws;
  beast::flat_buffer buf;
  std::string pending;  // NATS protocol bytes not yet parsed
  std::uint64_t received = 0;
  bool stalled = false;
};

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  void connect(Conn& c) {
    tcp::resolver r(io_);
    beast::get_lowest_layer(c.ws).connect(r.resolve("127.0.0.1", std::to_string(o_.port)));
    beast::get_lowest_layer(c.ws).socket().set_option(tcp::no_delay(true));
    c.ws.handshake("127.0.0.1:" + std::to_string(o_.port), o_.target == "roost" ? "/v1/ws" : "/");
    c.ws.read_message_max(64 << 20);
    if (o_.target == "nats") {
      c.ws.text(true);
      // INFO arrives first; then CONNECT + PING, wait for PONG.
      read_until(c, "INFO");
      c.ws.write(asio::buffer(
          std::string("CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nPING\r\n")));
      read_until(c, "PONG");
    } else {
      c.ws.text(true);
    }
  }

  void read_until(Conn& c, const std::string& token) {
    for (;;) {
      c.buf.clear();
      c.ws.read(c.buf);
      if (beast::buffers_to_string(c.buf.data()).find(token) != std::string::npos) return;
    }
  }

  // Roost publisher: reads answers until `n` oks have come (a message may hold several).
  void read_oks(Conn& c, int& outstanding) {
    while (outstanding > 0) {
      c.buf.clear();
      c.ws.read(c.buf);
      auto text = beast::buffers_to_string(c.buf.data());
      for (std::size_t p = text.find("\"ok\""); p != std::string::npos; p = text.find("\"ok\"", p + 1))
        --outstanding;
    }
  }

  void subscribe(Conn& c, const std::string& channel, int sid) {
    if (o_.target == "nats") {
      c.ws.write(asio::buffer("SUB " + channel + " " + std::to_string(sid) + "\r\nPING\r\n"));
      read_until(c, "PONG");
    } else {
      c.ws.write(asio::buffer(R"({"op":"subscribe","id":1,"channel":")" + channel + "\"}"));
      read_until(c, "\"ok\"");
    }
  }

  // Subscriber read loop: counts messages and samples latency.
  void read_loop(Conn* c) {
    c->buf.clear();
    c->ws.async_read(c->buf, [this, c](beast::error_code ec, std::size_t) {
      if (ec) return;
      auto t_now = now_ns();
      auto bytes = c->buf.cdata();
      std::string_view data(static_cast<const char*>(bytes.data()), bytes.size());
      if (o_.target == "nats") {
        c->pending += data;
        // MSG <subject> <sid> <len>\r\n<payload>\r\n ; also PING → PONG.
        std::size_t pos = 0;
        for (;;) {
          auto eol = c->pending.find("\r\n", pos);
          if (eol == std::string::npos) break;
          std::string_view line(c->pending.data() + pos, eol - pos);
          if (line.starts_with("MSG ")) {
            auto sp = line.rfind(' ');
            std::size_t len = std::stoul(std::string(line.substr(sp + 1)));
            if (c->pending.size() < eol + 2 + len + 2) break;
            std::string_view payload(c->pending.data() + eol + 2, len);
            record(c, payload, t_now);
            pos = eol + 2 + len + 2;
          } else {
            if (line == "PING") c->ws.async_write(asio::buffer(pong_), [](beast::error_code, std::size_t) {});
            pos = eol + 2;
          }
        }
        c->pending.erase(0, pos);
      } else {
        // Several frames may share one message, one per line.
        std::size_t start = 0;
        while (start < data.size()) {
          auto nl = data.find('\n', start);
          std::string_view line(data.data() + start, (nl == std::string::npos ? data.size() : nl) - start);
          if (line.find("\"op\":\"message\"") != std::string_view::npos) record(c, line, t_now);
          if (nl == std::string::npos) break;
          start = nl + 1;
        }
      }
      read_loop(c);
    });
  }

  void record(Conn* c, std::string_view payload, std::int64_t t_now) {
    ++c->received;
    ++delivered_;
    auto ts = extract_ts(payload);
    if (ts > 0) hist_.add(t_now - ts);
  }

  int run() {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    std::string name = o_.label.empty() ? o_.target : o_.label;
    if (o_.idle > 0) return run_idle(name);

    std::vector<std::unique_ptr<Conn>> subs;
    for (int i = 0; i < o_.subs + o_.stalled; ++i) {
      auto c = std::make_unique<Conn>(io_);
      connect(*c);
      subscribe(*c, channel_name(o_.channels == 1 ? 0 : i % o_.channels), i + 1);
      c->stalled = i >= o_.subs;
      subs.push_back(std::move(c));
    }
    for (auto& c : subs) {
      if (!c->stalled) read_loop(c.get());
    }
    Conn pub(io_);
    connect(pub);
    auto guard = asio::make_work_guard(io_);
    std::vector<std::thread> io_threads;
    for (int t = 0; t < std::max(1, o_.threads); ++t) io_threads.emplace_back([this] { io_.run(); });

    std::uint64_t expected = static_cast<std::uint64_t>(o_.messages) * static_cast<std::uint64_t>(o_.subs) /
                             static_cast<std::uint64_t>(o_.channels);
    if (o_.channels > 1) expected = static_cast<std::uint64_t>(o_.messages) * o_.subs / o_.channels;
    auto t0 = Clock::now();
    std::string pad(60, 'x');
    int outstanding = 0;
    for (int m = 0; m < o_.messages; ++m) {
      if (o_.rate > 0) {  // paced: publish m at t0 + m / rate
        std::this_thread::sleep_until(
            t0 + std::chrono::microseconds(static_cast<std::int64_t>(m) * 1'000'000 / o_.rate));
      }
      std::string ch = channel_name(o_.channels == 1 ? 0 : m % o_.channels);
      std::string payload = R"({"t":)" + std::to_string(now_ns()) + R"(,"p":")" + pad + "\"}";
      if (o_.target == "nats") {
        std::string frame = "PUB " + ch + " " + std::to_string(payload.size()) + "\r\n" + payload + "\r\n";
        if (++outstanding >= o_.window) {
          frame += "PING\r\n";
          pub.ws.write(asio::buffer(frame));
          read_until(pub, "PONG");
          outstanding = 0;
        } else {
          pub.ws.write(asio::buffer(frame));
        }
      } else {
        // Like NATS's PUB … PING above: publishes without an id get no answer; the window's last
        // one carries an id, and its ok (answers come in order) closes the window.
        bool last = ++outstanding >= o_.window || m + 1 == o_.messages;
        std::string id = last ? R"("id":)" + std::to_string(m) + "," : std::string();
        pub.ws.write(asio::buffer(R"({"op":"publish",)" + id + R"("channel":")" + ch + R"(","data":)" +
                                  payload + "}"));
        if (last) {
          outstanding = 1;
          read_oks(pub, outstanding);
          outstanding = 0;
        }
      }
    }
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (delivered_.load() < expected && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    io_.stop();
    for (auto& t : io_threads) t.join();
    std::string tag = "ws_" + name + "_subs" + std::to_string(o_.subs) + "_ch" + std::to_string(o_.channels) +
                      (o_.stalled ? "_stalled" + std::to_string(o_.stalled) : "") +
                      (o_.rate ? "_rate" + std::to_string(o_.rate) : "");
    std::printf("%s_deliveries_per_s %.0f msgs/s\n", tag.c_str(),
                static_cast<double>(delivered_.load()) / secs);
    std::printf("%s_delivered %llu of %llu\n", tag.c_str(),
                static_cast<unsigned long long>(delivered_.load()),
                static_cast<unsigned long long>(expected));
    std::printf("%s_latency_p50 %.2f ms\n", tag.c_str(), hist_.percentile_ms(0.5));
    std::printf("%s_latency_p99 %.2f ms\n", tag.c_str(), hist_.percentile_ms(0.99));
    std::fflush(stdout);
    return 0;
  }

  int run_idle(const std::string& name) {
    auto before = rss_kb(o_.server_pid);
    std::vector<std::unique_ptr<Conn>> conns;
    for (int i = 0; i < o_.idle; ++i) {
      auto c = std::make_unique<Conn>(io_);
      connect(*c);
      subscribe(*c, channel_name(i % 100), i + 1);
      conns.push_back(std::move(c));
      if ((i + 1) % 5000 == 0) std::fprintf(stderr, "idle connections: %d\n", i + 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto after = rss_kb(o_.server_pid);
    std::printf("ws_%s_idle_connections %d conns\n", name.c_str(), o_.idle);
    std::printf("ws_%s_rss_before %.1f MiB\n", name.c_str(), before / 1024.0);
    std::printf("ws_%s_rss_after %.1f MiB\n", name.c_str(), after / 1024.0);
    std::printf("ws_%s_rss_per_idle_conn %.2f KiB\n", name.c_str(),
                (static_cast<double>(after) - static_cast<double>(before)) / o_.idle);
    return 0;
  }

 private:
  Options o_;
  asio::io_context io_;
  std::atomic<std::uint64_t> delivered_{0};
  Histogram hist_;
  const std::string pong_ = "PONG\r\n";
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--target")
      o.target = v;
    else if (a == "--port")
      o.port = std::stoi(v);
    else if (a == "--subs")
      o.subs = std::stoi(v);
    else if (a == "--channels")
      o.channels = std::stoi(v);
    else if (a == "--messages")
      o.messages = std::stoi(v);
    else if (a == "--window")
      o.window = std::stoi(v);
    else if (a == "--stalled")
      o.stalled = std::stoi(v);
    else if (a == "--idle")
      o.idle = std::stoi(v);
    else if (a == "--rate")
      o.rate = std::stoi(v);
    else if (a == "--server-pid")
      o.server_pid = std::stoi(v);
    else if (a == "--threads")
      o.threads = std::stoi(v);
    else if (a == "--label")
      o.label = v;
  }
  if (o.port == 0) {
    std::fprintf(stderr, "usage: ws_bench --target roost|nats --port P [...]\n");
    return 2;
  }
  try {
    return Bench(o).run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ws_bench: %s\n", e.what());
    return 1;
  }
}
