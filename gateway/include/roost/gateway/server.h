// The HTTP gateway: a Boost.Beast listener and its sessions, serving the REST API over HTTP/1.1
// keep-alive. Every session lives on its own strand; requests reach the broker only through the
// Router.
//
// Thread-safety: start() and stop() from one controlling thread; the rest runs on the
// io_context's threads.
#pragma once

#include <roost/core/router.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <boost/asio/thread_pool.hpp>
#include <cstdint>

#include <memory>
#include <string>

namespace roost::gateway {

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";        // HOST:PORT; port 0 picks a free one
  std::uint64_t max_request_bytes = 16u << 20;  // larger bodies: 413 payload_too_large
  std::uint64_t max_header_bytes = 16u << 10;   // larger header blocks: 431 header_too_large
  std::uint64_t idle_timeout_ms = 60'000;       // keep-alive connections idle longer are closed
  std::uint64_t request_timeout_ms = 30'000;    // a request must arrive whole within this
  std::uint64_t max_connections = 10'000;       // more are accepted and closed at once
  std::uint64_t max_connections_per_ip = 256;   // likewise, per remote address
  std::string static_dir;                       // files served at / when set
  std::string auth_secret;                      // HS256 JWT secret; empty = loopback only
  std::string allowed_origins;                  // Origin allow-list for WebSockets and writes ("*" = any)
  std::string allowed_hosts;                    // extra Host names when no auth_secret (comma list)
  std::string trusted_proxies;                  // peers whose X-Forwarded-For names the client (comma list)
  std::string app_routes;  // path prefixes handed to a host's front code (comma list; docs/hosts.md)
  std::string cf_tokens;   // Cloudflare API tokens: "TOKEN:queue,queue;TOKEN2:>" (docs/cloudflare.md)
  std::uint64_t max_ws_message_bytes = 64u << 10;
  std::uint64_t max_subscriptions = 1024;  // per WebSocket; more: too_many_requests
  std::uint64_t ws_idle_timeout_ms = 60'000;
  bool ws_compression = false;
};

class Server {
 public:
  Server(boost::asio::io_context& io, roost::Router& router, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting. Throws std::system_error (or std::invalid_argument for a bad
  // address) on failure.
  void start();
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting. Idle connections are closed; a connection with a request in progress closes
  // after its response is written.
  void stop();
  // Requests read but not yet answered.
  std::uint64_t requests_in_flight() const;
  std::uint64_t connections() const;

  struct State;

 private:
  // One thread for what would block an io thread: reading static files from disk.
  std::unique_ptr<boost::asio::thread_pool> files_;
  std::shared_ptr<State> state_;
};

}  // namespace roost::gateway
