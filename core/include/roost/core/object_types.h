// The values of object requests every front end and the SDK share: a call's (or fetch's) answer and
// an HTTP request handed to an object. One definition for the Router and the C++ client alike.
#pragma once

#include <roost/core/content_type.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace roost {

// The answer of an object call; for a fetch, also its HTTP status and headers.
struct ObjectReply {
  std::string data;
  ContentType content_type = ContentType::kJson;
  // An object's answer to an HTTP request (fetch): its status and headers.
  std::uint16_t status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
};

// An HTTP request handed to an object (fetch).
struct ObjectHttpRequest {
  std::string method;
  std::string path;  // below the object's fetch prefix, starting with '/'
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  // as sent, but Authorization
  std::string body;
  std::string client_address;
  std::string claims;
};

// What a host's front code (app_routes, docs/hosts.md) answered an HTTP request: a response, or —
// for a WebSocket upgrade — the object that takes the socket.
struct FrontReply {
  ObjectReply response;
  std::string upgrade_class;  // set: attach the WebSocket to this object
  std::string upgrade_object;
};

}  // namespace roost
