// Node configuration. Every key can be set, from lowest to highest precedence, by its default,
// roost.toml (or --config FILE), a ROOST_<KEY> environment variable, and a --<key> flag
// (underscores become dashes: data_dir = ROOST_DATA_DIR = --data-dir).
#pragma once

#include <roost/channels/hub.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace roost::broker {

struct Config {
  std::filesystem::path data_dir = "./roost-data";   // LMDB environment lives here
  std::string http_listen = "127.0.0.1:8080";        // gateway HOST:PORT (port 0 = any free)
  std::string endpoint = "tcp://127.0.0.1:7400";     // native protocol; "off" = none
  std::string endpoint_curve_secret;                 // Z85 secret key; set = CURVE required
  std::uint64_t heartbeat_ms = 1000;                 // native client heartbeat
  std::string durability = "sync";                   // sync | batch | none
  std::uint64_t sync_interval_ms = 100;              // batch durability fsync period
  bool wal = true;                                   // sync durability through the write-ahead log
  std::uint64_t wal_writeback_ms = 2;                // data file writeback pace between checkpoints
  std::string inline_commits = "endpoint";           // endpoint | no_flush | all | off (Committer LeadMode)
  std::uint64_t max_storage_bytes = 0;               // cap on the LMDB map; 0 = until disk full
  std::uint64_t initial_storage_bytes = 256u << 20;  // the LMDB map's first size; it doubles as needed
  bool auto_create_queues = true;                    // enqueue creates unknown queues
  std::uint64_t max_message_bytes = 1u << 20;        // largest message body (1 MiB)
  std::uint64_t max_request_bytes = 16u << 20;       // largest HTTP request body
  std::uint64_t max_header_bytes = 16u << 10;        // largest HTTP request header block
  std::uint64_t idle_timeout_ms = 60'000;            // HTTP keep-alive idle timeout
  std::uint64_t max_connections = 10'000;            // concurrent HTTP connections
  std::uint64_t io_threads = 0;                      // 0 = one per core
  std::uint64_t shutdown_grace_ms = 10'000;          // how long SIGTERM waits for in-flight work
  std::string static_dir;                            // served at / when set (--static)
  std::string auth_secret;                           // HS256 JWT secret; empty = loopback only
  std::string allowed_origins;                       // comma list for WebSockets and writes; "*" = any
  std::string trusted_proxies;  // addresses whose X-Forwarded-For names the client (objects see it)
  std::string allowed_hosts;    // Host names besides addresses and localhost (no secret)
  std::string cf_tokens;        // Cloudflare API tokens and their queues (docs/cloudflare.md)
  // Push delivery and webhooks (docs/sidecar.md).
  std::string push_allowed_hosts = "127.0.0.1,::1,localhost";  // hosts push/webhook URLs may name; "*" = any
  std::string queue_push;        // "QUEUE=URL[,concurrency=N][,timeout_ms=N][,batch_size=N];…" set at start
  std::string channel_webhooks;  // "PATTERN=URL;…"
  std::uint64_t max_subscriptions_per_connection = 1024;  // channel subscriptions of one WebSocket or client
  std::uint64_t max_connections_per_ip = 256;             // concurrent connections from one address
  std::uint64_t max_ws_message_bytes = 64u << 10;         // largest WebSocket message from a client
  std::uint64_t ws_idle_timeout_ms = 60'000;              // silent WebSockets are pinged, then closed
  bool ws_compression = false;                            // offer permessage-deflate
  // Channel defaults (every channel) and per-prefix namespaces:
  // "chat.:history=50,history_ttl_ms=300000,policy=drop;alerts.:policy=disconnect"
  std::uint64_t channel_history = 0;
  std::uint64_t channel_history_ttl_ms = 0;
  std::string channel_slow_policy = "drop";  // drop | disconnect
  std::uint64_t channel_buffer_messages = 1024;
  // A channel without kept history or direct subscribers, unused this long, is forgotten.
  std::uint64_t channel_idle_ms = 600'000;
  std::uint64_t channel_buffer_bytes = 1u << 20;
  std::string channel_namespaces;
  std::string actors;                      // plugin .so paths, comma-separated (--actors)
  std::uint64_t actor_threads = 0;         // actor worker threads; 0 = one per core
  std::uint64_t actor_max_threads = 0;     // with workers added for blocking turns; 0 = max(16, 4×)
  std::uint64_t actor_idle_ms = 10'000;    // hibernate an idle object after this long
  std::uint64_t call_timeout_ms = 10'000;  // default object call timeout
  std::uint64_t actor_mail_memory_bytes = 1u << 20;  // waiting mail data one object keeps in RAM
  // The mesh (docs/mesh.md); without mesh_etcd the node is a single node and needs no etcd.
  std::string mesh_etcd;                             // etcd endpoints, comma-separated http://host:port
  bool mesh_insecure = false;                        // a mesh without auth_secret (warned at start)
  std::string mesh_cluster = "roost";                // etcd key prefix of this mesh
  std::string node_name;                             // unique in the mesh (default: the host name)
  std::string mesh_listen = "tcp://127.0.0.1:7500";  // ZeroMQ address of the node's mesh socket
  std::string mesh_advertise;                        // what peers dial (default: mesh_listen)
  std::uint64_t mesh_shards = 256;                   // fixed when the mesh is created
  std::uint64_t mesh_lease_ttl_ms = 3000;
  std::string app_routes;      // path prefixes handed to a host's front code, comma-separated
  std::string remote_classes;  // classes served by remote hosts only, comma-separated (docs/hosts.md)
  std::uint64_t host_turn_timeout_ms = 30'000;  // a remote host silent this long in a turn is closed
  std::uint64_t host_class_linger_ms = 60'000;  // an unserved remote class with nothing waiting is forgotten
  std::uint64_t max_remote_classes = 4096;      // classes remote hosts may register, node-wide
  std::string log_level = "info";               // trace|debug|info|warn|error
  std::string log_format = "text";              // text | json
  std::filesystem::path config_file;            // where the file layer came from, if any

  // Derived from the channel_* keys by load_config().
  channels::HubOptions hub_options() const;
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
