// The collaborative editor's actor class as a plugin:
//   roost serve --actors build/examples/collab/libroost_collab.so --static examples/collab/web
#include <roost/actor_plugin.h>

#include "document.h"

ROOST_ACTOR_PLUGIN(registry) { registry.add<collab::Document>("doc"); }
