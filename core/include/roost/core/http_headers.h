// HTTP header lists as objects and the SDK see them: (name, value) pairs in the order sent.
// Header only (actor plugins use it).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace roost {

// The first of `headers` called `name` (ASCII case-insensitive), or empty.
inline std::string_view find_header(std::span<const std::pair<std::string, std::string>> headers,
                                    std::string_view name) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (const auto& [k, v] : headers) {
    if (k.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < k.size() && same; ++i) same = lower(k[i]) == lower(name[i]);
    if (same) return v;
  }
  return {};
}

}  // namespace roost
