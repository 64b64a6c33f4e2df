#include "routes.h"

#include "cf_routes.h"

#include <boost/asio/post.hpp>
#include <boost/url/parse.hpp>

#include <roost/core/metrics.h>
#include <roost/core/object_id.h>
#include <roost/core/subject.h>

#include <boost/json.hpp>
#include <boost/url/pct_string_view.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <roost/gateway/json_codec.h>

namespace roost::gateway {

namespace http = boost::beast::http;
namespace json = boost::json;

extern const char kRoostJs[];

namespace {

Response make(http::status status, unsigned version, std::string body,
              const char* content_type = "application/json") {
  Response res{status, version};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

// Adapts a Router callback: the result travels to the session's strand, where it is encoded.
template <class T, class Encode>
roost::Callback<T> answer(Reply reply, unsigned version, http::status ok, Encode encode) {
  return [reply = std::move(reply), version, ok, encode](roost::Result<T> r) mutable {
    reply([r = std::move(r), version, ok, encode]() mutable -> Response {
      if (!r) return error_response(r.error(), version);
      return make(ok, version, encode(*r));
    });
  };
}

// check_json's error for a whole body: a body is one message, so its size was checked before.
Error body_error(Error e) {
  if (e.code == ErrorCode::MALFORMED) e.message = "body must be a JSON value: " + e.message;
  return e;
}

void respond_now(Reply& reply, Response res) {
  reply([res = std::move(res)]() mutable { return std::move(res); });
}

void fail(Reply& reply, Error e, unsigned version) { respond_now(reply, error_response(e, version)); }

void method_not_allowed(Reply& reply, unsigned version, const char* allow) {
  auto res = error_response(Error{ErrorCode::METHOD_NOT_ALLOWED, std::string("allowed: ") + allow}, version);
  res.set(http::field::allow, allow);
  respond_now(reply, std::move(res));
}

void queue_routes(const Request& req, Server::State& st, const Principal& who,
                  const std::vector<std::string>& segs, Reply reply,
                  std::shared_ptr<const std::atomic<bool>> gone) {
  auto& router = st.router;
  unsigned v = req.version();
  auto method = req.method();
  if (segs.size() == 2) {
    if (method != http::verb::get) return method_not_allowed(reply, v, "GET");
    return router.list_queues_async(answer<std::vector<QueueInfo>>(
        std::move(reply), v, http::status::ok, [who](std::vector<QueueInfo> queues) {
          std::erase_if(queues, [&](const QueueInfo& q) { return !who.may_use_queue(q.name); });
          return encode_queues(queues);
        }));
  }
  const std::string& name = segs[2];
  if (!who.may_use_queue(name)) {
    return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to use queue " + name}, v);
  }
  if (segs.size() == 3) {
    switch (method) {
      case http::verb::put: {
        auto patch = parse_queue_config(req.body());
        if (!patch) return fail(reply, patch.error(), v);
        if (auto refused = who.may_configure_queue(*patch)) return fail(reply, *refused, v);
        return router.put_queue(name, std::move(*patch),
                                answer<QueueInfo>(std::move(reply), v, http::status::ok,
                                                  [](const QueueInfo& q) { return encode_queue(q); }));
      }
      case http::verb::get:
        return router.get_queue_async(name,
                                      answer<QueueInfo>(std::move(reply), v, http::status::ok,
                                                        [](const QueueInfo& q) { return encode_queue(q); }));
      case http::verb::delete_:
        return router.delete_queue(name, answer<bool>(std::move(reply), v, http::status::ok, [](bool) {
                                     return std::string(R"({"deleted":true})");
                                   }));
      default: return method_not_allowed(reply, v, "GET, PUT, DELETE");
    }
  }
  std::string tail = segs[3];
  for (std::size_t i = 4; i < segs.size(); ++i) tail += "/" + segs[i];
  if (tail != "messages" && tail != "messages/pull" && tail != "messages/ack" && tail != "messages/peek" &&
      tail != "redrive" && tail != "purge") {
    return fail(reply, Error{ErrorCode::NOT_FOUND, "no route " + std::string(req.target())}, v);
  }
  if (method != http::verb::post) return method_not_allowed(reply, v, "POST");
  if (tail == "purge") {
    if (auto o = parse_empty(req.body()); !o) return fail(reply, o.error(), v);
    return router.purge_queue(
        name, answer<std::uint64_t>(std::move(reply), v, http::status::ok, [](std::uint64_t n) {
          return R"({"purged":)" + std::to_string(n) + "}";
        }));
  }
  if (tail == "messages/peek") {
    auto max = parse_peek(req.body());
    if (!max) return fail(reply, max.error(), v);
    return router.peek(
        name, *max,
        answer<std::vector<LeasedMessage>>(std::move(reply), v, http::status::ok,
                                           [](const auto& ms) { return encode_messages(ms); }));
  }
  if (tail == "messages") {
    auto msgs = parse_enqueue(req.body(), router.max_message_bytes());
    if (!msgs) return fail(reply, msgs.error(), v);
    return router.enqueue(name, std::move(*msgs),
                          answer<std::vector<std::string>>(std::move(reply), v, http::status::created,
                                                           [](const auto& ids) { return encode_ids(ids); }));
  }
  if (tail == "messages/pull") {
    auto pull = parse_pull(req.body());
    if (!pull) return fail(reply, pull.error(), v);
    // With the backlog after this pull (the queue's unacknowledged messages), read once the
    // pull committed; leased messages are answered even if that read fails.
    return router.pull(
        name, pull->options, pull->wait_ms,
        [&router, name, reply = std::move(reply), v](Result<std::vector<LeasedMessage>> r) mutable {
          if (!r) return fail(reply, r.error(), v);
          router.get_queue_async(
              name, [reply = std::move(reply), v, ms = std::move(*r)](Result<QueueInfo> q) mutable {
                std::optional<std::uint64_t> backlog;
                if (q) backlog = q->stats.messages;
                reply([ms = std::move(ms), backlog, v] {
                  return make(http::status::ok, v, encode_messages(ms, backlog));
                });
              });
        },
        std::move(gone));
  }
  if (tail == "messages/ack") {
    auto ack = parse_ack(req.body());
    if (!ack) return fail(reply, ack.error(), v);
    return router.ack(name, std::move(ack->acks), std::move(ack->retries),
                      answer<AckResult>(std::move(reply), v, http::status::ok,
                                        [](const AckResult& r) { return encode_ack(r); }));
  }
  auto redrive = parse_redrive(req.body());
  if (!redrive) return fail(reply, redrive.error(), v);
  if (!who.may_use_queue(redrive->to)) {
    return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to use queue " + redrive->to}, v);
  }
  return router.redrive(name, redrive->to, redrive->max,
                        answer<std::uint64_t>(std::move(reply), v, http::status::ok, [](std::uint64_t n) {
                          return R"({"moved":)" + std::to_string(n) + "}";
                        }));
}

void channel_routes(const Request& req, Server::State& st, const Principal& who, std::string_view path,
                    Reply reply) {
  unsigned v = req.version();
  bool publish = path.ends_with("/publish");
  bool presence = path.ends_with("/presence");
  if (!publish && !presence)
    return fail(reply, Error{ErrorCode::NOT_FOUND, "no route " + std::string(path)}, v);
  auto channel = channel_from_path(path, publish ? "/publish" : "/presence");
  if (!channel) return fail(reply, channel.error(), v);
  if (publish) {
    if (req.method() != http::verb::post) return method_not_allowed(reply, v, "POST");
    if (!who.may_publish(*channel)) {
      return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to publish to " + *channel}, v);
    }
    if (req.body().size() > st.router.max_message_bytes()) {
      return fail(reply, Error{ErrorCode::MESSAGE_TOO_LARGE, "message exceeds max_message_bytes"}, v);
    }
    if (auto e = check_json(req.body())) return fail(reply, body_error(*e), v);
    boost::system::error_code ec;
    auto data = boost::json::parse(req.body(), ec);
    if (ec) return fail(reply, Error{ErrorCode::MALFORMED, "body must be a JSON value: " + ec.message()}, v);
    // Answered once the channel's sequencer (in a mesh, its home node) assigned the offset.
    return st.router.publish_async(
        *channel, boost::json::serialize(data), ContentType::kJson,
        answer<channels::PublishResult>(
            std::move(reply), v, http::status::ok, [](const channels::PublishResult& r) {
              return boost::json::serialize(boost::json::object{
                  {"offset", r.offset}, {"epoch", r.epoch}, {"subscribers", r.subscribers}});
            }));
  }
  if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
  if (!who.may_subscribe(*channel)) {
    return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to see " + *channel}, v);
  }
  if (auto e = channels::validate_subject(*channel)) return fail(reply, *e, v);
  // Every node's subscribers (in a mesh, gathered from the peers).
  st.router.presence_async(
      *channel, answer<channels::Presence>(
                    std::move(reply), v, http::status::ok, [name = *channel](const channels::Presence& seen) {
                      return boost::json::serialize(boost::json::object{
                          {"channel", name}, {"subscribers", seen.subscribers}, {"direct", seen.direct}});
                    }));
}

// What a request body holds, by its Content-Type: JSON (the default; validated), text (valid
// UTF-8), or bytes.
Result<std::pair<std::string, ContentType>> body_of(const Request& req) {
  std::string_view ct = req[http::field::content_type];
  if (ct.starts_with("text/plain")) {
    if (!valid_utf8(req.body()))
      return std::unexpected(Error{ErrorCode::MALFORMED, "a text body must be UTF-8"});
    return std::pair{req.body(), ContentType::kText};
  }
  if (ct.starts_with("application/octet-stream")) return std::pair{req.body(), ContentType::kBytes};
  if (req.body().empty()) return std::pair{std::string("null"), ContentType::kJson};  // a bare POST
  if (auto e = check_json(req.body())) return std::unexpected(body_error(*e));
  boost::system::error_code ec;
  auto data = boost::json::parse(req.body(), ec);
  if (ec) return std::unexpected(Error{ErrorCode::MALFORMED, "body must be a JSON value: " + ec.message()});
  return std::pair{boost::json::serialize(data), ContentType::kJson};
}

// /v1/objects/{class}                    POST → a new unique name
// /v1/objects/{class}/{name}/messages    POST → tell (202 after commit)
// /v1/objects/{class}/{name}/call        POST → the reply (?timeout_ms=)
// /v1/objects/{class}/{name}             GET  → {waiting, in_memory, active, sockets, alarms}
void object_fetch(const Request& req, const boost::asio::ip::address& remote, Server::State& st,
                  const Principal& who, const std::vector<std::string>& segs, Reply reply);

void object_routes(const Request& req, const boost::asio::ip::address& remote, Server::State& st,
                   const Principal& who, const std::vector<std::string>& segs, Reply reply) {
  unsigned v = req.version();
  if (segs.size() == 3) {
    if (req.method() != http::verb::post) return method_not_allowed(reply, v, "POST");
    auto name = new_unique_object_id();
    if (auto e = st.router.object_check(segs[2], name)) return fail(reply, *e, v);
    if (!who.may_use_object(segs[2], name)) {
      return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to use objects of class " + segs[2]}, v);
    }
    boost::json::object o{{"class", segs[2]}, {"name", name}};
    return respond_now(reply, make(http::status::created, v, boost::json::serialize(o)));
  }
  if (segs.size() == 4) {
    // GET /v1/objects/{class}/{name}: what an operator can see of it.
    if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
    if (!who.may_use_object(segs[2], segs[3])) {
      return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to use object " + segs[2] + "/" + segs[3]},
                  v);
    }
    auto info = st.router.object_info(segs[2], segs[3]);
    if (!info) return fail(reply, info.error(), v);
    boost::json::array alarms;
    for (const auto& a : info->alarms) {
      alarms.push_back(boost::json::object{{"name", a.name}, {"due_ms", a.due_ms}, {"every_ms", a.every_ms}});
    }
    boost::json::object o{{"class", info->object_class},
                          {"name", info->name},
                          {"waiting", info->waiting},
                          {"in_memory", info->in_memory},
                          {"active", info->active},
                          {"sockets", info->sockets},
                          {"alarms", alarms}};
    return respond_now(reply, make(http::status::ok, v, boost::json::serialize(o)));
  }
  if (segs.size() >= 5 && segs[4] == "fetch")
    return object_fetch(req, remote, st, who, segs, std::move(reply));
  if (segs.size() != 5 || (segs[4] != "messages" && segs[4] != "call")) {
    return fail(reply, Error{ErrorCode::NOT_FOUND, "no route " + std::string(req.target())}, v);
  }
  const auto& cls = segs[2];
  const auto& name = segs[3];
  if (req.method() != http::verb::post) return method_not_allowed(reply, v, "POST");
  if (auto e = st.router.object_check(cls, name)) return fail(reply, *e, v);
  if (!who.may_use_object(cls, name)) {
    return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to use object " + cls + "/" + name}, v);
  }
  if (req.body().size() > st.router.max_message_bytes()) {
    return fail(reply, Error{ErrorCode::MESSAGE_TOO_LARGE, "message exceeds max_message_bytes"}, v);
  }
  auto body = body_of(req);
  if (!body) return fail(reply, body.error(), v);
  if (segs[4] == "messages") {
    return st.router.object_tell(
        cls, name, std::move(body->first), body->second,
        answer<std::uint64_t>(std::move(reply), v, http::status::accepted, [](std::uint64_t seq) {
          return boost::json::serialize(boost::json::object{{"seq", seq}});
        }));
  }
  std::uint64_t timeout_ms = 0;
  if (auto t = query_param(req.target(), "timeout_ms"); !t.empty()) {
    char* end = nullptr;
    timeout_ms = std::strtoull(t.c_str(), &end, 10);
    if (end == t.c_str() || *end != '\0' || timeout_ms == 0 || timeout_ms > 300'000) {
      return fail(reply, Error{ErrorCode::INVALID_ARGUMENT, "timeout_ms must be 1..300000"}, v);
    }
  }
  st.router.object_call(cls, name, std::move(body->first), body->second, timeout_ms,
                        [reply = std::move(reply), v](Result<roost::ObjectReply> r) mutable {
                          reply([r = std::move(r), v]() mutable -> Response {
                            if (!r) return error_response(r.error(), v);
                            return make(http::status::ok, v, std::move(r->data),
                                        content_type_mime(r->content_type));
                          });
                        });
}

// ANY /v1/objects/{class}/{name}/fetch[/path…]: the request to the object's on_fetch, its answer
// back with the object's status and headers (Content-Length and hop-by-hop headers are ours;
// a status out of 100–599 or a header that is not a token name / a value with CR, LF or NUL is
// the object's bug: 500 actor_error).
void object_fetch(const Request& req, const boost::asio::ip::address& remote, Server::State& st,
                  const Principal& who, const std::vector<std::string>& segs, Reply reply) {
  unsigned v = req.version();
  const auto& cls = segs[2];
  const auto& name = segs[3];
  if (auto e = st.router.object_check(cls, name)) return fail(reply, *e, v);
  if (!who.may_use_object(cls, name)) {
    return fail(reply, Error{ErrorCode::FORBIDDEN, "not allowed to use object " + cls + "/" + name}, v);
  }
  if (req.body().size() > st.router.max_message_bytes()) {
    return fail(reply, Error{ErrorCode::MESSAGE_TOO_LARGE, "request body exceeds max_message_bytes"}, v);
  }
  std::string_view target = req.target();
  std::string_view raw = target.substr(0, target.find('?'));
  // The path below /v1/objects/{class}/{name}/fetch: from the sixth '/' on.
  std::size_t at = 0;
  for (int i = 0; i < 6 && at != std::string_view::npos; ++i) at = raw.find('/', i == 0 ? 0 : at + 1);
  auto h = object_request(req, at == std::string_view::npos ? "/" : std::string(raw.substr(at)), remote, st,
                          who.claims);
  const bool head = req.method() == http::verb::head;
  st.router.object_fetch(
      cls, name, std::move(h), 0, [reply = std::move(reply), v, head](Result<roost::ObjectReply> r) mutable {
        reply([r = std::move(r), v, head]() mutable { return object_response(std::move(r), v, head); });
      });
}

// A request under app_routes: to a host's front code (a Worker's fetch). A token, when the
// request has one, must be valid; its claims go along. Without one the app decides (its routes
// are its own, like a Worker's).
void app_route(const Request& req, const boost::asio::ip::address& remote, Server::State& st,
               std::string_view path, Reply reply) {
  unsigned v = req.version();
  std::string claims;
  auto token = request_token(req, /*allow_query=*/false);
  if (!token.empty()) {
    auto who = st.auth.authenticate(token, remote);
    if (!who) return fail(reply, who.error(), v);
    claims = who->claims;
  }
  if (req.body().size() > st.router.max_message_bytes()) {
    return fail(reply, Error{ErrorCode::MESSAGE_TOO_LARGE, "request body exceeds max_message_bytes"}, v);
  }
  const bool head = req.method() == http::verb::head;
  st.router.host_front(object_request(req, std::string(path), remote, st, std::move(claims)),
                       [reply = std::move(reply), v, head](Result<roost::FrontReply> r) mutable {
                         reply([r = std::move(r), v, head]() mutable -> Response {
                           if (!r) return error_response(r.error(), v);
                           if (!r->upgrade_class.empty()) {
                             return error_response(Error{ErrorCode::ACTOR_ERROR,
                                                         "the front code answered a plain request "
                                                         "with a WebSocket upgrade"},
                                                   v);
                           }
                           return object_response(std::move(r->response), v, head);
                         });
                       });
}

const char* mime_type(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".txt" || ext == ".md") return "text/plain; charset=utf-8";
  if (ext == ".ts") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

// GET of a file under static_dir; nullopt when it is not there (or outside the folder).
std::optional<Response> static_file(const Server::State& st, std::string_view path, unsigned v) {
  if (st.options.static_dir.empty()) return std::nullopt;
  std::error_code ec;
  auto root = std::filesystem::weakly_canonical(st.options.static_dir, ec);
  if (ec) return std::nullopt;
  auto rel = std::string(path.substr(1));
  auto file = std::filesystem::weakly_canonical(root / rel, ec);
  if (ec) return std::nullopt;
  auto [r, f] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  if (r != root.end()) return std::nullopt;  // escapes the folder
  if (std::filesystem::is_directory(file, ec)) file /= "index.html";
  if (!std::filesystem::is_regular_file(file, ec)) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto res = make(http::status::ok, v, std::move(body), mime_type(file));
  res.set(http::field::cache_control, "no-cache");
  return res;
}

}  // namespace

Response object_response(Result<ObjectReply> r, unsigned v, bool head) {
  if (!r) return error_response(r.error(), v);
  auto bad = [&](std::string why) {
    return error_response(Error{ErrorCode::ACTOR_ERROR, "the object's response: " + why}, v);
  };
  // 1xx would be read as interim and the body after it as the next responses on the connection:
  // an object or front switches protocols only through an upgrade.
  if (r->status < 200 || r->status > 599) return bad("status " + std::to_string(r->status));
  // Statuses whose responses have no body (RFC 9110 §15.3.5, §15.4.5): a body would be read as the
  // next response.
  if ((r->status == 204 || r->status == 304) && !r->data.empty()) {
    return bad("status " + std::to_string(r->status) + " with a body");
  }
  Response res{static_cast<http::status>(r->status), v};
  std::size_t header_bytes = 0;
  for (const auto& [k, val] : r->headers) {
    bool token = !k.empty() && std::all_of(k.begin(), k.end(), [](unsigned char c) {
      return std::isalnum(c) ||
             std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    });
    if (!token) return bad("header name '" + k.substr(0, 64) + "'");
    // Field values are visible characters, spaces and tabs (RFC 9110 §5.5): no control character.
    if (std::any_of(val.begin(), val.end(),
                    [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; })) {
      return bad("header " + k.substr(0, 64) + " has a control character");
    }
    header_bytes += k.size() + val.size() + 4;
    if (header_bytes > kMaxObjectHeaderBytes) {
      return bad("headers over " + std::to_string(kMaxObjectHeaderBytes) + " bytes");
    }
    auto field = http::string_to_field(k);
    if (field == http::field::content_length || field == http::field::transfer_encoding ||
        field == http::field::connection || field == http::field::keep_alive ||
        field == http::field::upgrade || field == http::field::te || field == http::field::trailer) {
      continue;
    }
    res.insert(k, val);
  }
  if (!head) res.body() = std::move(r->data);
  return res;
}

ObjectHttpRequest object_request(const Request& req, std::string path, const boost::asio::ip::address& remote,
                                 const Server::State& st, std::string claims) {
  ObjectHttpRequest h;
  h.method = std::string(req.method_string());
  std::string_view target = req.target();
  auto q = target.find('?');
  if (q != std::string_view::npos) h.query = std::string(target.substr(q + 1));
  h.path = std::move(path);
  h.headers = Server::State::object_headers(req);
  h.body = req.body();
  h.client_address = st.client_address(req, remote);
  h.claims = std::move(claims);
  return h;
}

std::string request_token(const Request& req, bool allow_query) {
  std::string_view auth = req[http::field::authorization];
  if (auth.size() > 7 && (auth.starts_with("Bearer ") || auth.starts_with("bearer "))) {
    return std::string(auth.substr(7));
  }
  return allow_query ? query_param(req.target(), "token") : std::string();
}

std::string query_param(std::string_view target, std::string_view name) {
  auto url = boost::urls::parse_origin_form(target);
  if (!url) return {};
  auto params = url->params();
  auto it = params.find(name);
  if (it == params.end()) return {};
  return std::string((*it).value);
}

Result<std::string> channel_from_path(std::string_view path, std::string_view suffix) {
  constexpr std::string_view kPrefix = "/v1/channels/";
  if (!path.starts_with(kPrefix) || !path.ends_with(suffix) ||
      path.size() <= kPrefix.size() + suffix.size()) {
    return std::unexpected(Error{ErrorCode::NOT_FOUND, "no route " + std::string(path)});
  }
  auto raw = path.substr(kPrefix.size(), path.size() - kPrefix.size() - suffix.size());
  auto decoded = boost::urls::make_pct_string_view(raw);
  if (!decoded) return std::unexpected(Error{ErrorCode::MALFORMED, "bad percent-encoding in channel"});
  return decoded->decode();
}

std::optional<ObjectPath> object_from_path(std::string_view path, std::string_view suffix) {
  constexpr std::string_view kPrefix = "/v1/objects/";
  if (!path.starts_with(kPrefix) || !path.ends_with(suffix)) return std::nullopt;
  auto mid = path.substr(kPrefix.size(), path.size() - kPrefix.size() - suffix.size());
  auto slash = mid.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == mid.size() ||
      mid.find('/', slash + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  ObjectPath out;
  auto cls = boost::urls::make_pct_string_view(mid.substr(0, slash));
  auto name = boost::urls::make_pct_string_view(mid.substr(slash + 1));
  if (!cls || !name) {
    out.ok = false;
    out.error = Error{ErrorCode::MALFORMED, "bad percent-encoding in object path"};
    return out;
  }
  out.object_class = cls->decode();
  out.name = name->decode();
  return out;
}

bool host_allowed(std::string_view host, const Server::State& st) {
  std::string name;
  if (host.starts_with('[')) {
    name = std::string(host.substr(1, host.find(']') - 1));
  } else {
    auto colon = host.rfind(':');
    name = std::string(colon != std::string_view::npos && host.find(':') == colon ? host.substr(0, colon)
                                                                                  : host);
  }
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!name.empty() && name.back() == '.') name.pop_back();
  // An address in the Host header reached this node by that address; only a name can be rebound
  // to it by someone else's DNS.
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(name, ec);
  if (!ec) return true;
  if (name == "localhost" || name.ends_with(".localhost")) return true;
  return std::find(st.hosts.begin(), st.hosts.end(), name) != st.hosts.end();
}

std::optional<Error> check_host_and_origin(const Request& req, const Server::State& st, bool state_changing) {
  std::string_view host = req[http::field::host];
  if (!st.auth.enabled() && !host.empty() && !host_allowed(host, st)) {
    return Error{ErrorCode::FORBIDDEN, "Host " + std::string(host.substr(0, 100)) +
                                           " is not a name of this node (add it to allowed_hosts)"};
  }
  std::string_view origin = req[http::field::origin];
  if (state_changing && !origin.empty() && !st.origin_allowed(origin, host)) {
    return Error{ErrorCode::FORBIDDEN,
                 "Origin " + std::string(origin.substr(0, 100)) + " is not allowed (allowed_origins)"};
  }
  return std::nullopt;
}

Response error_response(const Error& e, unsigned version) {
  return make(static_cast<http::status>(error_http_status(e.code)), version, encode_error(e));
}

std::string gateway_metrics(const Server::State& st) {
  MetricsWriter w;
  w.gauge("roost_http_connections", "Open HTTP connections.", std::uint64_t{st.connections.load()});
  w.gauge("roost_http_requests_in_flight", "Requests read and not yet answered.",
          std::uint64_t{st.in_flight.load()});
  w.counter("roost_http_connections_rejected_total", "Connections closed at max_connections.",
            st.rejected_total.load());
  w.gauge("roost_websockets", "Open WebSocket connections.", std::uint64_t{st.websockets.load()});
  w.gauge("roost_sse_streams", "Open SSE streams.", std::uint64_t{st.sse_streams.load()});
  w.counter("roost_channel_dropped_total", "Messages dropped for slow subscribers.", st.lagged_total.load());
  w.counter("roost_channel_slow_disconnects_total", "Subscribers disconnected for falling behind.",
            st.slow_disconnects_total.load());
  w.family("roost_http_responses_total", "counter", "Responses by status class.");
  for (int c = 2; c <= 5; ++c) {
    const std::string cls = std::to_string(c) + "xx";
    w.sample("roost_http_responses_total", {{"class", cls}}, std::uint64_t{st.responses[c].load()});
  }
  return std::move(w).text();
}

void route(const Request& req, const boost::asio::ip::address& remote, Server::State& st, Reply reply,
           std::shared_ptr<const std::atomic<bool>> gone) {
  unsigned v = req.version();
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) return fail(reply, Error{ErrorCode::MALFORMED, "request target is not a valid path"}, v);
  std::vector<std::string> segs;
  for (auto seg : url->segments()) segs.emplace_back(seg);
  if (!segs.empty() && segs.back().empty()) segs.pop_back();  // tolerate a trailing slash

  // The app's own routes: its front code answers, and judges Origin itself (CORS is the app's).
  std::string_view raw_path = req.target().substr(0, req.target().find('?'));
  if (st.is_app_route(raw_path)) {
    if (auto e = check_host_and_origin(req, st, /*state_changing=*/false)) return fail(reply, *e, v);
    return app_route(req, remote, st, raw_path, std::move(reply));
  }
  bool safe = req.method() == http::verb::get || req.method() == http::verb::head ||
              req.method() == http::verb::options;
  if (auto e = check_host_and_origin(req, st, /*state_changing=*/!safe)) return fail(reply, *e, v);
  if (segs.size() == 1 && segs[0] == "healthz") {
    if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
    bool draining = st.stopping.load();
    if (draining)
      return respond_now(reply, make(http::status::service_unavailable, v, R"({"status":"draining"})"));
    // In a mesh, etcd out of reach is said here: the node still serves, but cannot keep its shards.
    auto mesh = st.router.mesh_status();
    if (mesh && mesh->find(R"("etcd":"unreachable")") != std::string::npos) {
      return respond_now(reply, make(http::status::ok, v, R"({"status":"degraded","etcd":"unreachable"})"));
    }
    return respond_now(reply, make(http::status::ok, v, R"({"status":"ok"})"));
  }
  if (segs.size() == 1 && segs[0] == "metrics") {
    if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
    return respond_now(reply, make(http::status::ok, v, st.router.metrics_text() + gateway_metrics(st),
                                   "text/plain; version=0.0.4"));
  }
  if (segs.size() == 1 && segs[0] == "roost.js") {
    if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
    auto res = make(http::status::ok, v, std::string(kRoostJs), "text/javascript; charset=utf-8");
    res.set(http::field::cache_control, "no-cache");
    return respond_now(reply, std::move(res));
  }
  if (segs.size() >= 3 && segs[0] == "client" && segs[1] == "v4" && segs[2] == "accounts") {
    return cf_routes(req, remote, st, segs, std::move(reply), std::move(gone));
  }
  if (!segs.empty() && segs[0] == "v1") {
    auto who = st.auth.authenticate(request_token(req, /*allow_query=*/false), remote);
    if (!who) return fail(reply, who.error(), v);
    if (segs.size() >= 2 && segs.size() <= 5 && segs[1] == "queues") {
      return queue_routes(req, st, *who, segs, std::move(reply), std::move(gone));
    }
    if (segs.size() >= 3 && segs[1] == "objects") {
      return object_routes(req, remote, st, *who, segs, std::move(reply));
    }
    if (segs.size() >= 2 && segs[1] == "channels") {
      return channel_routes(req, st, *who, url->path(), std::move(reply));
    }
    if (segs.size() == 3 && segs[1] == "mesh" && segs[2] == "moves") {
      // POST /v1/mesh/moves {"shard": N, "to": NODE}: move a shard this node owns (roost mesh
      // move / rebalance) → 202 with the move's status; GET: the moves this node made.
      if (!who->unrestricted && !who->may_use_queue(">")) {
        return fail(reply, Error{ErrorCode::FORBIDDEN, "moving shards needs an operator token"}, v);
      }
      if (req.method() == http::verb::get) {
        auto moves = st.router.mesh_moves();
        if (!moves)
          return fail(reply, Error{ErrorCode::NOT_FOUND, "this node is a single node (no mesh_etcd)"}, v);
        return respond_now(reply, make(http::status::ok, v, std::move(*moves)));
      }
      if (req.method() != http::verb::post) return method_not_allowed(reply, v, "GET, POST");
      boost::system::error_code ec;
      auto body = json::parse(req.body(), ec);
      if (ec || !body.is_object()) {
        return fail(reply, Error{ErrorCode::MALFORMED, "the body is {\"shard\": N, \"to\": \"NODE\"}"}, v);
      }
      const auto& o = body.as_object();
      if (auto e = unknown_field(o, {"shard", "to"})) return fail(reply, std::move(*e), v);
      auto* shard = o.if_contains("shard");
      auto* to = o.if_contains("to");
      if (shard == nullptr || !shard->is_int64() || shard->as_int64() < 0 ||
          shard->as_int64() > 0xffffffffll || to == nullptr || !to->is_string() || to->as_string().empty()) {
        return fail(reply,
                    Error{ErrorCode::INVALID_ARGUMENT, "shard (a number) and to (a node name) are required"},
                    v);
      }
      auto started =
          st.router.mesh_move(static_cast<std::uint32_t>(shard->as_int64()), std::string(to->as_string()));
      if (!started) return fail(reply, started.error(), v);
      return respond_now(reply, make(http::status::accepted, v, std::move(*started)));
    }
    if (segs.size() == 2 && segs[1] == "mesh") {
      // GET /v1/mesh: members, etcd, shards (roost mesh status). An operator's view: full grants.
      if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
      if (!who->unrestricted && !who->may_use_queue(">")) {
        return fail(reply, Error{ErrorCode::FORBIDDEN, "the mesh status needs an operator token"}, v);
      }
      // ?queue=NAME or ?object=CLASS/NAME: where it lives (its shard is homed if it is new);
      // ?channel=NAME: the node that sequences it now.
      for (const char* kind : {"queue", "object", "channel"}) {
        if (auto name = query_param(req.target(), kind); !name.empty()) {
          return st.router.mesh_placement(kind, std::move(name),
                                          [reply = std::move(reply), v](Result<std::string> r) mutable {
                                            if (!r) return fail(reply, r.error(), v);
                                            respond_now(reply, make(http::status::ok, v, std::move(*r)));
                                          });
        }
      }
      auto mesh = st.router.mesh_status();
      if (!mesh)
        return fail(reply, Error{ErrorCode::NOT_FOUND, "this node is a single node (no mesh_etcd)"}, v);
      return respond_now(reply, make(http::status::ok, v, std::move(*mesh)));
    }
  } else if (req.method() == http::verb::get && !st.options.static_dir.empty() && st.files != nullptr) {
    // Read on the file thread, never on an io thread; the session posts the answer back.
    boost::asio::post(*st.files, [st = st.shared_from_this(), path = std::string(url->path()), v,
                                  reply = std::move(reply)]() mutable {
      if (auto file = static_file(*st, path, v)) return respond_now(reply, std::move(*file));
      fail(reply, Error{ErrorCode::NOT_FOUND, "no route " + path}, v);
    });
    return;
  }
  fail(reply, Error{ErrorCode::NOT_FOUND, "no route " + std::string(req.target())}, v);
}

}  // namespace roost::gateway
