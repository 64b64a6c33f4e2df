#include <roost/gateway/frames.h>

#include <roost/core/base64.h>

namespace roost::gateway {

namespace {

using channels::Message;
using channels::MessageKind;

// The gateway's slots in Message::frame.
constexpr std::size_t kWebSocketSlot = 0;
constexpr std::size_t kSseSlot = 1;

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

std::shared_ptr<const std::string> build_browser_frame(const Message& m) {
  if (m.kind != MessageKind::kData) {
    return std::make_shared<const std::string>(
        std::string(R"({"op":")") + (m.kind == MessageKind::kJoin ? "join" : "leave") + R"(","channel":")" +
        m.channel + R"(","subscribers":)" + std::to_string(m.subscribers) + "}");
  }
  // Channel names and epochs hold no character that JSON needs escaped (see subject.h).
  std::string f;
  f.reserve(m.data.size() + m.channel.size() + m.epoch.size() + 80);
  f += R"({"op":"message","channel":")";
  f += m.channel;
  f += R"(","data":)";
  switch (m.content_type) {
    case ContentType::kJson: f += m.data; break;
    case ContentType::kText: append_json_string(f, m.data); break;
    case ContentType::kBytes:
      f += '"';
      f += base64_encode(m.data);
      f += R"(","encoding":"base64)";
      f += '"';
      break;
  }
  f += R"(,"offset":)";
  f += std::to_string(m.offset);
  f += R"(,"epoch":")";
  f += m.epoch;
  f += "\"}";
  return std::make_shared<const std::string>(std::move(f));
}

std::shared_ptr<const std::string> build_sse_frame(const Message& m) {
  if (m.kind != MessageKind::kData) {
    return std::make_shared<const std::string>(std::string("event: ") +
                                               (m.kind == MessageKind::kJoin ? "join" : "leave") +
                                               "\ndata: " + *browser_frame(m) + "\n\n");
  }
  return std::make_shared<const std::string>("id: " + m.epoch + ":" + std::to_string(m.offset) +
                                             "\ndata: " + *browser_frame(m) + "\n\n");
}

}  // namespace

std::shared_ptr<const std::string> browser_frame(const Message& m) {
  return m.frame(kWebSocketSlot, &build_browser_frame);
}

std::shared_ptr<const std::string> sse_frame(const Message& m) { return m.frame(kSseSlot, &build_sse_frame); }

}  // namespace roost::gateway
