// roost: the broker binary. `roost serve` runs a node; `roost queue ...` talks to one.
#include <roost/broker/config.h>
#include <roost/broker/node.h>
#include <roost/core/log.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli.h"

namespace {

const char* kUsage = R"(roost — queues, broadcast channels and object mailboxes in one binary

usage:
  roost serve [OPTIONS]        run a node (data in ./roost-data, HTTP on 127.0.0.1:8080,
                               native protocol on tcp://127.0.0.1:7400); --actors PLUGIN.so
  roost queue COMMAND ...      manage and use queues of a running node (roost queue --help)
  roost pub SUBJECT DATA       publish to a channel (roost pub --help)
  roost sub PATTERN            print a channel's messages, one JSON line each
  roost object tell|call CLASS NAME DATA   message or call an object (roost object --help)
  roost mesh status            the mesh as a node sees it: members, etcd, shards (roost mesh --help)
  roost keygen                 make a CURVE key pair for an encrypted endpoint
  roost --version
  roost --help

)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage << "serve options:\n" << roost::broker::config_help();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "roost " << ROOST_VERSION << '\n';
    return 0;
  }
  std::string cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "queue") return roost::broker::queue_cli(rest);
  if (cmd == "pub" || cmd == "sub") return roost::broker::channel_cli(cmd, rest);
  if (cmd == "keygen") return roost::broker::keygen_cli();
  if (cmd == "object") return roost::broker::object_cli(rest);
  if (cmd == "mesh") return roost::broker::mesh_cli(rest);
  if (cmd != "serve") {
    std::cerr << "roost: unknown command '" << cmd << "'\n\n" << kUsage;
    return 2;
  }
  for (const auto& a : rest) {
    if (a == "--help" || a == "-h") {
      std::cout << "usage: roost serve [OPTIONS]\n\n" << roost::broker::config_help();
      return 0;
    }
  }
  roost::broker::Config config;
  try {
    config = roost::broker::load_config(rest);
  } catch (const roost::broker::ConfigError& e) {
    std::cerr << "roost: configuration error: " << e.what() << '\n';
    return 2;
  }
  roost::broker::setup_logging(config);
  auto log = roost::module_logger("broker");
  log->info("roost {} starting{}", ROOST_VERSION,
            config.config_file.empty() ? std::string(" (no config file; embedded defaults)")
                                       : " with config " + config.config_file.string());
  try {
    roost::broker::Node node(config);
    return node.run();
  } catch (const std::exception& e) {
    log->critical("cannot start: {}", e.what());
    return 1;
  }
}
