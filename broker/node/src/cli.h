// The command line for a running node: `roost queue`, `roost pub`, `roost sub` (over the REST API
// or the native protocol, by --url), and `roost keygen`.
#pragma once

#include <string>
#include <vector>

namespace roost::broker {

// Runs `roost queue <args>`; prints the server's JSON answer; returns the exit code
// (0 success, 1 error answer or unreachable server, 2 usage error).
int queue_cli(const std::vector<std::string>& args);
const char* queue_cli_help();
// `roost pub` / `roost sub` (verb "pub" or "sub").
int channel_cli(const std::string& verb, const std::vector<std::string>& args);
const char* channel_cli_help();
// `roost object tell|call CLASS NAME DATA`.
int object_cli(const std::vector<std::string>& args);
// roost mesh status: the mesh as a node sees it (GET /v1/mesh).
int mesh_cli(const std::vector<std::string>& args);
const char* mesh_cli_help();
const char* object_cli_help();
// `roost keygen`: a CURVE key pair for the endpoint.
int keygen_cli();

}  // namespace roost::broker
