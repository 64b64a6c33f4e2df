// One spdlog logger per module ("durable", "gateway", "broker", ...). module_logger() returns the
// registered logger, creating it from the default logger's sinks and level on first use, so a
// library used without the broker's logging set-up still logs.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <string>

namespace roost {

inline std::shared_ptr<spdlog::logger> module_logger(const std::string& name) {
  if (auto l = spdlog::get(name)) return l;
  static std::mutex mu;
  std::lock_guard lock(mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::default_logger()->clone(name);
  spdlog::register_logger(l);
  return l;
}

}  // namespace roost
