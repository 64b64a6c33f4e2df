#include "roost/core/subject.h"

namespace roost::channels {

namespace {
constexpr std::size_t kMaxSubject = 256;
constexpr std::size_t kMaxTokens = 16;
constexpr std::size_t kMaxToken = 64;

bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == ':' || c == '@' || c == '+' || c == '=' || c == '~';
}

std::optional<Error> check(std::string_view s, bool allow_wildcards) {
  auto bad = [&](std::string why) {
    return Error{
        ErrorCode::INVALID_ARGUMENT,
        std::string(allow_wildcards ? "channel pattern '" : "channel '") + std::string(s) + "': " + why};
  };
  if (s.empty()) return bad("is empty");
  if (s.size() > kMaxSubject) return bad("longer than 256 characters");
  auto tokens = split_tokens(s);
  if (tokens.size() > kMaxTokens) return bad("more than 16 tokens");
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    auto t = tokens[i];
    if (t.empty()) return bad("empty token (leading, trailing or doubled '.')");
    if (t.size() > kMaxToken) return bad("a token is longer than 64 characters");
    if (t == "*" || t == ">") {
      if (!allow_wildcards) return bad("wildcards '*' and '>' are only for subscriptions");
      if (t == ">" && i + 1 != tokens.size()) return bad("'>' must be the last token");
      continue;
    }
    for (char c : t) {
      if (c == '*' || c == '>') return bad("'*' and '>' must stand alone as a token");
      if (!token_char(c)) return bad(std::string("character '") + c + "' is not allowed");
    }
  }
  return std::nullopt;
}
}  // namespace

std::vector<std::string_view> split_tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

std::optional<Error> validate_subject(std::string_view subject) { return check(subject, false); }
std::optional<Error> validate_pattern(std::string_view pattern) { return check(pattern, true); }

bool is_wildcard(std::string_view pattern) {
  for (auto t : split_tokens(pattern)) {
    if (t == "*" || t == ">") return true;
  }
  return false;
}

bool pattern_matches(std::string_view pattern, std::string_view subject) {
  auto p = split_tokens(pattern);
  auto s = split_tokens(subject);
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">") return s.size() > i;
    if (i >= s.size()) return false;
    if (p[i] != "*" && p[i] != s[i]) return false;
  }
  return p.size() == s.size();
}

}  // namespace roost::channels
