// Embedding Roost: a whole node in your own process, with your actor classes.
//
//   int main(int argc, char** argv) {
//     roost::Node node(roost::load_config({argv + 1, argv + argc}));
//     node.register_actor<Document>("doc");
//     return node.run();  // until SIGINT / SIGTERM
//   }
#pragma once

#include <roost/actor.h>
#include <roost/broker/config.h>
#include <roost/broker/node.h>

namespace roost {

using broker::Config;
using broker::load_config;
using broker::Node;

}  // namespace roost
