// Records and keys of the queue tables (private to durable/). Layouts are documented in
// docs/storage.md; a change of layout bumps the record's version byte.
//
//   queues  name                          -> QueueRecord
//   meta    "next_qid" | "next_seq"        -> u32 | u64
//   body    seq(8)                         -> BodyRecord        (immutable, shared by moves)
//   state   qid(4) seq(8)                  -> MsgState (40 B)   (one per message, its queue)
//   ready   qid(4) seq(8)                  -> ""                (visible now, FIFO by seq)
//   due     qid(4) at(8) seq(8)            -> ""                (delayed, or leased until `at`)
//   keyq    qid(4) len(2) key seq(8)       -> ""                (pending messages of a key)
//   dedup   qid(4) id                      -> seq(8) expires(8)
//   dedupx  qid(4) expires(8) id           -> ""                (dedup expiry order)
#pragma once

#include <roost/core/queue_types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec.h"

namespace roost::durable {

enum class MsgStateKind : std::uint8_t { kReady = 0, kDelayed = 1, kLeased = 2, kBlocked = 3 };

struct MsgState {
  MsgStateKind kind = MsgStateKind::kReady;
  bool has_key = false;
  std::uint32_t attempts = 0;
  std::int64_t visible_at = 0;  // due time when delayed/leased; wanted visibility when blocked
  std::int64_t expires_at = 0;  // 0 = never
  std::uint64_t lease_nonce = 0;
  std::uint32_t body_size = 0;

  std::string encode() const;
  static std::optional<MsgState> decode(std::string_view in);
};

struct BodyRecord {
  ContentType content_type = ContentType::kJson;
  std::int64_t enqueued_at = 0;
  std::string_view key;
  std::string_view id;
  std::string_view body;

  std::string encode() const;
  static std::optional<BodyRecord> decode(std::string_view in);  // views into `in`
};

struct QueueRecord {
  std::uint32_t qid = 0;
  std::int64_t created_at = 0;
  QueueConfig config;
  QueueStats counters;  // oldest_age_ms is computed on read, not stored

  std::string encode() const;
  static std::optional<QueueRecord> decode(std::string_view in);
};

namespace keys {
inline std::string qid(std::uint32_t q) {
  std::string k;
  codec::put_be(k, q, 4);
  return k;
}
inline std::string seq(std::uint64_t s) {
  std::string k;
  codec::put_be(k, s, 8);
  return k;
}
inline std::string qseq(std::uint32_t q, std::uint64_t s) {
  std::string k;
  k.reserve(12);
  codec::put_be(k, q, 4);
  codec::put_be(k, s, 8);
  return k;
}
inline std::string due(std::uint32_t q, std::int64_t at, std::uint64_t s) {
  std::string k;
  k.reserve(20);
  codec::put_be(k, q, 4);
  codec::put_be(k, static_cast<std::uint64_t>(at < 0 ? 0 : at), 8);
  codec::put_be(k, s, 8);
  return k;
}
inline std::string key_prefix(std::uint32_t q, std::string_view key) {
  std::string k;
  codec::put_be(k, q, 4);
  codec::put_be(k, key.size(), 2);
  k.append(key);
  return k;
}
inline std::string dedup(std::uint32_t q, std::string_view id) {
  std::string k;
  codec::put_be(k, q, 4);
  k.append(id);
  return k;
}
inline std::string dedupx(std::uint32_t q, std::int64_t expires, std::string_view id) {
  std::string k;
  codec::put_be(k, q, 4);
  codec::put_be(k, static_cast<std::uint64_t>(expires), 8);
  k.append(id);
  return k;
}
inline std::uint32_t qid_of(std::string_view k) { return static_cast<std::uint32_t>(codec::get_be(k, 0, 4)); }
inline std::uint64_t tail_seq(std::string_view k) { return codec::get_be(k, k.size() - 8, 8); }
}  // namespace keys

// Message ids are the 16-hex-digit node-wide sequence; lease ids add a random nonce.
std::string message_id(std::uint64_t seq);
std::string lease_id(std::uint64_t seq, std::uint64_t nonce);
std::optional<std::uint64_t> parse_message_id(std::string_view id);
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_lease_id(std::string_view lease);

}  // namespace roost::durable
