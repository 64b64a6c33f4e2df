// JSON shapes of the HTTP queue API (also printed by the CLI): request bodies in, response bodies out. Every
// parse failure is an Error with a stable code (malformed = not JSON, invalid_argument = wrong field).
#pragma once

#include <roost/core/error.h>
#include <roost/core/queue_types.h>
#include <roost/core/utf8.h>

#include <boost/json/object.hpp>

#include <cstdint>
#include <expected>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roost::gateway {

template <class T>
using Parsed = std::expected<T, Error>;

struct PullRequest {
  PullOptions options;
  std::uint64_t wait_ms = 0;
};

struct AckRequest {
  std::vector<std::string> acks;
  std::vector<RetryRequest> retries;
};

struct RedriveRequest {
  std::string to;
  std::uint64_t max = 0;
};

// What one JSON text from a client may hold. Checked by a streaming pass that builds nothing
// (memory O(depth)), so a request is refused before its tree is built.
struct JsonLimits {
  std::size_t max_depth = 64;               // nesting of arrays and objects
  std::size_t max_values = 250'000;         // scalars, arrays and objects, all counted
  std::size_t max_string_bytes = SIZE_MAX;  // one string or key
};
inline constexpr JsonLimits kRequestJsonLimits{};

// Checks that `text` is one JSON value within `limits` whose numbers survive a round trip
// through the node: an integer beyond 64 bits or a number out of double range (1e400) is refused
// (invalid_argument) rather than rounded or re-emitted as something that is not JSON. Errors:
// malformed (not JSON, or invalid UTF-8 in a string), invalid_argument (numbers, depth),
// payload_too_large (too many values), message_too_large (a string over max_string_bytes).
std::optional<Error> check_json(std::string_view text, const JsonLimits& limits = kRequestJsonLimits);

// Nothing a client sends is silently ignored: unknown_field naming the first key of `o` that
// `known` does not list (`what` says whose field it is: "a message", "an ack"…).
std::optional<Error> unknown_field(const boost::json::object& o,
                                   std::initializer_list<std::string_view> known,
                                   std::string_view what = "the request body");

Parsed<QueueConfigPatch> parse_queue_config(std::string_view body);
// Each parse first runs check_json on the body (strings bounded by the request's own limits).
Parsed<std::vector<NewMessage>> parse_enqueue(std::string_view body, std::uint64_t max_message_bytes);
Parsed<PullRequest> parse_pull(std::string_view body);
Parsed<AckRequest> parse_ack(std::string_view body);
Parsed<RedriveRequest> parse_redrive(std::string_view body);
// A body that takes no fields (empty, or {}).
Parsed<bool> parse_empty(std::string_view body);
// POST /v1/queues/{q}/messages/peek: {"batch_size": 1..1000 (10)}.
Parsed<std::uint32_t> parse_peek(std::string_view body);

std::string encode_queue(const QueueInfo& q);
std::string encode_queues(const std::vector<QueueInfo>& qs);
std::string encode_ids(const std::vector<std::string>& ids);
// [{"id","lease_id","body","content_type","attempts","timestamp_ms","key"}…]: bodies as stored
// (json inline, text as a string, bytes base64); "lease_id" only `with_leases` and when it has one.
std::string encode_message_array(const std::vector<LeasedMessage>& ms, bool with_leases);
// {"messages":[…]} (a message without a lease id — peeked — has no "lease_id"), with
// "backlog" (the queue's unacknowledged messages) when given.
std::string encode_messages(const std::vector<LeasedMessage>& ms,
                            std::optional<std::uint64_t> backlog = std::nullopt);
std::string encode_ack(const AckResult& r);
std::string encode_error(const Error& e);

}  // namespace roost::gateway
