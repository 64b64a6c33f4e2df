// What a message body holds; numbered as the schema's ContentType enum.
#pragma once

#include <cstdint>

namespace roost {

enum class ContentType : std::uint8_t { kJson = 0, kText = 1, kBytes = 2 };

// The name the JSON APIs use: "json", "text", "bytes".
constexpr const char* content_type_name(ContentType t) {
  switch (t) {
    case ContentType::kJson: return "json";
    case ContentType::kText: return "text";
    case ContentType::kBytes: return "bytes";
  }
  return "bytes";
}

// Its HTTP Content-Type.
constexpr const char* content_type_mime(ContentType t) {
  switch (t) {
    case ContentType::kJson: return "application/json";
    case ContentType::kText: return "text/plain; charset=utf-8";
    case ContentType::kBytes: return "application/octet-stream";
  }
  return "application/octet-stream";
}

}  // namespace roost
