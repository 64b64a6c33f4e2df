// Byte layouts shared by the floors above: big-endian keys (LMDB's lexicographic order is then
// numeric order) and little-endian fixed-width records, written and read in sequence. A Reader
// never overruns: ok() turns false on a short input.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace roost::bytes {

inline void put_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::uint64_t get_be(std::string_view in, std::size_t pos, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<std::uint8_t>(in[pos + i]);
  return v;
}

// Sequential little-endian writer.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  template <class T>
  Writer& num(T v) {
    static_assert(std::is_arithmetic_v<T>);
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));  // hosts are little-endian (checked at build time)
    out_.append(buf, sizeof(T));
    return *this;
  }
  Writer& bytes(std::string_view s) {
    out_.append(s);
    return *this;
  }
  Writer& str16(std::string_view s) {
    num(static_cast<std::uint16_t>(s.size()));
    return bytes(s);
  }
  Writer& str64(std::string_view s) {
    num(static_cast<std::uint64_t>(s.size()));
    return bytes(s);
  }

 private:
  std::string& out_;
};

// Sequential little-endian reader; ok() turns false on a short record instead of overrunning.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <class T>
  T num() {
    T v{};
    if (pos_ + sizeof(T) > in_.size()) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view bytes(std::size_t n) {
    if (pos_ + n > in_.size()) {
      ok_ = false;
      return {};
    }
    auto s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view str16() { return bytes(num<std::uint16_t>()); }
  std::string_view str64() {
    auto n = num<std::uint64_t>();
    return n <= in_.size() - pos_ ? bytes(static_cast<std::size_t>(n)) : (ok_ = false, std::string_view());
  }
  bool done() const { return pos_ == in_.size(); }
  std::string_view rest() { return bytes(in_.size() - pos_); }
  bool ok() const { return ok_; }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

static_assert(std::endian::native == std::endian::little, "record layouts assume little-endian");

}  // namespace roost::bytes
