// The frames of the remote host protocol (docs/hosts.md) as JSON: reading a frame's fields (a
// ProtocolError says what is wrong) and writing messages, HTTP requests and answers. Private to
// broker/src (RemoteHosts: its connections and its turns).
#pragma once

#include <roost/core/base64.h>
#include <roost/core/error.h>
#include <roost/core/object_types.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roost::broker::host_protocol {

namespace json = boost::json;

// Bytes queued to a host past which its next turns wait to be sent (Conn::send_turn): a quarter of
// the gateway's bound (64 MiB), so a host that reads is never closed for a backlog of turns.
constexpr std::size_t kPaceBytes = 16u << 20;

inline std::string_view type_name(ContentType t) {
  switch (t) {
    case ContentType::kText: return "text";
    case ContentType::kBytes: return "bytes";
    case ContentType::kJson: break;
  }
  return "json";
}

// Thrown for a frame that breaks the protocol; its message goes back to the host.
struct ProtocolError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

inline const json::value* field(const json::object& o, std::string_view key) { return o.if_contains(key); }

inline std::string str(const json::object& o, std::string_view key, bool required = true) {
  const auto* v = field(o, key);
  if (v == nullptr || v->is_null()) {
    if (required) throw ProtocolError("missing \"" + std::string(key) + "\"");
    return {};
  }
  if (!v->is_string()) throw ProtocolError("\"" + std::string(key) + "\" must be a string");
  return std::string(v->get_string());
}

inline std::uint64_t u64(const json::object& o, std::string_view key, std::uint64_t fallback = 0) {
  const auto* v = field(o, key);
  if (v == nullptr || v->is_null()) return fallback;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
  if (v->is_double() && v->get_double() >= 0 && v->get_double() < 1.8e19) {
    return static_cast<std::uint64_t>(v->get_double());
  }
  throw ProtocolError("\"" + std::string(key) + "\" must be a non-negative integer");
}

inline std::int64_t i64(const json::object& o, std::string_view key) {
  const auto* v = field(o, key);
  if (v == nullptr) throw ProtocolError("missing \"" + std::string(key) + "\"");
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v->get_uint64());
  }
  if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
  throw ProtocolError("\"" + std::string(key) + "\" must be an integer");
}

inline ContentType content_type(const json::object& o) {
  auto t = str(o, "type", false);
  if (t.empty() || t == "json") return ContentType::kJson;
  if (t == "text") return ContentType::kText;
  if (t == "bytes") return ContentType::kBytes;
  throw ProtocolError("\"type\" is json, text or bytes");
}

// A message's data: the text itself for json and text, base64 for bytes.
inline std::string data_of(const json::object& o, ContentType t, std::string_view key = "data") {
  auto d = str(o, key, false);
  if (t != ContentType::kBytes) return d;
  auto raw = base64_decode(d);
  if (!raw) throw ProtocolError("\"" + std::string(key) + "\" is not base64");
  return std::move(*raw);
}

inline std::string bytes_of(const json::object& o, std::string_view key) {
  auto raw = base64_decode(str(o, key, false));
  if (!raw) throw ProtocolError("\"" + std::string(key) + "\" is not base64");
  return std::move(*raw);
}

inline void put_data(json::object& o, std::string_view data, ContentType t) {
  o["type"] = type_name(t);
  o["data"] = t == ContentType::kBytes ? json::string(base64_encode(data)) : json::string(data);
}

inline json::array headers_json(std::span<const std::pair<std::string, std::string>> headers) {
  json::array a;
  for (const auto& [k, v] : headers) a.push_back(json::array{json::string(k), json::string(v)});
  return a;
}

inline std::vector<std::pair<std::string, std::string>> headers_of(const json::object& o) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto* v = field(o, "headers");
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_array()) throw ProtocolError("\"headers\" must be an array of [name, value]");
  for (const auto& h : v->get_array()) {
    if (!h.is_array() || h.get_array().size() != 2 || !h.get_array()[0].is_string() ||
        !h.get_array()[1].is_string()) {
      throw ProtocolError("\"headers\" must be an array of [name, value]");
    }
    out.emplace_back(std::string(h.get_array()[0].get_string()), std::string(h.get_array()[1].get_string()));
  }
  return out;
}

inline json::object request_json(const ObjectHttpRequest& r) {
  return json::object{{"method", r.method},
                      {"path", r.path},
                      {"query", r.query},
                      {"headers", headers_json(r.headers)},
                      {"body", base64_encode(r.body)},
                      {"client_address", r.client_address},
                      {"claims", r.claims}};
}

inline ObjectHttpRequest request_of(const json::object& o) {
  ObjectHttpRequest r;
  r.method = str(o, "method", false);
  if (r.method.empty()) r.method = "GET";
  r.path = str(o, "path", false);
  if (r.path.empty() || r.path.front() != '/') r.path.insert(0, "/");
  r.query = str(o, "query", false);
  r.headers = headers_of(o);
  r.body = bytes_of(o, "body");
  return r;
}

inline json::object error_json(const Error& e) {
  return json::object{{"code", error_code_name(e.code)}, {"message", e.message}};
}

inline json::object response_json(const ObjectReply& r) {
  return json::object{
      {"status", r.status}, {"headers", headers_json(r.headers)}, {"body", base64_encode(r.data)}};
}

inline const json::object& object_at(const json::object& o, std::string_view key) {
  const auto* v = field(o, key);
  if (v == nullptr || !v->is_object()) throw ProtocolError("\"" + std::string(key) + "\" must be an object");
  return v->get_object();
}

inline std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A turn at a host: the runtime's turn, and the frames the host sent for it until a worker applies

}  // namespace roost::broker::host_protocol
