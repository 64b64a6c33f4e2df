// The in-process side of bench/hosts_bench.mjs: class "Echo" counts each socket frame in its
// storage (a durable write, so every turn commits) and sends the frame back after the commit.
// bench/hosts_bench.mjs runs the same class in JavaScript on a remote host next to it.
#include <roost/actor_plugin.h>

#include <string>

namespace {

class Echo : public roost::Actor {
 public:
  void on_socket_message(roost::Context& ctx, roost::Socket s, std::string_view text) override {
    auto v = ctx.storage().get("n");
    ctx.storage().put("n", std::to_string((v ? std::stoll(*v) : 0) + 1));
    ctx.send(s, std::string(text));
  }
};

}  // namespace

ROOST_ACTOR_PLUGIN(registry) { registry.add<Echo>("Echo"); }
