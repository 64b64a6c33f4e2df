// `roost queue ...`: the command line for a running node, over its HTTP API.
#pragma once

#include <string>
#include <vector>

namespace roost::broker {

// Runs `roost queue <args>`; prints the server's JSON answer; returns the exit code
// (0 success, 1 error answer or unreachable server, 2 usage error).
int queue_cli(const std::vector<std::string>& args);
const char* queue_cli_help();

}  // namespace roost::broker
