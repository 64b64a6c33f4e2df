// Unique object ids: 64 lowercase hex digits (256 random bits from the kernel), as Cloudflare's
// newUniqueId(). Unguessable, so an id can be handed out as the only key to an object. Header only:
// actor plugins may call it without linking anything.
#pragma once

#include <sys/random.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace roost {

inline std::string new_unique_object_id() {
  unsigned char bytes[32];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) throw std::runtime_error("getrandom failed");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(64, '0');
  for (std::size_t i = 0; i < sizeof bytes; ++i) {
    id[2 * i] = kHex[bytes[i] >> 4];
    id[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return id;
}

// True for a string shaped like new_unique_object_id()'s (Cloudflare's idFromString accepts only
// those).
inline bool is_unique_object_id(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace roost
