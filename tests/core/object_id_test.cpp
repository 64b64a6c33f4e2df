#include <roost/core/object_id.h>

#include <catch2/catch.hpp>

#include <set>

TEST_CASE("unique object ids are 64 lowercase hex digits and do not repeat", "[core]") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = roost::new_unique_object_id();
    CHECK(id.size() == 64);
    CHECK(roost::is_unique_object_id(id));
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
  CHECK_FALSE(roost::is_unique_object_id(""));
  CHECK_FALSE(roost::is_unique_object_id(std::string(63, 'a')));
  CHECK_FALSE(roost::is_unique_object_id(std::string(64, 'A')));  // lowercase only
  CHECK_FALSE(roost::is_unique_object_id(std::string(64, 'g')));
  CHECK(roost::is_unique_object_id(std::string(64, 'f')));
}
