// State shared by the listener and every session (private to gateway/).
#pragma once

#include <roost/channels/outgoing_queue.h>
#include <roost/core/router.h>
#include <roost/core/thread_annotations.h>
#include <roost/gateway/server.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <roost/core/auth.h>
#include <roost/gateway/cf_api.h>

#include <boost/asio/thread_pool.hpp>
#include "delivery_batcher.h"

namespace roost::gateway {

using roost::Authenticator;
using roost::Principal;

// The gateway's WebSocket settings for a server-side stream: handshake and idle timeouts with
// keep-alive pings, the incoming message limit, and permessage-deflate when enabled.
template <class WebSocketStream>
void apply_ws_options(WebSocketStream& ws, const ServerOptions& options) {
  namespace websocket = boost::beast::websocket;
  websocket::stream_base::timeout opt{};
  opt.handshake_timeout = std::chrono::seconds(30);
  opt.idle_timeout = std::chrono::milliseconds(options.ws_idle_timeout_ms);
  opt.keep_alive_pings = true;
  ws.set_option(opt);
  ws.read_message_max(options.max_ws_message_bytes);
  if (options.ws_compression) {
    websocket::permessage_deflate pmd;
    pmd.server_enable = true;
    ws.set_option(pmd);
  }
}

// The non-empty items of a comma-separated setting, spaces around them trimmed.
inline std::vector<std::string> comma_list(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start <= s.size();) {
    auto comma = std::min(s.find(',', start), s.size());
    auto first = s.find_first_not_of(' ', start);
    auto last = s.find_last_not_of(' ', comma == 0 ? 0 : comma - 1);
    if (first < comma && last != std::string::npos && last >= first)
      out.push_back(s.substr(first, last - first + 1));
    start = comma + 1;
  }
  return out;
}

// Anything the server must be able to close at shutdown.
class Closable {
 public:
  virtual ~Closable() = default;
  // Closes now if idle, else after the work in progress. Any thread.
  virtual void shutdown() = 0;
};

struct Server::State : std::enable_shared_from_this<Server::State> {
  State(boost::asio::io_context& io_context, roost::Router& r, ServerOptions o)
      : io(io_context),
        router(r),
        options(std::move(o)),
        acceptor(boost::asio::make_strand(io_context)),
        auth(options.auth_secret) {
    origins = comma_list(options.allowed_origins);
    app_routes = comma_list(options.app_routes);
    hosts = comma_list(options.allowed_hosts);
    for (const auto& p : comma_list(options.trusted_proxies)) {
      boost::system::error_code ec;
      auto a = boost::asio::ip::make_address(p, ec);
      if (!ec) trusted_proxies.push_back(a);
    }
    for (auto& h : hosts) {
      for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    auto tokens = parse_cf_tokens(options.cf_tokens);
    if (!tokens) throw std::invalid_argument(tokens.error().message);
    cf_tokens = std::move(*tokens);
  }

  boost::asio::io_context& io;
  roost::Router& router;
  ServerOptions options;
  boost::asio::ip::tcp::acceptor acceptor;
  Authenticator auth;
  std::vector<std::string> origins;
  std::vector<std::string> hosts;  // allowed_hosts, lower case
  std::vector<boost::asio::ip::address> trusted_proxies;
  std::vector<std::string> app_routes;  // path prefixes for the hosts' front code
  std::vector<CfToken> cf_tokens;       // Cloudflare API tokens and their queue grants

  // When each queue was last purged through Cloudflare's API (its purge status route), bounded.
  void note_purge(const std::string& queue, std::int64_t at_ms) {
    std::lock_guard lock(purges_mu);
    if (purges.size() >= 10'000) purges.clear();
    purges[queue] = at_ms;
  }
  std::int64_t last_purge(const std::string& queue) const {
    std::lock_guard lock(purges_mu);
    auto it = purges.find(queue);
    return it == purges.end() ? 0 : it->second;
  }
  mutable std::mutex purges_mu;
  std::unordered_map<std::string, std::int64_t> purges;

  // Whether `path` belongs to the app (app_routes): "/api" takes /api and /api/…, "/" takes all
  // but Roost's own routes (/v1/, /healthz, /metrics, /roost.js).
  bool is_app_route(std::string_view path) const {
    for (const auto& p : app_routes) {
      std::string_view prefix = p;
      while (prefix.size() > 1 && prefix.back() == '/') prefix.remove_suffix(1);
      if (prefix == "/") {
        return !(path.starts_with("/v1/") || path == "/healthz" || path == "/metrics" || path == "/roost.js");
      }
      if (path == prefix || (path.starts_with(prefix) && path[prefix.size()] == '/')) return true;
    }
    return false;
  }

  // A request's headers as an object sees them: every one as sent, but Authorization (its token
  // was verified; the object gets the claims instead).
  template <class Request>
  static std::vector<std::pair<std::string, std::string>> object_headers(const Request& req) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& f : req) {
      if (f.name() == boost::beast::http::field::authorization) continue;
      out.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    return out;
  }

  // Who a request comes from: the peer, unless the peer is a trusted proxy — then the right-most
  // X-Forwarded-For entry that is not one (the client as the first proxy we trust saw it).
  template <class Request>
  std::string client_address(const Request& req, const boost::asio::ip::address& peer) const {
    auto trusted = [&](const boost::asio::ip::address& a) {
      for (const auto& t : trusted_proxies) {
        if (t == a) return true;
      }
      return false;
    };
    if (!trusted(peer)) return peer.to_string();
    std::string_view xff = req["X-Forwarded-For"];
    while (!xff.empty()) {
      auto comma = xff.rfind(',');
      auto item = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
      xff = comma == std::string_view::npos ? std::string_view() : xff.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      boost::system::error_code ec;
      auto a = boost::asio::ip::make_address(item, ec);
      if (ec) break;  // not an address: trust nothing further left
      if (!trusted(a)) return a.to_string();
    }
    return peer.to_string();
  }
  DeliveryBatcher batcher;
  boost::asio::thread_pool* files = nullptr;  // owned by the Server, which outlives its sessions' work

  std::atomic<bool> stopping{false};
  // Set when the Server is destroyed, after the io threads have ended: the router may be gone
  // by the time the io_context destroys the handlers that still hold sessions, so a session's
  // last goodbye to the router (unsubscribe, socket closed) is skipped from then on.
  std::atomic<bool> router_gone{false};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> websockets{0};
  std::atomic<std::uint64_t> sse_streams{0};
  std::atomic<std::uint64_t> accepted_total{0};
  std::atomic<std::uint64_t> rejected_total{0};
  std::atomic<std::uint64_t> lagged_total{0};
  std::atomic<std::uint64_t> slow_disconnects_total{0};
  // Responses by status class: 2xx, 3xx, 4xx, 5xx.
  std::array<std::atomic<std::uint64_t>, 6> responses{};

  Mutex mu;
  std::unordered_map<Closable*, std::weak_ptr<Closable>> sessions ROOST_GUARDED_BY(mu);
  std::unordered_map<std::string, std::uint64_t> per_ip ROOST_GUARDED_BY(mu);

  // A subscriber connection's outgoing buffer, sized by the channel defaults.
  channels::OutgoingQueue subscriber_queue() const {
    const auto& d = router.channel_namespace("");
    return channels::OutgoingQueue(d.buffer_messages, d.buffer_bytes);
  }

  // Queues a channel message's frame for a subscriber session (WsSession, SseSession) under its
  // channel's slow-consumer policy and counts drops and disconnects: queued → the session's
  // flush() when `flush_now`; dropped → nothing more (the session reports the count later);
  // over a disconnect policy → the session's drop_slow(). On the session's strand.
  template <class Session>
  void offer(Session& session, channels::OutgoingQueue& out, std::shared_ptr<const std::string> frame,
             std::string_view channel, bool flush_now) {
    switch (out.push(std::move(frame), router.channel_namespace(channel).policy)) {
      case channels::OutgoingQueue::Push::kQueued:
        if (flush_now) session.flush();
        break;
      case channels::OutgoingQueue::Push::kDropped:
        lagged_total.fetch_add(1, std::memory_order_relaxed);
        break;
      case channels::OutgoingQueue::Push::kDisconnect:
        slow_disconnects_total.fetch_add(1, std::memory_order_relaxed);
        session.drop_slow();
        break;
    }
  }

  void add_session(Closable* key, std::weak_ptr<Closable> s) {
    MutexLock lock(mu);
    sessions.emplace(key, std::move(s));
  }
  void remove_session(Closable* key) {
    MutexLock lock(mu);
    sessions.erase(key);
  }
  // True when `origin` may open a WebSocket (empty origin = not a browser).
  bool origin_allowed(std::string_view origin, std::string_view host) const {
    if (origin.empty()) return true;
    for (const auto& o : origins) {
      if (o == "*" || o == origin) return true;
    }
    if (!origins.empty()) return false;
    // No list: same host only.
    auto scheme = origin.find("://");
    return scheme != std::string_view::npos && origin.substr(scheme + 3) == host;
  }
};

// One accepted connection's place in the connection limits; released on destruction. Moves
// from the HTTP session to a WebSocket or SSE session on upgrade.
class ConnectionSlot {
 public:
  ConnectionSlot(std::shared_ptr<Server::State> st, std::string ip)
      : st_(std::move(st)), ip_(std::move(ip)) {}
  ~ConnectionSlot() {
    st_->connections.fetch_sub(1, std::memory_order_relaxed);
    MutexLock lock(st_->mu);
    if (auto it = st_->per_ip.find(ip_); it != st_->per_ip.end() && --it->second == 0) st_->per_ip.erase(it);
  }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

  // Takes a slot for `ip`, or nullptr when a limit is reached.
  static std::unique_ptr<ConnectionSlot> acquire(const std::shared_ptr<Server::State>& st,
                                                 const std::string& ip) {
    MutexLock lock(st->mu);
    if (st->connections.load() >= st->options.max_connections) return nullptr;
    auto& n = st->per_ip[ip];
    if (n >= st->options.max_connections_per_ip) return nullptr;
    ++n;
    st->connections.fetch_add(1, std::memory_order_relaxed);
    return std::make_unique<ConnectionSlot>(st, ip);
  }

 private:
  std::shared_ptr<Server::State> st_;
  std::string ip_;
};

}  // namespace roost::gateway
