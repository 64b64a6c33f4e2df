// Standard base64 (RFC 4648, with padding) for `bytes` message bodies.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace roost {

std::string base64_encode(std::string_view in);
// nullopt on a character outside the alphabet or bad padding.
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace roost
