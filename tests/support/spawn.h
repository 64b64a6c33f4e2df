// Starts a child process with stdin from /dev/null and stdout + stderr into a log file (the
// roost and etcd processes the integration tests run). Throws when it cannot be spawned.
#pragma once

#include <fcntl.h>
#include <spawn.h>

#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace roost::test {

inline pid_t spawn_logged(std::vector<std::string> args, const std::string& log_path, bool append = false) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot spawn " + args[0]);
  return pid;
}

}  // namespace roost::test
