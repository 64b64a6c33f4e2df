// State shared by the listener and every session (private to gateway/).
#pragma once

#include <roost/broker/router.h>
#include <roost/gateway/server.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace roost::gateway {

class HttpSession;

struct Server::State {
  State(boost::asio::io_context& io_context, broker::Router& r, ServerOptions o)
      : io(io_context), router(r), options(std::move(o)),
        acceptor(boost::asio::make_strand(io_context)) {}

  boost::asio::io_context& io;
  broker::Router& router;
  ServerOptions options;
  boost::asio::ip::tcp::acceptor acceptor;

  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> accepted_total{0};
  std::atomic<std::uint64_t> rejected_total{0};
  // Responses by status class: 2xx, 3xx, 4xx, 5xx.
  std::array<std::atomic<std::uint64_t>, 6> responses{};

  std::mutex mu;
  std::unordered_map<HttpSession*, std::weak_ptr<HttpSession>> sessions;  // GUARDED_BY(mu)
};

}  // namespace roost::gateway
