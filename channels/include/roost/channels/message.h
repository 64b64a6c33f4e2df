// A published channel message, immutable once built and shared by every recipient.
#pragma once

#include <roost/wire/content_type.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
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

  // {"op":"message","channel":…,"data":…,"offset":…,"epoch":…} — the browser protocol's frame,
  // built on first use (only browser subscribers need it) and shared. Text data is sent as a JSON
  // string; bytes as a base64 string with "encoding":"base64".
  std::shared_ptr<const std::string> frame() const;

  // Presence events: {"op":"join"|"leave","channel":…,"subscribers":n}.
  // "id: <epoch>:<offset>\ndata: <frame>\n\n" — the SSE event, built on first use and shared
  // (presence events: "event: join|leave\ndata: <frame>\n\n", no id).
  std::shared_ptr<const std::string> sse_frame() const;

 private:
  mutable std::once_flag frame_once_;
  mutable std::shared_ptr<const std::string> frame_;
  mutable std::once_flag sse_once_;
  mutable std::shared_ptr<const std::string> sse_frame_;
};

using MessagePtr = std::shared_ptr<const Message>;

MessagePtr make_message(std::string channel, std::string data, std::uint64_t offset,
                        std::string epoch, std::int64_t timestamp_ms,
                        ContentType content_type = ContentType::kJson, std::size_t audience = 0);
MessagePtr make_presence(MessageKind kind, std::string channel, std::uint64_t subscribers,
                         std::int64_t timestamp_ms, std::size_t audience = 0);

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
};

}  // namespace roost::channels
