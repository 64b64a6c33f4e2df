#include "roost/channels/message.h"

#include <roost/wire/base64.h>

namespace roost::channels {

namespace {
// Appends `s` as a JSON string literal.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

MessagePtr make_message(std::string channel, std::string data, std::uint64_t offset,
                        std::string epoch, std::int64_t timestamp_ms, ContentType content_type,
                        std::size_t audience) {
  auto m = std::make_shared<Message>();
  m->channel = std::move(channel);
  m->data = std::move(data);
  m->content_type = content_type;
  m->offset = offset;
  m->epoch = std::move(epoch);
  m->timestamp_ms = timestamp_ms;
  m->audience = audience;
  return m;
}

MessagePtr make_presence(MessageKind kind, std::string channel, std::uint64_t subscribers,
                         std::int64_t timestamp_ms, std::size_t audience) {
  auto m = std::make_shared<Message>();
  m->kind = kind;
  m->subscribers = subscribers;
  m->channel = std::move(channel);
  m->timestamp_ms = timestamp_ms;
  m->audience = audience;
  return m;
}

std::shared_ptr<const std::string> Message::frame() const {
  std::call_once(frame_once_, [this] {
    if (kind != MessageKind::kData) {
      frame_ = std::make_shared<const std::string>(
          std::string(R"({"op":")") + (kind == MessageKind::kJoin ? "join" : "leave") +
          R"(","channel":")" + channel + R"(","subscribers":)" + std::to_string(subscribers) + "}");
      return;
    }
    // Channel names and epochs hold no character that JSON needs escaped (see subject.h).
    std::string f;
    f.reserve(data.size() + channel.size() + epoch.size() + 80);
    f += R"({"op":"message","channel":")";
    f += channel;
    f += R"(","data":)";
    switch (content_type) {
      case ContentType::kJson: f += data; break;
      case ContentType::kText: append_json_string(f, data); break;
      case ContentType::kBytes:
        f += '"';
        f += base64_encode(data);
        f += R"(","encoding":"base64)";
        f += '"';
        break;
    }
    f += R"(,"offset":)";
    f += std::to_string(offset);
    f += R"(,"epoch":")";
    f += epoch;
    f += "\"}";
    frame_ = std::make_shared<const std::string>(std::move(f));
  });
  return frame_;
}

std::shared_ptr<const std::string> Message::sse_frame() const {
  std::call_once(sse_once_, [this] {
    if (kind != MessageKind::kData) {
      sse_frame_ = std::make_shared<const std::string>(
          std::string("event: ") + (kind == MessageKind::kJoin ? "join" : "leave") + "\ndata: " + *frame() + "\n\n");
      return;
    }
    sse_frame_ = std::make_shared<const std::string>("id: " + epoch + ":" + std::to_string(offset) +
                                                     "\ndata: " + *frame() + "\n\n");
  });
  return sse_frame_;
}

}  // namespace roost::channels
