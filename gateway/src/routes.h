// The REST routes: one request in, one response out (possibly later, from another thread).
#pragma once

#include <roost/broker/router.h>

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

// Answers `req` through `reply`, exactly once, from any thread.
void route(const Request& req, Server::State& state, Reply reply);

Response error_response(const Error& e, unsigned version);
std::string gateway_metrics(const Server::State& state);

}  // namespace roost::gateway
