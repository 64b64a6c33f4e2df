// Cloudflare Queues' HTTP API on Roost's queues (docs/cloudflare.md): what a Cloudflare Queues
// client sends to https://api.cloudflare.com/client/v4/accounts/{account_id}/queues/…, answered
// by this node with Cloudflare's field names, defaults, limits, envelope and error codes.
#pragma once

#include <roost/core/error.h>

#include <string>
#include <string_view>
#include <vector>

namespace roost::gateway {

// A Cloudflare API token the node accepts (`cf_tokens`), and the queues it grants (patterns of the
// channel grammar: "jobs", "mail.>", ">" = all).
struct CfToken {
  std::string token;
  std::vector<std::string> queues;
};

// `cf_tokens` = "TOKEN:queue,queue;TOKEN2:>" (spaces around items ignored). invalid_argument
// naming what is wrong: an empty token or grant list, a token of characters outside
// [A-Za-z0-9._~+/=-], a token given twice.
Result<std::vector<CfToken>> parse_cf_tokens(std::string_view spec);

// Cloudflare's limits, as its documentation states them.
inline constexpr std::size_t kCfMaxMessageBytes = 128 * 1024;  // one message
inline constexpr std::size_t kCfMaxBatchMessages = 100;        // messages/batch, and a pull's batch_size
inline constexpr std::size_t kCfMaxBatchBytes = 256 * 1024;    // messages/batch, all bodies
inline constexpr std::uint64_t kCfMaxDelaySeconds = 43'200;    // 12 hours
inline constexpr std::uint32_t kCfDefaultPullBatch = 5;

}  // namespace roost::gateway
