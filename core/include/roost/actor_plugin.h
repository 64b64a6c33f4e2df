// Actor plugins: a shared library that registers actor classes into `roost serve --actors
// libmyactors.so`.
//
// The node looks up two C symbols: `roost_actor_plugin_abi`, which must return the
// kActorAbiVersion the plugin was built with (a mismatch refuses the plugin before anything else
// of it runs), and `roost_actor_plugin_register`, which registers the classes. Build the plugin
// with the same compiler and standard library as the node (the registry passes C++ types).
//
//   #include <roost/actor_plugin.h>
//   class Counter : public roost::Actor { ... };
//   ROOST_ACTOR_PLUGIN(registry) { registry.add<Counter>("counter"); }
#pragma once

#include <roost/actor.h>

#include <cstdint>
#include <memory>
#include <string>

namespace roost {

class PluginRegistry {
 public:
  virtual ~PluginRegistry() = default;
  virtual void add(std::string name, ActorFactory factory, ActorClassOptions options = {}) = 0;
  template <class T>
  void add(std::string name, ActorClassOptions options = {}) {
    add(
        std::move(name), [] { return std::make_unique<T>(); }, std::move(options));
  }
};

}  // namespace roost

extern "C" {
using roost_actor_plugin_abi_fn = std::uint32_t (*)();
using roost_actor_plugin_register_fn = void (*)(roost::PluginRegistry*);
}

#define ROOST_ACTOR_PLUGIN(registry)                                                         \
  static void roost_plugin_register_impl(roost::PluginRegistry& registry);                   \
  extern "C" __attribute__((visibility("default"))) std::uint32_t roost_actor_plugin_abi() { \
    return roost::kActorAbiVersion;                                                          \
  }                                                                                          \
  extern "C" __attribute__((visibility("default"))) void roost_actor_plugin_register(        \
      roost::PluginRegistry* r) {                                                            \
    roost_plugin_register_impl(*r);                                                          \
  }                                                                                          \
  static void roost_plugin_register_impl(roost::PluginRegistry& registry)
