// Stable, client-facing error codes, shared by the native protocol (the schema's ErrorCode enum,
// by number) and the HTTP/WebSocket API (`{"error":{"code":"queue_not_found"}}`, by name). A code's
// name and number never change once released; new codes are appended to the schema.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

#include <roost/core/roost.capnp.h>  // generated from core/schema/roost.capnp

namespace roost {

// The stable codes are the schema's enum (core/schema/roost.capnp): one list for every protocol.
// Adding an enumerant there breaks the build (-Wswitch, -Werror in CI) until the two tables below
// name and map it.
using ErrorCode = proto::ErrorCode;

// The stable snake_case name sent to clients.
constexpr std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::OK: return "ok";
    case ErrorCode::MALFORMED: return "malformed";
    case ErrorCode::INVALID_ARGUMENT: return "invalid_argument";
    case ErrorCode::INVALID_NAME: return "invalid_name";
    case ErrorCode::NOT_FOUND: return "not_found";
    case ErrorCode::QUEUE_NOT_FOUND: return "queue_not_found";
    case ErrorCode::METHOD_NOT_ALLOWED: return "method_not_allowed";
    case ErrorCode::CONFLICT: return "conflict";
    case ErrorCode::MESSAGE_TOO_LARGE: return "message_too_large";
    case ErrorCode::PAYLOAD_TOO_LARGE: return "payload_too_large";
    case ErrorCode::QUEUE_FULL: return "queue_full";
    case ErrorCode::STORAGE_FULL: return "storage_full";
    case ErrorCode::UNAVAILABLE: return "unavailable";
    case ErrorCode::INTERNAL: return "internal";
    case ErrorCode::HEADER_TOO_LARGE: return "header_too_large";
    case ErrorCode::TIMEOUT: return "timeout";
    case ErrorCode::UNAUTHORIZED: return "unauthorized";
    case ErrorCode::FORBIDDEN: return "forbidden";
    case ErrorCode::TOO_MANY_REQUESTS: return "too_many_requests";
    case ErrorCode::HELLO_REQUIRED: return "hello_required";
    case ErrorCode::CLASS_NOT_FOUND: return "class_not_found";
    case ErrorCode::ACTOR_ERROR: return "actor_error";
    case ErrorCode::CALL_TIMEOUT: return "call_timeout";
    case ErrorCode::CONNECT_REJECTED: return "connect_rejected";
    case ErrorCode::NO_REPLY: return "no_reply";
    case ErrorCode::CALL_CYCLE: return "call_cycle";
    case ErrorCode::OWNER_UNAVAILABLE: return "owner_unavailable";
    case ErrorCode::UNKNOWN_FIELD: return "unknown_field";
  }
  return "internal";
}

// The HTTP status a code maps to; the mapping lives here so that every front end agrees.
constexpr unsigned error_http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::OK: return 200;
    case ErrorCode::MALFORMED:
    case ErrorCode::INVALID_ARGUMENT:
    case ErrorCode::INVALID_NAME:
    case ErrorCode::UNKNOWN_FIELD: return 400;
    case ErrorCode::UNAUTHORIZED: return 401;
    case ErrorCode::FORBIDDEN: return 403;
    case ErrorCode::NOT_FOUND:
    case ErrorCode::QUEUE_NOT_FOUND: return 404;
    case ErrorCode::METHOD_NOT_ALLOWED: return 405;
    case ErrorCode::TIMEOUT: return 504;  // what the node waited on (a front, a peer) did not answer
    case ErrorCode::CONFLICT: return 409;
    case ErrorCode::MESSAGE_TOO_LARGE:
    case ErrorCode::PAYLOAD_TOO_LARGE: return 413;
    case ErrorCode::QUEUE_FULL:
    case ErrorCode::TOO_MANY_REQUESTS: return 429;
    case ErrorCode::HEADER_TOO_LARGE: return 431;
    case ErrorCode::INTERNAL: return 500;
    case ErrorCode::UNAVAILABLE: return 503;
    case ErrorCode::STORAGE_FULL: return 507;
    case ErrorCode::HELLO_REQUIRED: return 400;
    case ErrorCode::CLASS_NOT_FOUND: return 404;
    case ErrorCode::ACTOR_ERROR: return 500;
    case ErrorCode::CALL_TIMEOUT: return 504;
    case ErrorCode::CONNECT_REJECTED: return 403;
    case ErrorCode::NO_REPLY: return 502;
    case ErrorCode::CALL_CYCLE: return 508;
    case ErrorCode::OWNER_UNAVAILABLE: return 503;
  }
  return 500;
}

// An error with a stable code and a message for humans.
struct Error {
  ErrorCode code = ErrorCode::INTERNAL;
  std::string message;
};

// The result of anything that can fail for an outside reason, and the callback that carries it
// back from an asynchronous call.
template <class T>
using Result = std::expected<T, Error>;
template <class T>
using Callback = std::move_only_function<void(Result<T>)>;

}  // namespace roost
