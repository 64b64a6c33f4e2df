#include "roost/broker/etcd_client.h"

#include <roost/core/base64.h>
#include <roost/core/log.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

namespace roost::broker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {

struct Endpoint {
  std::string host, port;
};

std::vector<Endpoint> parse_endpoints(const std::string& list) {
  std::vector<Endpoint> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    auto e = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (e.starts_with("http://")) e = e.substr(7);
    while (!e.empty() && e.back() == '/') e.pop_back();
    if (!e.empty()) {
      auto colon = e.rfind(':');
      out.push_back(colon == std::string::npos ? Endpoint{e, "2379"}
                                               : Endpoint{e.substr(0, colon), e.substr(colon + 1)});
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::int64_t num(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_string()) return std::strtoll(std::string(v->get_string()).c_str(), nullptr, 10);
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  return 0;
}

std::string b64(std::string_view s) { return base64_encode(s); }
std::string unb64(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return {};
  return base64_decode(v->get_string()).value_or(std::string());
}

EtcdKv kv_of(const json::object& o) {
  return EtcdKv{unb64(o, "key"), unb64(o, "value"), num(o, "create_revision"), num(o, "mod_revision"),
                num(o, "lease")};
}

Error unavailable(const std::string& why) { return Error{ErrorCode::UNAVAILABLE, "etcd: " + why}; }

Result<json::object> parse_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::unexpected(unavailable("an answer that is not a JSON object"));
  auto& o = v.get_object();
  // The gateway answers errors as {"error": "...", "code": n, "message": "..."}.
  if (auto* e = o.if_contains("error"); e != nullptr && !o.contains("result")) {
    auto* m = o.if_contains("message");
    return std::unexpected(Error{
        ErrorCode::UNAVAILABLE,
        "etcd: " + (m != nullptr && m->is_string() ? std::string(m->get_string()) : json::serialize(*e))});
  }
  return std::move(o);
}

}  // namespace

std::string etcd_prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& c = prefix.back();
    if (static_cast<unsigned char>(c) < 0xff) {
      c = static_cast<char>(static_cast<unsigned char>(c) + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Impl {
  std::vector<Endpoint> endpoints;
  std::size_t current = 0;
  std::chrono::milliseconds timeout;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;

  // One request on the kept connection; a broken or refused one tries the next endpoint, once
  // around the list.
  Result<std::string> post(const std::string& path, const std::string& body) {
    if (endpoints.empty()) return std::unexpected(unavailable("no endpoints configured"));
    std::string last_error;
    for (std::size_t tries = 0; tries < endpoints.size() * 2; ++tries) {
      auto& ep = endpoints[current];
      try {
        if (!stream) {
          stream.emplace(io);
          stream->expires_after(timeout);
          asio::ip::tcp::resolver resolver(io);
          stream->connect(resolver.resolve(ep.host, ep.port));
        }
        http::request<http::string_body> req{http::verb::post, path, 11};
        req.set(http::field::host, ep.host + ":" + ep.port);
        req.set(http::field::content_type, "application/json");
        req.keep_alive(true);
        req.body() = body;
        req.prepare_payload();
        stream->expires_after(timeout);
        http::write(*stream, req);
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        http::read(*stream, buffer, res);
        if (!res.keep_alive()) stream.reset();
        return std::move(res.body());  // errors are JSON bodies too (parse_object reads them)
      } catch (const std::exception& e) {
        last_error = ep.host + ":" + ep.port + ": " + e.what();
        stream.reset();
        current = (current + 1) % endpoints.size();
      }
    }
    return std::unexpected(unavailable(last_error));
  }

  Result<json::object> call(const std::string& path, const json::object& body) {
    auto r = post(path, json::serialize(body));
    if (!r) return std::unexpected(r.error());
    return parse_object(*r);
  }
};

EtcdClient::EtcdClient(std::string endpoints, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->endpoints = parse_endpoints(endpoints);
  impl_->timeout = timeout;
}

EtcdClient::~EtcdClient() = default;

Result<std::string> EtcdClient::call(const std::string& path, const std::string& body) {
  return impl_->post(path, body);
}

Result<std::int64_t> EtcdClient::grant(std::int64_t ttl_seconds) {
  auto r = impl_->call("/v3/lease/grant", json::object{{"TTL", std::to_string(ttl_seconds)}});
  if (!r) return std::unexpected(r.error());
  auto id = num(*r, "ID");
  if (id == 0) return std::unexpected(unavailable("lease grant without an ID"));
  return id;
}

Result<std::int64_t> EtcdClient::keepalive(std::int64_t lease) {
  auto r = impl_->call("/v3/lease/keepalive", json::object{{"ID", std::to_string(lease)}});
  if (!r) return std::unexpected(r.error());
  auto* res = r->if_contains("result");
  if (res == nullptr || !res->is_object()) return std::int64_t{0};
  return num(res->get_object(), "TTL");
}

Result<bool> EtcdClient::revoke(std::int64_t lease) {
  auto r = impl_->call("/v3/lease/revoke", json::object{{"ID", std::to_string(lease)}});
  if (!r) return std::unexpected(r.error());
  return true;
}

Result<std::int64_t> EtcdClient::put(const std::string& key, const std::string& value, std::int64_t lease) {
  json::object req{{"key", b64(key)}, {"value", b64(value)}};
  if (lease != 0) req["lease"] = std::to_string(lease);
  auto r = impl_->call("/v3/kv/put", req);
  if (!r) return std::unexpected(r.error());
  auto* h = r->if_contains("header");
  return h != nullptr && h->is_object() ? num(h->get_object(), "revision") : 0;
}

Result<EtcdCreateResult> EtcdClient::create(const std::string& key, const std::string& value,
                                            std::int64_t lease) {
  json::object put{{"key", b64(key)}, {"value", b64(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  json::object req{
      {"compare",
       json::array{json::object{{"key", b64(key)}, {"target", "CREATE"}, {"create_revision", "0"}}}},
      {"success", json::array{json::object{{"request_put", std::move(put)}}}},
      {"failure", json::array{json::object{{"request_range", json::object{{"key", b64(key)}}}}}}};
  auto r = impl_->call("/v3/kv/txn", req);
  if (!r) return std::unexpected(r.error());
  EtcdCreateResult out;
  auto* ok = r->if_contains("succeeded");
  out.created = ok != nullptr && ok->is_bool() && ok->get_bool();
  if (auto* h = r->if_contains("header"); h != nullptr && h->is_object())
    out.revision = num(h->get_object(), "revision");
  if (!out.created) {
    if (auto* rs = r->if_contains("responses"); rs != nullptr && rs->is_array() && !rs->get_array().empty()) {
      const auto& first = rs->get_array()[0].as_object();
      if (auto* rr = first.if_contains("response_range"); rr != nullptr && rr->is_object()) {
        if (auto* kvs = rr->get_object().if_contains("kvs");
            kvs != nullptr && kvs->is_array() && !kvs->get_array().empty()) {
          out.existing = kv_of(kvs->get_array()[0].as_object());
        }
      }
    }
  }
  return out;
}

Result<bool> EtcdClient::delete_if(const std::string& key, std::int64_t create_revision) {
  json::object req{
      {"compare",
       json::array{json::object{
           {"key", b64(key)}, {"target", "CREATE"}, {"create_revision", std::to_string(create_revision)}}}},
      {"success", json::array{json::object{{"request_delete_range", json::object{{"key", b64(key)}}}}}}};
  auto r = impl_->call("/v3/kv/txn", req);
  if (!r) return std::unexpected(r.error());
  auto* ok = r->if_contains("succeeded");
  return ok != nullptr && ok->is_bool() && ok->get_bool();
}

Result<bool> EtcdClient::switch_home(const std::string& owner_key, std::int64_t create_revision,
                                     const std::string& owner, const std::string& home_key,
                                     const std::string& home) {
  json::object req{
      {"compare",
       json::array{json::object{{"key", b64(owner_key)},
                                {"target", "CREATE"},
                                {"create_revision", std::to_string(create_revision)}},
                   json::object{{"key", b64(owner_key)}, {"target", "VALUE"}, {"value", b64(owner)}}}},
      {"success",
       json::array{json::object{{"request_put", json::object{{"key", b64(home_key)}, {"value", b64(home)}}}},
                   json::object{{"request_delete_range", json::object{{"key", b64(owner_key)}}}}}}};
  auto r = impl_->call("/v3/kv/txn", req);
  if (!r) return std::unexpected(r.error());
  auto* ok = r->if_contains("succeeded");
  return ok != nullptr && ok->is_bool() && ok->get_bool();
}

Result<std::optional<EtcdKv>> EtcdClient::get(const std::string& key) {
  auto r = impl_->call("/v3/kv/range", json::object{{"key", b64(key)}});
  if (!r) return std::unexpected(r.error());
  auto* kvs = r->if_contains("kvs");
  if (kvs == nullptr || !kvs->is_array() || kvs->get_array().empty()) return std::optional<EtcdKv>{};
  return std::optional<EtcdKv>{kv_of(kvs->get_array()[0].as_object())};
}

Result<std::vector<EtcdKv>> EtcdClient::list(const std::string& prefix) {
  auto r = impl_->call("/v3/kv/range",
                       json::object{{"key", b64(prefix)}, {"range_end", b64(etcd_prefix_end(prefix))}});
  if (!r) return std::unexpected(r.error());
  std::vector<EtcdKv> out;
  if (auto* kvs = r->if_contains("kvs"); kvs != nullptr && kvs->is_array()) {
    for (const auto& kv : kvs->get_array()) out.push_back(kv_of(kv.as_object()));
  }
  return out;
}

Result<bool> EtcdClient::del(const std::string& key) {
  auto r = impl_->call("/v3/kv/deleterange", json::object{{"key", b64(key)}});
  if (!r) return std::unexpected(r.error());
  return num(*r, "deleted") > 0;
}

}  // namespace roost::broker
