#include "cli.h"

#include <roost/broker/mesh.h>

#include <roost/client/client.h>
#include <roost/client/http_client.h>
#include <roost/core/base64.h>
#include <roost/gateway/json_codec.h>

#include <boost/json.hpp>

#include <zmq.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

namespace roost::broker {

namespace json = boost::json;
using roost::Client;
using roost::ClientOptions;
using ObjectReply = roost::ObjectReply;

namespace {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> options;  // --name value (repeatable)

  std::optional<std::string> opt(const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end() || it->second.empty()) return std::nullopt;
    return it->second.back();
  }
  bool flag(const std::string& name) const { return options.contains(name); }
};

// Flags that take no value.
bool is_switch(std::string_view name) { return name == "dry-run"; }

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Args parse(const std::vector<std::string>& in) {
  Args a;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto& s = in[i];
    if (s.starts_with("--")) {
      auto eq = s.find('=');
      if (eq != std::string::npos) {
        a.options[s.substr(2, eq - 2)].push_back(s.substr(eq + 1));
      } else if (is_switch(s.substr(2))) {
        a.options[s.substr(2)].push_back("true");
      } else {
        if (i + 1 >= in.size()) throw UsageError(s + " needs a value");
        a.options[s.substr(2)].push_back(in[++i]);
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::uint64_t number(const std::string& name, const std::string& v) {
  char* end = nullptr;
  auto n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') throw UsageError("--" + name + " needs a number, got " + v);
  return n;
}

// Copies numeric --flags (dashes to underscores) into a JSON object.
void numeric_fields(const Args& a, json::object& o, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    std::string flag = n;
    for (auto& ch : flag) {
      if (ch == '_') ch = '-';
    }
    if (auto v = a.opt(flag)) o[n] = number(flag, *v);
  }
}

int print(const client::HttpResponse& r) {
  if (r.status >= 200 && r.status < 300) {
    std::cout << r.body << '\n';
    return 0;
  }
  std::cerr << "error (HTTP " << r.status << "): " << r.body << '\n';
  return 1;
}

std::string need(const Args& a, std::size_t i, const char* what) {
  if (a.positional.size() <= i) throw UsageError(std::string("missing ") + what);
  return a.positional[i];
}

bool is_native(const std::string& url) { return url.starts_with("tcp://") || url.starts_with("ipc://"); }

std::string url_of(const Args& a, const char* fallback) {
  if (auto u = a.opt("url")) return *u;
  const char* env = std::getenv("ROOST_URL");
  return env != nullptr ? env : fallback;
}

std::shared_ptr<Client> connect_native(const Args& a, const std::string& url) {
  ClientOptions o;
  o.url = url;
  o.name = "roost-cli";
  if (auto t = a.opt("token"))
    o.token = *t;
  else if (const char* env = std::getenv("ROOST_TOKEN"))
    o.token = env;
  if (auto k = a.opt("server-key")) o.curve_server_key = *k;
  auto c = Client::connect(o);
  if (!c) throw std::runtime_error(std::string(error_code_name(c.error().code)) + ": " + c.error().message);
  return *c;
}

int print_error(const Error& e) {
  std::cerr << "error " << error_code_name(e.code) << ": " << e.message << '\n';
  return 1;
}

template <class T>
int print_native(const Result<T>& r, const std::function<std::string(const T&)>& encode) {
  if (r) {
    std::cout << encode(*r) << '\n';
    return 0;
  }
  return print_error(r.error());
}

std::optional<std::uint64_t> opt_number(const Args& a, const char* flag) {
  if (auto v = a.opt(flag)) return number(flag, *v);
  return std::nullopt;
}

ContentType content_type_of(const Args& a, const std::string& body) {
  std::string type = a.opt("content-type").value_or("json");
  if (type == "text") return ContentType::kText;
  if (type == "bytes") return ContentType::kBytes;
  if (type != "json") throw UsageError("--content-type is json, text or bytes");
  boost::system::error_code ec;
  (void)json::parse(body, ec);
  if (ec) throw UsageError("BODY is not JSON (use --content-type text for plain text)");
  return ContentType::kJson;
}

// `roost queue ...` over the native protocol: the same commands and the same JSON output.
int queue_native(const Args& a, const std::string& url) {
  auto client = connect_native(a, url);
  const std::string& cmd = a.positional[0];
  using gateway::encode_queue;
  if (cmd == "list") {
    return print_native<std::vector<QueueInfo>>(client->list_queues(), gateway::encode_queues);
  }
  if (cmd == "stats") return print_native<QueueInfo>(client->get_queue(need(a, 1, "QUEUE")), encode_queue);
  if (cmd == "delete") {
    auto r = client->delete_queue(need(a, 1, "QUEUE"));
    if (r) {
      std::cout << R"({"deleted":true})" << '\n';  // as over HTTP
      return 0;
    }
    return print_error(r.error());
  }
  if (cmd == "create") {
    QueueConfigPatch p;
    p.visibility_timeout_ms = opt_number(a, "visibility-timeout-ms");
    if (auto v = opt_number(a, "max-retries")) p.max_retries = static_cast<std::uint32_t>(*v);
    p.retry_delay_ms = opt_number(a, "retry-delay-ms");
    p.dead_letter_queue = a.opt("dead-letter-queue");
    p.max_messages = opt_number(a, "max-messages");
    p.max_bytes = opt_number(a, "max-bytes");
    p.message_ttl_ms = opt_number(a, "message-ttl-ms");
    p.dedup_window_ms = opt_number(a, "dedup-window-ms");
    if (auto push_url = a.opt("push-url")) {
      PushTarget t;
      t.url = *push_url;
      if (auto v = opt_number(a, "push-concurrency")) t.concurrency = static_cast<std::uint32_t>(*v);
      if (auto v = opt_number(a, "push-timeout-ms")) t.timeout_ms = *v;
      if (auto v = opt_number(a, "push-batch-size")) t.batch_size = static_cast<std::uint32_t>(*v);
      p.push = std::move(t);
    }
    if (a.opt("no-push")) p.push = PushTarget{};
    return print_native<QueueInfo>(client->put_queue(need(a, 1, "QUEUE"), p), encode_queue);
  }
  if (cmd == "push") {
    std::string q = need(a, 1, "QUEUE");
    NewMessage m;
    m.body = need(a, 2, "BODY");
    m.content_type = content_type_of(a, m.body);
    m.delay_ms = opt_number(a, "delay-ms").value_or(0);
    m.id = a.opt("id").value_or("");
    m.key = a.opt("key").value_or("");
    std::vector<NewMessage> one;
    one.push_back(std::move(m));
    return print_native<std::vector<std::string>>(client->enqueue(q, std::move(one)), gateway::encode_ids);
  }
  if (cmd == "pull") {
    PullOptions o;
    o.batch_size = static_cast<std::uint32_t>(opt_number(a, "batch-size").value_or(10));
    o.visibility_timeout_ms = opt_number(a, "visibility-timeout-ms");
    auto wait = std::chrono::milliseconds(opt_number(a, "wait-ms").value_or(0));
    return print_native<std::vector<LeasedMessage>>(
        client->pull(need(a, 1, "QUEUE"), o, wait),
        [](const std::vector<LeasedMessage>& ms) { return gateway::encode_messages(ms); });
  }
  if (cmd == "peek") {
    auto max = static_cast<std::uint32_t>(opt_number(a, "batch-size").value_or(10));
    return print_native<std::vector<LeasedMessage>>(
        client->peek(need(a, 1, "QUEUE"), max),
        [](const std::vector<LeasedMessage>& ms) { return gateway::encode_messages(ms); });
  }
  if (cmd == "purge") {
    return print_native<std::uint64_t>(client->purge_queue(need(a, 1, "QUEUE")), [](const std::uint64_t& n) {
      return R"({"purged":)" + std::to_string(n) + "}";
    });
  }
  if (cmd == "ack") {
    std::string q = need(a, 1, "QUEUE");
    std::vector<std::string> acks(a.positional.begin() + 2, a.positional.end());
    std::vector<RetryRequest> retries;
    if (auto it = a.options.find("retry"); it != a.options.end()) {
      for (const auto& lease : it->second) retries.push_back(RetryRequest{lease, opt_number(a, "delay-ms")});
    }
    return print_native<AckResult>(client->ack(q, std::move(acks), std::move(retries)), gateway::encode_ack);
  }
  if (cmd == "redrive") {
    std::string q = need(a, 1, "DLQ");
    auto to = a.opt("to");
    if (!to) throw UsageError("redrive needs --to QUEUE");
    return print_native<std::uint64_t>(
        client->redrive(q, *to, opt_number(a, "max").value_or(0)),
        [](const std::uint64_t& n) { return R"({"moved":)" + std::to_string(n) + "}"; });
  }
  throw UsageError("unknown queue command " + cmd);
}

// Runs one CLI command: parses its arguments, prints `help` for --help or no arguments, and turns
// a usage error into exit code 2 (with the help) and any other failure into exit code 1.
template <class Body>
int run_cli(const std::string& name, const char* help, const std::vector<std::string>& raw, Body body) {
  try {
    Args a = parse(raw);
    if (a.positional.empty() || a.opt("help")) {
      std::cout << help;
      return a.positional.empty() ? 2 : 0;
    }
    return body(a);
  } catch (const UsageError& e) {
    std::cerr << name << ": " << e.what() << "\n\n" << help;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << '\n';
    return 1;
  }
}

std::atomic<bool> g_interrupted{false};

}  // namespace

const char* object_cli_help() {
  return R"(usage: roost object tell CLASS NAME DATA [--content-type json|text|bytes] [--url URL]
       roost object call CLASS NAME DATA [--timeout-ms N] [--content-type …] [--url URL]

  tell sends DATA to the object's durable mailbox and prints {"seq":…} once it is committed.
  call runs the object's on_call with DATA and prints its reply.
  URL is tcp://HOST:PORT, ipc://PATH or http://HOST:PORT (default tcp://127.0.0.1:7400, or env
  ROOST_URL). --token JWT (or env ROOST_TOKEN), --server-key Z85 for CURVE.
)";
}

int object_cli(const std::vector<std::string>& raw) {
  return run_cli("roost object", object_cli_help(), raw, [&](Args& a) -> int {
    std::string verb = need(a, 0, "tell|call");
    if (verb != "tell" && verb != "call") throw UsageError("unknown object command " + verb);
    std::string cls = need(a, 1, "CLASS"), name = need(a, 2, "NAME"), data = need(a, 3, "DATA");
    ContentType type = content_type_of(a, data);
    std::uint64_t timeout_ms = opt_number(a, "timeout-ms").value_or(0);
    std::string url = url_of(a, "tcp://127.0.0.1:7400");
    if (!is_native(url)) {
      client::HttpClient http(url, std::chrono::milliseconds(timeout_ms + 30'000));
      const char* ct = type == ContentType::kJson   ? "application/json"
                       : type == ContentType::kText ? "text/plain"
                                                    : "application/octet-stream";
      std::string path = "/v1/objects/" + cls + "/" + name + (verb == "tell" ? "/messages" : "/call");
      if (verb == "call" && timeout_ms != 0) path += "?timeout_ms=" + std::to_string(timeout_ms);
      return print(http.request("POST", path, data, ct));
    }
    auto client = connect_native(a, url);
    if (verb == "tell") {
      return print_native<std::uint64_t>(client->tell(cls, name, data, type), [](const std::uint64_t& seq) {
        return json::serialize(json::object{{"seq", seq}});
      });
    }
    return print_native<ObjectReply>(
        client->call(cls, name, data, std::chrono::milliseconds(timeout_ms), type),
        [](const ObjectReply& r) { return r.data; });
  });
}

const char* mesh_cli_help() {
  return R"(usage: roost mesh status [--url http://127.0.0.1:8080] [--token JWT (or env ROOST_TOKEN)]
       roost mesh move SHARD --to NODE [--url URL]
       roost mesh rebalance [--dry-run] [--url URL]

  status     the mesh as the node at --url sees it: its name, etcd reachability, the shard count,
             how long its lease is still valid, every live member with its addresses, and where
             each shard in use lives (JSON)
  move       moves SHARD to the live member NODE: its owner copies the data while serving, closes
             the shard for the last part, and NODE takes it over under a new epoch; waits for the
             end and prints the move (JSON). Exit 1 when it failed (the shard stays where it was).
  rebalance  moves every shard in use whose home is not the one rendezvous hashing picks among
             the live members now (after a node joined: about 1/N of the shards go to it, none
             between the others), one at a time; --dry-run prints the plan only. Prints a
             summary (JSON): moved, failed (each left where it was), kept.
)";
}

namespace {

struct MeshView {
  json::object status;
  std::map<std::string, std::string> http_of;  // member → its HTTP address
};

MeshView mesh_view(client::HttpClient& http) {
  auto r = http.get("/v1/mesh");
  if (r.status != 200)
    throw std::runtime_error("GET /v1/mesh: HTTP " + std::to_string(r.status) + " " + r.body);
  MeshView v;
  v.status = json::parse(r.body).as_object();
  for (const auto& m : v.status.at("members").as_array()) {
    const auto& o = m.as_object();
    v.http_of[std::string(o.at("name").as_string())] = std::string(o.at("http").as_string());
  }
  return v;
}

// Starts a move on the shard's owner and waits for its end: the move's final status.
json::object run_move(const MeshView& view, const std::optional<std::string>& token, std::uint32_t shard,
                      const std::string& to) {
  std::string owner;
  for (const auto& p : view.status.at("placements").as_array()) {
    const auto& o = p.as_object();
    if (o.at("shard").to_number<std::uint32_t>() == shard && o.at("owner").is_string()) {
      owner = std::string(o.at("owner").as_string());
    }
  }
  if (owner.empty()) throw std::runtime_error("shard " + std::to_string(shard) + " has no owner now");
  auto it = view.http_of.find(owner);
  if (it == view.http_of.end()) throw std::runtime_error("the owner " + owner + " is not a live member");
  client::HttpClient http(it->second);
  if (token) http.set_header("Authorization", "Bearer " + *token);
  auto r = http.post("/v1/mesh/moves", json::serialize(json::object{{"shard", shard}, {"to", to}}));
  if (r.status != 202) throw std::runtime_error("HTTP " + std::to_string(r.status) + " " + r.body);
  auto id = std::string(json::parse(r.body).as_object().at("id").as_string());
  auto last_report = std::chrono::steady_clock::now();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto s = http.get("/v1/mesh/moves");
    if (s.status != 200) throw std::runtime_error("HTTP " + std::to_string(s.status) + " " + s.body);
    auto moves = json::parse(s.body);  // (a temporary in the for's range would die before the loop)
    bool known = false;
    for (const auto& m : moves.as_object().at("moves").as_array()) {
      const auto& o = m.as_object();
      if (o.at("id").as_string() != id) continue;
      known = true;
      auto state = std::string(o.at("state").as_string());
      if (state == "done" || state == "failed") return o;
      if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(2)) {
        last_report = std::chrono::steady_clock::now();
        std::cerr << "shard " << shard << " → " << to << ": " << state << ", " << o.at("bytes").as_int64()
                  << " bytes copied\n";
      }
    }
    // The owner restarted meanwhile (its moves list starts empty): `roost mesh status` says where
    // the shard is now.
    if (!known) {
      throw std::runtime_error("the owner " + owner + " no longer knows move " + id +
                               " (restarted?); see roost mesh status");
    }
  }
}

}  // namespace

int mesh_cli(const std::vector<std::string>& raw) {
  return run_cli("roost mesh", mesh_cli_help(), raw, [&](Args& a) -> int {
    std::string verb = need(a, 0, "status, move or rebalance");
    std::string url = url_of(a, "http://127.0.0.1:8080");
    if (is_native(url)) throw UsageError("roost mesh speaks HTTP: --url http://HOST:PORT");
    client::HttpClient http(url);
    auto token = a.opt("token");
    if (!token) {
      if (const char* env = std::getenv("ROOST_TOKEN")) token = env;
    }
    if (token) http.set_header("Authorization", "Bearer " + *token);
    if (verb == "status") return print(http.get("/v1/mesh"));
    if (verb == "move") {
      auto shard = static_cast<std::uint32_t>(std::stoul(need(a, 1, "SHARD")));
      auto to = a.opt("to");
      if (!to) throw UsageError("missing --to NODE");
      auto view = mesh_view(http);
      auto result = run_move(view, token, shard, *to);
      std::cout << json::serialize(result) << '\n';
      return result.at("state").as_string() == "done" ? 0 : 1;
    }
    if (verb != "rebalance") throw UsageError("unknown mesh command " + verb);
    bool dry = a.flag("dry-run");
    auto view = mesh_view(http);
    std::vector<MeshMember> members;
    for (const auto& [name, address] : view.http_of) members.push_back(MeshMember{name, {}, address, {}, 0});
    json::array plan, moved, failed;
    std::size_t kept = 0;
    for (const auto& p : view.status.at("placements").as_array()) {
      const auto& o = p.as_object();
      auto shard = o.at("shard").to_number<std::uint32_t>();
      auto home = std::string(o.at("home").as_string());
      auto want = Mesh::rendezvous(members, shard);
      if (want == home) {
        ++kept;
        continue;
      }
      plan.push_back(json::object{{"shard", shard}, {"from", home}, {"to", want}});
    }
    std::cerr << plan.size() << " of " << plan.size() + kept << " shards in use to move\n";
    if (dry) {
      std::cout << json::serialize(json::object{{"plan", plan}, {"kept", kept}}) << '\n';
      return 0;
    }
    std::size_t i = 0;
    for (const auto& step : plan) {
      const auto& o = step.as_object();
      auto shard = o.at("shard").to_number<std::uint32_t>();
      auto to = std::string(o.at("to").as_string());
      ++i;
      try {
        view = mesh_view(http);  // owners may have changed
        auto r = run_move(view, token, shard, to);
        std::cerr << "[" << i << "/" << plan.size() << "] shard " << shard << " → " << to << ": "
                  << r.at("state").as_string() << " (" << r.at("duration_ms").as_int64() << " ms)\n";
        if (r.at("state").as_string() == "done") {
          moved.push_back(std::move(r));
        } else {
          failed.push_back(std::move(r));
        }
      } catch (const std::exception& e) {
        std::cerr << "[" << i << "/" << plan.size() << "] shard " << shard << " → " << to << ": " << e.what()
                  << '\n';
        failed.push_back(json::object{{"shard", shard}, {"to", to}, {"error", e.what()}});
      }
    }
    std::cout << json::serialize(json::object{{"moved", moved}, {"failed", failed}, {"kept", kept}}) << '\n';
    return failed.empty() ? 0 : 1;
  });
}

const char* channel_cli_help() {
  return R"(usage: roost pub SUBJECT DATA [--content-type json|text|bytes] [--url URL]
       roost sub PATTERN [--count N] [--recent N] [--url URL]

  pub publishes one message (DATA is JSON unless --content-type text|bytes) and prints
      {"offset":…,"epoch":…,"subscribers":…}.
  sub prints one JSON line per message until --count messages arrived or Ctrl-C:
      {"channel":…,"data":…,"offset":…,"epoch":…,"timestamp_ms":…}
  URL is tcp://HOST:PORT or ipc://PATH (default tcp://127.0.0.1:7400, or env ROOST_URL);
  pub also takes http://HOST:PORT. --token JWT (or env ROOST_TOKEN), --server-key Z85 for CURVE.
)";
}

int channel_cli(const std::string& verb, const std::vector<std::string>& raw) {
  return run_cli("roost " + verb, channel_cli_help(), raw, [&](Args& a) -> int {
    std::string url = url_of(a, "tcp://127.0.0.1:7400");
    if (verb == "pub") {
      std::string subject = need(a, 0, "SUBJECT");
      std::string data = need(a, 1, "DATA");
      ContentType type = content_type_of(a, data);
      if (!is_native(url)) {
        if (type != ContentType::kJson) throw UsageError("over HTTP, DATA must be JSON");
        client::HttpClient http(url);
        return print(http.post("/v1/channels/" + subject + "/publish", data));
      }
      auto client = connect_native(a, url);
      return print_native<PublishAck>(client->publish_sync(subject, data, type), [](const PublishAck& p) {
        return json::serialize(
            json::object{{"offset", p.offset}, {"epoch", p.epoch}, {"subscribers", p.subscribers}});
      });
    }
    // sub
    if (!is_native(url)) throw UsageError("roost sub needs a tcp:// or ipc:// url");
    std::string pattern = need(a, 0, "PATTERN");
    std::uint64_t count = opt_number(a, "count").value_or(0);
    auto client = connect_native(a, url);
    std::mutex mu;
    std::condition_variable cv;
    std::uint64_t seen = 0;
    std::optional<Error> ended;
    SubscribeOptions so;
    so.recent = opt_number(a, "recent").value_or(0);
    so.on_lag = [](std::uint64_t n) { std::cerr << "roost sub: " << n << " messages lost (too slow)\n"; };
    so.on_error = [&](const Error& e) {
      std::lock_guard lock(mu);
      ended = e;
      cv.notify_all();
    };
    auto sub = client->subscribe(
        pattern,
        [&](const ChannelMessage& m) {
          json::object o{{"channel", m.channel}};
          switch (m.content_type) {
            case ContentType::kJson: {
              boost::system::error_code ec;
              auto v = json::parse(m.data, ec);
              o["data"] = ec ? json::value(m.data) : v;
              break;
            }
            case ContentType::kText: o["data"] = m.data; break;
            case ContentType::kBytes:
              o["data"] = base64_encode(m.data);
              o["encoding"] = "base64";
              break;
          }
          o["offset"] = m.offset;
          o["epoch"] = m.epoch;
          o["timestamp_ms"] = m.timestamp_ms;
          std::lock_guard lock(mu);
          std::cout << json::serialize(o) << std::endl;
          ++seen;
          cv.notify_all();
        },
        so);
    if (!sub) {
      return print_error(sub.error());
    }
    std::cerr << "roost sub: subscribed to " << pattern << '\n';
    std::signal(SIGINT, [](int) { g_interrupted = true; });
    std::signal(SIGTERM, [](int) { g_interrupted = true; });
    std::unique_lock lock(mu);
    while (!g_interrupted && !ended && (count == 0 || seen < count)) {
      cv.wait_for(lock, std::chrono::milliseconds(100));
    }
    if (ended) {
      return print_error(*ended);
    }
    return 0;
  });
}

int keygen_cli() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    std::cerr << "roost keygen: this libzmq has no CURVE support\n";
    return 1;
  }
  std::cout << "endpoint_curve_secret = \"" << sec << "\"   # the node's (keep it secret)\n"
            << "server_key = \"" << pub << "\"              # give clients this one (--server-key)\n";
  return 0;
}

const char* queue_cli_help() {
  return R"(usage: roost queue COMMAND [ARGS] [--url http://127.0.0.1:8080]   (or env ROOST_URL)

  URL is http://HOST:PORT (the REST API) or tcp://HOST:PORT / ipc://PATH (the native protocol,
  with --token JWT and --server-key Z85 for CURVE); both print the same JSON.

  create QUEUE [--visibility-timeout-ms N] [--max-retries N] [--retry-delay-ms N]
               [--dead-letter-queue NAME] [--max-messages N] [--max-bytes N]
               [--message-ttl-ms N] [--dedup-window-ms N]   create or reconfigure
               [--push-url URL [--push-concurrency N] [--push-timeout-ms N] [--push-batch-size N]]
               [--no-push]                      push to an HTTP service (docs/sidecar.md), or stop
  list                                          all queues with their stats
  stats QUEUE                                   one queue's config and stats
  delete QUEUE                                  delete a queue and its messages
  push QUEUE BODY [--content-type json|text|bytes] [--delay-ms N] [--id ID] [--key KEY]
                                                enqueue one message (BODY is JSON unless
                                                --content-type text|bytes)
  pull QUEUE [--batch-size N] [--visibility-timeout-ms N] [--wait-ms N]
  peek QUEUE [--batch-size N]                   the next messages a pull would get; leases none
  purge QUEUE                                   delete every message; the queue stays
  ack QUEUE [LEASE_ID...] [--retry LEASE_ID]... [--delay-ms N]
  redrive DLQ --to QUEUE [--max N]
)";
}

int queue_cli(const std::vector<std::string>& raw) {
  return run_cli("roost queue", queue_cli_help(), raw, [&](Args& a) -> int {
    std::string url = url_of(a, "http://127.0.0.1:8080");
    if (is_native(url)) return queue_native(a, url);
    client::HttpClient http(url);
    const std::string& cmd = a.positional[0];
    auto path = [](const std::string& q) { return "/v1/queues/" + q; };
    if (cmd == "list") return print(http.get("/v1/queues"));
    if (cmd == "stats") return print(http.get(path(need(a, 1, "QUEUE"))));
    if (cmd == "delete") return print(http.del(path(need(a, 1, "QUEUE"))));
    if (cmd == "create") {
      json::object o;
      numeric_fields(a, o,
                     {"visibility_timeout_ms", "max_retries", "retry_delay_ms", "max_messages", "max_bytes",
                      "message_ttl_ms", "dedup_window_ms"});
      if (auto dlq = a.opt("dead-letter-queue")) o["dead_letter_queue"] = *dlq;
      if (auto push_url = a.opt("push-url")) {
        json::object push{{"url", *push_url}};
        for (const char* f : {"concurrency", "timeout_ms", "batch_size"}) {
          std::string flag = "push-" + std::string(f);
          for (auto& ch : flag) ch = ch == '_' ? '-' : ch;
          if (auto v = a.opt(flag)) push[f] = number(flag, *v);
        }
        o["push"] = std::move(push);
      }
      if (a.opt("no-push")) o["push"] = nullptr;
      return print(http.put(path(need(a, 1, "QUEUE")), json::serialize(o)));
    }
    if (cmd == "push") {
      std::string q = need(a, 1, "QUEUE");
      std::string body = need(a, 2, "BODY");
      std::string type = a.opt("content-type").value_or("json");
      json::object m;
      if (type == "json") {
        boost::system::error_code ec;
        auto v = json::parse(body, ec);
        if (ec) throw UsageError("BODY is not JSON (use --content-type text for plain text)");
        m["body"] = v;
      } else {
        m["body"] = body;
      }
      m["content_type"] = type;
      numeric_fields(a, m, {"delay_ms"});
      if (auto id = a.opt("id")) m["id"] = *id;
      if (auto key = a.opt("key")) m["key"] = *key;
      return print(http.post(path(q) + "/messages", json::serialize(m)));
    }
    if (cmd == "pull") {
      json::object o;
      numeric_fields(a, o, {"batch_size", "visibility_timeout_ms", "wait_ms"});
      return print(http.post(path(need(a, 1, "QUEUE")) + "/messages/pull", json::serialize(o)));
    }
    if (cmd == "peek") {
      json::object o;
      numeric_fields(a, o, {"batch_size"});
      return print(http.post(path(need(a, 1, "QUEUE")) + "/messages/peek", json::serialize(o)));
    }
    if (cmd == "purge") return print(http.post(path(need(a, 1, "QUEUE")) + "/purge", ""));
    if (cmd == "ack") {
      std::string q = need(a, 1, "QUEUE");
      json::array acks;
      json::array retries;
      for (std::size_t i = 2; i < a.positional.size(); ++i) {
        acks.push_back(json::object{{"lease_id", a.positional[i]}});
      }
      if (auto it = a.options.find("retry"); it != a.options.end()) {
        for (const auto& lease : it->second) {
          json::object r{{"lease_id", lease}};
          if (auto d = a.opt("delay-ms")) r["delay_ms"] = number("delay-ms", *d);
          retries.push_back(std::move(r));
        }
      }
      json::object o{{"acks", acks}, {"retries", retries}};
      return print(http.post(path(q) + "/messages/ack", json::serialize(o)));
    }
    if (cmd == "redrive") {
      std::string q = need(a, 1, "DLQ");
      auto to = a.opt("to");
      if (!to) throw UsageError("redrive needs --to QUEUE");
      json::object o{{"to", *to}};
      numeric_fields(a, o, {"max"});
      return print(http.post(path(q) + "/redrive", json::serialize(o)));
    }
    throw UsageError("unknown queue command " + cmd);
  });
}

}  // namespace roost::broker
