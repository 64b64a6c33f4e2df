// Operational transformation for plain text, the server half (the browser half is web/ot.js).
//
// An operation walks the whole document from the start: a sequence of components, each
// `retain n` (keep n characters), `insert s`, or `delete n`. On the wire it is the JSON array
// ot.js made popular: a positive number retains, a string inserts, a negative number deletes —
// [3, "ab", -2, 5] on "xyzDEfgh…" keeps "xyz", inserts "ab", deletes "DE", keeps 5.
// Lengths count UTF-16 code units, as JavaScript strings do, so the text is kept as UTF-16.
//
// transform(a, b) for two operations on the same document returns (a', b') with
// apply(apply(doc, a), b') == apply(apply(doc, b), a'); ties (both insert at one place) put
// `a`'s insert first.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace collab {

struct Retain {
  std::size_t n;
};
struct Insert {
  std::u16string s;
};
struct Delete {
  std::size_t n;
};
using Component = std::variant<Retain, Insert, Delete>;

class Operation {
 public:
  const std::vector<Component>& components() const { return ops_; }
  std::size_t base_length() const { return base_; }
  std::size_t target_length() const { return target_; }

  Operation& retain(std::size_t n) {
    if (n == 0) return *this;
    base_ += n;
    target_ += n;
    if (!ops_.empty()) {
      if (auto* r = std::get_if<Retain>(&ops_.back())) {
        r->n += n;
        return *this;
      }
    }
    ops_.push_back(Retain{n});
    return *this;
  }
  Operation& insert(const std::u16string& s) {
    if (s.empty()) return *this;
    target_ += s.size();
    // Canonical order: an insert goes before an adjacent delete.
    if (!ops_.empty()) {
      if (auto* i = std::get_if<Insert>(&ops_.back())) {
        i->s += s;
        return *this;
      }
      if (std::holds_alternative<Delete>(ops_.back())) {
        if (ops_.size() >= 2) {
          if (auto* i = std::get_if<Insert>(&ops_[ops_.size() - 2])) {
            i->s += s;
            return *this;
          }
        }
        ops_.insert(ops_.end() - 1, Insert{s});
        return *this;
      }
    }
    ops_.push_back(Insert{s});
    return *this;
  }
  Operation& del(std::size_t n) {
    if (n == 0) return *this;
    base_ += n;
    if (!ops_.empty()) {
      if (auto* d = std::get_if<Delete>(&ops_.back())) {
        d->n += n;
        return *this;
      }
    }
    ops_.push_back(Delete{n});
    return *this;
  }

  std::u16string apply(const std::u16string& doc) const {
    if (doc.size() != base_) throw std::invalid_argument("operation does not fit the document's length");
    std::u16string out;
    out.reserve(target_);
    std::size_t pos = 0;
    for (const auto& c : ops_) {
      if (auto* r = std::get_if<Retain>(&c)) {
        out.append(doc, pos, r->n);
        pos += r->n;
      } else if (auto* i = std::get_if<Insert>(&c)) {
        out += i->s;
      } else {
        pos += std::get<Delete>(c).n;
      }
    }
    return out;
  }

 private:
  std::vector<Component> ops_;
  std::size_t base_ = 0;
  std::size_t target_ = 0;
};

inline std::pair<Operation, Operation> transform(const Operation& a, const Operation& b) {
  if (a.base_length() != b.base_length())
    throw std::invalid_argument("concurrent operations disagree on the document's length");
  Operation a2, b2;
  const auto& as = a.components();
  const auto& bs = b.components();
  std::size_t ia = 0, ib = 0;
  std::optional<Component> ca, cb;
  auto next_a = [&] { ca = ia < as.size() ? std::optional<Component>(as[ia++]) : std::nullopt; };
  auto next_b = [&] { cb = ib < bs.size() ? std::optional<Component>(bs[ib++]) : std::nullopt; };
  next_a();
  next_b();
  while (ca || cb) {
    if (ca && std::holds_alternative<Insert>(*ca)) {
      const auto& s = std::get<Insert>(*ca).s;
      a2.insert(s);
      b2.retain(s.size());
      next_a();
      continue;
    }
    if (cb && std::holds_alternative<Insert>(*cb)) {
      const auto& s = std::get<Insert>(*cb).s;
      a2.retain(s.size());
      b2.insert(s);
      next_b();
      continue;
    }
    if (!ca || !cb) throw std::invalid_argument("operations of different lengths");
    auto len = [](const Component& c) {
      return std::holds_alternative<Retain>(c) ? std::get<Retain>(c).n : std::get<Delete>(c).n;
    };
    auto shorten = [](Component& c, std::size_t by) {
      if (auto* r = std::get_if<Retain>(&c))
        r->n -= by;
      else
        std::get<Delete>(c).n -= by;
    };
    std::size_t la = len(*ca), lb = len(*cb);
    std::size_t m = std::min(la, lb);
    bool ra = std::holds_alternative<Retain>(*ca), rb = std::holds_alternative<Retain>(*cb);
    if (ra && rb) {
      a2.retain(m);
      b2.retain(m);
    } else if (!ra && !rb) {
      // Both delete the same text: nothing left to do for either.
    } else if (!ra && rb) {
      a2.del(m);
    } else {
      b2.del(m);
    }
    if (la == m)
      next_a();
    else
      shorten(*ca, m);
    if (lb == m)
      next_b();
    else
      shorten(*cb, m);
  }
  return {std::move(a2), std::move(b2)};
}

// ---- UTF-8 ⇄ UTF-16 (the wire and storage are UTF-8 JSON; lengths are UTF-16) ----

inline std::u16string to_u16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    int extra;
    if (c < 0x80) {
      cp = c;
      extra = 0;
    } else if ((c >> 5) == 6) {
      cp = c & 0x1f;
      extra = 1;
    } else if ((c >> 4) == 14) {
      cp = c & 0x0f;
      extra = 2;
    } else if ((c >> 3) == 30) {
      cp = c & 0x07;
      extra = 3;
    } else
      throw std::invalid_argument("invalid UTF-8");
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= s.size()) throw std::invalid_argument("truncated UTF-8");
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    }
    i += 1 + extra;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xd800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xdc00 + (cp & 0x3ff)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

inline std::string to_u8(std::u16string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char32_t cp = s[i];
    if (cp >= 0xd800 && cp < 0xdc00 && i + 1 < s.size() && s[i + 1] >= 0xdc00 && s[i + 1] < 0xe000) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (s[i + 1] - 0xdc00);
      ++i;
    }
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }
  return out;
}

// ---- JSON form ----

inline Operation from_json(const boost::json::value& v) {
  if (!v.is_array()) throw std::invalid_argument("an operation is a JSON array");
  Operation op;
  for (const auto& c : v.as_array()) {
    if (c.is_string()) {
      op.insert(to_u16(c.as_string()));
    } else if (c.is_int64() || c.is_uint64()) {
      auto n = c.to_number<std::int64_t>();
      if (n > 0)
        op.retain(static_cast<std::size_t>(n));
      else if (n < 0)
        op.del(static_cast<std::size_t>(-n));
    } else {
      throw std::invalid_argument("operation components are integers or strings");
    }
  }
  return op;
}

inline boost::json::array to_json(const Operation& op) {
  boost::json::array a;
  for (const auto& c : op.components()) {
    if (auto* r = std::get_if<Retain>(&c))
      a.push_back(static_cast<std::int64_t>(r->n));
    else if (auto* i = std::get_if<Insert>(&c))
      a.push_back(boost::json::string(to_u8(i->s)));
    else
      a.push_back(-static_cast<std::int64_t>(std::get<Delete>(c).n));
  }
  return a;
}

}  // namespace collab
