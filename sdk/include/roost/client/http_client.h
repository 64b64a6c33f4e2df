// A small blocking HTTP/1.1 client for Roost's REST API, used by the CLI and the tests. One
// keep-alive connection per HttpClient; not thread-safe (use one per thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace roost::client {

struct HttpResponse {
  unsigned status = 0;
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // every response header, as received

  // The first header called `name` (ASCII case-insensitive), or "".
  std::string header(std::string_view name) const;
};

class HttpClient {
 public:
  // base_url: http://HOST:PORT (a path prefix is not supported).
  explicit HttpClient(const std::string& base_url,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request, reconnecting once if the kept-alive connection was closed.
  // Throws std::system_error when the server cannot be reached or the exchange fails.
  HttpResponse request(const std::string& method, const std::string& target, const std::string& body = {},
                       const std::string& content_type = "application/json");
  HttpResponse get(const std::string& target) { return request("GET", target); }
  HttpResponse post(const std::string& target, const std::string& body) {
    return request("POST", target, body);
  }
  HttpResponse put(const std::string& target, const std::string& body) {
    return request("PUT", target, body);
  }
  HttpResponse del(const std::string& target) { return request("DELETE", target); }

  // A header sent with every request from now on (replacing one of that name, Host included);
  // an empty value removes it again. E.g. set_header("Authorization", "Bearer " + token).
  void set_header(const std::string& name, const std::string& value);

  // Sends raw bytes and returns what the server answered before closing (for malformed-input
  // tests).
  std::string raw_exchange(const std::string& bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace roost::client
