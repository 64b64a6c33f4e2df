#include <roost/broker/push_targets.h>

#include <roost/core/subject.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <system_error>

namespace roost::broker {

Result<HttpUrl> parse_http_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return std::unexpected(
        Error{ErrorCode::INVALID_ARGUMENT, "push URL " + std::string(url.substr(0, 200)) + ": " + why});
  };
  if (!url.starts_with("http://")) return bad("only http:// URLs (the target is a local service)");
  std::string_view rest = url.substr(7);
  auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  if (slash != std::string_view::npos) {
    out.target = std::string(rest.substr(slash));
    if (out.target.front() == '?') out.target = "/" + out.target;
  }
  if (out.target.find('#') != std::string::npos) return bad("no fragment");
  for (char c : out.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("the path has a space or a control character");
  }
  if (authority.empty()) return bad("no host");
  if (authority.find('@') != std::string_view::npos) return bad("no user info");
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    out.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty()) {
      if (authority.front() != ':') return bad("junk after the address");
      out.port = std::string(authority.substr(1));
    }
  } else {
    auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) out.port = std::string(authority.substr(colon + 1));
  }
  if (out.host.empty()) return bad("no host");
  if (out.port.empty() || out.port.size() > 5 ||
      !std::all_of(out.port.begin(), out.port.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
      std::stoi(out.port) < 1 || std::stoi(out.port) > 65535) {
    return bad("the port must be 1..65535");
  }
  for (auto& c : out.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address → (host, port or "").
std::pair<std::string, std::string> split_host_port(std::string_view item) {
  if (item.starts_with('[')) {
    auto close = item.find(']');
    if (close == std::string_view::npos) return {lower(item), ""};
    auto rest = item.substr(close + 1);
    return {lower(item.substr(1, close - 1)), rest.starts_with(':') ? std::string(rest.substr(1)) : ""};
  }
  auto colon = item.find(':');
  if (colon == std::string_view::npos || item.find(':', colon + 1) != std::string_view::npos) {
    return {lower(item), ""};  // a name, or a bare IPv6 address
  }
  return {lower(item.substr(0, colon)), std::string(item.substr(colon + 1))};
}

bool loopback_host(std::string_view h) {
  return h == "localhost" || h.ends_with(".localhost") || h.starts_with("127.") || h == "::1" ||
         h.starts_with("::ffff:127.");
}
bool wildcard_host(std::string_view h) { return h.empty() || h == "0.0.0.0" || h == "::" || h == "*"; }

}  // namespace

bool forbidden_endpoint(std::string_view address, std::string_view port,
                        const std::vector<std::string>& forbidden) {
  auto host = lower(address);
  for (const auto& f : forbidden) {
    auto [fh, fp] = split_host_port(f);
    if (fp != port) continue;
    if (wildcard_host(fh) || fh == host || (loopback_host(fh) && loopback_host(host))) return true;
  }
  return false;
}

std::optional<std::string> endpoint_of(std::string_view address) {
  if (auto scheme = address.find("://"); scheme != std::string_view::npos) address.remove_prefix(scheme + 3);
  address = address.substr(0, address.find('/'));
  auto [host, port] = split_host_port(address);
  if (port.empty()) return std::nullopt;
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
}

std::optional<Error> check_push_url(std::string_view url, const std::vector<std::string>& allowed,
                                    const std::vector<std::string>& forbidden) {
  auto u = parse_http_url(url);
  if (!u) return u.error();
  if (forbidden_endpoint(u->host, u->port, forbidden)) {
    return Error{ErrorCode::FORBIDDEN, "push target " + u->host + ":" + u->port +
                                           " is this node's own listener or its etcd: never a push target"};
  }
  for (const auto& a : allowed) {
    if (a == "*") return std::nullopt;
    auto [host, port] = split_host_port(a);
    if (host == u->host && (port.empty() || port == u->port)) return std::nullopt;
  }
  return Error{ErrorCode::FORBIDDEN, "push target " + u->host + ":" + u->port +
                                         " is not in push_allowed_hosts (the node pushes only to hosts "
                                         "and ports its operator allowed; default: loopback)"};
}

namespace {

// The non-empty items of `spec` separated by `sep`, spaces around them trimmed.
std::vector<std::string_view> items(std::string_view spec, char sep) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0; start <= spec.size();) {
    auto end = std::min(spec.find(sep, start), spec.size());
    auto item = spec.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> push_hosts(std::string_view list) {
  std::vector<std::string> out;
  for (auto item : items(list, ',')) out.emplace_back(item);
  return out;
}

Result<std::vector<std::pair<std::string, PushTarget>>> parse_queue_push(std::string_view spec) {
  auto bad = [](std::string m) {
    return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "queue_push: " + m});
  };
  std::vector<std::pair<std::string, PushTarget>> out;
  for (auto entry : items(spec, ';')) {
    auto eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) return bad("each entry is QUEUE=URL[,concurrency=N,…]");
    PushTarget t;
    auto rest = entry.substr(eq + 1);
    auto comma = rest.find(',');
    t.url = std::string(rest.substr(0, comma));
    if (auto u = parse_http_url(t.url); !u) return bad(u.error().message);
    while (comma != std::string_view::npos) {
      rest = rest.substr(comma + 1);
      comma = rest.find(',');
      auto kv = rest.substr(0, comma);
      auto e = kv.find('=');
      if (e == std::string_view::npos) return bad("expected name=value, got " + std::string(kv));
      auto name = kv.substr(0, e);
      std::uint64_t v = 0;
      auto num = kv.substr(e + 1);
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
      if (ec != std::errc() || p != num.data() + num.size())
        return bad(std::string(name) + " must be a number");
      if (name == "concurrency") {
        t.concurrency = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, 1'000'000));
      } else if (name == "timeout_ms") {
        t.timeout_ms = v;
      } else if (name == "batch_size") {
        t.batch_size = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, 1'000'000));
      } else {
        return bad("unknown setting " + std::string(name) + " (concurrency, timeout_ms, batch_size)");
      }
    }
    out.emplace_back(std::string(entry.substr(0, eq)), std::move(t));
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> parse_channel_webhooks(std::string_view spec) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto entry : items(spec, ';')) {
    auto eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == entry.size()) {
      return std::unexpected(
          Error{ErrorCode::INVALID_ARGUMENT, "channel_webhooks: each entry is PATTERN=URL"});
    }
    std::string pattern(entry.substr(0, eq));
    if (auto e = channels::validate_pattern(pattern)) {
      return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "channel_webhooks: " + e->message});
    }
    auto url = parse_http_url(entry.substr(eq + 1));
    if (!url) return std::unexpected(url.error());
    out.emplace_back(std::move(pattern), std::string(entry.substr(eq + 1)));
  }
  return out;
}

}  // namespace roost::broker
