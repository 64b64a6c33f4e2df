// Cloudflare Queues' REST API on Roost's queues (docs/cloudflare.md). Each route translates a
// Cloudflare request into Router calls and the answer into Cloudflare's envelope
// ({"success","errors","messages","result"}), field names and error codes; the queue semantics
// are Roost's (which follow Cloudflare's: leases, late acks, retries with delays, dead letters).
#include "cf_routes.h"

#include <roost/core/base64.h>
#include <roost/gateway/cf_api.h>
#include <roost/gateway/json_codec.h>

#include <boost/json.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace roost::gateway {

namespace http = boost::beast::http;
namespace json = boost::json;

Result<std::vector<CfToken>> parse_cf_tokens(std::string_view spec) {
  auto bad = [](std::string m) {
    return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "cf_tokens: " + m});
  };
  std::vector<CfToken> out;
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
  };
  for (std::size_t start = 0; start < spec.size();) {
    auto end = std::min(spec.find(';', start), spec.size());
    auto entry = trim(spec.substr(start, end - start));
    start = end + 1;
    if (entry.empty()) continue;
    auto colon = entry.find(':');
    if (colon == std::string_view::npos) return bad("each entry is TOKEN:queue,queue");
    CfToken t;
    t.token = std::string(trim(entry.substr(0, colon)));
    if (t.token.empty()) return bad("an entry has an empty token");
    for (char c : t.token) {
      if (!std::isalnum(static_cast<unsigned char>(c)) &&
          std::string_view("._~+/=-").find(c) == std::string_view::npos)
        return bad("a token has a character outside A-Z a-z 0-9 . _ ~ + / = -");
    }
    auto grants = entry.substr(colon + 1);
    for (std::size_t g = 0; g <= grants.size();) {
      auto comma = std::min(grants.find(',', g), grants.size());
      auto q = trim(grants.substr(g, comma - g));
      if (!q.empty()) t.queues.emplace_back(q);
      g = comma + 1;
    }
    if (t.queues.empty()) return bad("a token grants no queue (TOKEN:queue,… ; \">\" = every queue)");
    for (const auto& other : out) {
      if (other.token == t.token) return bad("a token is listed twice");
    }
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

Response make_cf(unsigned status, unsigned version, std::string body) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

std::string ok_envelope(json::value result) {
  return json::serialize(json::object{{"success", true},
                                      {"errors", json::array{}},
                                      {"messages", json::array{}},
                                      {"result", std::move(result)}});
}

struct CfError {
  unsigned status;
  int code;
  std::string message;
};

// Cloudflare's status and numeric code (its Queues error table) for one of Roost's errors.
CfError cf_error(const Error& e) {
  switch (e.code) {
    case ErrorCode::UNAUTHORIZED:
    case ErrorCode::FORBIDDEN: return {403, 10000, "Authentication error: " + e.message};
    case ErrorCode::QUEUE_NOT_FOUND: return {404, 10104, "QueueNotFound: " + e.message};
    case ErrorCode::NOT_FOUND: return {404, 7003, "No route for the URI"};
    case ErrorCode::METHOD_NOT_ALLOWED: return {405, 7001, "Method not allowed: " + e.message};
    case ErrorCode::MALFORMED: return {400, 10208, "JSONRequestBodyMalformed: " + e.message};
    case ErrorCode::MESSAGE_TOO_LARGE: return {413, 10204, "MessageSizeOutOfBounds: " + e.message};
    case ErrorCode::PAYLOAD_TOO_LARGE: return {413, 10205, "BatchSizeOutOfBounds: " + e.message};
    case ErrorCode::QUEUE_FULL:
    case ErrorCode::STORAGE_FULL: return {429, 10251, "QueueStorageLimitExceeded: " + e.message};
    case ErrorCode::TOO_MANY_REQUESTS: return {429, 10250, "QueueOverloaded: " + e.message};
    case ErrorCode::CONFLICT: return {409, 10207, "Conflict: " + e.message};
    case ErrorCode::INVALID_ARGUMENT:
    case ErrorCode::INVALID_NAME:
    case ErrorCode::UNKNOWN_FIELD: return {400, 10207, "JSONRequestBodyInvalid: " + e.message};
    case ErrorCode::UNAVAILABLE:
    case ErrorCode::OWNER_UNAVAILABLE: return {503, 15000, "UnknownInternalError: " + e.message};
    default: return {500, 15000, "UnknownInternalError: " + e.message};
  }
}

Response cf_response(const CfError& e, unsigned version) {
  json::object err{{"code", e.code}, {"message", e.message}};
  return make_cf(e.status, version,
                 json::serialize(json::object{{"success", false},
                                              {"errors", json::array{std::move(err)}},
                                              {"messages", json::array{}},
                                              {"result", nullptr}}));
}

void respond(Reply& reply, Response res) {
  reply([res = std::move(res)]() mutable { return std::move(res); });
}
void fail(Reply& reply, const Error& e, unsigned v) { respond(reply, cf_response(cf_error(e), v)); }
void fail(Reply& reply, unsigned status, int code, std::string message, unsigned v) {
  respond(reply, cf_response(CfError{status, code, std::move(message)}, v));
}

// A 400 of Cloudflare's "the body does not match the schema" kind.
Error schema(std::string m) { return Error{ErrorCode::INVALID_ARGUMENT, std::move(m)}; }

// The request body as a JSON object (empty = {}). Fields Cloudflare does not define are ignored,
// as Cloudflare's API does.
Result<json::object> body_object(const Request& req) {
  std::string_view body = req.body();
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object{};
  if (auto e = check_json(body)) return std::unexpected(*e);
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return std::unexpected(Error{ErrorCode::MALFORMED, "the body is not JSON: " + ec.message()});
  if (!v.is_object()) return std::unexpected(schema("the body must be a JSON object"));
  return std::move(v.as_object());
}

// A whole number field in [lo, hi]; nullopt when absent or null.
Result<std::optional<std::uint64_t>> whole(const json::object& o, std::string_view key, std::uint64_t lo,
                                           std::uint64_t hi) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::uint64_t>{};
  double d = v->is_number() ? v->to_number<double>() : -1;
  if (!v->is_number() || d < static_cast<double>(lo) || d > static_cast<double>(hi) ||
      d != static_cast<double>(static_cast<std::uint64_t>(d))) {
    return std::unexpected(schema(std::string(key) + " must be a whole number in " + std::to_string(lo) +
                                  ".." + std::to_string(hi)));
  }
  return std::optional<std::uint64_t>{static_cast<std::uint64_t>(d)};
}

// One message of a publish: body, content_type (json by default; text; bytes as base64; v8 is
// the Workers runtime's and cannot come over HTTP), delay_seconds (else the batch's).
std::expected<NewMessage, CfError> new_message(const json::object& m,
                                               std::optional<std::uint64_t> batch_delay,
                                               std::uint64_t max_bytes) {
  auto metadata = [](std::string what) {
    return std::unexpected(CfError{400, 10203, "MessageMetadataInvalid: " + std::move(what)});
  };
  auto invalid = [](std::string what) { return std::unexpected(cf_error(schema(std::move(what)))); };
  const auto* body = m.if_contains("body");
  if (body == nullptr) return invalid("a message needs a body");
  std::string type = "json";
  if (const auto* ct = m.if_contains("content_type"); ct != nullptr && !ct->is_null()) {
    if (!ct->is_string()) return metadata("content_type must be a string");
    type = std::string(ct->as_string());
  }
  NewMessage out;
  if (type == "json") {
    out.content_type = ContentType::kJson;
    out.body = json::serialize(*body);
  } else if (type == "text") {
    if (!body->is_string()) return invalid("a text message's body must be a string");
    out.content_type = ContentType::kText;
    out.body = std::string(body->as_string());
  } else if (type == "bytes") {
    if (!body->is_string()) return invalid("a bytes message's body must be base64 text");
    auto raw = base64_decode(std::string_view(body->as_string()));
    if (!raw) return invalid("a bytes message's body must be base64");
    out.content_type = ContentType::kBytes;
    out.body = std::move(*raw);
  } else {
    return metadata("content_type " + type.substr(0, 16) +
                    " (over HTTP: json, text or bytes; v8 is for Workers only)");
  }
  if (out.body.size() > max_bytes) {
    return std::unexpected(CfError{413, 10204,
                                   "MessageSizeOutOfBounds: a message is " + std::to_string(out.body.size()) +
                                       " bytes; at most " + std::to_string(max_bytes)});
  }
  auto delay = whole(m, "delay_seconds", 0, kCfMaxDelaySeconds);
  if (!delay) return metadata(delay.error().message);
  out.delay_ms = delay->value_or(batch_delay.value_or(0)) * 1000;
  return out;
}

json::object metrics(const QueueInfo& q) {
  std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  return json::object{{"backlog_count", q.stats.messages},
                      {"backlog_bytes", q.stats.bytes},
                      {"oldest_message_timestamp_ms", q.stats.messages ? now - q.stats.oldest_age_ms : 0}};
}

// A message as Cloudflare's pull (or peek) shows it: json and bytes bodies base64, text as is.
json::object message_out(const LeasedMessage& m, bool peeked) {
  json::object o;
  o["id"] = m.id;
  if (m.content_type == ContentType::kText) {
    o["body"] = m.body;
  } else {
    o["body"] = base64_encode(m.body);
  }
  o["timestamp_ms"] = m.timestamp_ms;
  o["attempts"] = m.attempts;
  o["metadata"] =
      json::object{{"CF-sourceMessageSource", "api"}, {"CF-Content-Type", content_type_name(m.content_type)}};
  if (peeked) {
    o["ref"] = m.id;
  } else {
    o["lease_id"] = m.lease_id;
  }
  return o;
}

std::string iso8601(std::int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

// A queue as Cloudflare's API shows one: its id is its name; one HTTP pull consumer with the
// queue's lease settings.
json::object queue_out(const QueueInfo& q) {
  const auto& c = q.config;
  json::object consumer{{"type", "http_pull"},
                        {"queue_name", q.name},
                        {"created_on", iso8601(q.created_at_ms)},
                        {"settings", json::object{{"batch_size", kCfDefaultPullBatch},
                                                  {"max_retries", c.max_retries},
                                                  {"visibility_timeout_ms", c.visibility_timeout_ms},
                                                  {"retry_delay", c.retry_delay_ms / 1000}}}};
  if (!c.dead_letter_queue.empty()) consumer["dead_letter_queue"] = c.dead_letter_queue;
  return json::object{{"queue_id", q.name},
                      {"queue_name", q.name},
                      {"created_on", iso8601(q.created_at_ms)},
                      {"modified_on", iso8601(q.created_at_ms)},
                      {"producers", json::array{}},
                      {"producers_total_count", 0},
                      {"consumers", json::array{std::move(consumer)}},
                      {"consumers_total_count", 1},
                      {"settings", json::object{{"delivery_delay", 0},
                                                {"delivery_paused", false},
                                                {"message_retention_period", c.message_ttl_ms / 1000}}},
                      {"metrics", metrics(q)}};
}

bool same_token(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Who is asking: a `cf_tokens` token grants its queues; else Roost's own rules (a JWT with
// auth_secret, loopback without). A token that is neither is refused.
Result<Principal> cf_principal(const Request& req, const boost::asio::ip::address& remote,
                               const Server::State& st) {
  std::string token = request_token(req, /*allow_query=*/false);
  if (!token.empty()) {
    for (const auto& t : st.cf_tokens) {
      if (same_token(t.token, token)) {
        Principal p;
        p.queues = t.queues;
        return p;
      }
    }
    if (!st.cf_tokens.empty() && !st.auth.enabled()) {
      return std::unexpected(Error{ErrorCode::UNAUTHORIZED, "this API token is not one of cf_tokens"});
    }
  }
  return st.auth.authenticate(token, remote);
}

// Answers with `result` and the queue's metrics after `then` (an enqueue or a pull committed).
void with_metrics(Router& router, const std::string& queue, Reply reply, unsigned v,
                  std::move_only_function<json::object(std::optional<json::object>)> build) {
  router.get_queue_async(
      queue, [reply = std::move(reply), v, build = std::move(build)](Result<QueueInfo> q) mutable {
        std::optional<json::object> m;
        if (q) m = metrics(*q);
        // Built on the session's strand: encoding a batch never runs on a broker thread.
        reply([build = std::move(build), m = std::move(m), v]() mutable {
          return make_cf(200, v, ok_envelope(build(std::move(m))));
        });
      });
}

void publish(const Request& req, Server::State& st, const std::string& queue, bool batch, Reply reply) {
  unsigned v = req.version();
  auto o = body_object(req);
  if (!o) return fail(reply, o.error(), v);
  const std::uint64_t max_bytes = std::min<std::uint64_t>(kCfMaxMessageBytes, st.router.max_message_bytes());
  std::vector<NewMessage> msgs;
  if (batch) {
    auto delay = whole(*o, "delay_seconds", 0, kCfMaxDelaySeconds);
    if (!delay) return fail(reply, 400, 10203, "MessageMetadataInvalid: " + delay.error().message, v);
    const auto* list = o->if_contains("messages");
    if (list == nullptr || !list->is_array()) return fail(reply, schema("messages must be an array"), v);
    const auto& arr = list->as_array();
    if (arr.empty() || arr.size() > kCfMaxBatchMessages) {
      return fail(
          reply, 400, 10206,
          "BatchCountOutOfBounds: a batch holds 1.." + std::to_string(kCfMaxBatchMessages) + " messages", v);
    }
    std::size_t total = 0;
    for (const auto& m : arr) {
      if (!m.is_object()) return fail(reply, schema("each message must be an object"), v);
      auto one = new_message(m.as_object(), *delay, max_bytes);
      if (!one) return respond(reply, cf_response(one.error(), v));
      total += one->body.size();
      msgs.push_back(std::move(*one));
    }
    if (total > kCfMaxBatchBytes) {
      return fail(
          reply, 413, 10205,
          "BatchSizeOutOfBounds: a batch's bodies are at most " + std::to_string(kCfMaxBatchBytes) + " bytes",
          v);
    }
  } else {
    auto one = new_message(*o, std::nullopt, max_bytes);
    if (!one) return respond(reply, cf_response(one.error(), v));
    msgs.push_back(std::move(*one));
  }
  for (const auto& m : msgs) {
    if (m.delay_ms > kCfMaxDelaySeconds * 1000)
      return fail(reply, 400, 10203, "MessageMetadataInvalid: delay", v);
  }
  auto& router = st.router;
  router.enqueue(queue, std::move(msgs),
                 [&router, queue, reply = std::move(reply), v](Result<std::vector<std::string>> r) mutable {
                   if (!r) return fail(reply, r.error(), v);
                   with_metrics(router, queue, std::move(reply), v, [](std::optional<json::object> m) {
                     json::object result;
                     if (m) result["metadata"] = json::object{{"metrics", std::move(*m)}};
                     return result;
                   });
                 });
}

void pull(const Request& req, Server::State& st, const std::string& queue, Reply reply,
          std::shared_ptr<const std::atomic<bool>> gone) {
  unsigned v = req.version();
  auto o = body_object(req);
  if (!o) return fail(reply, o.error(), v);
  auto batch = whole(*o, "batch_size", 1, kCfMaxBatchMessages);
  if (!batch) return fail(reply, batch.error(), v);
  // visibility_timeout_ms (the API reference) or visibility_timeout (the pull consumers guide).
  auto vis = whole(*o, "visibility_timeout_ms", 1, kCfMaxDelaySeconds * 1000);
  if (!vis) return fail(reply, vis.error(), v);
  if (!*vis) {
    vis = whole(*o, "visibility_timeout", 1, kCfMaxDelaySeconds * 1000);
    if (!vis) return fail(reply, vis.error(), v);
  }
  PullOptions opts;
  opts.batch_size = static_cast<std::uint32_t>(batch->value_or(kCfDefaultPullBatch));
  opts.visibility_timeout_ms = *vis;
  auto& router = st.router;
  // Short polling, as Cloudflare: an empty queue answers at once.
  router.pull(
      queue, opts, 0,
      [&router, queue, reply = std::move(reply), v](Result<std::vector<LeasedMessage>> r) mutable {
        if (!r) return fail(reply, r.error(), v);
        with_metrics(router, queue, std::move(reply), v, [ms = std::move(*r)](std::optional<json::object> m) {
          json::array out;
          for (const auto& msg : ms) out.push_back(message_out(msg, false));
          json::object result{{"messages", std::move(out)}};
          if (m) {
            result["message_backlog_count"] = m->at("backlog_count");
            result["metadata"] = json::object{{"metrics", std::move(*m)}};
          }
          return result;
        });
      },
      std::move(gone));
}

void ack(const Request& req, Server::State& st, const std::string& queue, Reply reply) {
  unsigned v = req.version();
  auto o = body_object(req);
  if (!o) return fail(reply, o.error(), v);
  std::vector<std::string> acks;
  std::vector<RetryRequest> retries;
  auto leases = [&](std::string_view key, bool retry) -> std::optional<Error> {
    const auto* list = o->if_contains(key);
    if (list == nullptr || list->is_null()) return std::nullopt;
    if (!list->is_array()) return schema(std::string(key) + " must be an array");
    for (const auto& item : list->as_array()) {
      const auto* obj = item.if_object();
      const auto* id = obj ? obj->if_contains("lease_id") : nullptr;
      if (id == nullptr || !id->is_string())
        return schema("each of " + std::string(key) + " needs a lease_id");
      if (!retry) {
        acks.emplace_back(id->as_string());
        continue;
      }
      auto delay = whole(*obj, "delay_seconds", 0, kCfMaxDelaySeconds);
      if (!delay) return delay.error();
      RetryRequest r{std::string(id->as_string()), std::nullopt};
      if (*delay) r.delay_ms = **delay * 1000;
      retries.push_back(std::move(r));
    }
    return std::nullopt;
  };
  if (auto e = leases("acks", false)) return fail(reply, *e, v);
  if (auto e = leases("retries", true)) return fail(reply, *e, v);
  if (acks.size() + retries.size() > 10'000)
    return fail(reply, schema("at most 10000 acks and retries a request"), v);
  st.router.ack(
      queue, std::move(acks), std::move(retries), [reply = std::move(reply), v](Result<AckResult> r) mutable {
        if (!r) return fail(reply, r.error(), v);
        reply([r = std::move(*r), v] {
          json::object warnings;
          for (const auto& lease : r.unknown) {
            warnings[lease] =
                "the lease no longer holds: its message was acknowledged, retried or delivered again";
          }
          json::object result{
              {"ackCount", r.acked}, {"retryCount", r.retried}, {"warnings", std::move(warnings)}};
          return make_cf(200, v, ok_envelope(std::move(result)));
        });
      });
}

void peek(const Request& req, Server::State& st, const std::string& queue, Reply reply) {
  unsigned v = req.version();
  auto o = body_object(req);
  if (!o) return fail(reply, o.error(), v);
  auto batch = whole(*o, "batch_size", 1, kCfMaxBatchMessages);
  if (!batch) return fail(reply, batch.error(), v);
  st.router.peek(queue, static_cast<std::uint32_t>(batch->value_or(kCfDefaultPullBatch)),
                 [reply = std::move(reply), v](Result<std::vector<LeasedMessage>> r) mutable {
                   if (!r) return fail(reply, r.error(), v);
                   reply([ms = std::move(*r), v] {
                     json::array out;
                     for (const auto& m : ms) out.push_back(message_out(m, true));
                     return make_cf(200, v, ok_envelope(json::object{{"messages", std::move(out)}}));
                   });
                 });
}

void purge(const Request& req, Server::State& st, const std::string& queue, Reply reply) {
  unsigned v = req.version();
  if (req.method() == http::verb::get) {
    std::int64_t at = st.last_purge(queue);
    json::object status{{"completed", "true"}};
    if (at != 0) status["started_at"] = iso8601(at);
    return st.router.get_queue_async(
        queue, [reply = std::move(reply), v, status = std::move(status)](Result<QueueInfo> q) mutable {
          if (!q) return fail(reply, q.error(), v);
          respond(reply, make_cf(200, v, ok_envelope(std::move(status))));
        });
  }
  auto o = body_object(req);
  if (!o) return fail(reply, o.error(), v);
  const auto* confirm = o->if_contains("delete_messages_permanently");
  if (confirm == nullptr || !confirm->is_bool() || !confirm->as_bool()) {
    return fail(reply,
                schema("purging deletes every message: confirm with \"delete_messages_permanently\": true"),
                v);
  }
  std::int64_t started = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  auto& router = st.router;
  router.purge_queue(
      queue, [&router, &st, queue, started, reply = std::move(reply), v](Result<std::uint64_t> n) mutable {
        if (!n) return fail(reply, n.error(), v);
        st.note_purge(queue, started);
        router.get_queue_async(queue, [reply = std::move(reply), v](Result<QueueInfo> q) mutable {
          if (!q) return fail(reply, q.error(), v);
          respond(reply, make_cf(200, v, ok_envelope(queue_out(*q))));
        });
      });
}

// PATCH/PUT /queues/{id}: Cloudflare's queue settings that Roost has (message_retention_period);
// the others only as their neutral values.
void update_queue(const Request& req, Server::State& st, const std::string& queue, Reply reply) {
  unsigned v = req.version();
  auto o = body_object(req);
  if (!o) return fail(reply, o.error(), v);
  if (const auto* n = o->if_contains("queue_name");
      n != nullptr && !(n->is_string() && n->as_string() == queue)) {
    return fail(reply, schema("a queue cannot be renamed (its id is its name)"), v);
  }
  QueueConfigPatch patch;
  if (const auto* s = o->if_contains("settings"); s != nullptr && !s->is_null()) {
    if (!s->is_object()) return fail(reply, schema("settings must be an object"), v);
    const auto& so = s->as_object();
    auto keep = whole(so, "message_retention_period", 60, 1'209'600);
    if (!keep) return fail(reply, keep.error(), v);
    if (*keep) patch.message_ttl_ms = **keep * 1000;
    auto delay = whole(so, "delivery_delay", 0, 0);
    if (!delay)
      return fail(reply, schema("delivery_delay: Roost has no queue-wide delay (send with delay_seconds)"),
                  v);
    if (const auto* p = so.if_contains("delivery_paused"); p != nullptr && !(p->is_bool() && !p->as_bool())) {
      return fail(reply, schema("delivery_paused: pausing is not supported"), v);
    }
  }
  st.router.put_queue(queue, patch, [reply = std::move(reply), v](Result<QueueInfo> q) mutable {
    if (!q) return fail(reply, q.error(), v);
    respond(reply, make_cf(200, v, ok_envelope(queue_out(*q))));
  });
}

}  // namespace

void cf_routes(const Request& req, const boost::asio::ip::address& remote, Server::State& st,
               const std::vector<std::string>& segs, Reply reply,
               std::shared_ptr<const std::atomic<bool>> gone) {
  unsigned v = req.version();
  // segs: client v4 accounts {account_id} queues [{queue_id} [tail…]]
  if (segs.size() < 5 || segs[4] != "queues" || segs[3].empty() || segs[3].size() > 64) {
    return fail(reply, Error{ErrorCode::NOT_FOUND, ""}, v);
  }
  auto who = cf_principal(req, remote, st);
  if (!who) return fail(reply, who.error(), v);
  auto method = req.method();
  auto not_allowed = [&](const char* allow) {
    auto res =
        cf_response(cf_error(Error{ErrorCode::METHOD_NOT_ALLOWED, std::string("allowed: ") + allow}), v);
    res.set(http::field::allow, allow);
    respond(reply, std::move(res));
  };
  if (segs.size() == 5) {
    if (method == http::verb::get) {
      return st.router.list_queues_async(
          [reply = std::move(reply), v, who = *who](Result<std::vector<QueueInfo>> r) mutable {
            if (!r) return fail(reply, r.error(), v);
            json::array out;
            for (const auto& q : *r) {
              if (who.may_use_queue(q.name)) out.push_back(queue_out(q));
            }
            auto n = out.size();
            json::object body{
                {"success", true},
                {"errors", json::array{}},
                {"messages", json::array{}},
                {"result", std::move(out)},
                {"result_info",
                 json::object{
                     {"page", 1}, {"per_page", n}, {"count", n}, {"total_count", n}, {"total_pages", 1}}}};
            respond(reply, make_cf(200, v, json::serialize(body)));
          });
    }
    if (method != http::verb::post) return not_allowed("GET, POST");
    auto o = body_object(req);
    if (!o) return fail(reply, o.error(), v);
    const auto* name = o->if_contains("queue_name");
    if (name == nullptr || !name->is_string()) return fail(reply, schema("queue_name is required"), v);
    std::string q(name->as_string());
    if (!who->may_use_queue(q))
      return fail(reply, Error{ErrorCode::FORBIDDEN, "the token does not grant " + q}, v);
    auto& router = st.router;
    return router.get_queue_async(
        q, [&router, q, reply = std::move(reply), v](Result<QueueInfo> found) mutable {
          if (found) return fail(reply, Error{ErrorCode::CONFLICT, "a queue named " + q + " exists"}, v);
          router.put_queue(q, {}, [reply = std::move(reply), v](Result<QueueInfo> made) mutable {
            if (!made) return fail(reply, made.error(), v);
            respond(reply, make_cf(200, v, ok_envelope(queue_out(*made))));
          });
        });
  }
  const std::string& queue = segs[5];
  if (!who->may_use_queue(queue)) {
    return fail(reply, Error{ErrorCode::FORBIDDEN, "the token does not grant queue " + queue}, v);
  }
  std::string tail;
  for (std::size_t i = 6; i < segs.size(); ++i) tail += (tail.empty() ? "" : "/") + segs[i];
  if (tail.empty()) {
    switch (method) {
      case http::verb::get:
        return st.router.get_queue_async(queue, [reply = std::move(reply), v](Result<QueueInfo> q) mutable {
          if (!q) return fail(reply, q.error(), v);
          respond(reply, make_cf(200, v, ok_envelope(queue_out(*q))));
        });
      case http::verb::delete_:
        return st.router.delete_queue(queue, [reply = std::move(reply), v](Result<bool> r) mutable {
          if (!r) return fail(reply, r.error(), v);
          respond(reply, make_cf(200, v, ok_envelope(nullptr)));
        });
      case http::verb::patch:
      case http::verb::put: return update_queue(req, st, queue, std::move(reply));
      default: return not_allowed("GET, PUT, PATCH, DELETE");
    }
  }
  if (tail == "purge") {
    if (method != http::verb::post && method != http::verb::get) return not_allowed("GET, POST");
    return purge(req, st, queue, std::move(reply));
  }
  if (tail != "messages" && tail != "messages/batch" && tail != "messages/pull" && tail != "messages/ack" &&
      tail != "messages/peek") {
    return fail(reply, Error{ErrorCode::NOT_FOUND, ""}, v);
  }
  if (method != http::verb::post) return not_allowed("POST");
  if (tail == "messages" || tail == "messages/batch")
    return publish(req, st, queue, tail == "messages/batch", std::move(reply));
  if (tail == "messages/pull") return pull(req, st, queue, std::move(reply), std::move(gone));
  if (tail == "messages/ack") return ack(req, st, queue, std::move(reply));
  return peek(req, st, queue, std::move(reply));
}

}  // namespace roost::gateway
