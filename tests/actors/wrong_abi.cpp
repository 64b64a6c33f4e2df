// A plugin that claims another actor ABI: the node must refuse to load it.
#include <cstdint>

namespace roost {
class PluginRegistry;
}

extern "C" __attribute__((visibility("default"))) std::uint32_t roost_actor_plugin_abi() { return 999; }
extern "C" __attribute__((visibility("default"))) void roost_actor_plugin_register(roost::PluginRegistry*) {}
