// UTF-8 validation for `text` message bodies (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF), so that what the node accepts as text can be written into JSON and WebSocket
// text frames.
#pragma once

#include <string_view>

namespace roost {

bool valid_utf8(std::string_view text);

}  // namespace roost
