#include "roost/gateway/server.h"

#include <roost/core/log.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <charconv>
#include <future>
#include <stdexcept>

#include "http_session.h"

namespace roost::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

tcp::endpoint parse_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("listen address needs HOST:PORT: " + listen);
  std::string host = listen.substr(0, colon);
  std::string port_str = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_str.data(), port_str.data() + port_str.size(), port);
  if (ec != std::errc() || p != port_str.data() + port_str.size() || port > 65535) {
    throw std::invalid_argument("bad port in listen address: " + listen);
  }
  boost::system::error_code aec;
  auto addr = asio::ip::make_address(host, aec);
  if (aec) throw std::invalid_argument("listen host must be an IP address: " + host);
  return {addr, static_cast<unsigned short>(port)};
}

void accept_loop(std::shared_ptr<Server::State> st) {
  st->acceptor.async_accept(
      asio::make_strand(st->io), [st](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !st->acceptor.is_open()) return;
        if (ec) {
          // Out of file descriptors and the like: back off instead of spinning on the error.
          roost::module_logger("gateway")->warn("accept failed: {}; retrying in 100 ms", ec.message());
          auto timer = std::make_shared<asio::steady_timer>(st->acceptor.get_executor(),
                                                            std::chrono::milliseconds(100));
          timer->async_wait([st, timer](boost::system::error_code) { accept_loop(st); });
          return;
        }
        boost::system::error_code rec;
        auto remote = socket.remote_endpoint(rec);
        auto slot =
            st->stopping.load() || rec ? nullptr : ConnectionSlot::acquire(st, remote.address().to_string());
        if (!slot) {
          st->rejected_total.fetch_add(1, std::memory_order_relaxed);
          boost::system::error_code ignored;
          socket.close(ignored);
        } else {
          st->accepted_total.fetch_add(1, std::memory_order_relaxed);
          socket.set_option(tcp::no_delay(true), ec);
          std::make_shared<HttpSession>(std::move(socket), st, std::move(slot))->start();
        }
        accept_loop(st);
      });
}

}  // namespace

Server::Server(asio::io_context& io, roost::Router& router, ServerOptions options)
    : files_(std::make_unique<asio::thread_pool>(1)),
      state_(std::make_shared<State>(io, router, std::move(options))) {
  state_->files = files_.get();
}

Server::~Server() {
  files_->join();  // file reads in progress finish (their sessions hold the state)
  state_->router_gone.store(true);
}

void Server::start() {
  auto endpoint = parse_listen(state_->options.listen);
  auto& a = state_->acceptor;
  a.open(endpoint.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  a.bind(endpoint);
  a.listen(asio::socket_base::max_listen_connections);
  accept_loop(state_);
}

tcp::endpoint Server::local_endpoint() const { return state_->acceptor.local_endpoint(); }

void Server::stop() {
  state_->stopping.store(true);
  std::promise<void> closed;
  auto fut = closed.get_future();
  asio::post(state_->acceptor.get_executor(), [st = state_, &closed] {
    boost::system::error_code ec;
    st->acceptor.close(ec);
    closed.set_value();
  });
  fut.wait();
  std::vector<std::shared_ptr<Closable>> sessions;
  {
    MutexLock lock(state_->mu);
    for (auto& [ptr, weak] : state_->sessions) {
      if (auto s = weak.lock()) sessions.push_back(std::move(s));
    }
  }
  for (auto& s : sessions) s->shutdown();
}

std::uint64_t Server::requests_in_flight() const { return state_->in_flight.load(); }
std::uint64_t Server::connections() const { return state_->connections.load(); }

}  // namespace roost::gateway
