// What the SDK examples share: `--name value` flags and connecting (or saying why not).
#pragma once

#include <roost/client/client.h>

#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace example {

// Sets each named flag's string from `--name value` pairs on the command line.
inline void read_flags(int argc, char** argv,
                       std::initializer_list<std::pair<std::string_view, std::string*>> flags) {
  for (int i = 1; i + 1 < argc; i += 2) {
    for (const auto& [name, value] : flags) {
      if (argv[i] == name) *value = argv[i + 1];
    }
  }
}

// A connected client, or exits with the reason.
inline std::shared_ptr<roost::Client> connect_or_exit(const std::string& url) {
  auto client = roost::Client::connect({.url = url});
  if (!client) {
    std::cerr << "cannot connect: " << client.error().message << '\n';
    std::exit(1);
  }
  return *client;
}

}  // namespace example
