#include "routes.h"

#include <boost/url/parse.hpp>

#include <sstream>

#include "json_codec.h"

namespace roost::gateway {

namespace http = boost::beast::http;

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
broker::Callback<T> answer(Reply reply, unsigned version, http::status ok, Encode encode) {
  return [reply = std::move(reply), version, ok, encode](broker::Result<T> r) mutable {
    reply([r = std::move(r), version, ok, encode]() mutable -> Response {
      if (!r) return error_response(r.error(), version);
      return make(ok, version, encode(*r));
    });
  };
}

void respond_now(Reply& reply, Response res) {
  reply([res = std::move(res)]() mutable { return std::move(res); });
}

void fail(Reply& reply, Error e, unsigned version) {
  respond_now(reply, error_response(e, version));
}

void method_not_allowed(Reply& reply, unsigned version, const char* allow) {
  auto res = error_response(Error{ErrorCode::kMethodNotAllowed, std::string("allowed: ") + allow},
                            version);
  res.set(http::field::allow, allow);
  respond_now(reply, std::move(res));
}

void queue_routes(const Request& req, Server::State& st, const std::vector<std::string>& segs,
                  Reply reply) {
  auto& router = st.router;
  unsigned v = req.version();
  auto method = req.method();
  if (segs.size() == 2) {
    if (method != http::verb::get) return method_not_allowed(reply, v, "GET");
    return respond_now(reply, make(http::status::ok, v, encode_queues(router.list_queues())));
  }
  const std::string& name = segs[2];
  if (segs.size() == 3) {
    switch (method) {
      case http::verb::put: {
        auto patch = parse_queue_config(req.body());
        if (!patch) return fail(reply, patch.error(), v);
        return router.put_queue(name, std::move(*patch),
                                answer<QueueInfo>(std::move(reply), v, http::status::ok,
                                                  [](const QueueInfo& q) { return encode_queue(q); }));
      }
      case http::verb::get: {
        auto info = router.get_queue(name);
        if (!info) return fail(reply, info.error(), v);
        return respond_now(reply, make(http::status::ok, v, encode_queue(*info)));
      }
      case http::verb::delete_:
        return router.delete_queue(name, answer<bool>(std::move(reply), v, http::status::ok,
                                                      [](bool) { return std::string(R"({"deleted":true})"); }));
      default: return method_not_allowed(reply, v, "GET, PUT, DELETE");
    }
  }
  std::string tail = segs[3];
  for (std::size_t i = 4; i < segs.size(); ++i) tail += "/" + segs[i];
  if (tail != "messages" && tail != "messages/pull" && tail != "messages/ack" && tail != "redrive") {
    return fail(reply, Error{ErrorCode::kNotFound, "no route " + std::string(req.target())}, v);
  }
  if (method != http::verb::post) return method_not_allowed(reply, v, "POST");
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
    return router.pull(name, pull->options, pull->wait_ms,
                       answer<std::vector<LeasedMessage>>(std::move(reply), v, http::status::ok,
                                                          [](const auto& ms) { return encode_messages(ms); }));
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
  return router.redrive(name, redrive->to, redrive->max,
                        answer<std::uint64_t>(std::move(reply), v, http::status::ok, [](std::uint64_t n) {
                          return R"({"moved":)" + std::to_string(n) + "}";
                        }));
}

}  // namespace

Response error_response(const Error& e, unsigned version) {
  return make(static_cast<http::status>(error_http_status(e.code)), version, encode_error(e));
}

std::string gateway_metrics(const Server::State& st) {
  std::ostringstream out;
  out << "# HELP roost_http_connections Open HTTP connections.\n"
      << "# TYPE roost_http_connections gauge\nroost_http_connections " << st.connections.load() << '\n'
      << "# HELP roost_http_requests_in_flight Requests read and not yet answered.\n"
      << "# TYPE roost_http_requests_in_flight gauge\nroost_http_requests_in_flight "
      << st.in_flight.load() << '\n'
      << "# HELP roost_http_connections_rejected_total Connections closed at max_connections.\n"
      << "# TYPE roost_http_connections_rejected_total counter\n"
      << "roost_http_connections_rejected_total " << st.rejected_total.load() << '\n'
      << "# HELP roost_http_responses_total Responses by status class.\n"
      << "# TYPE roost_http_responses_total counter\n";
  for (int c = 2; c <= 5; ++c) {
    out << "roost_http_responses_total{class=\"" << c << "xx\"} " << st.responses[c].load() << '\n';
  }
  return out.str();
}

void route(const Request& req, Server::State& st, Reply reply) {
  unsigned v = req.version();
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) return fail(reply, Error{ErrorCode::kMalformed, "request target is not a valid path"}, v);
  std::vector<std::string> segs;
  for (auto seg : url->segments()) segs.emplace_back(seg);
  if (!segs.empty() && segs.back().empty()) segs.pop_back();  // tolerate a trailing slash

  if (segs.size() == 1 && segs[0] == "healthz") {
    if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
    bool draining = st.stopping.load();
    return respond_now(reply, make(draining ? http::status::service_unavailable : http::status::ok, v,
                                   draining ? R"({"status":"draining"})" : R"({"status":"ok"})"));
  }
  if (segs.size() == 1 && segs[0] == "metrics") {
    if (req.method() != http::verb::get) return method_not_allowed(reply, v, "GET");
    return respond_now(reply, make(http::status::ok, v, st.router.metrics_text() + gateway_metrics(st),
                                   "text/plain; version=0.0.4"));
  }
  if (segs.size() >= 2 && segs.size() <= 5 && segs[0] == "v1" && segs[1] == "queues") {
    return queue_routes(req, st, segs, std::move(reply));
  }
  fail(reply, Error{ErrorCode::kNotFound, "no route " + std::string(req.target())}, v);
}

}  // namespace roost::gateway
