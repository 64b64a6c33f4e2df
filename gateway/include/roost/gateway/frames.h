// The browser protocol's frames for a channel message, built on first use and kept on the message
// (Message::frame slots), so one publish fanned out to many browsers is formatted once.
#pragma once

#include <roost/core/channel_types.h>

#include <memory>
#include <string>

namespace roost::gateway {

// {"op":"message","channel":…,"data":…,"offset":…,"epoch":…} — the WebSocket frame. Text data
// is sent as a JSON string; bytes as a base64 string with "encoding":"base64". Presence events:
// {"op":"join"|"leave","channel":…,"subscribers":n}.
std::shared_ptr<const std::string> browser_frame(const channels::Message& m);

// "id: <epoch>:<offset>\ndata: <frame>\n\n" — the SSE event (presence events:
// "event: join|leave\ndata: <frame>\n\n", no id).
std::shared_ptr<const std::string> sse_frame(const channels::Message& m);

}  // namespace roost::gateway
