#include "object_ws_session.h"

#include <roost/core/log.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <roost/gateway/json_codec.h>

namespace roost::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {
constexpr std::size_t kMaxQueuedFrames = 4096;
constexpr std::size_t kMaxQueuedBytes = 8u << 20;

// The runtime's handle on the session; outlives it harmlessly.
class Sink final : public roost::ObjectSocket {
 public:
  explicit Sink(std::weak_ptr<ObjectWsSession> s) : s_(std::move(s)) {}
  void send(std::string text) override {
    if (auto s = s_.lock()) s->post_send(std::move(text));
  }
  void close(std::uint16_t code, std::string reason) override {
    if (auto s = s_.lock()) s->post_close(code, std::move(reason));
  }

 private:
  std::weak_ptr<ObjectWsSession> s_;
};
}  // namespace

ObjectWsSession::ObjectWsSession(beast::tcp_stream stream, std::shared_ptr<Server::State> state,
                                 std::unique_ptr<ConnectionSlot> slot)
    : ws_(std::move(stream)), state_(std::move(state)), slot_(std::move(slot)) {
  state_->websockets.fetch_add(1, std::memory_order_relaxed);
}

ObjectWsSession::~ObjectWsSession() {
  detach(1006);
  state_->remove_session(this);
  state_->websockets.fetch_sub(1, std::memory_order_relaxed);
}

void ObjectWsSession::run(Request req, std::string object_class, std::string name, std::string client_address,
                          std::string claims) {
  state_->add_session(this, weak_from_this());
  req_ = std::move(req);
  roost::ObjectConnectRequest cr;
  auto target = std::string_view(req_.target());
  auto q = target.find('?');
  if (q != std::string_view::npos) cr.query = std::string(target.substr(q + 1));
  cr.path = std::string(target.substr(0, q));
  cr.headers = Server::State::object_headers(req_);
  cr.client_address = std::move(client_address);
  cr.claims = std::move(claims);
  cr.origin = std::string(req_[http::field::origin]);
  cr.protocol = std::string(req_[http::field::sec_websocket_protocol]);
  auto sink = std::make_shared<Sink>(weak_from_this());
  state_->router.object_connect(std::move(object_class), std::move(name), std::move(sink), std::move(cr),
                                [self = shared_from_this()](Result<std::uint64_t> r) mutable {
                                  auto ex = self->ws_.get_executor();
                                  asio::post(ex, [self = std::move(self), r = std::move(r)]() mutable {
                                    self->on_attached(std::move(r));
                                  });
                                });
}

void ObjectWsSession::on_attached(Result<std::uint64_t> r) {
  if (!r) return refuse(r.error());
  socket_ = *r;
  if (closed_) return detach(1001);  // shut down while on_connect ran
  beast::get_lowest_layer(ws_).expires_never();
  apply_ws_options(ws_, state_->options);
  std::string protocol(req_[http::field::sec_websocket_protocol]);
  ws_.set_option(websocket::stream_base::decorator([protocol](websocket::response_type& res) {
    res.set(http::field::server, "roost");
    // Echo the first offered subprotocol, so browsers that offer one accept the answer.
    if (!protocol.empty())
      res.set(http::field::sec_websocket_protocol, protocol.substr(0, protocol.find(',')));
  }));
  ws_.async_accept(req_, beast::bind_front_handler(&ObjectWsSession::on_accept, shared_from_this()));
}

void ObjectWsSession::refuse(const Error& e) {
  closed_ = true;
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(error_http_status(e.code)), req_.version());
  res->set(http::field::content_type, "application/json");
  res->set(http::field::server, "roost");
  res->keep_alive(false);
  res->body() = encode_error(e);
  res->prepare_payload();
  beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
  http::async_write(
      beast::get_lowest_layer(ws_), *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
        beast::error_code ec;
        beast::get_lowest_layer(self->ws_).socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        beast::get_lowest_layer(self->ws_).close();
      });
}

void ObjectWsSession::on_accept(beast::error_code ec) {
  if (ec) {
    closed_ = true;
    return detach(1006);
  }
  accepted_ = true;
  flush();
  read();
}

void ObjectWsSession::shutdown() {
  asio::post(ws_.get_executor(), [self = shared_from_this()] { self->close(1001, "server shutting down"); });
}

void ObjectWsSession::post_send(std::string text) {
  asio::post(ws_.get_executor(), [self = shared_from_this(), text = std::move(text)]() mutable {
    self->enqueue(std::move(text));
  });
}

void ObjectWsSession::post_close(std::uint16_t code, std::string reason) {
  asio::post(ws_.get_executor(), [self = shared_from_this(), code, reason = std::move(reason)]() mutable {
    self->close(code, std::move(reason));
  });
}

void ObjectWsSession::read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&ObjectWsSession::on_read, shared_from_this()));
}

void ObjectWsSession::on_read(beast::error_code ec, std::size_t) {
  if (ec) {
    std::uint16_t code = 1006;
    std::string reason;
    if (ec == websocket::error::closed) {
      code = ws_.reason().code;
      reason.assign(ws_.reason().reason.data(), ws_.reason().reason.size());  // ≤ 123 bytes
    }
    if (ec == websocket::error::message_too_big) {
      module_logger("gateway")->debug("object socket message over max_ws_message_bytes");
      code = 1009;
    }
    closed_ = true;
    detach(code, std::move(reason));
    return;
  }
  state_->router.object_socket_message(socket_, beast::buffers_to_string(buffer_.data()));
  buffer_.consume(buffer_.size());
  if (!closed_) read();
}

void ObjectWsSession::enqueue(std::string text) {
  if (closed_) return;
  if (out_.size() >= kMaxQueuedFrames || out_bytes_ + text.size() > kMaxQueuedBytes) {
    state_->slow_disconnects_total.fetch_add(1, std::memory_order_relaxed);
    close(1008, "slow consumer");
    return;
  }
  out_bytes_ += text.size();
  out_.push_back(std::move(text));
  flush();
}

void ObjectWsSession::flush() {
  if (writing_ || out_.empty() || closed_ || !accepted_) return;
  writing_ = true;
  ws_.text(true);
  ws_.async_write(asio::buffer(out_.front()),
                  beast::bind_front_handler(&ObjectWsSession::on_write, shared_from_this()));
}

void ObjectWsSession::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  if (ec) {
    closed_ = true;
    detach(1006);
    return;
  }
  out_bytes_ -= out_.front().size();
  out_.pop_front();
  flush();
}

void ObjectWsSession::close(std::uint16_t code, std::string reason) {
  if (closed_) return;
  closed_ = true;
  if (reason.size() > 120) reason.resize(120);
  detach(code, reason);
  if (!accepted_) return;  // the refusal or the handshake path closes the stream
  websocket::close_reason cr;
  cr.code = code;
  cr.reason = std::move(reason);
  ws_.async_close(cr, [self = shared_from_this()](beast::error_code) {});
}

void ObjectWsSession::detach(std::uint16_t code, std::string reason) {
  if (detached_ || socket_ == 0) return;
  detached_ = true;
  if (!state_->router_gone.load()) state_->router.object_socket_closed(socket_, code, std::move(reason));
}

}  // namespace roost::gateway
