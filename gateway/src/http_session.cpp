#include "http_session.h"

#include <roost/log.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <roost/channels/subject.h>

#include <boost/beast/websocket.hpp>

#include "routes.h"
#include "sse_session.h"
#include "object_ws_session.h"
#include "ws_session.h"

namespace roost::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

HttpSession::HttpSession(asio::ip::tcp::socket socket, std::shared_ptr<Server::State> state,
                         std::unique_ptr<ConnectionSlot> slot)
    : stream_(std::move(socket)), state_(std::move(state)), slot_(std::move(slot)) {
  boost::system::error_code ec;
  remote_ = stream_.socket().remote_endpoint(ec).address();
}

HttpSession::~HttpSession() {
  if (counted_) state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  state_->remove_session(this);
}

void HttpSession::start() {
  state_->add_session(this, weak_from_this());
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
}

void HttpSession::shutdown() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->closing_ = true;
    if (!self->busy_) self->stream_.cancel();  // the pending read ends; on_read closes
  });
}

void HttpSession::read() {
  if (closing_ || state_->stopping.load()) {
    close();
    return;
  }
  parser_.emplace();
  parser_->body_limit(state_->options.max_request_bytes);
  parser_->header_limit(static_cast<std::uint32_t>(state_->options.max_header_bytes));
  stream_.expires_after(std::chrono::milliseconds(state_->options.idle_timeout_ms));
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
      ec == asio::error::eof) {
    close();
    return;
  }
  if (ec) {
    // The request could not be read whole: answer what went wrong, then close.
    Error e{ErrorCode::MALFORMED, "malformed HTTP request: " + ec.message()};
    if (ec == http::error::body_limit) {
      e = Error{ErrorCode::PAYLOAD_TOO_LARGE,
                "request body exceeds max_request_bytes " +
                    std::to_string(state_->options.max_request_bytes)};
    } else if (ec == http::error::header_limit) {
      e = Error{ErrorCode::HEADER_TOO_LARGE,
                "request headers exceed max_header_bytes " +
                    std::to_string(state_->options.max_header_bytes)};
    }
    closing_ = true;
    busy_ = true;
    send(error_response(e, 11));
    return;
  }
  Request req = parser_->release();
  request_version_ = req.version();
  request_keep_alive_ = req.keep_alive();
  if (upgrade(req)) return;
  busy_ = true;
  counted_ = true;
  state_->in_flight.fetch_add(1, std::memory_order_relaxed);
  stream_.expires_never();  // the broker may take a while (long polls); no idle timeout now
  route(req, remote_, *state_, [self = shared_from_this()](MakeResponse make) mutable {
    auto executor = self->stream_.get_executor();
    asio::post(executor, [self = std::move(self), make = std::move(make)]() mutable {
      self->send(make());
    });
  });
}

void HttpSession::send(Response res) {
  unsigned status = res.result_int();
  state_->responses[std::min<unsigned>(status / 100, 5)].fetch_add(1, std::memory_order_relaxed);
  bool keep = request_keep_alive_ && !closing_ && !state_->stopping.load();
  res.version(request_version_);
  res.keep_alive(keep);
  res.set(http::field::server, "roost");
  res.prepare_payload();
  auto sp = std::make_shared<Response>(std::move(res));
  stream_.expires_after(std::chrono::milliseconds(state_->options.idle_timeout_ms));
  http::async_write(stream_, *sp,
                    [self = shared_from_this(), sp, close = !keep](beast::error_code ec,
                                                                  std::size_t n) {
                      self->on_write(close, ec, n);
                    });
}

void HttpSession::on_write(bool close_after, beast::error_code ec, std::size_t) {
  busy_ = false;
  if (counted_) {
    counted_ = false;
    state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  if (ec || close_after) {
    close();
    return;
  }
  read();
}

bool HttpSession::upgrade(Request& req) {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  bool ws = beast::websocket::is_upgrade(req);
  bool sse = req.method() == http::verb::get && path.starts_with("/v1/channels/") && path.ends_with("/events");
  if (!ws && !sse) return false;
  auto refuse = [&](const Error& e) {
    closing_ = true;
    busy_ = true;
    send(error_response(e, req.version()));
    return true;
  };
  auto object = ws ? object_from_path(path, "/connect") : std::nullopt;
  if (ws && path != "/v1/ws" && !object) {
    return refuse(Error{ErrorCode::NOT_FOUND, "WebSockets are served at /v1/ws and /v1/objects/{class}/{name}/connect"});
  }
  auto principal = state_->auth.authenticate(request_token(req), remote_);
  if (!principal) return refuse(principal.error());
  if (object) {
    if (!object->ok) return refuse(object->error);
    if (!state_->origin_allowed(req[http::field::origin], req[http::field::host])) {
      return refuse(Error{ErrorCode::FORBIDDEN, "Origin " + std::string(req[http::field::origin]) + " is not allowed"});
    }
    if (!principal->may_use_object(object->object_class, object->name)) {
      return refuse(Error{ErrorCode::FORBIDDEN, "not allowed to use object " + object->object_class + "/" + object->name});
    }
    if (auto e = state_->router.object_check(object->object_class, object->name)) return refuse(*e);
    stream_.expires_never();
    std::make_shared<ObjectWsSession>(std::move(stream_), state_, std::move(slot_))
        ->run(std::move(req), std::move(object->object_class), std::move(object->name));
    return true;
  }
  if (ws) {
    if (!state_->origin_allowed(req[http::field::origin], req[http::field::host])) {
      return refuse(Error{ErrorCode::FORBIDDEN, "Origin " + std::string(req[http::field::origin]) + " is not allowed"});
    }
    stream_.expires_never();
    std::make_shared<WsSession>(std::move(stream_), state_, std::move(slot_), std::move(*principal))->run(std::move(req));
    return true;
  }
  // SSE: /v1/channels/{pattern}/events
  auto pattern = channel_from_path(path, "/events");
  if (!pattern) return refuse(pattern.error());
  if (!principal->may_subscribe(*pattern)) {
    return refuse(Error{ErrorCode::FORBIDDEN, "not allowed to subscribe to " + *pattern});
  }
  std::optional<channels::Since> since;
  std::string last_id(req["Last-Event-ID"]);
  if (last_id.empty()) last_id = query_param(target, "since");
  if (auto recent = query_param(target, "recent"); !recent.empty() && !channels::is_wildcard(*pattern)) {
    since = channels::Since{"", 0, static_cast<std::size_t>(std::strtoull(recent.c_str(), nullptr, 10))};
    if (since->recent == 0) since.reset();
  } else if (!last_id.empty() && !channels::is_wildcard(*pattern)) {
    auto colon = last_id.rfind(':');
    if (colon != std::string::npos) {
      since = channels::Since{last_id.substr(0, colon), std::strtoull(last_id.c_str() + colon + 1, nullptr, 10)};
    }
  }
  std::make_shared<SseSession>(std::move(stream_), state_, std::move(slot_))->run(*pattern, since, req.version());
  return true;
}

void HttpSession::close() {
  beast::error_code ec;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  stream_.close();
}

}  // namespace roost::gateway
