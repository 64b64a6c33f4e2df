// The REST routes: one request in, one response out (possibly later, from another thread).
#pragma once

#include <roost/core/router.h>

#include <boost/beast/http.hpp>

#include <functional>

#include "state.h"

namespace roost::gateway {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
// A response built later: the session runs it on its own strand, so that encoding never happens
// on a broker thread (the committer).
using MakeResponse = std::move_only_function<Response()>;
using Reply = std::move_only_function<void(MakeResponse)>;

// Answers `req` through `reply`, exactly once, from any thread. `gone` is set by the session when
// its client goes away before the answer (a long poll then leases nothing more).
void route(const Request& req, const boost::asio::ip::address& remote, Server::State& state, Reply reply,
           std::shared_ptr<const std::atomic<bool>> gone = nullptr);

// The bearer token of a request: `Authorization: Bearer …`, else `?token=…` when `allow_query`
// (WebSocket and SSE only: browsers cannot set headers there; elsewhere a token in a URL ends up
// in logs and histories); empty if none.
std::string request_token(const Request& req, bool allow_query);
// A query parameter's decoded value, or "" when absent.
std::string query_param(std::string_view target, std::string_view name);
// The channel (pattern) of /v1/channels/{channel}<suffix>, decoded.
Result<std::string> channel_from_path(std::string_view path, std::string_view suffix);

// The class and name of /v1/objects/{class}/{name}<suffix>, decoded; nullopt when the path is
// not of that shape (ok = false with `error` when it is, but cannot be decoded).
struct ObjectPath {
  bool ok = true;
  Error error;
  std::string object_class;
  std::string name;
};
std::optional<ObjectPath> object_from_path(std::string_view path, std::string_view suffix);

// Without an auth_secret, the Host header must be an address, `localhost`, or one of
// allowed_hosts (DNS rebinding); and a state-changing request (or a WebSocket: `state_changing`)
// that carries an Origin must come from an allowed one (cross-site requests). The refusal, or
// nullopt.
std::optional<Error> check_host_and_origin(const Request& req, const Server::State& state,
                                           bool state_changing);
// Whether `host` (a Host header: name or address, optional port) names this node.
bool host_allowed(std::string_view host, const Server::State& state);

Response error_response(const Error& e, unsigned version);
// An object's (or a host's front code's) HTTP answer as our response: its status and headers, but
// Content-Length and hop-by-hop ones. Its bug, answered 500 actor_error: a status out of 200–599
// (1xx is interim: the body would be read as the next responses), a body with 204 or 304, a header
// name that is not a token, a value with a control character, headers over kMaxObjectHeaderBytes.
constexpr std::size_t kMaxObjectHeaderBytes = 64 * 1024;
Response object_response(Result<ObjectReply> r, unsigned version, bool head);
// The request as an object or a host's front code sees it (app_routes: the whole path).
ObjectHttpRequest object_request(const Request& req, std::string path, const boost::asio::ip::address& remote,
                                 const Server::State& state, std::string claims);
std::string gateway_metrics(const Server::State& state);

}  // namespace roost::gateway
