// Stable, client-facing error codes. This table is the single source of the codes that the HTTP API
// returns as `{"error":{"code":...}}` and, later, of the native protocol's ErrorCode enum: a code's
// name and number never change once released; new codes are appended.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

namespace roost {

enum class ErrorCode : std::uint16_t {
  kOk = 0,
  kMalformed = 1,         // request body or frame could not be parsed
  kInvalidArgument = 2,   // parsed, but a field has a wrong type or value
  kInvalidName = 3,       // queue (or object, channel) name breaks the naming rules
  kNotFound = 4,          // no such route or resource
  kQueueNotFound = 5,     // the named queue does not exist
  kMethodNotAllowed = 6,  // route exists, method does not
  kConflict = 7,          // request contradicts current state (e.g. DLQ loop)
  kMessageTooLarge = 8,   // one message body is larger than max_message_bytes
  kPayloadTooLarge = 9,   // the request body is larger than max_request_bytes
  kQueueFull = 10,        // queue's max_messages / max_bytes reached
  kStorageFull = 11,      // the node's storage (map size cap or disk) is full
  kUnavailable = 12,      // shutting down, or the owner is unavailable
  kInternal = 13,         // a bug or an unexpected I/O error; details are logged
  kHeaderTooLarge = 14,   // request headers exceed the limit
  kTimeout = 15,          // the request did not complete in time
  kUnauthorized = 16,     // missing or invalid credentials
  kForbidden = 17,        // credentials do not allow this
  kTooManyRequests = 18,  // connection or rate limit
};

// The stable snake_case name sent to clients.
constexpr std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kMalformed: return "malformed";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kInvalidName: return "invalid_name";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kQueueNotFound: return "queue_not_found";
    case ErrorCode::kMethodNotAllowed: return "method_not_allowed";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kMessageTooLarge: return "message_too_large";
    case ErrorCode::kPayloadTooLarge: return "payload_too_large";
    case ErrorCode::kQueueFull: return "queue_full";
    case ErrorCode::kStorageFull: return "storage_full";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kHeaderTooLarge: return "header_too_large";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kUnauthorized: return "unauthorized";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kTooManyRequests: return "too_many_requests";
  }
  return "internal";
}

// The HTTP status a code maps to; the mapping lives here so that every front end agrees.
constexpr unsigned error_http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kMalformed:
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kInvalidName: return 400;
    case ErrorCode::kUnauthorized: return 401;
    case ErrorCode::kForbidden: return 403;
    case ErrorCode::kNotFound:
    case ErrorCode::kQueueNotFound: return 404;
    case ErrorCode::kMethodNotAllowed: return 405;
    case ErrorCode::kTimeout: return 408;
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kMessageTooLarge:
    case ErrorCode::kPayloadTooLarge: return 413;
    case ErrorCode::kQueueFull:
    case ErrorCode::kTooManyRequests: return 429;
    case ErrorCode::kHeaderTooLarge: return 431;
    case ErrorCode::kInternal: return 500;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kStorageFull: return 507;
  }
  return 500;
}

// An error with a stable code and a message for humans.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// The result of anything that can fail for an outside reason, and the callback that carries it
// back from an asynchronous call.
template <class T>
using Result = std::expected<T, Error>;
template <class T>
using Callback = std::move_only_function<void(Result<T>)>;

}  // namespace roost
