// The same class as a plugin for the stock binary:
//   roost serve --actors ./build/examples/counter/libroost_counter.so
#include <roost/actor_plugin.h>

#include "counter.h"

ROOST_ACTOR_PLUGIN(registry) { registry.add<Counter>("counter"); }
