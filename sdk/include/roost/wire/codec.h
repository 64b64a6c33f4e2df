// Helpers shared by both ends of the native protocol: turning an Envelope into a frame and back,
// and converting the queue value types to and from their schema structs.
#pragma once

#include <roost/core/error.h>
#include <roost/core/queue_types.h>
#include <roost/core/roost.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roost::wire {

// Limits applied to every decoded envelope: a hostile frame can't make the reader walk more.
inline constexpr std::uint64_t kTraversalLimitWords = 8u << 20;  // 64 MiB
inline constexpr int kNestingLimit = 16;

// Reads one Envelope from a frame. The frame's bytes must outlive the reader; an unaligned frame is
// copied. Throws kj::Exception when the frame is not a valid message (callers answer `malformed`).
class EnvelopeReader {
 public:
  EnvelopeReader(const void* data, std::size_t size);
  proto::Envelope::Reader get() { return reader_->getRoot<proto::Envelope>(); }

 private:
  kj::Array<capnp::word> copy_;
  std::optional<capnp::FlatArrayMessageReader> reader_;
};

// The builder's message as one flat frame.
kj::Array<capnp::word> encode(capnp::MessageBuilder& message);
// The same frame written straight into a caller's buffer (one copy, no temporary): the size it
// needs, then the writing. `out` must hold encoded_size() bytes.
std::size_t encoded_size(capnp::MessageBuilder& message);
void encode_to(capnp::MessageBuilder& message, void* out, std::size_t size);

inline proto::ContentType to_wire(ContentType t) { return static_cast<proto::ContentType>(t); }
inline ContentType from_wire(proto::ContentType t) {
  auto v = static_cast<unsigned>(t);
  return v <= 2 ? static_cast<ContentType>(v) : ContentType::kBytes;
}
inline std::string_view view(capnp::Text::Reader t) { return {t.begin(), t.size()}; }
inline capnp::Text::Reader text(std::string_view s) { return capnp::Text::Reader(s.data(), s.size()); }

// Fills a freshly initialised List(Text) with `items`.
inline void set_texts(capnp::List<capnp::Text>::Builder out, const std::vector<std::string>& items) {
  for (unsigned i = 0; i < items.size(); ++i) out.set(i, text(items[i]));
}

void to_wire(proto::QueueConfig::Builder out, const QueueConfigPatch& patch);
void to_wire(proto::QueueConfig::Builder out, const QueueConfig& config);
QueueConfigPatch from_wire(proto::QueueConfig::Reader in);
void to_wire(proto::QueueInfo::Builder out, const QueueInfo& info);
QueueInfo from_wire(proto::QueueInfo::Reader in);

}  // namespace roost::wire
