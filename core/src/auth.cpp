#include <roost/core/auth.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>

#include <chrono>

#include <roost/core/subject.h>

#include <roost/core/base64.h>

namespace roost {

namespace json = boost::json;

namespace {

std::string b64url_encode(std::string_view in) {
  std::string s = base64_encode(in);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (auto& c : s) {
    if (c == '+')
      c = '-';
    else if (c == '/')
      c = '_';
  }
  return s;
}

std::optional<std::string> b64url_decode(std::string_view in) {
  std::string s(in);
  for (auto& c : s) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (c == '+' || c == '/' || c == '=')
      return std::nullopt;
  }
  while (s.size() % 4 != 0) s.push_back('=');
  return base64_decode(s);
}

Error unauthorized(std::string m) { return Error{ErrorCode::UNAUTHORIZED, std::move(m)}; }

bool any_covers(const std::vector<std::string>& allowed, std::string_view requested) {
  for (const auto& a : allowed) {
    if (pattern_covers(a, requested)) return true;
  }
  return false;
}

std::vector<std::string> string_list(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_array()) return out;
  for (const auto& v : it->value().as_array()) {
    if (v.is_string() && !channels::validate_pattern(std::string_view(v.as_string()))) {
      out.emplace_back(v.as_string());
    }
  }
  return out;
}

}  // namespace

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool is_loopback(const boost::asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).is_loopback();
  }
  return a.is_loopback();
}

bool pattern_covers(std::string_view allowed, std::string_view requested) {
  auto a = channels::split_tokens(allowed);
  auto r = channels::split_tokens(requested);
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == ">") return r.size() > i;
    if (i >= r.size()) return false;
    if (r[i] == ">") return false;  // the request reaches further than this grant
    if (a[i] != "*" && a[i] != r[i]) return false;
  }
  return a.size() == r.size();
}

bool Principal::may_publish(std::string_view channel) const {
  return unrestricted || any_covers(publish, channel);
}
bool Principal::may_subscribe(std::string_view pattern) const {
  return unrestricted || any_covers(subscribe, pattern);
}
bool Principal::may_use_queue(std::string_view queue) const {
  return unrestricted || any_covers(queues, queue);
}

bool Principal::may_use_object(std::string_view object_class, std::string_view name) const {
  if (unrestricted) return true;
  for (const auto& p : objects) {
    if (p == ">") return true;
    auto dot = p.find('.');
    if (dot == std::string::npos) continue;
    std::string_view cls = std::string_view(p).substr(0, dot);
    std::string_view rest = std::string_view(p).substr(dot + 1);
    if (cls != "*" && cls != object_class) continue;
    if (rest == "*" || rest == ">" || rest == name) return true;
  }
  return false;
}

std::optional<Error> Principal::may_configure_queue(const QueueConfigPatch& patch) const {
  if (unrestricted) return std::nullopt;
  if (patch.dead_letter_queue && !patch.dead_letter_queue->empty() &&
      !may_use_queue(*patch.dead_letter_queue)) {
    return Error{ErrorCode::FORBIDDEN,
                 "not allowed to use queue " + *patch.dead_letter_queue + " (named as dead_letter_queue)"};
  }
  if (patch.push && !push) {
    return Error{ErrorCode::FORBIDDEN,
                 "setting a queue's push target needs the push grant (roost.push) or an admin token"};
  }
  return std::nullopt;
}

Authenticator::Authenticator(std::string secret, std::function<std::int64_t()> now_seconds)
    : secret_(std::move(secret)), now_seconds_(std::move(now_seconds)) {
  if (!now_seconds_) {
    now_seconds_ = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

Result<Principal> Authenticator::authenticate(std::string_view token, const boost::asio::ip::address& remote,
                                              Audience audience) const {
  if (secret_.empty()) {
    if (!is_loopback(remote)) {
      return std::unexpected(
          unauthorized("this node has no auth_secret: only loopback clients are accepted"));
    }
    Principal p;
    p.unrestricted = true;
    p.mesh = audience == Audience::kMesh;  // (a mesh without a secret: mesh_insecure)
    return p;
  }
  if (token.empty()) return std::unexpected(unauthorized("a bearer token is required"));
  auto d1 = token.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return std::unexpected(unauthorized("token is not a JWT"));
  }
  auto header = b64url_decode(token.substr(0, d1));
  auto payload = b64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  auto signature = b64url_decode(token.substr(d2 + 1));
  if (!header || !payload || !signature) return std::unexpected(unauthorized("token is not valid base64url"));
  boost::system::error_code ec;
  auto h = json::parse(*header, ec);
  if (ec || !h.is_object()) return std::unexpected(unauthorized("token header is not JSON"));
  auto alg = h.as_object().find("alg");
  if (alg == h.as_object().end() || alg->value() != "HS256") {
    return std::unexpected(unauthorized("token must be signed with HS256"));
  }
  auto expected = hmac_sha256(secret_, token.substr(0, d2));
  if (expected.size() != signature->size() ||
      CRYPTO_memcmp(expected.data(), signature->data(), expected.size()) != 0) {
    return std::unexpected(unauthorized("token signature does not verify"));
  }
  auto p = json::parse(*payload, ec);
  if (ec || !p.is_object()) return std::unexpected(unauthorized("token payload is not JSON"));
  const auto& claims = p.as_object();
  if (auto exp = claims.find("exp"); exp != claims.end()) {
    if (!exp->value().is_number() ||
        exp->value().to_number<double>() <= static_cast<double>(now_seconds_())) {
      return std::unexpected(unauthorized("token has expired"));
    }
  }
  if (auto nbf = claims.find("nbf"); nbf != claims.end()) {
    if (!nbf->value().is_number() || nbf->value().to_number<double>() > static_cast<double>(now_seconds_())) {
      return std::unexpected(unauthorized("token is not valid yet (nbf)"));
    }
  }
  const auto* aud = claims.if_contains("aud");
  const bool for_mesh = aud != nullptr && aud->is_string() && aud->get_string() == kMeshAudience;
  if (for_mesh != (audience == Audience::kMesh)) {
    return std::unexpected(unauthorized(for_mesh ? "a node's mesh credentials are for mesh sockets only"
                                                 : "a mesh socket takes a node's mesh credentials only"));
  }
  Principal out;
  out.claims = json::serialize(claims);
  if (auto r = claims.find("roost"); r != claims.end() && r->value().is_object()) {
    const auto& grants = r->value().as_object();
    out.publish = string_list(grants, "publish");
    out.subscribe = string_list(grants, "subscribe");
    out.queues = string_list(grants, "queues");
    out.objects = string_list(grants, "objects");
    out.host = string_list(grants, "host");
    if (auto pu = grants.find("push"); pu != grants.end() && pu->value() == true) out.push = true;
    // A peer node (it checked its own client's grants before forwarding): only with the mesh
    // audience, on a mesh socket.
    if (auto m = grants.find("mesh"); for_mesh && m != grants.end() && m->value() == true) {
      out.mesh = true;
      out.unrestricted = true;
      if (auto n = grants.find("node"); n != grants.end() && n->value().is_string()) {
        out.node = std::string(n->value().get_string());
      }
    }
  }
  return out;
}

std::string sign_mesh_token(std::string_view secret, std::string_view node, std::int64_t now_seconds,
                            std::int64_t ttl_seconds) {
  json::object claims{{"aud", kMeshAudience},
                      {"iat", now_seconds},
                      {"exp", now_seconds + ttl_seconds},
                      {"roost", json::object{{"mesh", true}, {"node", node}}}};
  return sign_jwt(secret, json::serialize(claims));
}

std::string sign_jwt(std::string_view secret, std::string_view payload_json) {
  std::string signing = b64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url_encode(payload_json);
  return signing + "." + b64url_encode(hmac_sha256(secret, signing));
}

}  // namespace roost
