// The channels vocabulary every module may use: a published message (immutable once built and
// shared by every recipient), the Subscriber interface, and the value types of subscribe, publish,
// presence and per-namespace settings. The Hub that implements them lives in channels/.
#pragma once

#include <roost/core/content_type.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace roost::channels {

// A channel's data message, or a presence event (join / leave of a direct subscriber) in a
// namespace with join_leave on. Presence events have no offset and are not kept in history.
enum class MessageKind : std::uint8_t { kData = 0, kJoin = 1, kLeave = 2 };

struct Message {
  MessageKind kind = MessageKind::kData;
  std::uint64_t subscribers = 0;  // join / leave: direct subscribers of the channel after it
  std::string channel;
  std::string data;  // as published: JSON text (validated by the front end), UTF-8 text or bytes
  ContentType content_type = ContentType::kJson;
  std::uint64_t offset = 0;
  std::string epoch;
  std::int64_t timestamp_ms = 0;
  // How many subscriptions the publish reached (0 = not known). A hint for delivery: front ends
  // hand small fan-outs to their connections at once and gather large ones.
  std::size_t audience = 0;
  // A copy of a message published on another node of the mesh: mesh links never pass it on (a
  // publish crosses the mesh at most once).
  bool relayed = false;
  // (mesh) A presence event the channel's home announced for a subscription made on node `origin`
  // (id `origin_subscription` there): that node does not tell the subscriber about itself.
  std::string origin;
  std::uint64_t origin_subscription = 0;

  // Encodings of this message built by a front end on first use and shared by every recipient
  // of that front end (the gateway keeps its WebSocket and SSE frames here, so a fan-out to ten
  // thousand browsers formats the message once). Slot numbers belong to the front end that uses
  // them; this module knows nothing of their formats. Thread-safe: the first caller of a slot
  // builds it, concurrent callers wait for it.
  static constexpr std::size_t kFrameSlots = 2;
  using FrameBuilder = std::shared_ptr<const std::string> (*)(const Message&);
  std::shared_ptr<const std::string> frame(std::size_t slot, FrameBuilder build) const {
    std::call_once(frame_once_[slot], [&] { frames_[slot] = build(*this); });
    return frames_[slot];
  }

 private:
  mutable std::array<std::once_flag, kFrameSlots> frame_once_;
  mutable std::array<std::shared_ptr<const std::string>, kFrameSlots> frames_;
};

using MessagePtr = std::shared_ptr<const Message>;

MessagePtr make_message(std::string channel, std::string data, std::uint64_t offset, std::string epoch,
                        std::int64_t timestamp_ms, ContentType content_type = ContentType::kJson,
                        std::size_t audience = 0, bool relayed = false);
MessagePtr make_presence(MessageKind kind, std::string channel, std::uint64_t subscribers,
                         std::int64_t timestamp_ms, std::size_t audience = 0, std::string origin = {},
                         std::uint64_t origin_subscription = 0, bool relayed = false);

// Receives messages. deliver() is called on the publisher's thread, possibly concurrently from
// several; it must be thread-safe and must not block (hand the message to your own strand).
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void deliver(const MessagePtr& message) = 0;
  // A run of one channel's messages, in order. Same rules as deliver().
  virtual void deliver_many(const std::vector<MessagePtr>& messages) {
    for (const auto& m : messages) deliver(m);
  }
  // A peer node's interest (the mesh), not a client: not counted in presence, not announced.
  virtual bool watcher() const { return false; }
};

enum class SlowPolicy {
  kDrop,        // drop new messages while full; tell the client how many it lost
  kDisconnect,  // close the connection when full
};

// Settings for the channels under a subject prefix ("" = every channel). Defaults shown.
struct NamespaceConfig {
  std::string prefix;
  std::size_t history_size = 0;      // messages kept per channel for resumption
  std::uint64_t history_ttl_ms = 0;  // 0 = kept until pushed out by newer ones
  SlowPolicy policy = SlowPolicy::kDrop;
  std::size_t buffer_messages = 1024;  // per-subscriber buffer
  std::size_t buffer_bytes = 1u << 20;
  // Direct subscribers of a channel (not wildcard watchers) joining and leaving are announced to
  // the channel's subscribers as join / leave events carrying the new count.
  bool join_leave = false;
};

struct PublishResult {
  std::uint64_t offset = 0;
  std::string epoch;
  std::size_t subscribers = 0;
};

// Where a new subscription starts, besides live messages.
struct Since {
  std::string epoch;
  std::uint64_t offset = 0;  // the last offset the client has
  // Instead of epoch/offset: replay up to this many of the latest kept messages (a fresh client
  // showing recent history). Never a reset.
  std::size_t recent = 0;
};

struct SubscribeResult {
  std::uint64_t id = 0;
  // With `since`: true when the gap could not be filled (other epoch, or history too short);
  // the missed messages that could be are delivered before any live one.
  bool reset = false;
  std::string epoch;
  std::uint64_t offset = 0;  // the channel's latest offset at subscription
  std::size_t recovered = 0;
};

struct Presence {
  std::size_t subscribers = 0;  // subscribers with a pattern matching the channel
  std::size_t direct = 0;       // subscriptions to exactly this channel
};

// One message of a batch publish: its data and content type.
using Payload = std::pair<std::string, ContentType>;

}  // namespace roost::channels
