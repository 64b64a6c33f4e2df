#include <roost/wire/codec.h>

#include <cstring>
#include <stdexcept>

namespace roost::wire {

EnvelopeReader::EnvelopeReader(const void* data, std::size_t size) {
  if (size == 0 || size % sizeof(capnp::word) != 0) {
    KJ_FAIL_REQUIRE("frame size is not a whole number of words", size);
  }
  const auto* words = static_cast<const capnp::word*>(data);
  if (reinterpret_cast<std::uintptr_t>(data) % alignof(capnp::word) != 0) {
    copy_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
    std::memcpy(copy_.begin(), data, size);
    words = copy_.begin();
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kTraversalLimitWords;
  options.nestingLimit = kNestingLimit;
  reader_.emplace(kj::arrayPtr(words, size / sizeof(capnp::word)), options);
  // Validate the root pointer now, so a bad frame fails here rather than at first use.
  reader_->getRoot<proto::Envelope>().which();
}

kj::Array<capnp::word> encode(capnp::MessageBuilder& message) { return capnp::messageToFlatArray(message); }

std::size_t encoded_size(capnp::MessageBuilder& message) {
  return capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
}

// The stream framing of capnp/serialize.h: (segment count - 1) and each segment's size in words as
// little-endian uint32, padded to a whole word, then the segments.
void encode_to(capnp::MessageBuilder& message, void* out, std::size_t size) {
  auto segments = message.getSegmentsForOutput();
  auto* p = static_cast<unsigned char*>(out);
  std::size_t table = (segments.size() / 2 + 1) * sizeof(capnp::word);
  if (size < table) throw std::length_error("encode_to: buffer too small");
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int b = 0; b < 4; ++b) p[at + b] = static_cast<unsigned char>(v >> (8 * b));
  };
  std::memset(p, 0, table);
  put32(0, static_cast<std::uint32_t>(segments.size() - 1));
  for (std::size_t i = 0; i < segments.size(); ++i)
    put32(4 + 4 * i, static_cast<std::uint32_t>(segments[i].size()));
  std::size_t at = table;
  for (auto seg : segments) {
    auto bytes = seg.asBytes();
    if (at + bytes.size() > size) throw std::length_error("encode_to: buffer too small");
    std::memcpy(p + at, bytes.begin(), bytes.size());
    at += bytes.size();
  }
}

namespace {
template <class Set>
void number(Set set, const std::optional<std::uint64_t>& v) {
  if (v) set().setValue(*v);
}
std::optional<std::uint64_t> number(bool has, proto::Number::Reader r) {
  return has ? std::optional<std::uint64_t>(r.getValue()) : std::nullopt;
}
}  // namespace

void to_wire(proto::QueueConfig::Builder out, const QueueConfigPatch& p) {
  number([&] { return out.initVisibilityTimeoutMs(); }, p.visibility_timeout_ms);
  if (p.max_retries) out.initMaxRetries().setValue(*p.max_retries);
  number([&] { return out.initRetryDelayMs(); }, p.retry_delay_ms);
  if (p.dead_letter_queue) out.setDeadLetterQueue(text(*p.dead_letter_queue));
  number([&] { return out.initMaxMessages(); }, p.max_messages);
  number([&] { return out.initMaxBytes(); }, p.max_bytes);
  number([&] { return out.initMessageTtlMs(); }, p.message_ttl_ms);
  number([&] { return out.initDedupWindowMs(); }, p.dedup_window_ms);
  if (p.push) {
    auto t = out.initPush();
    t.setUrl(text(p.push->url));
    t.setConcurrency(p.push->concurrency);
    t.setTimeoutMs(p.push->timeout_ms);
    t.setBatchSize(p.push->batch_size);
  }
}

void to_wire(proto::QueueConfig::Builder out, const QueueConfig& c) {
  QueueConfigPatch p;
  p.visibility_timeout_ms = c.visibility_timeout_ms;
  p.max_retries = c.max_retries;
  p.retry_delay_ms = c.retry_delay_ms;
  p.dead_letter_queue = c.dead_letter_queue;
  p.max_messages = c.max_messages;
  p.max_bytes = c.max_bytes;
  p.message_ttl_ms = c.message_ttl_ms;
  p.dedup_window_ms = c.dedup_window_ms;
  p.push = c.push;
  to_wire(out, p);
}

QueueConfigPatch from_wire(proto::QueueConfig::Reader in) {
  QueueConfigPatch p;
  p.visibility_timeout_ms = number(in.hasVisibilityTimeoutMs(), in.getVisibilityTimeoutMs());
  if (in.hasMaxRetries()) {
    auto v = in.getMaxRetries().getValue();
    p.max_retries = v > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(v);
  }
  p.retry_delay_ms = number(in.hasRetryDelayMs(), in.getRetryDelayMs());
  if (in.hasDeadLetterQueue()) p.dead_letter_queue = std::string(view(in.getDeadLetterQueue()));
  p.max_messages = number(in.hasMaxMessages(), in.getMaxMessages());
  p.max_bytes = number(in.hasMaxBytes(), in.getMaxBytes());
  p.message_ttl_ms = number(in.hasMessageTtlMs(), in.getMessageTtlMs());
  if (in.hasPush()) {
    auto t = in.getPush();
    p.push =
        PushTarget{std::string(view(t.getUrl())), t.getConcurrency(), t.getTimeoutMs(), t.getBatchSize()};
  }
  p.dedup_window_ms = number(in.hasDedupWindowMs(), in.getDedupWindowMs());
  return p;
}

void to_wire(proto::QueueInfo::Builder out, const QueueInfo& info) {
  out.setName(text(info.name));
  to_wire(out.initConfig(), info.config);
  auto s = out.initStats();
  const auto& st = info.stats;
  s.setReady(st.ready);
  s.setDelayed(st.delayed);
  s.setInFlight(st.in_flight);
  s.setBlocked(st.blocked);
  s.setMessages(st.messages);
  s.setBytes(st.bytes);
  s.setOldestAgeMs(st.oldest_age_ms);
  s.setEnqueued(st.enqueued);
  s.setDeduplicated(st.deduplicated);
  s.setAcked(st.acked);
  s.setRetried(st.retried);
  s.setDeadLettered(st.dead_lettered);
  s.setDropped(st.dropped);
  s.setExpired(st.expired);
  s.setRedriven(st.redriven);
  s.setPurged(st.purged);
  out.setCreatedAtMs(info.created_at_ms);
}

QueueInfo from_wire(proto::QueueInfo::Reader in) {
  QueueInfo info;
  info.name = std::string(view(in.getName()));
  from_wire(in.getConfig()).apply_to(info.config);
  auto s = in.getStats();
  auto& st = info.stats;
  st.ready = s.getReady();
  st.delayed = s.getDelayed();
  st.in_flight = s.getInFlight();
  st.blocked = s.getBlocked();
  st.messages = s.getMessages();
  st.bytes = s.getBytes();
  st.oldest_age_ms = s.getOldestAgeMs();
  st.enqueued = s.getEnqueued();
  st.deduplicated = s.getDeduplicated();
  st.acked = s.getAcked();
  st.retried = s.getRetried();
  st.dead_lettered = s.getDeadLettered();
  st.dropped = s.getDropped();
  st.expired = s.getExpired();
  st.redriven = s.getRedriven();
  st.purged = s.getPurged();
  info.created_at_ms = in.getCreatedAtMs();
  return info;
}

}  // namespace roost::wire
