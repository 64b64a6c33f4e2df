#include "roost/channels/message.h"

namespace roost::channels {

MessagePtr make_message(std::string channel, std::string data, std::uint64_t offset,
                        std::string epoch, std::int64_t timestamp_ms) {
  auto m = std::make_shared<Message>();
  // Channel names and epochs hold no character that JSON needs escaped (see subject.h).
  std::string frame;
  frame.reserve(data.size() + channel.size() + epoch.size() + 64);
  frame += R"({"op":"message","channel":")";
  frame += channel;
  frame += R"(","data":)";
  frame += data;
  frame += R"(,"offset":)";
  frame += std::to_string(offset);
  frame += R"(,"epoch":")";
  frame += epoch;
  frame += "\"}";
  m->channel = std::move(channel);
  m->data = std::move(data);
  m->offset = offset;
  m->epoch = std::move(epoch);
  m->timestamp_ms = timestamp_ms;
  m->frame = std::make_shared<const std::string>(std::move(frame));
  return m;
}

std::shared_ptr<const std::string> Message::sse_frame() const {
  std::call_once(sse_once_, [this] {
    sse_frame_ = std::make_shared<const std::string>("id: " + epoch + ":" + std::to_string(offset) +
                                                     "\ndata: " + *frame + "\n\n");
  });
  return sse_frame_;
}

}  // namespace roost::channels
