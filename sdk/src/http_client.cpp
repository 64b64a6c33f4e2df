#include "roost/client/http_client.h"

#include <roost/core/http_headers.h>

#include <algorithm>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace roost::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpClient::Impl {
  asio::io_context io;
  std::string host;
  std::vector<std::pair<std::string, std::string>> headers;  // set_header
  std::string port;
  std::chrono::milliseconds timeout;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  void connect() {
    tcp::resolver resolver(io);
    stream.emplace(io);
    stream->expires_after(timeout);
    stream->connect(resolver.resolve(host, port));
    buffer.clear();
  }

  // Runs the io_context until the operation finishes (so the stream's timeout applies).
  template <class Op>
  void run(Op op) {
    beast::error_code result;
    bool done = false;
    op([&](beast::error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    io.restart();
    while (!done && io.run_one() > 0) {
    }
    if (result) throw std::system_error(result);
  }
};

HttpClient::HttpClient(const std::string& base_url, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  std::string rest = base_url;
  if (rest.starts_with("http://")) rest = rest.substr(7);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    impl_->host = rest;
    impl_->port = "80";
  } else {
    impl_->host = rest.substr(0, colon);
    impl_->port = rest.substr(colon + 1);
  }
  if (impl_->host.empty()) throw std::invalid_argument("bad url: " + base_url);
  impl_->timeout = timeout;
}

HttpClient::~HttpClient() = default;

void HttpClient::set_header(const std::string& name, const std::string& value) {
  auto& h = impl_->headers;
  std::erase_if(h, [&](const auto& p) { return p.first == name; });
  if (!value.empty()) h.emplace_back(name, value);
}

HttpResponse HttpClient::request(const std::string& method, const std::string& target,
                                 const std::string& body, const std::string& content_type) {
  auto& d = *impl_;
  for (int attempt = 0;; ++attempt) {
    bool fresh = false;
    if (!d.stream) {
      d.connect();
      fresh = true;
    }
    try {
      http::request<http::string_body> req{http::string_to_verb(method), target, 11};
      req.set(http::field::host, d.port == "80" ? d.host : d.host + ":" + d.port);  // as browsers send it
      req.set(http::field::user_agent, "roost-cli");
      for (const auto& [name, value] : d.headers) req.set(name, value);
      if (!body.empty() || method == "POST" || method == "PUT") {
        req.set(http::field::content_type, content_type);
        req.body() = body;
      }
      req.keep_alive(true);
      req.prepare_payload();
      d.stream->expires_after(d.timeout);
      d.run([&](auto handler) { http::async_write(*d.stream, req, handler); });
      http::response_parser<http::string_body> parser;
      parser.body_limit(1ull << 30);
      d.stream->expires_after(d.timeout);
      d.run([&](auto handler) { http::async_read(*d.stream, d.buffer, parser, handler); });
      auto res = parser.release();
      HttpResponse out{
          res.result_int(), std::move(res.body()), std::string(res[http::field::content_type]), {}};
      for (const auto& f : res)
        out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      if (!res.keep_alive()) d.stream.reset();
      return out;
    } catch (const std::system_error&) {
      d.stream.reset();
      if (fresh || attempt > 0) throw;  // a fresh connection failing is a real failure
    }
  }
}

std::string HttpClient::raw_exchange(const std::string& bytes) {
  auto& d = *impl_;
  d.connect();
  d.run([&](auto handler) { asio::async_write(*d.stream, asio::buffer(bytes), handler); });
  std::string out;
  char chunk[4096];
  for (;;) {
    beast::error_code ec;
    std::size_t n = 0;
    bool done = false;
    d.stream->expires_after(d.timeout);
    d.stream->async_read_some(asio::buffer(chunk), [&](beast::error_code e, std::size_t got) {
      ec = e;
      n = got;
      done = true;
    });
    d.io.restart();
    while (!done && d.io.run_one() > 0) {
    }
    out.append(chunk, n);
    if (ec) break;
  }
  d.stream.reset();
  return out;
}

std::string HttpResponse::header(std::string_view name) const {
  return std::string(find_header(headers, name));
}

}  // namespace roost::client
