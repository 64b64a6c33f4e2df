#include "queue_records.h"

#include <charconv>

namespace roost::durable {

namespace {
constexpr std::uint8_t kStateVersion = 1;
constexpr std::uint8_t kBodyVersion = 1;
constexpr std::uint8_t kQueueVersion = 1;

std::optional<std::uint64_t> parse_hex16(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

void hex16(std::string& out, std::uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) out.push_back(kDigits[(v >> (4 * i)) & 0xf]);
}
}  // namespace

std::string MsgState::encode() const {
  std::string out;
  out.reserve(40);
  codec::Writer w(out);
  w.num(kStateVersion)
      .num(static_cast<std::uint8_t>(kind))
      .num(static_cast<std::uint8_t>(has_key ? 1 : 0))
      .num(std::uint8_t{0})
      .num(attempts)
      .num(visible_at)
      .num(expires_at)
      .num(lease_nonce)
      .num(body_size)
      .num(std::uint32_t{0});
  return out;
}

std::optional<MsgState> MsgState::decode(std::string_view in) {
  codec::Reader r(in);
  if (r.num<std::uint8_t>() != kStateVersion) return std::nullopt;
  MsgState s;
  s.kind = static_cast<MsgStateKind>(r.num<std::uint8_t>());
  s.has_key = r.num<std::uint8_t>() != 0;
  r.num<std::uint8_t>();
  s.attempts = r.num<std::uint32_t>();
  s.visible_at = r.num<std::int64_t>();
  s.expires_at = r.num<std::int64_t>();
  s.lease_nonce = r.num<std::uint64_t>();
  s.body_size = r.num<std::uint32_t>();
  if (!r.ok()) return std::nullopt;
  return s;
}

std::string BodyRecord::encode() const {
  std::string out;
  out.reserve(16 + key.size() + id.size() + body.size());
  codec::Writer w(out);
  w.num(kBodyVersion)
      .num(static_cast<std::uint8_t>(content_type))
      .str16(key)
      .str16(id)
      .num(enqueued_at)
      .bytes(body);
  return out;
}

std::optional<BodyRecord> BodyRecord::decode(std::string_view in) {
  codec::Reader r(in);
  if (r.num<std::uint8_t>() != kBodyVersion) return std::nullopt;
  BodyRecord b;
  b.content_type = static_cast<ContentType>(r.num<std::uint8_t>());
  b.key = r.str16();
  b.id = r.str16();
  b.enqueued_at = r.num<std::int64_t>();
  b.body = r.rest();
  if (!r.ok()) return std::nullopt;
  return b;
}

std::string QueueRecord::encode() const {
  std::string out;
  codec::Writer w(out);
  const auto& c = config;
  const auto& s = counters;
  w.num(kQueueVersion).num(qid).num(created_at);
  w.num(c.visibility_timeout_ms).num(c.max_retries).num(c.retry_delay_ms).str16(c.dead_letter_queue);
  w.num(c.max_messages).num(c.max_bytes).num(c.message_ttl_ms).num(c.dedup_window_ms);
  for (std::uint64_t v :
       {s.ready, s.delayed, s.in_flight, s.blocked, s.messages, s.bytes, s.enqueued, s.deduplicated, s.acked,
        s.retried, s.dead_lettered, s.dropped, s.expired, s.redriven}) {
    w.num(v);
  }
  // Appended fields: a record without them (written before they existed) reads them as 0.
  w.num(s.purged);
  w.str16(c.push.url).num(c.push.concurrency).num(c.push.timeout_ms).num(c.push.batch_size);
  return out;
}

std::optional<QueueRecord> QueueRecord::decode(std::string_view in) {
  codec::Reader r(in);
  if (r.num<std::uint8_t>() != kQueueVersion) return std::nullopt;
  QueueRecord q;
  q.qid = r.num<std::uint32_t>();
  q.created_at = r.num<std::int64_t>();
  auto& c = q.config;
  c.visibility_timeout_ms = r.num<std::uint64_t>();
  c.max_retries = r.num<std::uint32_t>();
  c.retry_delay_ms = r.num<std::uint64_t>();
  c.dead_letter_queue = std::string(r.str16());
  c.max_messages = r.num<std::uint64_t>();
  c.max_bytes = r.num<std::uint64_t>();
  c.message_ttl_ms = r.num<std::uint64_t>();
  c.dedup_window_ms = r.num<std::uint64_t>();
  auto& s = q.counters;
  for (std::uint64_t* v :
       {&s.ready, &s.delayed, &s.in_flight, &s.blocked, &s.messages, &s.bytes, &s.enqueued, &s.deduplicated,
        &s.acked, &s.retried, &s.dead_lettered, &s.dropped, &s.expired, &s.redriven}) {
    *v = r.num<std::uint64_t>();
  }
  if (!r.done()) s.purged = r.num<std::uint64_t>();
  if (!r.done()) {
    c.push.url = std::string(r.str16());
    c.push.concurrency = r.num<std::uint32_t>();
    c.push.timeout_ms = r.num<std::uint64_t>();
    c.push.batch_size = r.num<std::uint32_t>();
  }
  if (!r.ok()) return std::nullopt;
  return q;
}

std::string message_id(std::uint64_t seq) {
  std::string out;
  out.reserve(16);
  hex16(out, seq);
  return out;
}

std::string lease_id(std::uint64_t seq, std::uint64_t nonce) {
  std::string out;
  out.reserve(33);
  hex16(out, seq);
  out.push_back('-');
  hex16(out, nonce);
  return out;
}

std::optional<std::uint64_t> parse_message_id(std::string_view id) { return parse_hex16(id); }

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_lease_id(std::string_view lease) {
  if (lease.size() != 33 || lease[16] != '-') return std::nullopt;
  auto seq = parse_hex16(lease.substr(0, 16));
  auto nonce = parse_hex16(lease.substr(17));
  if (!seq || !nonce) return std::nullopt;
  return std::pair{*seq, *nonce};
}

}  // namespace roost::durable
