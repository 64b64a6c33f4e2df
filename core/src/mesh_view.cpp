#include "roost/core/mesh_view.h"

#include <algorithm>

namespace roost {

std::uint64_t placement_hash(std::string_view a, std::string_view b, std::string_view c) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 0x100000001b3ull;
    }
  };
  mix(a);
  mix(std::string_view("\0", 1));
  mix(b);
  mix(std::string_view("\0", 1));
  mix(c);
  return h;
}

std::uint32_t shard_of_queue(std::string_view queue, std::uint32_t shards) {
  return static_cast<std::uint32_t>(placement_hash("q", queue) % std::max<std::uint32_t>(1, shards));
}

std::uint32_t shard_of_object(std::string_view object_class, std::string_view name, std::uint32_t shards) {
  return static_cast<std::uint32_t>(placement_hash("o", object_class, name) %
                                    std::max<std::uint32_t>(1, shards));
}

}  // namespace roost
