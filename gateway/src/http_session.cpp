#include "http_session.h"

#include <roost/core/lead_scope.h>
#include <roost/core/log.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <sys/socket.h>

#include <cerrno>

#include <roost/core/subject.h>

#include <boost/beast/websocket.hpp>

#include "host_session.h"
#include "object_ws_session.h"
#include "routes.h"
#include "sse_session.h"
#include "ws_session.h"

namespace roost::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

HttpSession::HttpSession(asio::ip::tcp::socket socket, std::shared_ptr<Server::State> state,
                         std::unique_ptr<ConnectionSlot> slot)
    : stream_(std::move(socket)),
      watch_timer_(stream_.get_executor()),
      state_(std::move(state)),
      slot_(std::move(slot)) {
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
  parse_buffered();
}

// Beast's parser keeps unparsed bytes in buffer_ and consumes body bytes as they come, so what
// the buffer must hold at once is one header block or one trailer block (Beast's header limit
// does not cover trailers): both are bounded here by max_header_bytes. The parser is driven by
// hand so that nothing it throws (a field its container cannot hold) leaves the session.
void HttpSession::parse_buffered() {
  beast::error_code ec;
  try {
    while (buffer_.size() > 0 && !parser_->is_done()) {
      auto used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) break;
      if (used == 0) break;
    }
  } catch (const std::exception& e) {
    module_logger("gateway")->debug("HTTP parser refused a request from {}: {}", remote_.to_string(),
                                    e.what());
    ec = http::error::header_limit;
  }
  if (ec) return on_read(ec, 0);
  if (parser_->is_done()) return on_read({}, 0);
  if (buffer_.size() >= read_limit()) return on_read(http::error::header_limit, 0);
  std::size_t room = std::min<std::size_t>(read_limit() - buffer_.size(), 64 * 1024);
  stream_.async_read_some(buffer_.prepare(room),
                          [self = shared_from_this()](beast::error_code rec, std::size_t n) {
                            self->buffer_.commit(n);
                            if (rec == asio::error::eof && n == 0 && self->parser_->got_some()) {
                              // The client went away in the middle of a request: nothing to answer.
                              return self->close();
                            }
                            if (rec) return self->on_read(rec, 0);
                            self->parse_buffered();
                          });
}

std::size_t HttpSession::read_limit() const {
  return static_cast<std::size_t>(state_->options.max_header_bytes) + 1024;
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == asio::error::eof) {
    close();
    return;
  }
  if (ec) {
    // The request could not be read whole: answer what went wrong, then close.
    Error e{ErrorCode::MALFORMED, "malformed HTTP request: " + ec.message()};
    if (ec == http::error::body_limit) {
      e = Error{ErrorCode::PAYLOAD_TOO_LARGE, "request body exceeds max_request_bytes " +
                                                  std::to_string(state_->options.max_request_bytes)};
    } else if (ec == http::error::header_limit) {
      e = Error{ErrorCode::HEADER_TOO_LARGE, "request headers exceed max_header_bytes " +
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
  auto gone = std::make_shared<std::atomic<bool>>(false);
  std::string_view path = req.target();
  path = path.substr(0, path.find('?'));
  if (req.method() == http::verb::post && path.ends_with("/messages/pull")) watch_for_close(gone);
  // A write the request makes commits on this thread when the committer is idle (no hand-off
  // there and back); its answer is posted to this session's executor.
  LeadScope lead;
  route(
      req, remote_, *state_,
      [self = shared_from_this()](MakeResponse make) mutable {
        auto executor = self->stream_.get_executor();
        asio::post(executor,
                   [self = std::move(self), make = std::move(make)]() mutable { self->send(make()); });
      },
      std::move(gone));
}

// While a long poll waits, notices a client that closes its connection, so that the poll stops
// before it leases messages nobody will receive: at once when the socket turns readable, and
// every 200 ms besides (the end of the stream may have arrived with the request, when no new
// readiness edge is left to wait for). Strand only.
void HttpSession::watch_for_close(std::shared_ptr<std::atomic<bool>> gone) {
  gone_watched_ = gone;
  if (peer_closed(gone)) return;
  stream_.socket().async_wait(asio::ip::tcp::socket::wait_read,
                              [self = shared_from_this(), gone](beast::error_code ec) {
                                if (!ec) self->peer_closed(gone);
                              });
  watch_timer_.expires_after(std::chrono::milliseconds(200));
  watch_timer_.async_wait([self = shared_from_this(), gone](beast::error_code ec) {
    if (ec || !self->busy_ || self->gone_watched_ != gone) return;
    self->watch_for_close(gone);
  });
}

bool HttpSession::peer_closed(const std::shared_ptr<std::atomic<bool>>& gone) {
  if (gone->load()) return true;
  if (!busy_ || gone != gone_watched_) return false;  // that request was answered
  char c;
  auto n = ::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
    gone->store(true);  // closed (a pipelined request, n > 0, is not)
    closing_ = true;
    return true;
  }
  return false;
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
                    [self = shared_from_this(), sp, close = !keep](beast::error_code ec, std::size_t n) {
                      self->on_write(close, ec, n);
                    });
}

void HttpSession::on_write(bool close_after, beast::error_code ec, std::size_t) {
  busy_ = false;
  gone_watched_.reset();
  watch_timer_.cancel();
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
  bool sse =
      req.method() == http::verb::get && path.starts_with("/v1/channels/") && path.ends_with("/events");
  if (!ws && !sse) return false;
  auto refuse = [&](const Error& e) {
    closing_ = true;
    busy_ = true;
    send(error_response(e, req.version()));
    return true;
  };
  if (ws && state_->is_app_route(path)) {
    // The app judges Origin itself; a token, when present, must be valid (its claims go along).
    if (auto e = check_host_and_origin(req, *state_, /*state_changing=*/false)) return refuse(*e);
    std::string claims;
    auto token = request_token(req, /*allow_query=*/true);
    if (!token.empty()) {
      auto who = state_->auth.authenticate(token, remote_);
      if (!who) return refuse(who.error());
      claims = std::move(who->claims);
    }
    front_upgrade(std::move(req), std::move(claims));
    return true;
  }
  auto object = ws ? object_from_path(path, "/connect") : std::nullopt;
  bool host = ws && path == "/v1/hosts/connect";
  if (ws && path != "/v1/ws" && !object && !host) {
    return refuse(
        Error{ErrorCode::NOT_FOUND,
              "WebSockets are served at /v1/ws, /v1/objects/{class}/{name}/connect and /v1/hosts/connect"});
  }
  // A WebSocket can write (publish, talk to an object), so its Origin must be allowed even
  // though the handshake is a GET.
  if (auto e = check_host_and_origin(req, *state_, /*state_changing=*/ws)) return refuse(*e);
  auto principal = state_->auth.authenticate(request_token(req, /*allow_query=*/true), remote_);
  if (!principal) return refuse(principal.error());
  if (host) {
    if (!principal->unrestricted && principal->host.empty()) {
      return refuse(Error{ErrorCode::FORBIDDEN, "this token may host no class (roost.host)"});
    }
    stream_.expires_never();
    HostGrant grant{std::move(*principal), remote_.to_string()};
    std::make_shared<HostWsSession>(std::move(stream_), state_, std::move(slot_))
        ->run(std::move(req), std::move(grant));
    return true;
  }
  if (object) {
    if (!object->ok) return refuse(object->error);
    if (!principal->may_use_object(object->object_class, object->name)) {
      return refuse(Error{ErrorCode::FORBIDDEN,
                          "not allowed to use object " + object->object_class + "/" + object->name});
    }
    if (auto e = state_->router.object_check(object->object_class, object->name)) return refuse(*e);
    stream_.expires_never();
    auto client = state_->client_address(req, remote_);
    std::make_shared<ObjectWsSession>(std::move(stream_), state_, std::move(slot_))
        ->run(std::move(req), std::move(object->object_class), std::move(object->name), std::move(client),
              std::move(principal->claims));
    return true;
  }
  if (ws) {
    stream_.expires_never();
    std::make_shared<WsSession>(std::move(stream_), state_, std::move(slot_), std::move(*principal))
        ->run(std::move(req));
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
      since =
          channels::Since{last_id.substr(0, colon), std::strtoull(last_id.c_str() + colon + 1, nullptr, 10)};
    }
  }
  std::make_shared<SseSession>(std::move(stream_), state_, std::move(slot_))
      ->run(*pattern, since, req.version());
  return true;
}

void HttpSession::front_upgrade(Request req, std::string claims) {
  busy_ = true;
  stream_.expires_after(std::chrono::milliseconds(state_->options.request_timeout_ms));
  std::string_view target = req.target();
  auto h = object_request(req, std::string(target.substr(0, target.find('?'))), remote_, *state_, claims);
  state_->router.host_front(std::move(h), [self = shared_from_this(), req = std::move(req),
                                           claims = std::move(claims)](Result<FrontReply> r) mutable {
    auto ex = self->stream_.get_executor();
    asio::post(ex, [self = std::move(self), req = std::move(req), claims = std::move(claims),
                    r = std::move(r)]() mutable {
      self->on_front_upgrade(std::move(req), std::move(claims), std::move(r));
    });
  });
}

void HttpSession::on_front_upgrade(Request req, std::string claims, Result<FrontReply> r) {
  closing_ = true;
  if (r && !r->upgrade_class.empty()) {
    if (auto e = state_->router.object_check(r->upgrade_class, r->upgrade_object)) {
      return send(error_response(*e, req.version()));
    }
    stream_.expires_never();
    auto client = state_->client_address(req, remote_);
    std::make_shared<ObjectWsSession>(std::move(stream_), state_, std::move(slot_))
        ->run(std::move(req), std::move(r->upgrade_class), std::move(r->upgrade_object), std::move(client),
              std::move(claims));
    return;
  }
  // The front code refused the upgrade (401, 404, …): its answer, and the connection closes.
  send(r ? object_response(std::move(r->response), req.version(), false)
         : error_response(r.error(), req.version()));
}

void HttpSession::close() {
  beast::error_code ec;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  stream_.close();
}

}  // namespace roost::gateway
