// Helpers for integration tests: a running roost binary plus a JSON-speaking HTTP client.
#pragma once

#include <roost/client/http_client.h>

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "../support/roost_process.h"
#include "../support/temp_dir.h"

namespace roost::test {

namespace json = boost::json;

inline json::value body_json(const client::HttpResponse& r) {
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  INFO("body: " << r.body);
  REQUIRE_FALSE(ec);
  return v;
}

// The stable error code of an error response.
inline std::string error_code(const client::HttpResponse& r) {
  auto v = body_json(r);
  return std::string(v.at("error").at("code").as_string());
}

class Server {
 public:
  explicit Server(std::vector<std::string> args = {})
      : proc_(std::make_unique<RoostProcess>(dir_.path() / "data", std::move(args))),
        http_(std::make_unique<client::HttpClient>(proc_->url())) {}

  client::HttpClient& http() { return *http_; }
  RoostProcess& proc() { return *proc_; }
  const TempDir& dir() const { return dir_; }
  void restart(int sig = SIGTERM) {
    proc_->restart(sig);
    http_ = std::make_unique<client::HttpClient>(proc_->url());
  }

  client::HttpResponse put_queue(const std::string& q, const std::string& config = "{}") {
    return http().put("/v1/queues/" + q, config);
  }
  client::HttpResponse send(const std::string& q, const std::string& body) {
    return http().post("/v1/queues/" + q + "/messages", body);
  }
  client::HttpResponse pull(const std::string& q, const std::string& body = "{}") {
    return http().post("/v1/queues/" + q + "/messages/pull", body);
  }
  client::HttpResponse ack(const std::string& q, const std::string& body) {
    return http().post("/v1/queues/" + q + "/messages/ack", body);
  }
  // The messages array of a successful pull.
  json::array pull_messages(const std::string& q, const std::string& body = "{}") {
    auto r = pull(q, body);
    INFO(r.body);
    REQUIRE(r.status == 200);
    return body_json(r).at("messages").as_array();
  }
  json::object stats(const std::string& q) {
    auto r = http().get("/v1/queues/" + q);
    INFO(r.body);
    REQUIRE(r.status == 200);
    return body_json(r).at("stats").as_object();
  }
  void ack_leases(const std::string& q, const json::array& messages) {
    json::array acks;
    for (const auto& m : messages) acks.push_back(json::object{{"lease_id", m.at("lease_id")}});
    auto r = ack(q, json::serialize(json::object{{"acks", acks}}));
    REQUIRE(r.status == 200);
  }

 private:
  TempDir dir_{"roost-it"};
  std::unique_ptr<RoostProcess> proc_;
  std::unique_ptr<client::HttpClient> http_;
};

inline std::string lease_of(const json::value& m) { return std::string(m.at("lease_id").as_string()); }

}  // namespace roost::test
