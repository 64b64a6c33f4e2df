// What a message body holds; numbered as the schema's ContentType enum.
#pragma once

#include <cstdint>

namespace roost {

enum class ContentType : std::uint8_t { kJson = 0, kText = 1, kBytes = 2 };

}  // namespace roost
