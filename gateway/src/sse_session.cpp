#include "sse_session.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include <roost/gateway/frames.h>
#include <roost/gateway/json_codec.h>

namespace roost::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;

SseSession::SseSession(beast::tcp_stream stream, std::shared_ptr<Server::State> state,
                       std::unique_ptr<ConnectionSlot> slot)
    : stream_(std::move(stream)),
      state_(std::move(state)),
      slot_(std::move(slot)),
      ping_timer_(stream_.get_executor()) {
  out_ = state_->subscriber_queue();
  state_->sse_streams.fetch_add(1, std::memory_order_relaxed);
}

SseSession::~SseSession() {
  finish();
  state_->sse_streams.fetch_sub(1, std::memory_order_relaxed);
}

void SseSession::run(std::string pattern, std::optional<channels::Since> since, unsigned http_version) {
  state_->add_session(this, weak_from_this());
  tap_ = std::make_shared<SessionTap<SseSession>>(weak_from_this(), stream_.get_executor(), state_->batcher);
  stream_.expires_never();
  auto r = state_->router.subscribe(pattern, tap_, since);
  if (!r) {
    // Answer with a normal JSON error and close.
    auto res = std::make_shared<beast::http::response<beast::http::string_body>>(
        static_cast<beast::http::status>(error_http_status(r.error().code)), http_version);
    res->set(beast::http::field::content_type, "application/json");
    res->body() = encode_error(r.error());
    res->keep_alive(false);
    res->prepare_payload();
    closed_ = true;
    beast::http::async_write(
        stream_, *res, [self = shared_from_this(), res](beast::error_code, std::size_t) { self->finish(); });
    return;
  }
  subscription_ = r->id;
  // The head goes first; messages the hub already posted follow on this strand.
  out_.push_control(std::make_shared<const std::string>(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "Connection: close\r\nX-Accel-Buffering: no\r\nServer: roost\r\n\r\n: roost stream\n\n"));
  if (r->reset) {
    push_control("event: reset\ndata: {\"op\":\"reset\",\"channel\":\"" + pattern + "\",\"epoch\":\"" +
                 r->epoch + "\",\"offset\":" + std::to_string(r->offset) + "}\n\n");
  }
  flush();
  watch_peer();
  keep_alive();
}

void SseSession::shutdown() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->closed_ = true;
    if (!self->writing_) self->finish();
  });
}

void SseSession::on_channel_message(const channels::MessagePtr& m, bool flush_now) {
  if (closed_) return;
  state_->offer(*this, out_, sse_frame(*m), m->channel, flush_now);
}

void SseSession::drop_slow() {
  closed_ = true;
  if (!writing_) finish();
}

void SseSession::push_control(std::string event) {
  out_.push_control(std::make_shared<const std::string>(std::move(event)));
}

void SseSession::flush() {
  if (writing_ || out_.empty()) return;
  writing_ = true;
  asio::async_write(stream_, asio::buffer(*out_.front()),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (ec) {
                        self->finish();
                        return;
                      }
                      self->out_.pop();
                      if (self->out_.dropped_pending() > 0 && self->out_.has_room()) {
                        self->push_control("event: lagged\ndata: {\"op\":\"lagged\",\"dropped\":" +
                                           std::to_string(self->out_.take_dropped()) + "}\n\n");
                      }
                      if (self->closed_ && self->out_.empty()) {
                        self->finish();
                        return;
                      }
                      self->flush();
                    });
}

// The client sends nothing after its request; a read completing means it went away.
void SseSession::watch_peer() {
  stream_.async_read_some(asio::buffer(peek_),
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            if (ec) {
                              self->finish();
                              return;
                            }
                            self->watch_peer();
                          });
}

void SseSession::keep_alive() {
  ping_timer_.expires_after(std::chrono::seconds(15));
  ping_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->closed_) return;
    self->push_control(": ping\n\n");
    self->flush();
    self->keep_alive();
  });
}

void SseSession::finish() {
  if (subscription_ != 0) {
    if (!state_->router_gone.load()) state_->router.unsubscribe(subscription_);
    subscription_ = 0;
  }
  closed_ = true;
  ping_timer_.cancel();
  beast::error_code ec;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
  state_->remove_session(this);
}

}  // namespace roost::gateway
