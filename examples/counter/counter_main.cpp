// Embedding: a whole Roost node in your own binary, with your actor classes.
//
//   ./build/bin/roost-counter --data-dir ./counter-data     (takes `roost serve`'s options;
//                                                          a leading `serve` is accepted too)
//   curl -X POST localhost:8080/v1/objects/counter/clicks/messages -d '{"add":5}'
//   curl -X POST localhost:8080/v1/objects/counter/clicks/call -d '{}'     → {"value":5}
#include <roost/node.h>

#include "counter.h"

#include <cstdio>

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args.front() == "serve") args.erase(args.begin());
    auto config = roost::load_config(args);
    roost::broker::setup_logging(config);
    roost::Node node(std::move(config));
    node.register_actor<Counter>("counter");
    return node.run();  // serves until SIGINT / SIGTERM, then stops gracefully
  } catch (const std::exception& e) {
    std::fprintf(stderr, "roost-counter: %s\n", e.what());
    return 1;
  }
}
