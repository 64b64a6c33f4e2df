// The collab example's server-side OT (examples/collab/ot.h): the same properties as the
// browser's (examples/collab/test/ot.test.mjs), on random documents, plus UTF-16 lengths.
#include <catch2/catch.hpp>

#include "../../examples/collab/ot.h"

#include <random>

using namespace collab;

namespace {
std::u16string random_text(std::mt19937& r, std::size_t n) {
  static const std::u16string alphabet = u"abcdé€ \n";
  std::u16string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(alphabet[r() % alphabet.size()]);
  return s;
}
Operation random_op(std::mt19937& r, const std::u16string& doc) {
  Operation op;
  std::size_t left = doc.size();
  while (left > 0) {
    std::size_t n = 1 + r() % std::min<std::size_t>(left, 5);
    auto k = r() % 10;
    if (k < 2) {
      op.insert(random_text(r, 1 + r() % 4));
    } else if (k < 5) {
      op.del(n);
      left -= n;
    } else {
      op.retain(n);
      left -= n;
    }
  }
  if (r() % 3 == 0) op.insert(random_text(r, 2));
  return op;
}
}  // namespace

TEST_CASE("collab OT: transform converges on random operations", "[examples][ot]") {
  std::mt19937 r(7);
  for (int i = 0; i < 3000; ++i) {
    auto doc = random_text(r, r() % 20);
    auto a = random_op(r, doc);
    auto b = random_op(r, doc);
    auto [a2, b2] = transform(a, b);
    REQUIRE(b2.apply(a.apply(doc)) == a2.apply(b.apply(doc)));
    // The JSON form round-trips.
    REQUIRE(from_json(to_json(a)).apply(doc) == a.apply(doc));
  }
}

TEST_CASE("collab OT: ties, bad input, UTF-16 lengths", "[examples][ot]") {
  auto a = from_json(boost::json::parse(R"([2,"X",1])"));
  auto b = from_json(boost::json::parse(R"([2,"Y",1])"));
  auto [a2, b2] = transform(a, b);
  CHECK(to_u8(b2.apply(a.apply(u"abc"))) == "abXYc");
  CHECK(to_u8(a2.apply(b.apply(u"abc"))) == "abXYc");
  CHECK_THROWS(a.apply(u"too long"));
  CHECK_THROWS(from_json(boost::json::parse(R"({"x":1})")));
  CHECK_THROWS(transform(a, from_json(boost::json::parse("[1]"))));
  // An emoji is two UTF-16 units, as in JavaScript.
  auto doc = to_u16("a😀b");
  CHECK(doc.size() == 4);
  CHECK(to_u8(from_json(boost::json::parse(R"([3,-1,"c"])")).apply(doc)) == "a😀c");
  CHECK_THROWS(to_u16("\xff"));
}
