#include "ws_session.h"

#include <roost/core/log.h>
#include <roost/gateway/frames.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <roost/gateway/json_codec.h>

#include <mutex>
#include <vector>

namespace roost::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;

namespace {
constexpr std::size_t kMaxBatchBytes = 64 * 1024;
constexpr std::size_t kMaxQueuedFrames = 16 * 1024;  // messages + answers waiting to be written
// Answers (ok, error, pong) are never dropped, but together with the messages they may hold at
// most this much; a client that keeps sending without reading is disconnected there.
constexpr std::size_t kMaxQueuedBytes = 4u << 20;
constexpr std::size_t kMaxEcho = 64;           // characters of a client's value quoted in an error
constexpr std::size_t kMaxChannelBytes = 256;  // the subject grammar's limit; a longer one is not echoed

// What an error may quote of a client's value: its start.
std::string quote(std::string_view s) {
  if (s.size() <= kMaxEcho) return std::string(s);
  return std::string(s.substr(0, kMaxEcho)) + "… (" + std::to_string(s.size()) + " bytes)";
}

std::string error_frame(const json::value& id, const Error& e) {
  json::object o{{"op", "error"}, {"id", id}, {"code", error_code_name(e.code)}, {"message", e.message}};
  return json::serialize(o);
}
}  // namespace

WsSession::WsSession(beast::tcp_stream stream, std::shared_ptr<Server::State> state,
                     std::unique_ptr<ConnectionSlot> slot, Principal principal)
    : ws_(std::move(stream)),
      state_(std::move(state)),
      slot_(std::move(slot)),
      principal_(std::move(principal)) {
  out_ = state_->subscriber_queue();
  state_->websockets.fetch_add(1, std::memory_order_relaxed);
}

WsSession::~WsSession() {
  cleanup();
  state_->websockets.fetch_sub(1, std::memory_order_relaxed);
}

void WsSession::run(Request req) {
  state_->add_session(this, weak_from_this());
  tap_ = std::make_shared<SessionTap<WsSession>>(weak_from_this(), ws_.get_executor(), state_->batcher);
  beast::get_lowest_layer(ws_).expires_never();
  apply_ws_options(ws_, state_->options);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(beast::http::field::server, "roost"); }));
  auto self = shared_from_this();
  ws_.async_accept(req, [self](beast::error_code ec) { self->on_accept(ec); });
}

void WsSession::on_accept(beast::error_code ec) {
  if (ec) {
    cleanup();
    return;
  }
  read();
}

void WsSession::shutdown() {
  asio::post(ws_.get_executor(), [self = shared_from_this()] {
    self->close(websocket::close_code::going_away, "server shutting down");
  });
}

void WsSession::read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
}

void WsSession::on_read(beast::error_code ec, std::size_t) {
  if (ec) {
    if (ec == websocket::error::message_too_big) {
      roost::module_logger("gateway")->debug("websocket message over max_ws_message_bytes");
    }
    cleanup();
    return;
  }
  if (!ws_.got_text()) {
    send_control(error_frame(nullptr, Error{ErrorCode::INVALID_ARGUMENT, "frames must be JSON text"}));
  } else {
    std::string text = beast::buffers_to_string(buffer_.data());
    handle(text);
  }
  buffer_.consume(buffer_.size());
  if (!closed_) read();
}

void WsSession::handle(std::string_view text) {
  if (auto e = check_json(text)) {
    send_control(error_frame(nullptr, Error{e->code, "frame refused: " + e->message}));
    return;
  }
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    send_control(error_frame(nullptr, Error{ec ? ErrorCode::MALFORMED : ErrorCode::INVALID_ARGUMENT,
                                            ec ? "frame is not valid JSON" : "frame must be a JSON object"}));
    return;
  }
  auto& o = v.as_object();
  json::value id = o.contains("id") ? o.at("id") : json::value(nullptr);
  // The id comes back in the answer: a number or a short string, nothing a client could use to
  // make the node hold large answers.
  if (!id.is_null() && !id.is_number() && !(id.is_string() && id.as_string().size() <= kMaxEcho)) {
    send_control(error_frame(
        nullptr, Error{ErrorCode::INVALID_ARGUMENT, "id must be a number or a string of at most 64 bytes"}));
    return;
  }
  auto fail = [&](ErrorCode code, std::string message) {
    send_control(error_frame(id, Error{code, std::move(message)}));
  };
  auto op_it = o.find("op");
  if (op_it == o.end() || !op_it->value().is_string())
    return fail(ErrorCode::INVALID_ARGUMENT, "op is required");
  std::string op(op_it->value().as_string());
  if (op == "ping") {
    if (auto e = unknown_field(o, {"op", "id"}, "a ping")) return fail(e->code, e->message);
    send_control(json::serialize(json::object{{"op", "pong"}, {"id", id}}));
    return;
  }
  auto ch_it = o.find("channel");
  if (ch_it == o.end() || !ch_it->value().is_string())
    return fail(ErrorCode::INVALID_ARGUMENT, "channel is required");
  std::string channel(ch_it->value().as_string());
  if (op != "subscribe" && op != "unsubscribe" && op != "publish")
    return fail(ErrorCode::INVALID_ARGUMENT, "unknown op " + quote(op));
  auto unknown = op == "subscribe"
                     ? unknown_field(o, {"op", "id", "channel", "recent", "since"}, "a subscribe")
                 : op == "unsubscribe" ? unknown_field(o, {"op", "id", "channel"}, "an unsubscribe")
                                       : unknown_field(o, {"op", "id", "channel", "data"}, "a publish");
  if (unknown) return fail(unknown->code, unknown->message);
  if (channel.size() > kMaxChannelBytes) {
    return fail(ErrorCode::INVALID_NAME,
                "channel is longer than " + std::to_string(kMaxChannelBytes) + " bytes");
  }

  if (op == "subscribe") {
    if (!principal_.may_subscribe(channel))
      return fail(ErrorCode::FORBIDDEN, "not allowed to subscribe to " + channel);
    if (subscriptions_.size() >= state_->options.max_subscriptions) {
      return fail(ErrorCode::TOO_MANY_REQUESTS, "this connection already holds " +
                                                    std::to_string(subscriptions_.size()) +
                                                    " subscriptions (max_subscriptions_per_connection)");
    }
    std::optional<channels::Since> since;
    if (auto rc = o.find("recent"); rc != o.end() && !rc->value().is_null()) {
      if (!rc->value().is_number() || rc->value().to_number<double>() < 0) {
        return fail(ErrorCode::INVALID_ARGUMENT, "recent must be a non-negative number");
      }
      since = channels::Since{"", 0, static_cast<std::size_t>(rc->value().to_number<double>())};
      if (since->recent == 0) since.reset();
    } else if (auto s = o.find("since"); s != o.end() && !s->value().is_null()) {
      const auto* so = s->value().if_object();
      if (so == nullptr || !so->contains("epoch") || !so->at("epoch").is_string() ||
          !so->contains("offset") || !so->at("offset").is_number()) {
        return fail(ErrorCode::INVALID_ARGUMENT, "since must be {\"epoch\":string,\"offset\":number}");
      }
      since = channels::Since{std::string(so->at("epoch").as_string()),
                              so->at("offset").to_number<std::uint64_t>()};
    }
    if (subscriptions_.contains(channel))
      return fail(ErrorCode::CONFLICT, "already subscribed to " + channel);
    auto r = state_->router.subscribe(channel, tap_, since);
    if (!r) return fail(r.error().code, r.error().message);
    subscriptions_[channel] = r->id;
    if (r->reset) {
      send_control(json::serialize(
          json::object{{"op", "reset"}, {"channel", channel}, {"epoch", r->epoch}, {"offset", r->offset}}));
    }
    json::object ok{{"op", "ok"}, {"id", id}};
    if (!r->epoch.empty()) {
      ok["epoch"] = r->epoch;
      ok["offset"] = r->offset;
      ok["recovered"] = r->recovered;
    }
    send_control(json::serialize(ok));
    return;
  }
  if (op == "unsubscribe") {
    auto it = subscriptions_.find(channel);
    if (it == subscriptions_.end()) return fail(ErrorCode::NOT_FOUND, "not subscribed to " + channel);
    state_->router.unsubscribe(it->second);
    subscriptions_.erase(it);
    send_control(json::serialize(json::object{{"op", "ok"}, {"id", id}}));
    return;
  }
  if (op == "publish") {
    if (!principal_.may_publish(channel))
      return fail(ErrorCode::FORBIDDEN, "not allowed to publish to " + channel);
    auto d = o.find("data");
    if (d == o.end()) return fail(ErrorCode::INVALID_ARGUMENT, "data is required");
    if (id.is_null()) {  // no id: nobody waits for the answer (errors are still sent)
      auto r = state_->router.publish(channel, json::serialize(d->value()));
      if (!r) return fail(r.error().code, r.error().message);
      return;
    }
    // Answered with its place in the channel, once its sequencer (in a mesh, the channel's home)
    // assigned it. Bounded: a client cannot make the node hold more than this many answers.
    if (publishes_waiting_ >= kMaxPublishesWaiting)
      return fail(ErrorCode::TOO_MANY_REQUESTS, "too many publishes waiting for their answer");
    ++publishes_waiting_;
    state_->router.publish_async(
        channel, json::serialize(d->value()), ContentType::kJson,
        [self = shared_from_this(), id](Result<channels::PublishResult> r) mutable {
          auto ex = self->ws_.get_executor();
          asio::post(ex, [self = std::move(self), id = std::move(id), r = std::move(r)] {
            --self->publishes_waiting_;
            if (!r) return self->send_control(error_frame(id, r.error()));
            self->send_control(json::serialize(json::object{{"op", "ok"},
                                                            {"id", id},
                                                            {"offset", r->offset},
                                                            {"epoch", r->epoch},
                                                            {"subscribers", r->subscribers}}));
          });
        });
    return;
  }
}

void WsSession::on_channel_message(const channels::MessagePtr& m, bool flush_now) {
  if (closed_) return;
  state_->offer(*this, out_, browser_frame(*m), m->channel, flush_now);
}

void WsSession::drop_slow() { close(websocket::close_code::policy_error, "slow consumer"); }

void WsSession::send_control(std::string frame) {
  if (closed_) return;
  // Answers are not dropped, but a client that keeps sending without reading them is cut off
  // rather than allowed to grow its queue without bound.
  if (out_.size() >= kMaxQueuedFrames || out_.bytes() + frame.size() > kMaxQueuedBytes) {
    state_->slow_disconnects_total.fetch_add(1, std::memory_order_relaxed);
    close(websocket::close_code::policy_error, "not reading its answers");
    return;
  }
  out_.push_control(std::make_shared<const std::string>(std::move(frame)));
  flush();
}

void WsSession::flush() {
  if (writing_ || out_.empty() || closed_) return;
  writing_ = true;
  ws_.text(true);
  if (out_.size() == 1) {
    batch_frames_ = 1;
    ws_.async_write(asio::buffer(*out_.front()),
                    beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
    return;
  }
  batch_ = out_.join(kMaxBatchBytes, '\n', batch_frames_);
  ws_.async_write(asio::buffer(batch_), beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
}

void WsSession::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  if (ec) {
    cleanup();
    return;
  }
  for (; batch_frames_ > 0; --batch_frames_) out_.pop();
  batch_.clear();
  if (out_.dropped_pending() > 0 && out_.has_room()) {
    auto n = out_.take_dropped();
    out_.push_control(
        std::make_shared<const std::string>(R"({"op":"lagged","dropped":)" + std::to_string(n) + "}"));
  }
  flush();
}

void WsSession::close(websocket::close_code code, const char* reason) {
  if (closed_) return;
  closed_ = true;
  cleanup();
  ws_.async_close(websocket::close_reason(code, reason), [self = shared_from_this()](beast::error_code) {});
}

void WsSession::cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  closed_ = true;
  if (!state_->router_gone.load()) {
    for (auto& [pattern, id] : subscriptions_) state_->router.unsubscribe(id);
  }
  subscriptions_.clear();
  state_->remove_session(this);
}

}  // namespace roost::gateway
