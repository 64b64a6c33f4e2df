// JSON shapes of the HTTP queue API (also printed by the CLI): request bodies in, response bodies out. Every parse failure
// is an Error with a stable code (malformed = not JSON, invalid_argument = wrong field).
#pragma once

#include <roost/durable/queue_types.h>
#include <roost/wire/error.h>

#include <cstdint>
#include <expected>
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

inline constexpr std::uint64_t kMaxWaitMs = 20'000;

Parsed<QueueConfigPatch> parse_queue_config(std::string_view body);
Parsed<std::vector<NewMessage>> parse_enqueue(std::string_view body, std::uint64_t max_message_bytes);
Parsed<PullRequest> parse_pull(std::string_view body);
Parsed<AckRequest> parse_ack(std::string_view body);
Parsed<RedriveRequest> parse_redrive(std::string_view body);

std::string encode_queue(const QueueInfo& q);
std::string encode_queues(const std::vector<QueueInfo>& qs);
std::string encode_ids(const std::vector<std::string>& ids);
std::string encode_messages(const std::vector<LeasedMessage>& ms);
std::string encode_ack(const AckResult& r);
std::string encode_error(const Error& e);

}  // namespace roost::gateway
