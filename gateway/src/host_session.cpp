#include "host_session.h"

#include <roost/core/log.h>

#include <boost/asio/post.hpp>

namespace roost::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {
constexpr std::size_t kMaxQueuedFrames = 65'536;
constexpr std::size_t kMaxQueuedBytes = 64u << 20;
constexpr auto kCloseGrace = std::chrono::seconds(2);

// The broker's handle on the session; outlives it harmlessly.
class Link final : public HostLink {
 public:
  explicit Link(std::weak_ptr<HostWsSession> s) : s_(std::move(s)) {}
  bool send(std::string frame) override {
    auto s = s_.lock();
    return s && s->post_send(std::move(frame));
  }
  void close(std::uint16_t code, std::string reason) override {
    if (auto s = s_.lock()) s->post_close(code, std::move(reason));
  }
  std::size_t queued_bytes() const override {
    auto s = s_.lock();
    return s ? s->queued_bytes() : 0;
  }

 private:
  std::weak_ptr<HostWsSession> s_;
};
}  // namespace

HostWsSession::HostWsSession(beast::tcp_stream stream, std::shared_ptr<Server::State> state,
                             std::unique_ptr<ConnectionSlot> slot)
    : ws_(std::move(stream)),
      state_(std::move(state)),
      slot_(std::move(slot)),
      close_timer_(ws_.get_executor()) {
  state_->websockets.fetch_add(1, std::memory_order_relaxed);
}

HostWsSession::~HostWsSession() {
  ended();
  state_->remove_session(this);
  state_->websockets.fetch_sub(1, std::memory_order_relaxed);
}

void HostWsSession::run(Request req, HostGrant grant) {
  state_->add_session(this, weak_from_this());
  grant_ = std::move(grant);
  beast::get_lowest_layer(ws_).expires_never();
  apply_ws_options(ws_, state_->options);
  // A frame carries a value or message of up to max_message_bytes (1 MiB values) in base64.
  std::uint64_t biggest = std::max<std::uint64_t>(state_->router.max_message_bytes(), 1u << 20);
  ws_.read_message_max(biggest * 4 / 3 + (64u << 10));
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "roost"); }));
  ws_.async_accept(req, beast::bind_front_handler(&HostWsSession::on_accept, shared_from_this()));
}

void HostWsSession::on_accept(beast::error_code ec) {
  if (ec) {
    closed_ = true;
    return;
  }
  accepted_ = true;
  session_ = state_->router.host_connect(std::make_shared<Link>(weak_from_this()), grant_);
  if (!session_) return;  // refused; the link closes us
  read();
}

void HostWsSession::shutdown() {
  asio::post(ws_.get_executor(), [self = shared_from_this()] { self->close(1001, "server shutting down"); });
}

bool HostWsSession::post_send(std::string text) {
  if (closing_.load()) return false;
  auto frames = queued_frames_.fetch_add(1) + 1;
  auto bytes = queued_bytes_.fetch_add(text.size()) + text.size();
  if (frames > kMaxQueuedFrames || bytes > kMaxQueuedBytes) {
    queued_frames_.fetch_sub(1);
    queued_bytes_.fetch_sub(text.size());
    if (!closing_.exchange(true)) {
      module_logger("gateway")->warn("remote host {} does not read its frames: closed", grant_.peer);
      // It does not read: a close frame would wait behind what it does not read. Dead now.
      asio::post(ws_.get_executor(), [self = shared_from_this()] { self->teardown(); });
    }
    return false;
  }
  asio::post(ws_.get_executor(), [self = shared_from_this(), text = std::move(text)]() mutable {
    if (self->closed_) {
      self->queued_frames_.fetch_sub(1);
      self->queued_bytes_.fetch_sub(text.size());
      return;
    }
    self->out_.push_back(std::move(text));
    self->flush();
  });
  return true;
}

void HostWsSession::post_close(std::uint16_t code, std::string reason) {
  closing_ = true;
  asio::post(ws_.get_executor(), [self = shared_from_this(), code, reason = std::move(reason)]() mutable {
    self->close(code, std::move(reason));
  });
}

void HostWsSession::read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&HostWsSession::on_read, shared_from_this()));
}

void HostWsSession::on_read(beast::error_code ec, std::size_t) {
  if (ec) {
    if (ec == websocket::error::message_too_big) {
      module_logger("gateway")->warn("remote host {}: frame over the limit; closed", grant_.peer);
    }
    closed_ = true;
    closing_ = true;
    ended();
    return;
  }
  if (!ws_.got_text()) {
    buffer_.consume(buffer_.size());
    return close(1003, "host frames are JSON text");
  }
  if (!closing_.load()) session_->on_frame(beast::buffers_to_string(buffer_.data()));  // none after a close
  buffer_.consume(buffer_.size());
  if (!closed_) read();
}

void HostWsSession::flush() {
  if (writing_ || out_.empty() || closed_ || !accepted_) return;
  writing_ = true;
  ws_.text(true);
  ws_.async_write(asio::buffer(out_.front()),
                  beast::bind_front_handler(&HostWsSession::on_write, shared_from_this()));
}

void HostWsSession::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  queued_frames_.fetch_sub(1);
  queued_bytes_.fetch_sub(out_.front().size());
  out_.pop_front();
  if (ec) {
    closed_ = true;
    closing_ = true;
    ended();
    return;
  }
  if (pending_close_ && out_.empty()) {
    auto [code, reason] = std::move(*pending_close_);
    pending_close_.reset();
    return close(code, std::move(reason));
  }
  flush();
}

void HostWsSession::close(std::uint16_t code, std::string reason) {
  if (closed_) return;
  if (writing_ && accepted_) {
    // What was sent before the close (an error frame saying why) goes out first; the broker is
    // done with the host now, and a write that does not finish in time is cut.
    pending_close_ = std::make_pair(code, std::move(reason));
    closing_ = true;
    ended();
    close_timer_.expires_after(kCloseGrace);
    close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && !self->closed_) self->teardown();
    });
    return;
  }
  close_timer_.cancel();
  closed_ = true;
  closing_ = true;
  ended();
  if (!accepted_) return;
  if (reason.size() > 120) reason.resize(120);
  websocket::close_reason cr;
  cr.code = code;
  cr.reason = std::move(reason);
  ws_.async_close(cr, [self = shared_from_this()](beast::error_code) {});
}

void HostWsSession::teardown() {
  closed_ = true;
  closing_ = true;
  ended();
  close_timer_.cancel();
  // The frame being written stays: its handler takes it off.
  while (out_.size() > (writing_ ? 1u : 0u)) {
    queued_frames_.fetch_sub(1);
    queued_bytes_.fetch_sub(out_.back().size());
    out_.pop_back();
  }
  pending_close_.reset();
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(ws_).close();
}

void HostWsSession::ended() {
  if (ended_) return;
  ended_ = true;
  if (session_ && !state_->router_gone.load()) session_->on_closed();
}

}  // namespace roost::gateway
