// The smallest useful object: a durable counter. Every message adds to it (by {"add":n}, default
// 1); a call answers its value; attached WebSockets hear every new value.
#pragma once

#include <roost/actor.h>

#include <string>

class Counter : public roost::Actor {
 public:
  void on_message(roost::Context& ctx, const roost::Message& m) override {
    auto add = m.data.find("\"add\"") != std::string_view::npos ? parse_add(m.data) : 1;
    auto value = std::stoll(ctx.storage().get("value").value_or("0")) + add;
    ctx.storage().put("value", std::to_string(value));            // committed with the message
    ctx.broadcast(R"({"value":)" + std::to_string(value) + "}");  // sent after that commit
  }
  void on_call(roost::Context& ctx, const roost::Message&) override {
    ctx.reply(R"({"value":)" + ctx.storage().get("value").value_or("0") + "}");
  }

 private:
  static long long parse_add(std::string_view json) {
    auto colon = json.find(':', json.find("\"add\""));
    return colon == std::string_view::npos ? 1 : std::stoll(std::string(json.substr(colon + 1)));
  }
};
