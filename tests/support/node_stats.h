// What integration tests read of a running node from outside: its memory (/proc), whether it is
// alive, a /metrics counter, and AddressSanitizer's allowance for both.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace roost::test {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// A field of /proc/PID/status in MiB (VmRSS, VmHWM).
inline std::uint64_t proc_mib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":"))
      return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10) / 1024;
  }
  return 0;
}

// Under AddressSanitizer freed memory waits in a quarantine: keep it small in the nodes these
// tests start, and allow for what the sanitizer itself holds.
inline void small_quarantine() {
  if (!kSanitized) return;
  std::string opts = std::getenv("ASAN_OPTIONS") != nullptr ? std::getenv("ASAN_OPTIONS") : "";
  if (opts.find("quarantine_size_mb") == std::string::npos) {
    setenv("ASAN_OPTIONS", (opts + (opts.empty() ? "" : ":") + "quarantine_size_mb=16").c_str(), 1);
  }
}
constexpr std::uint64_t kSlackMib = kSanitized ? 160 : 0;

inline bool alive(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == 0;
}

// The value of an unlabelled sample `name` in a /metrics text (all ones when it is not there).
inline std::uint64_t metric_value(const std::string& text, const std::string& name) {
  auto at = text.find("\n" + name + " ");
  if (at == std::string::npos) return ~std::uint64_t{0};
  return std::strtoull(text.c_str() + at + name.size() + 2, nullptr, 10);
}

}  // namespace roost::test
