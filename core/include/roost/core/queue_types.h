// Value types of the durable-queue API. Plain data, no LMDB: the Router, the gateway and the SDK
// share them.
#pragma once

#include <roost/core/content_type.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace roost {

// The longest a pull may wait for messages (HTTP `wait_ms`, native `waitMs`), in milliseconds.
inline constexpr std::uint64_t kMaxWaitMs = 20'000;

// Push delivery (docs/sidecar.md): the node POSTs the queue's messages to an HTTP service
// instead of waiting for pulls. An empty url = none (the queue is pulled).
struct PushTarget {
  std::string url;                    // http://HOST[:PORT]/path; HOST must be in push_allowed_hosts
  std::uint32_t concurrency = 8;      // requests in flight to it (1..256)
  std::uint64_t timeout_ms = 30'000;  // one request, connect to last byte (100..3600000)
  std::uint32_t batch_size = 1;       // > 1: a JSON array of up to this many messages per request (1..100)
  bool operator==(const PushTarget&) const = default;
};

// A queue's configuration. Every field's default is the value shown.
struct QueueConfig {
  std::uint64_t visibility_timeout_ms = 30'000;  // lease length when a pull does not say
  std::uint32_t max_retries = 3;                 // deliveries after the first before dead-lettering
  std::uint64_t retry_delay_ms = 0;              // default delay of a retry / expired lease
  std::string dead_letter_queue;                 // empty = drop (and count) instead
  std::uint64_t max_messages = 0;                // 0 = unlimited; else enqueue answers queue_full
  std::uint64_t max_bytes = 0;                   // 0 = unlimited; sum of body sizes
  std::uint64_t message_ttl_ms = 345'600'000;    // 4 days; 0 = never expire
  std::uint64_t dedup_window_ms = 120'000;       // how long a producer id suppresses duplicates
  PushTarget push;                               // url empty = pulled, not pushed
};

// A partial update: absent fields keep their current (or default) value.
struct QueueConfigPatch {
  std::optional<std::uint64_t> visibility_timeout_ms;
  std::optional<std::uint32_t> max_retries;
  std::optional<std::uint64_t> retry_delay_ms;
  std::optional<std::string> dead_letter_queue;  // "" clears it
  std::optional<std::uint64_t> max_messages;
  std::optional<std::uint64_t> max_bytes;
  std::optional<std::uint64_t> message_ttl_ms;
  std::optional<std::uint64_t> dedup_window_ms;
  std::optional<PushTarget> push;  // a url of "" stops pushing
  void apply_to(QueueConfig& c) const {
    if (visibility_timeout_ms) c.visibility_timeout_ms = *visibility_timeout_ms;
    if (max_retries) c.max_retries = *max_retries;
    if (retry_delay_ms) c.retry_delay_ms = *retry_delay_ms;
    if (dead_letter_queue) c.dead_letter_queue = *dead_letter_queue;
    if (max_messages) c.max_messages = *max_messages;
    if (max_bytes) c.max_bytes = *max_bytes;
    if (message_ttl_ms) c.message_ttl_ms = *message_ttl_ms;
    if (dedup_window_ms) c.dedup_window_ms = *dedup_window_ms;
    if (push) c.push = push->url.empty() ? PushTarget{} : *push;
  }
};

// Depth and lifetime counters of one queue. Depth fields are exact after every commit.
struct QueueStats {
  std::uint64_t ready = 0;      // visible now (or as soon as promoted), waiting for a pull
  std::uint64_t delayed = 0;    // waiting for a delay or retry delay
  std::uint64_t in_flight = 0;  // leased and not yet acked / retried / expired
  std::uint64_t blocked = 0;    // waiting behind an earlier message of the same ordering key
  std::uint64_t messages = 0;   // all of the above
  std::uint64_t bytes = 0;      // body bytes of all messages
  std::int64_t oldest_age_ms = 0;
  std::uint64_t enqueued = 0;
  std::uint64_t deduplicated = 0;
  std::uint64_t acked = 0;
  std::uint64_t retried = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t dropped = 0;   // dead-lettered with no DLQ configured
  std::uint64_t expired = 0;   // removed by message_ttl_ms
  std::uint64_t redriven = 0;  // moved out of this queue by redrive
  std::uint64_t purged = 0;    // deleted by purge
};

struct QueueInfo {
  std::string name;
  QueueConfig config;
  QueueStats stats;
  std::int64_t created_at_ms = 0;
};

struct NewMessage {
  std::string body;  // bytes as stored: JSON text, UTF-8 text or raw bytes
  ContentType content_type = ContentType::kJson;
  std::uint64_t delay_ms = 0;
  std::string id;   // producer id for dedup; empty = none
  std::string key;  // ordering key; empty = none
};

struct LeasedMessage {
  std::string id;
  std::string lease_id;
  std::string body;
  ContentType content_type = ContentType::kJson;
  std::uint32_t attempts = 0;     // deliveries so far, this one included
  std::int64_t timestamp_ms = 0;  // enqueue time
  std::string key;
};

struct PullOptions {
  std::uint32_t batch_size = 10;
  std::optional<std::uint64_t> visibility_timeout_ms;  // default: the queue's
  // The node's own push delivery: the only puller a queue with a push target serves (others are
  // refused with conflict). Never set from a client's request.
  bool for_push = false;
};

struct RetryRequest {
  std::string lease_id;
  std::optional<std::uint64_t> delay_ms;  // default: the queue's retry_delay_ms
};

struct AckResult {
  std::uint32_t acked = 0;
  std::uint32_t retried = 0;
  std::vector<std::string> unknown;  // lease ids that no longer hold
};

struct ExtendResult {
  std::uint32_t extended = 0;
  std::vector<std::string> unknown;  // lease ids that no longer hold
};

}  // namespace roost
