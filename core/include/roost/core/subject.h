// Subject grammar (NATS style). A subject is tokens separated by '.': "chat.room1". Tokens are
// 1..64 characters of A-Z a-z 0-9 - _ (and ':' '@' '+' '=' '~'); a subject is at most 256
// characters and 16 tokens. A pattern may also use '*' as a whole token (matches exactly one
// token) and '>' as the last token (matches one or more remaining tokens).
#pragma once

#include <roost/core/error.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roost::channels {

// An error naming the problem, or nullopt when `subject` is a valid concrete subject.
std::optional<Error> validate_subject(std::string_view subject);
// The same for a subscription pattern (wildcards allowed).
std::optional<Error> validate_pattern(std::string_view pattern);
// REQUIRES: both valid.
bool pattern_matches(std::string_view pattern, std::string_view subject);
bool is_wildcard(std::string_view pattern);
std::vector<std::string_view> split_tokens(std::string_view s);

}  // namespace roost::channels
