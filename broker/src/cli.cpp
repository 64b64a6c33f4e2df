#include "cli.h"

#include <roost/client/http_client.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>

namespace roost::broker {

namespace json = boost::json;

namespace {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> options;  // --name value (repeatable)

  std::optional<std::string> opt(const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end() || it->second.empty()) return std::nullopt;
    return it->second.back();
  }
};

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

}  // namespace

const char* queue_cli_help() {
  return R"(usage: roost queue COMMAND [ARGS] [--url http://127.0.0.1:8080]   (or env ROOST_URL)

  create QUEUE [--visibility-timeout-ms N] [--max-retries N] [--retry-delay-ms N]
               [--dead-letter-queue NAME] [--max-messages N] [--max-bytes N]
               [--message-ttl-ms N] [--dedup-window-ms N]   create or reconfigure
  list                                          all queues with their stats
  stats QUEUE                                   one queue's config and stats
  delete QUEUE                                  delete a queue and its messages
  push QUEUE BODY [--content-type json|text|bytes] [--delay-ms N] [--id ID] [--key KEY]
                                                enqueue one message (BODY is JSON unless
                                                --content-type text|bytes)
  pull QUEUE [--batch-size N] [--visibility-timeout-ms N] [--wait-ms N]
  ack QUEUE [LEASE_ID...] [--retry LEASE_ID]... [--delay-ms N]
  redrive DLQ --to QUEUE [--max N]
)";
}

int queue_cli(const std::vector<std::string>& raw) {
  try {
    Args a = parse(raw);
    if (a.positional.empty() || a.opt("help")) {
      std::cout << queue_cli_help();
      return a.positional.empty() ? 2 : 0;
    }
    std::string url = a.opt("url").value_or("");
    if (url.empty()) {
      const char* env = std::getenv("ROOST_URL");
      url = env != nullptr ? env : "http://127.0.0.1:8080";
    }
    client::HttpClient http(url);
    const std::string& cmd = a.positional[0];
    auto path = [](const std::string& q) { return "/v1/queues/" + q; };
    if (cmd == "list") return print(http.get("/v1/queues"));
    if (cmd == "stats") return print(http.get(path(need(a, 1, "QUEUE"))));
    if (cmd == "delete") return print(http.del(path(need(a, 1, "QUEUE"))));
    if (cmd == "create") {
      json::object o;
      numeric_fields(a, o, {"visibility_timeout_ms", "max_retries", "retry_delay_ms",
                            "max_messages", "max_bytes", "message_ttl_ms", "dedup_window_ms"});
      if (auto dlq = a.opt("dead-letter-queue")) o["dead_letter_queue"] = *dlq;
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
  } catch (const UsageError& e) {
    std::cerr << "roost queue: " << e.what() << "\n\n" << queue_cli_help();
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "roost queue: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace roost::broker
