#include <roost/gateway/json_codec.h>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <cmath>

#include <roost/core/base64.h>
#include <roost/core/utf8.h>

namespace roost::gateway {

namespace json = boost::json;

namespace {

Error invalid(std::string m) { return Error{ErrorCode::INVALID_ARGUMENT, std::move(m)}; }

// The SAX handler of check_json: counts, measures and inspects numbers; keeps nothing.
struct CheckHandler {
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);

  JsonLimits limits;
  std::size_t values = 0;
  std::string number;  // the text of the number being read (split across parts)
  std::optional<Error> error;

  bool fail(boost::system::error_code& ec, Error e) {
    error = std::move(e);
    ec = json::error::exception;
    return false;
  }
  bool value(boost::system::error_code& ec) {
    if (++values > limits.max_values) {
      return fail(ec, Error{ErrorCode::PAYLOAD_TOO_LARGE, "the JSON text holds more than " +
                                                              std::to_string(limits.max_values) + " values"});
    }
    return true;
  }
  bool string_size(std::size_t n, boost::system::error_code& ec) {
    if (n <= limits.max_string_bytes) return true;
    return fail(ec,
                Error{ErrorCode::MESSAGE_TOO_LARGE,
                      "a JSON string is longer than " + std::to_string(limits.max_string_bytes) + " bytes"});
  }
  bool whole_number(std::string_view last, double d, bool is_double, boost::system::error_code& ec) {
    number.append(last);
    std::string text = std::move(number);
    number.clear();
    if (!is_double) return value(ec);
    if (!std::isfinite(d)) {
      return fail(ec,
                  Error{ErrorCode::INVALID_ARGUMENT,
                        "number " + text.substr(0, 40) + " is out of range (it would not survive as JSON)"});
    }
    if (text.find_first_of(".eE") == std::string::npos) {
      return fail(ec, Error{ErrorCode::INVALID_ARGUMENT,
                            "integer " + text.substr(0, 40) +
                                " does not fit in 64 bits; send it as a string to keep every digit"});
    }
    return value(ec);
  }

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_array_begin(boost::system::error_code& ec) { return value(ec); }
  bool on_array_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code& ec) { return value(ec); }
  bool on_object_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_string_part(json::string_view, std::size_t n, boost::system::error_code& ec) {
    return string_size(n, ec);
  }
  bool on_string(json::string_view, std::size_t n, boost::system::error_code& ec) {
    return string_size(n, ec) && value(ec);
  }
  bool on_key_part(json::string_view, std::size_t n, boost::system::error_code& ec) {
    return string_size(n, ec);
  }
  bool on_key(json::string_view, std::size_t n, boost::system::error_code& ec) { return string_size(n, ec); }
  bool on_number_part(json::string_view s, boost::system::error_code& ec) {
    number.append(s.data(), s.size());
    if (number.size() > 4096)
      return fail(ec, Error{ErrorCode::INVALID_ARGUMENT, "a JSON number is over 4096 digits"});
    return true;
  }
  bool on_int64(std::int64_t, json::string_view s, boost::system::error_code& ec) {
    return whole_number({s.data(), s.size()}, 0, false, ec);
  }
  bool on_uint64(std::uint64_t, json::string_view s, boost::system::error_code& ec) {
    return whole_number({s.data(), s.size()}, 0, false, ec);
  }
  bool on_double(double d, json::string_view s, boost::system::error_code& ec) {
    return whole_number({s.data(), s.size()}, d, true, ec);
  }
  bool on_bool(bool, boost::system::error_code& ec) { return value(ec); }
  bool on_null(boost::system::error_code& ec) { return value(ec); }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }
};

// Parses a request body that must be a JSON object; an empty body is an empty object.
Parsed<json::object> parse_object(std::string_view body, const JsonLimits& limits = kRequestJsonLimits) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object{};
  if (auto e = check_json(body, limits)) return std::unexpected(std::move(*e));
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec)
    return std::unexpected(Error{ErrorCode::MALFORMED, "request body is not valid JSON: " + ec.message()});
  if (!v.is_object()) return std::unexpected(invalid("request body must be a JSON object"));
  return std::move(v.as_object());
}

}  // namespace

std::optional<Error> unknown_field(const json::object& o, std::initializer_list<std::string_view> known,
                                   std::string_view what) {
  for (const auto& [k, v] : o) {
    std::string_view key(k.data(), k.size());
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (auto n : known) list += (list.empty() ? "" : ", ") + std::string(n);
    std::string shown = json::serialize(json::string_view(key.substr(0, 64)));
    return Error{ErrorCode::UNKNOWN_FIELD,
                 "unknown field " + shown + " in " + std::string(what) +
                     (list.empty() ? " (it takes none)" : " (known: " + list + ")")};
  }
  return std::nullopt;
}

namespace {

// A non-negative integer field; absent or null gives nullopt.
Parsed<std::optional<std::uint64_t>> get_u64(const json::object& o, std::string_view key,
                                             std::uint64_t max = UINT64_MAX) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<std::uint64_t>{};
  const auto& v = it->value();
  std::uint64_t out = 0;
  if (v.is_uint64()) {
    out = v.as_uint64();
  } else if (v.is_int64() && v.as_int64() >= 0) {
    out = static_cast<std::uint64_t>(v.as_int64());
  } else if (v.is_double() && v.as_double() >= 0 &&
             v.as_double() == static_cast<double>(static_cast<std::uint64_t>(v.as_double()))) {
    out = static_cast<std::uint64_t>(v.as_double());
  } else {
    return std::unexpected(invalid(std::string(key) + " must be a non-negative integer"));
  }
  if (out > max) {
    return std::unexpected(invalid(std::string(key) + " must be at most " + std::to_string(max)));
  }
  return std::optional<std::uint64_t>{out};
}

Parsed<std::optional<std::string>> get_string(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<std::string>{};
  if (!it->value().is_string()) return std::unexpected(invalid(std::string(key) + " must be a string"));
  return std::optional<std::string>{std::string(it->value().as_string())};
}

bool present(const json::object& o, std::string_view key) { return o.find(key) != o.end(); }

Parsed<NewMessage> parse_message(const json::value& v, std::uint64_t max_message_bytes) {
  if (!v.is_object()) return std::unexpected(invalid("each message must be a JSON object"));
  const auto& o = v.as_object();
  if (auto e = unknown_field(o, {"body", "content_type", "delay_ms", "id", "key"}, "a message"))
    return std::unexpected(std::move(*e));
  auto body_it = o.find("body");
  if (body_it == o.end()) return std::unexpected(invalid("message has no body"));
  NewMessage m;
  auto ct = get_string(o, "content_type");
  if (!ct) return std::unexpected(ct.error());
  std::string type = ct->value_or("json");
  if (type == "json") {
    m.content_type = ContentType::kJson;
    m.body = json::serialize(body_it->value());
  } else if (type == "text") {
    if (!body_it->value().is_string()) return std::unexpected(invalid("a text body must be a JSON string"));
    m.content_type = ContentType::kText;
    m.body = std::string(body_it->value().as_string());
  } else if (type == "bytes") {
    if (!body_it->value().is_string()) {
      return std::unexpected(invalid("a bytes body must be a base64 JSON string"));
    }
    auto decoded = base64_decode(std::string_view(body_it->value().as_string()));
    if (!decoded) return std::unexpected(invalid("a bytes body must be valid base64"));
    m.content_type = ContentType::kBytes;
    m.body = std::move(*decoded);
  } else {
    return std::unexpected(invalid("content_type must be json, text or bytes"));
  }
  if (m.body.size() > max_message_bytes) {
    return std::unexpected(Error{ErrorCode::MESSAGE_TOO_LARGE, "message body of " +
                                                                   std::to_string(m.body.size()) +
                                                                   " bytes exceeds max_message_bytes " +
                                                                   std::to_string(max_message_bytes)});
  }
  auto delay = get_u64(o, "delay_ms", 43'200'000);
  if (!delay) return std::unexpected(delay.error());
  m.delay_ms = delay->value_or(0);
  auto id = get_string(o, "id");
  if (!id) return std::unexpected(id.error());
  m.id = id->value_or("");
  auto key = get_string(o, "key");
  if (!key) return std::unexpected(key.error());
  m.key = key->value_or("");
  return m;
}

void put_nullable(json::object& o, std::string_view key, std::uint64_t v) {
  if (v == 0) {
    o[key] = nullptr;
  } else {
    o[key] = v;
  }
}

json::object queue_object(const QueueInfo& q) {
  json::object config;
  const auto& c = q.config;
  config["visibility_timeout_ms"] = c.visibility_timeout_ms;
  config["max_retries"] = c.max_retries;
  config["retry_delay_ms"] = c.retry_delay_ms;
  if (c.dead_letter_queue.empty()) {
    config["dead_letter_queue"] = nullptr;
  } else {
    config["dead_letter_queue"] = c.dead_letter_queue;
  }
  put_nullable(config, "max_messages", c.max_messages);
  put_nullable(config, "max_bytes", c.max_bytes);
  put_nullable(config, "message_ttl_ms", c.message_ttl_ms);
  config["dedup_window_ms"] = c.dedup_window_ms;
  if (c.push.url.empty()) {
    config["push"] = nullptr;
  } else {
    config["push"] = json::object{{"url", c.push.url},
                                  {"concurrency", c.push.concurrency},
                                  {"timeout_ms", c.push.timeout_ms},
                                  {"batch_size", c.push.batch_size}};
  }
  json::object stats;
  const auto& s = q.stats;
  stats["ready"] = s.ready;
  stats["delayed"] = s.delayed;
  stats["in_flight"] = s.in_flight;
  stats["blocked"] = s.blocked;
  stats["messages"] = s.messages;
  stats["bytes"] = s.bytes;
  stats["oldest_age_ms"] = s.oldest_age_ms;
  stats["enqueued"] = s.enqueued;
  stats["deduplicated"] = s.deduplicated;
  stats["acked"] = s.acked;
  stats["retried"] = s.retried;
  stats["dead_lettered"] = s.dead_lettered;
  stats["dropped"] = s.dropped;
  stats["expired"] = s.expired;
  stats["redriven"] = s.redriven;
  stats["purged"] = s.purged;
  json::object o;
  o["name"] = q.name;
  o["created_at_ms"] = q.created_at_ms;
  o["config"] = std::move(config);
  o["stats"] = std::move(stats);
  return o;
}

void append_string(std::string& out, std::string_view s) { out += json::serialize(json::string_view(s)); }

}  // namespace

std::optional<Error> check_json(std::string_view text, const JsonLimits& limits) {
  json::parse_options opt;
  opt.max_depth = limits.max_depth;
  json::basic_parser<CheckHandler> p(opt);
  p.handler().limits = limits;
  boost::system::error_code ec;
  auto n = p.write_some(false, text.data(), text.size(), ec);
  if (p.handler().error) return p.handler().error;
  if (ec == json::error::too_deep) {
    return Error{ErrorCode::INVALID_ARGUMENT, "JSON nested deeper than " + std::to_string(limits.max_depth)};
  }
  if (ec) return Error{ErrorCode::MALFORMED, "not valid JSON: " + ec.message()};
  if (n != text.size()) return Error{ErrorCode::MALFORMED, "not valid JSON: extra data after the value"};
  return std::nullopt;
}

Parsed<QueueConfigPatch> parse_queue_config(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return std::unexpected(o.error());
  if (auto e = unknown_field(*o,
                             {"visibility_timeout_ms", "max_retries", "retry_delay_ms", "dead_letter_queue",
                              "max_messages", "max_bytes", "message_ttl_ms", "dedup_window_ms", "push"},
                             "a queue's configuration"))
    return std::unexpected(std::move(*e));
  QueueConfigPatch p;
  auto vis = get_u64(*o, "visibility_timeout_ms");
  auto retries = get_u64(*o, "max_retries", UINT32_MAX);
  auto delay = get_u64(*o, "retry_delay_ms");
  auto dlq = get_string(*o, "dead_letter_queue");
  auto max_messages = get_u64(*o, "max_messages");
  auto max_bytes = get_u64(*o, "max_bytes");
  auto ttl = get_u64(*o, "message_ttl_ms");
  auto dedup = get_u64(*o, "dedup_window_ms");
  for (const auto* r : {&vis, &delay, &max_messages, &max_bytes, &ttl, &dedup, &retries}) {
    if (!*r) return std::unexpected(r->error());
  }
  if (!dlq) return std::unexpected(dlq.error());
  p.visibility_timeout_ms = *vis;
  if (*retries) p.max_retries = static_cast<std::uint32_t>(**retries);
  p.retry_delay_ms = *delay;
  p.dedup_window_ms = *dedup;
  // For these, an explicit null means "none"; absence keeps the current value.
  if (present(*o, "dead_letter_queue")) p.dead_letter_queue = dlq->value_or("");
  if (present(*o, "max_messages")) p.max_messages = max_messages->value_or(0);
  if (present(*o, "max_bytes")) p.max_bytes = max_bytes->value_or(0);
  if (present(*o, "message_ttl_ms")) p.message_ttl_ms = ttl->value_or(0);
  // "push": {"url", "concurrency", "timeout_ms", "batch_size"} sets the push target (absent fields
  // take their defaults); null stops pushing.
  if (auto it = o->find("push"); it != o->end()) {
    if (it->value().is_null()) {
      p.push = PushTarget{};
    } else {
      if (!it->value().is_object()) return std::unexpected(invalid("push must be an object or null"));
      const auto& po = it->value().as_object();
      if (auto e = unknown_field(po, {"url", "concurrency", "timeout_ms", "batch_size"}, "push"))
        return std::unexpected(std::move(*e));
      auto url = get_string(po, "url");
      if (!url) return std::unexpected(url.error());
      if (!*url || (*url)->empty())
        return std::unexpected(invalid("push.url is required (null push stops pushing)"));
      PushTarget t;
      t.url = **url;
      auto conc = get_u64(po, "concurrency", 256);
      auto timeout = get_u64(po, "timeout_ms", 3'600'000);
      auto batch = get_u64(po, "batch_size", 100);
      for (const auto* r : {&conc, &timeout, &batch}) {
        if (!*r) return std::unexpected(r->error());
      }
      if (*conc) t.concurrency = static_cast<std::uint32_t>(**conc);
      if (*timeout) t.timeout_ms = **timeout;
      if (*batch) t.batch_size = static_cast<std::uint32_t>(**batch);
      p.push = std::move(t);
    }
  }
  return p;
}

Parsed<std::vector<NewMessage>> parse_enqueue(std::string_view body, std::uint64_t max_message_bytes) {
  // A message body is at most max_message_bytes; as base64 (bytes) a third more.
  JsonLimits limits = kRequestJsonLimits;
  limits.max_string_bytes = max_message_bytes + max_message_bytes / 3 + 4;
  auto o = parse_object(body, limits);
  if (!o) return std::unexpected(o.error());
  std::vector<NewMessage> out;
  if (auto it = o->find("messages"); it != o->end()) {
    if (auto e = unknown_field(*o, {"messages"}, "a batch (its messages go in \"messages\")"))
      return std::unexpected(std::move(*e));
    if (!it->value().is_array()) return std::unexpected(invalid("messages must be an array"));
    const auto& arr = it->value().as_array();
    if (arr.empty()) return std::unexpected(invalid("messages must not be empty"));
    if (arr.size() > 1000) return std::unexpected(invalid("at most 1000 messages a batch"));
    out.reserve(arr.size());
    for (const auto& v : arr) {
      auto m = parse_message(v, max_message_bytes);
      if (!m) return std::unexpected(m.error());
      out.push_back(std::move(*m));
    }
    return out;
  }
  auto m = parse_message(json::value(std::move(*o)), max_message_bytes);
  if (!m) return std::unexpected(m.error());
  out.push_back(std::move(*m));
  return out;
}

Parsed<PullRequest> parse_pull(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return std::unexpected(o.error());
  if (auto e = unknown_field(*o, {"batch_size", "visibility_timeout_ms", "wait_ms"}))
    return std::unexpected(std::move(*e));
  PullRequest r;
  auto batch = get_u64(*o, "batch_size", 1000);
  if (!batch) return std::unexpected(batch.error());
  auto vis = get_u64(*o, "visibility_timeout_ms");
  if (!vis) return std::unexpected(vis.error());
  auto wait = get_u64(*o, "wait_ms", kMaxWaitMs);
  if (!wait) return std::unexpected(wait.error());
  r.options.batch_size = static_cast<std::uint32_t>(batch->value_or(10));
  r.options.visibility_timeout_ms = *vis;
  r.wait_ms = wait->value_or(0);
  return r;
}

Parsed<AckRequest> parse_ack(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return std::unexpected(o.error());
  if (auto e = unknown_field(*o, {"acks", "retries"})) return std::unexpected(std::move(*e));
  AckRequest r;
  auto lease_of = [](const json::value& v, bool retry) -> Parsed<std::string> {
    if (!v.is_object()) return std::unexpected(invalid("each ack or retry must be an object"));
    auto e = retry ? unknown_field(v.as_object(), {"lease_id", "delay_ms"}, "a retry")
                   : unknown_field(v.as_object(), {"lease_id"}, "an ack");
    if (e) return std::unexpected(std::move(*e));
    auto id = get_string(v.as_object(), "lease_id");
    if (!id) return std::unexpected(id.error());
    if (!*id) return std::unexpected(invalid("lease_id is required"));
    return **id;
  };
  if (auto it = o->find("acks"); it != o->end() && !it->value().is_null()) {
    if (!it->value().is_array()) return std::unexpected(invalid("acks must be an array"));
    for (const auto& v : it->value().as_array()) {
      auto id = lease_of(v, false);
      if (!id) return std::unexpected(id.error());
      r.acks.push_back(std::move(*id));
    }
  }
  if (auto it = o->find("retries"); it != o->end() && !it->value().is_null()) {
    if (!it->value().is_array()) return std::unexpected(invalid("retries must be an array"));
    for (const auto& v : it->value().as_array()) {
      auto id = lease_of(v, true);
      if (!id) return std::unexpected(id.error());
      auto delay = get_u64(v.as_object(), "delay_ms", 43'200'000);
      if (!delay) return std::unexpected(delay.error());
      r.retries.push_back(RetryRequest{std::move(*id), *delay});
    }
  }
  if (r.acks.size() + r.retries.size() > 10'000) {
    return std::unexpected(invalid("at most 10000 acks and retries a request"));
  }
  return r;
}

Parsed<RedriveRequest> parse_redrive(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return std::unexpected(o.error());
  if (auto e = unknown_field(*o, {"to", "max"})) return std::unexpected(std::move(*e));
  auto to = get_string(*o, "to");
  if (!to) return std::unexpected(to.error());
  if (!*to) return std::unexpected(invalid("to is required"));
  auto max = get_u64(*o, "max");
  if (!max) return std::unexpected(max.error());
  return RedriveRequest{**to, max->value_or(0)};
}

Parsed<bool> parse_empty(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return std::unexpected(o.error());
  if (auto e = unknown_field(*o, {})) return std::unexpected(std::move(*e));
  return true;
}

Parsed<std::uint32_t> parse_peek(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return std::unexpected(o.error());
  if (auto e = unknown_field(*o, {"batch_size"})) return std::unexpected(std::move(*e));
  auto batch = get_u64(*o, "batch_size", 1000);
  if (!batch) return std::unexpected(batch.error());
  if (*batch && **batch == 0) return std::unexpected(invalid("batch_size must be 1..1000"));
  return static_cast<std::uint32_t>(batch->value_or(10));
}

std::string encode_queue(const QueueInfo& q) { return json::serialize(queue_object(q)); }

std::string encode_queues(const std::vector<QueueInfo>& qs) {
  json::array arr;
  for (const auto& q : qs) arr.push_back(queue_object(q));
  json::object o;
  o["queues"] = std::move(arr);
  return json::serialize(o);
}

std::string encode_ids(const std::vector<std::string>& ids) {
  std::string out = R"({"ids":[)";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('"');
    out += ids[i];  // hex digits: nothing to escape
    out.push_back('"');
  }
  out += "]}";
  return out;
}

// Written by hand so that stored JSON bodies are copied, not parsed and re-serialized.
std::string encode_message_array(const std::vector<LeasedMessage>& ms, bool with_leases) {
  std::string out = "[";
  for (std::size_t i = 0; i < ms.size(); ++i) {
    const auto& m = ms[i];
    if (i) out.push_back(',');
    out += R"({"id":")" + m.id;
    if (with_leases && !m.lease_id.empty()) out += R"(","lease_id":")" + m.lease_id;  // none when peeked
    out += R"(","body":)";
    switch (m.content_type) {
      case ContentType::kJson: out += m.body; break;  // validated JSON text, stored as such
      case ContentType::kText: append_string(out, m.body); break;
      case ContentType::kBytes: out += '"' + base64_encode(m.body) + '"'; break;
    }
    out += R"(,"content_type":")";
    out += content_type_name(m.content_type);
    out += R"(","attempts":)" + std::to_string(m.attempts) + R"(,"timestamp_ms":)" +
           std::to_string(m.timestamp_ms) + R"(,"key":)";
    if (m.key.empty()) {
      out += "null";
    } else {
      append_string(out, m.key);
    }
    out.push_back('}');
  }
  out.push_back(']');
  return out;
}

std::string encode_messages(const std::vector<LeasedMessage>& ms, std::optional<std::uint64_t> backlog) {
  std::string out = R"({"messages":)" + encode_message_array(ms, true);
  if (backlog) out += R"(,"backlog":)" + std::to_string(*backlog);
  out += "}";
  return out;
}

std::string encode_ack(const AckResult& r) {
  json::object o;
  o["acked"] = r.acked;
  o["retried"] = r.retried;
  json::array unknown;
  for (const auto& u : r.unknown) unknown.push_back(json::string(u));
  o["unknown"] = std::move(unknown);
  return json::serialize(o);
}

std::string encode_error(const Error& e) {
  json::object inner;
  inner["code"] = error_code_name(e.code);
  inner["message"] = e.message;
  json::object o;
  o["error"] = std::move(inner);
  return json::serialize(o);
}

}  // namespace roost::gateway
