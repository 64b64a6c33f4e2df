// Push targets (docs/sidecar.md): what a push or webhook URL may be and how its settings are
// written — parsing, push_allowed_hosts, and the endpoints no target may ever name (the node's own
// listeners, etcd). Pure functions, any thread; PushDelivery delivers to what passes them.
#pragma once

#include <roost/core/error.h>
#include <roost/core/queue_types.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roost::broker {

// The parts of an http:// URL a request needs.
struct HttpUrl {
  std::string host;  // as written (an IPv6 address without brackets)
  std::string port = "80";
  std::string target = "/";  // path and query
};

// Parses an http:// URL (no user info, no fragment). invalid_argument says what is wrong.
Result<HttpUrl> parse_http_url(std::string_view url);

// Whether `url` may be a push or webhook target under `allowed` (push_allowed_hosts: "host" = any
// port, "host:port", "[v6]:port", "*"), never one of `forbidden` ("host:port" the node listens on
// or depends on: its own listeners, etcd). A forbidden address on a wildcard host (0.0.0.0, ::)
// forbids its port on every host; on a loopback one, on every loopback name and address.
std::optional<Error> check_push_url(std::string_view url, const std::vector<std::string>& allowed,
                                    const std::vector<std::string>& forbidden = {});

// Whether a resolved address (what a push connects to) is one of `forbidden`.
bool forbidden_endpoint(std::string_view address, std::string_view port,
                        const std::vector<std::string>& forbidden);

// "scheme://host:port/…" or "host:port" → "host:port" (nullopt: no port, e.g. ipc://).
std::optional<std::string> endpoint_of(std::string_view address);

// queue_push: "QUEUE=URL[,concurrency=N][,timeout_ms=N][,batch_size=N];…" → (queue, target).
Result<std::vector<std::pair<std::string, PushTarget>>> parse_queue_push(std::string_view spec);

// A comma list (push_allowed_hosts) as its items, spaces trimmed.
std::vector<std::string> push_hosts(std::string_view list);

// "PATTERN=URL;…" → pairs; invalid_argument on a bad entry.
Result<std::vector<std::pair<std::string, std::string>>> parse_channel_webhooks(std::string_view spec);

}  // namespace roost::broker
