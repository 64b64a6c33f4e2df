#include "document.h"

#include "ot.h"

#include <boost/json.hpp>

#include <cstdio>

namespace collab {

namespace json = boost::json;

namespace {

std::string history_key(std::int64_t rev) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "h/%012lld", static_cast<long long>(rev));
  return buf;
}

std::int64_t stored_int(roost::Storage& st, std::string_view key, std::int64_t dflt) {
  auto v = st.get(key);
  return v ? std::stoll(*v) : dflt;
}

void send_json(roost::Context& ctx, roost::Socket s, const json::object& o) {
  ctx.send(s, json::serialize(o));
}

}  // namespace

void Document::on_activate(roost::Context& ctx) {
  auto& st = ctx.storage();
  text_ = to_u16(st.get("text").value_or(""));
  rev_ = stored_int(st, "rev", 0);
  ctx.set_auto_response("ping", "pong");
}

void Document::on_connect(roost::Context& ctx, roost::Socket s, const roost::ConnectRequest&) {
  ctx.set_attachment(s, R"({"name":"?"})");
}

void Document::on_socket_message(roost::Context& ctx, roost::Socket s, std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object() || !v.as_object().contains("op")) {
    return send_json(ctx, s, {{"type", "error"}, {"message", "frames are JSON objects with an op"}});
  }
  auto& o = v.as_object();
  auto& st = ctx.storage();
  std::string op = json::value_to<std::string>(o.at("op"));
  if (op == "hello") {
    std::string client = o.contains("client") ? json::value_to<std::string>(o.at("client")) : "";
    std::string name = o.contains("name") ? json::value_to<std::string>(o.at("name")) : "anonymous";
    std::int64_t since = o.contains("rev") ? o.at("rev").to_number<std::int64_t>() : -1;
    ctx.set_attachment(s, json::serialize(json::object{{"name", name}, {"client", client}}));
    if (since < 0 || since > rev_ || since < rev_ - kHistory) {
      send_json(ctx, s, {{"type", "doc"}, {"rev", rev_}, {"text", to_u8(text_)}});
    } else {
      for (std::int64_t r = since + 1; r <= rev_; ++r) {
        auto h = json::parse(st.get(history_key(r)).value_or("{}")).as_object();
        if (h.contains("client") && h.at("client") == client.c_str()) {
          send_json(ctx, s, {{"type", "ack"}, {"rev", r}, {"seq", h.at("seq")}});
        } else {
          send_json(ctx, s, {{"type", "op"}, {"rev", r}, {"ops", h.at("ops")}});
        }
      }
    }
    send_json(ctx, s, {{"type", "ready"}, {"rev", rev_}});
    presence(ctx);
    return;
  }
  if (op == "edit") {
    auto att = json::parse(ctx.attachment(s)).as_object();
    std::string client = att.contains("client") ? json::value_to<std::string>(att.at("client")) : "";
    std::int64_t seq = o.at("seq").to_number<std::int64_t>();
    std::int64_t base = o.at("rev").to_number<std::int64_t>();
    std::string seen_key = "c/" + client;
    if (!client.empty() && seq <= stored_int(st, seen_key, 0)) return;  // a resend of an applied edit
    if (base > rev_ || base < rev_ - kHistory) {
      send_json(ctx, s, {{"type", "error"}, {"message", "edit based on an unknown revision; reload"}});
      return send_json(ctx, s, {{"type", "doc"}, {"rev", rev_}, {"text", to_u8(text_)}});
    }
    Operation edit;
    try {
      edit = from_json(o.at("ops"));
      for (std::int64_t r = base + 1; r <= rev_; ++r) {
        auto h = json::parse(*st.get(history_key(r))).as_object();
        edit = transform(edit, from_json(h.at("ops"))).first;
      }
      text_ = edit.apply(text_);
    } catch (const std::exception& e) {
      send_json(ctx, s, {{"type", "error"}, {"message", std::string("bad edit: ") + e.what()}});
      return send_json(ctx, s, {{"type", "doc"}, {"rev", rev_}, {"text", to_u8(text_)}});
    }
    rev_ += 1;
    auto ops = to_json(edit);
    st.put("text", to_u8(text_));
    st.put("rev", std::to_string(rev_));
    st.put(history_key(rev_), json::serialize(json::object{{"ops", ops}, {"client", client}, {"seq", seq}}));
    if (rev_ > kHistory) st.del(history_key(rev_ - kHistory));
    if (!client.empty()) st.put(seen_key, std::to_string(seq));
    send_json(ctx, s, {{"type", "ack"}, {"rev", rev_}, {"seq", seq}});
    auto frame = json::serialize(json::object{{"type", "op"}, {"rev", rev_}, {"ops", ops}});
    for (auto other : ctx.sockets()) {
      if (other != s) ctx.send(other, frame);
    }
    return;
  }
  send_json(ctx, s, {{"type", "error"}, {"message", "unknown op " + op}});
}

void Document::on_disconnect(roost::Context& ctx, roost::Socket, std::uint16_t) { presence(ctx); }

void Document::on_call(roost::Context& ctx, const roost::Message&) {
  ctx.reply(json::serialize(json::object{{"rev", rev_}, {"text", to_u8(text_)}}));
}

void Document::presence(roost::Context& ctx) {
  json::array users;
  for (auto s : ctx.sockets()) {
    boost::system::error_code ec;
    auto a = json::parse(ctx.attachment(s), ec);
    if (!ec && a.is_object() && a.as_object().contains("name")) users.push_back(a.at("name"));
  }
  ctx.broadcast(json::serialize(json::object{{"type", "presence"}, {"users", users}}));
}

}  // namespace collab
