#include "roost/channels/outgoing_queue.h"

namespace roost::channels {

OutgoingQueue::OutgoingQueue(std::size_t max_messages, std::size_t max_bytes)
    : max_messages_(max_messages), max_bytes_(max_bytes) {}

bool OutgoingQueue::has_room() const { return frames_.size() < max_messages_ && bytes_ < max_bytes_; }

OutgoingQueue::Push OutgoingQueue::push(std::shared_ptr<const std::string> frame, SlowPolicy policy) {
  if (frames_.size() >= max_messages_ || bytes_ + frame->size() > max_bytes_) {
    if (policy == SlowPolicy::kDisconnect) return Push::kDisconnect;
    ++dropped_;
    return Push::kDropped;
  }
  bytes_ += frame->size();
  frames_.push_back(std::move(frame));
  return Push::kQueued;
}

void OutgoingQueue::push_control(std::shared_ptr<const std::string> frame) {
  bytes_ += frame->size();
  frames_.push_back(std::move(frame));
}

void OutgoingQueue::pop() {
  bytes_ -= frames_.front()->size();
  frames_.pop_front();
}

std::string OutgoingQueue::join(std::size_t max_bytes, char separator, std::size_t& count) const {
  std::string out;
  count = 0;
  for (const auto& f : frames_) {
    if (count > 0 && out.size() + 1 + f->size() > max_bytes) break;
    if (count > 0) out.push_back(separator);
    out += *f;
    ++count;
  }
  return out;
}

std::uint64_t OutgoingQueue::take_dropped() {
  auto n = dropped_;
  dropped_ = 0;
  return n;
}

}  // namespace roost::channels
