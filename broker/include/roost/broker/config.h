// Node configuration. Every key can be set, from lowest to highest precedence, by its default,
// roost.toml (or --config FILE), a ROOST_<KEY> environment variable, and a --<key> flag
// (underscores become dashes: data_dir = ROOST_DATA_DIR = --data-dir).
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace roost::broker {

struct Config {
  std::filesystem::path data_dir = "./roost-data";  // LMDB environment lives here
  std::string http_listen = "127.0.0.1:8080";       // gateway HOST:PORT (port 0 = any free)
  std::string durability = "sync";                  // sync | batch | none
  std::uint64_t sync_interval_ms = 100;             // batch durability fsync period
  std::uint64_t max_storage_bytes = 0;              // cap on the LMDB map; 0 = until disk full
  bool auto_create_queues = true;                   // enqueue creates unknown queues
  std::uint64_t max_message_bytes = 1u << 20;       // largest message body (1 MiB)
  std::uint64_t max_request_bytes = 16u << 20;      // largest HTTP request body
  std::uint64_t max_header_bytes = 16u << 10;       // largest HTTP request header block
  std::uint64_t idle_timeout_ms = 60'000;           // HTTP keep-alive idle timeout
  std::uint64_t max_connections = 10'000;           // concurrent HTTP connections
  std::uint64_t io_threads = 0;                     // 0 = one per core
  std::uint64_t shutdown_grace_ms = 10'000;         // how long SIGTERM waits for in-flight work
  std::string log_level = "info";                   // trace|debug|info|warn|error
  std::string log_format = "text";                  // text | json
  std::filesystem::path config_file;                // where the file layer came from, if any
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds the configuration from defaults, file, environment and flags. `args` are the flags
// after the sub-command. Throws ConfigError naming the offending key.
Config load_config(const std::vector<std::string>& args);

// The flag reference printed by `roost serve --help`.
std::string config_help();

}  // namespace roost::broker
