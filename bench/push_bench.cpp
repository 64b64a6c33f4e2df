// Push delivery next to pull + ack, in one run (bench/push_bench.sh starts the node): a local HTTP
// service (in this process, Beast, one thread, keep-alive) answers 200 to every pushed message;
// pull + ack consumers are as many HTTP clients, each pulling one message and acking it — the same
// shape as a push slot (one message per request, an ack per message). Both drain a queue filled
// beforehand with the same number of messages; only messages the service (or a consumer) received
// count, each message's sequence is checked (lost and duplicate counted), and each concurrency
// runs push and pull in alternating order. Then latency, one message at a time: enqueue sent →
// the service has it (push), or → a long-polling consumer has it (pull).
//   push_bench --url http://127.0.0.1:PORT [--messages 20000] [--runs 3] [--concurrency 1,8,64]
#include <roost/client/http_client.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "bench_util.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using roost::bench::percentile;
using roost::bench::report;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The service: counts distinct sequence numbers (body {"seq":N,"t":ns}) and their latency.
class Service {
 public:
  Service() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Service() {
    io_.stop();
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  void reset() {
    std::lock_guard lock(mu_);
    seen_.clear();
    duplicates_ = 0;
    latencies_.clear();
  }
  std::size_t received() {
    std::lock_guard lock(mu_);
    return seen_.size();
  }
  std::size_t duplicates() {
    std::lock_guard lock(mu_);
    return duplicates_;
  }
  std::vector<double> latencies() {
    std::lock_guard lock(mu_);
    return latencies_;
  }

 private:
  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, asio::ip::tcp::socket s) {
      if (!ec) std::make_shared<Conn>(this, std::move(s))->read();
      accept();
    });
  }
  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(Service* svc, asio::ip::tcp::socket s) : svc(svc), stream(std::move(s)) {}
    Service* svc;
    beast::tcp_stream stream;
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::response<http::empty_body> res;
    void read() {
      req = {};
      http::async_read(stream, buf, req, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        if (ec) return;
        self->svc->record(self->req.body());
        self->res = {http::status::ok, 11};
        self->res.keep_alive(self->req.keep_alive());
        self->res.prepare_payload();
        http::async_write(self->stream, self->res, [self](beast::error_code ec2, std::size_t) {
          if (!ec2) self->read();
        });
      });
    }
  };
  void record(const std::string& body) {
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_object()) return;
    auto seq = v.as_object().at("seq").to_number<std::int64_t>();
    auto t = v.as_object().at("t").to_number<std::int64_t>();
    std::lock_guard lock(mu_);
    if (!seen_.insert(seq).second) {
      ++duplicates_;
      return;
    }
    latencies_.push_back(static_cast<double>(now_ns() - t) / 1000.0);
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mu_;
  std::set<std::int64_t> seen_;
  std::size_t duplicates_ = 0;
  std::vector<double> latencies_;
};

void fill(roost::client::HttpClient& http, const std::string& queue, int n) {
  for (int i = 0; i < n; i += 500) {
    json::array batch;
    for (int k = i; k < std::min(n, i + 500); ++k)
      batch.push_back(json::object{{"body", json::object{{"seq", k}, {"t", now_ns()}}}});
    auto r =
        http.post("/v1/queues/" + queue + "/messages", json::serialize(json::object{{"messages", batch}}));
    if (r.status != 201) throw std::runtime_error("fill: " + r.body);
  }
}

std::uint64_t queue_messages(roost::client::HttpClient& http, const std::string& queue) {
  auto r = http.get("/v1/queues/" + queue);
  return json::parse(r.body).at("stats").at("messages").to_number<std::uint64_t>();
}

struct Run {
  double rate = 0;
  std::size_t lost = 0, duplicates = 0;
};

Run push_run(const std::string& url, Service& svc, const std::string& queue, int n, int c) {
  roost::client::HttpClient http(url);
  http.put("/v1/queues/" + queue, R"({"push":null})");
  fill(http, queue, n);
  svc.reset();
  auto t0 = Clock::now();
  auto cfg =
      json::object{{"push", json::object{{"url", "http://127.0.0.1:" + std::to_string(svc.port()) + "/in"},
                                         {"concurrency", c}}}};
  auto r = http.put("/v1/queues/" + queue, json::serialize(cfg));
  if (r.status != 200) throw std::runtime_error("push config: " + r.body);
  auto deadline = t0 + std::chrono::seconds(120);
  // Done when every message reached the service and was acknowledged (the queue is empty).
  while ((svc.received() < static_cast<std::size_t>(n) || queue_messages(http, queue) != 0) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  Run out;
  out.rate = static_cast<double>(svc.received()) / secs;
  out.lost = static_cast<std::size_t>(n) - svc.received();
  out.duplicates = svc.duplicates();
  http.put("/v1/queues/" + queue, R"({"push":null})");
  return out;
}

Run pull_run(const std::string& url, const std::string& queue, int n, int c) {
  roost::client::HttpClient http(url);
  http.put("/v1/queues/" + queue, R"({"push":null})");
  fill(http, queue, n);
  std::mutex mu;
  std::set<std::int64_t> seen;
  std::size_t dups = 0;
  std::atomic<bool> done{false};
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < c; ++i) {
    threads.emplace_back([&] {
      roost::client::HttpClient h(url);
      auto deadline = t0 + std::chrono::seconds(120);
      while (!done.load() && Clock::now() < deadline) {
        auto r = h.post("/v1/queues/" + queue + "/messages/pull", R"({"batch_size":1})");
        auto msgs = json::parse(r.body).at("messages").as_array();
        if (msgs.empty()) {
          std::lock_guard lock(mu);
          if (seen.size() >= static_cast<std::size_t>(n)) done = true;
          continue;
        }
        auto& m = msgs[0].as_object();
        auto ack = json::object{{"acks", json::array{json::object{{"lease_id", m.at("lease_id")}}}}};
        h.post("/v1/queues/" + queue + "/messages/ack", json::serialize(ack));
        std::lock_guard lock(mu);
        if (!seen.insert(m.at("body").at("seq").to_number<std::int64_t>()).second) ++dups;
        if (seen.size() >= static_cast<std::size_t>(n)) done = true;
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  Run out;
  out.rate = static_cast<double>(seen.size()) / secs;
  out.lost = static_cast<std::size_t>(n) - seen.size();
  out.duplicates = dups;
  return out;
}

// One message at a time: enqueue → received (by the service, or a long-polling consumer).
std::vector<double> push_latency(const std::string& url, Service& svc, const std::string& queue, int count) {
  roost::client::HttpClient http(url);
  auto cfg =
      json::object{{"push", json::object{{"url", "http://127.0.0.1:" + std::to_string(svc.port()) + "/in"},
                                         {"concurrency", 1}}}};
  http.put("/v1/queues/" + queue, json::serialize(cfg));
  svc.reset();
  for (int i = 0; i < count; ++i) {
    http.post("/v1/queues/" + queue + "/messages",
              json::serialize(json::object{{"body", json::object{{"seq", i}, {"t", now_ns()}}}}));
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (svc.received() < static_cast<std::size_t>(i + 1) && Clock::now() < deadline)
      std::this_thread::yield();
  }
  http.put("/v1/queues/" + queue, R"({"push":null})");
  return svc.latencies();
}

std::vector<double> pull_latency(const std::string& url, const std::string& queue, int count) {
  roost::client::HttpClient http(url);
  http.put("/v1/queues/" + queue, "{}");
  std::vector<double> out;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::thread consumer([&] {
    roost::client::HttpClient h(url);
    while (!stop.load()) {
      auto r = h.post("/v1/queues/" + queue + "/messages/pull", R"({"batch_size":1,"wait_ms":1000})");
      auto msgs = json::parse(r.body).at("messages").as_array();
      if (msgs.empty()) continue;
      auto& m = msgs[0].as_object();
      {
        std::lock_guard lock(mu);
        out.push_back(static_cast<double>(now_ns() - m.at("body").at("t").to_number<std::int64_t>()) /
                      1000.0);
      }
      h.post(
          "/v1/queues/" + queue + "/messages/ack",
          json::serialize(json::object{{"acks", json::array{json::object{{"lease_id", m.at("lease_id")}}}}}));
    }
  });
  for (int i = 0; i < count; ++i) {
    http.post("/v1/queues/" + queue + "/messages",
              json::serialize(json::object{{"body", json::object{{"seq", i}, {"t", now_ns()}}}}));
    auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (out.size() >= static_cast<std::size_t>(i + 1)) break;
      }
      if (Clock::now() > deadline) break;
      std::this_thread::yield();
    }
  }
  stop = true;
  consumer.join();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  int messages = 20000, runs = 3;
  std::vector<int> concurrencies{1, 8, 64};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--url") url = v;
    if (k == "--messages") messages = std::stoi(v);
    if (k == "--runs") runs = std::stoi(v);
    if (k == "--concurrency") {
      concurrencies.clear();
      for (std::size_t s = 0; s <= v.size();) {
        auto comma = std::min(v.find(',', s), v.size());
        concurrencies.push_back(std::stoi(v.substr(s, comma - s)));
        s = comma + 1;
      }
    }
  }
  if (url.empty()) {
    std::fprintf(
        stderr,
        "usage: push_bench --url http://127.0.0.1:PORT [--messages N] [--runs N] [--concurrency 1,8,64]\n");
    return 2;
  }
  Service svc;
  std::map<std::string, std::vector<double>> all;
  std::size_t bad = 0;
  for (int run = 0; run < runs; ++run) {
    std::printf("# run %d\n", run + 1);
    for (int c : concurrencies) {
      for (int k = 0; k < 2; ++k) {
        bool push_first = (run % 2) == 0;
        bool push = (k == 0) == push_first;
        auto q = std::string(push ? "pushq" : "pullq") + std::to_string(c) + "r" + std::to_string(run);
        Run r = push ? push_run(url, svc, q, messages, c) : pull_run(url, q, messages, c);
        auto name = std::string(push ? "push" : "pull_ack") + "_c" + std::to_string(c);
        report(name, r.rate, "msgs/s");
        report(name + "_lost", static_cast<double>(r.lost), "msgs");
        report(name + "_duplicates", static_cast<double>(r.duplicates), "msgs");
        bad += r.lost;
        all[name].push_back(r.rate);
      }
    }
  }
  auto lp = push_latency(url, svc, "pushlat", 500);
  auto ll = pull_latency(url, "pulllat", 500);
  std::printf("# medians of %d runs\n", runs);
  for (auto& [name, v] : all) report(name + "_median", percentile(v, 0.5), "msgs/s");
  for (int c : concurrencies) {
    auto p = percentile(all["push_c" + std::to_string(c)], 0.5);
    auto q = percentile(all["pull_ack_c" + std::to_string(c)], 0.5);
    report("ratio_push_vs_pull_ack_c" + std::to_string(c), q > 0 ? p / q : 0, "x");
  }
  report("latency_push_p50", percentile(lp, 0.5), "us");
  report("latency_push_p99", percentile(lp, 0.99), "us");
  report("latency_pull_longpoll_p50", percentile(ll, 0.5), "us");
  report("latency_pull_longpoll_p99", percentile(ll, 0.99), "us");
  if (bad != 0) {
    std::printf("FAILED: %zu messages lost\n", bad);
    return 1;
  }
  return 0;
}
