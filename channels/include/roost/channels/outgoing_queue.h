// The bounded outgoing buffer of one subscriber connection, with the slow-consumer policy.
// Not thread-safe: it lives on its session's strand.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include <roost/core/channel_types.h>

namespace roost::channels {

class OutgoingQueue {
 public:
  enum class Push { kQueued, kDropped, kDisconnect };

  // Defaults: 1024 messages / 1 MiB.
  OutgoingQueue(std::size_t max_messages = 1024, std::size_t max_bytes = 1u << 20);

  // A channel message: refused by `policy` when the buffer is full.
  Push push(std::shared_ptr<const std::string> frame, SlowPolicy policy);
  // A control frame (ok, error, lagged, reset): always queued; the limits bound messages only.
  void push_control(std::shared_ptr<const std::string> frame);

  bool empty() const { return frames_.empty(); }
  std::size_t size() const { return frames_.size(); }
  std::size_t bytes() const { return bytes_; }
  const std::shared_ptr<const std::string>& front() const { return frames_.front(); }
  void pop();
  // The first frames, up to `max_bytes` (at least one), joined by `separator`; `count` says how
  // many (pop them once written).
  std::string join(std::size_t max_bytes, char separator, std::size_t& count) const;

  // Messages dropped since the last call; resets the count. The session sends
  // {"op":"lagged","dropped":n} with it once there is room again.
  std::uint64_t take_dropped();
  std::uint64_t dropped_pending() const { return dropped_; }
  bool has_room() const;

 private:
  std::deque<std::shared_ptr<const std::string>> frames_;
  std::size_t max_messages_;
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace roost::channels
