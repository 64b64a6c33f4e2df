#include "roost/broker/config.h"

#include <roost/broker/push_delivery.h>
#include <roost/gateway/cf_api.h>

#include <toml.hpp>

#include <charconv>
#include <cstdlib>
#include <functional>
#include <sstream>

namespace roost::broker {

namespace {

struct Key {
  const char* name;  // toml key; flag and env var derive from it
  const char* help;
  std::function<void(Config&, const std::string&)> set;
};

std::uint64_t to_u64(const std::string& key, const std::string& v) {
  std::uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) {
    throw ConfigError(key + ": expected a non-negative integer, got '" + v + "'");
  }
  return out;
}

bool to_bool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  throw ConfigError(key + ": expected true or false, got '" + v + "'");
}

void one_of(const std::string& key, const std::string& v, std::initializer_list<const char*> ok) {
  for (const char* o : ok) {
    if (v == o) return;
  }
  std::string list;
  for (const char* o : ok) list += std::string(list.empty() ? "" : ", ") + o;
  throw ConfigError(key + ": expected one of " + list + ", got '" + v + "'");
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      {"data_dir", "directory of the LMDB data (default ./roost-data)",
       [](Config& c, const std::string& v) { c.data_dir = v; }},
      {"http_listen", "gateway HOST:PORT (default 127.0.0.1:8080)",
       [](Config& c, const std::string& v) { c.http_listen = v; }},
      {"endpoint",
       "native protocol endpoint: tcp://HOST:PORT or ipc://PATH; \"off\" = none (default tcp://127.0.0.1:7400)",
       [](Config& c, const std::string& v) {
         if (v != "off" && !v.starts_with("tcp://") && !v.starts_with("ipc://")) {
           throw ConfigError("endpoint: expected tcp://HOST:PORT, ipc://PATH or off, got '" + v + "'");
         }
         c.endpoint = v;
       }},
      {"endpoint_curve_secret", "Z85 CURVE secret key: clients must encrypt (roost keygen makes a pair)",
       [](Config& c, const std::string& v) {
         if (!v.empty() && v.size() != 40)
           throw ConfigError("endpoint_curve_secret: expected a 40-character Z85 key");
         c.endpoint_curve_secret = v;
       }},
      {"heartbeat_ms",
       "native clients silent for 3 heartbeats are gone, their leases released (default 1000)",
       [](Config& c, const std::string& v) {
         c.heartbeat_ms = to_u64("heartbeat_ms", v);
         if (c.heartbeat_ms < 50 || c.heartbeat_ms > 60'000)
           throw ConfigError("heartbeat_ms: expected 50..60000");
       }},
      {"durability", "sync | batch | none (default sync)",
       [](Config& c, const std::string& v) {
         one_of("durability", v, {"sync", "batch", "none"});
         c.durability = v;
       }},
      {"wal",
       "sync durability through the write-ahead log, one flush per commit (default true; false: LMDB's own fsync'd commit)",
       [](Config& c, const std::string& v) { c.wal = to_bool("wal", v); }},
      {"wal_writeback_ms",
       "between write-ahead log checkpoints, start the data file's writeback this often (default 2; 1..1000)",
       [](Config& c, const std::string& v) {
         c.wal_writeback_ms = to_u64("wal_writeback_ms", v);
         if (c.wal_writeback_ms < 1 || c.wal_writeback_ms > 1000)
           throw ConfigError("wal_writeback_ms: expected 1..1000");
       }},
      {"inline_commits",
       "which write groups the thread that read their requests commits itself when the committer is idle: "
       "endpoint (default: the native endpoint's thread any group, waiting for its flush; HTTP I/O threads "
       "only leases and acks), no_flush (leases and acks only), all (also flushed ones on HTTP I/O threads), off",
       [](Config& c, const std::string& v) {
         one_of("inline_commits", v, {"endpoint", "no_flush", "all", "off"});
         c.inline_commits = v;
       }},
      {"sync_interval_ms", "fsync period in batch durability (default 100)",
       [](Config& c, const std::string& v) { c.sync_interval_ms = to_u64("sync_interval_ms", v); }},
      {"max_storage_bytes", "cap on stored bytes; 0 = until the disk is full (default 0)",
       [](Config& c, const std::string& v) { c.max_storage_bytes = to_u64("max_storage_bytes", v); }},
      {"auto_create_queues", "enqueue creates unknown queues (default true)",
       [](Config& c, const std::string& v) { c.auto_create_queues = to_bool("auto_create_queues", v); }},
      {"max_message_bytes", "largest message body (default 1048576)",
       [](Config& c, const std::string& v) { c.max_message_bytes = to_u64("max_message_bytes", v); }},
      {"max_request_bytes", "largest HTTP request body (default 16777216)",
       [](Config& c, const std::string& v) { c.max_request_bytes = to_u64("max_request_bytes", v); }},
      {"max_header_bytes", "largest HTTP header block (default 16384)",
       [](Config& c, const std::string& v) { c.max_header_bytes = to_u64("max_header_bytes", v); }},
      {"idle_timeout_ms", "HTTP keep-alive idle timeout (default 60000)",
       [](Config& c, const std::string& v) { c.idle_timeout_ms = to_u64("idle_timeout_ms", v); }},
      {"max_connections", "concurrent HTTP connections (default 10000)",
       [](Config& c, const std::string& v) { c.max_connections = to_u64("max_connections", v); }},
      {"io_threads", "gateway I/O threads; 0 = one per core (default 0)",
       [](Config& c, const std::string& v) { c.io_threads = to_u64("io_threads", v); }},
      {"shutdown_grace_ms", "how long shutdown waits for in-flight requests (default 10000)",
       [](Config& c, const std::string& v) { c.shutdown_grace_ms = to_u64("shutdown_grace_ms", v); }},
      {"actors", "actor plugins to load: comma-separated .so paths (default none); flag also --actors",
       [](Config& c, const std::string& v) { c.actors = v; }},
      {"actor_threads", "actor worker threads; 0 = one per core (default 0)",
       [](Config& c, const std::string& v) { c.actor_threads = to_u64("actor_threads", v); }},
      {"actor_max_threads",
       "workers added while blocking turns starve other objects, at most; 0 = max(16, 4 x actor_threads) (default 0)",
       [](Config& c, const std::string& v) { c.actor_max_threads = to_u64("actor_max_threads", v); }},
      {"actor_idle_ms", "an object idle this long hibernates: its actor is freed (default 10000)",
       [](Config& c, const std::string& v) { c.actor_idle_ms = to_u64("actor_idle_ms", v); }},
      {"call_timeout_ms",
       "default timeout of an object call, and the longest a remote host's call may wait (default 10000)",
       [](Config& c, const std::string& v) {
         c.call_timeout_ms = to_u64("call_timeout_ms", v);
         if (c.call_timeout_ms == 0) throw ConfigError("call_timeout_ms: expected > 0");
       }},
      {"mesh_etcd", "etcd endpoints (comma-separated http://host:port) of the mesh; unset = a single node",
       [](Config& c, const std::string& v) { c.mesh_etcd = v; }},
      {"mesh_insecure",
       "run a mesh without auth_secret: peers are neither authenticated nor encrypted (loopback tests only; default false)",
       [](Config& c, const std::string& v) { c.mesh_insecure = to_bool("mesh_insecure", v); }},
      {"mesh_cluster", "the mesh's key prefix in etcd (default roost)",
       [](Config& c, const std::string& v) {
         if (v.empty() || v.find('/') != std::string::npos)
           throw ConfigError("mesh_cluster: a name without '/'");
         c.mesh_cluster = v;
       }},
      {"node_name", "this node's name in the mesh, unique (default: the host name)",
       [](Config& c, const std::string& v) {
         if (v.empty() || v.size() > 128 || v.find('/') != std::string::npos)
           throw ConfigError("node_name: 1 to 128 characters without '/'");
         c.node_name = v;
       }},
      {"mesh_listen", "ZeroMQ address of the node's mesh socket (default tcp://127.0.0.1:7500)",
       [](Config& c, const std::string& v) { c.mesh_listen = v; }},
      {"mesh_advertise", "the mesh address peers dial (default: mesh_listen)",
       [](Config& c, const std::string& v) { c.mesh_advertise = v; }},
      {"mesh_shards", "shards of queues and objects, fixed when the mesh is created (default 256)",
       [](Config& c, const std::string& v) {
         c.mesh_shards = to_u64("mesh_shards", v);
         if (c.mesh_shards < 1 || c.mesh_shards > 65536) throw ConfigError("mesh_shards: expected 1..65536");
       }},
      {"mesh_lease_ttl_ms", "membership and ownership lease TTL in etcd (default 3000)",
       [](Config& c, const std::string& v) {
         c.mesh_lease_ttl_ms = to_u64("mesh_lease_ttl_ms", v);
         if (c.mesh_lease_ttl_ms < 1000 || c.mesh_lease_ttl_ms > 60'000)
           throw ConfigError("mesh_lease_ttl_ms: expected 1000..60000");
       }},
      {"app_routes",
       "path prefixes (comma-separated) whose HTTP and WebSocket requests go to a remote host's front "
       "code, a Worker-style fetch (docs/hosts.md); \"/\" = all but Roost's own routes",
       [](Config& c, const std::string& v) {
         for (std::size_t start = 0; start <= v.size();) {
           auto comma = v.find(',', start);
           auto p = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
           if (!p.empty() && p.front() != '/')
             throw ConfigError("app_routes: each prefix starts with '/', got '" + p + "'");
           if (p.starts_with("/v1/") || p == "/v1") throw ConfigError("app_routes: /v1 is Roost's own");
           if (comma == std::string::npos) break;
           start = comma + 1;
         }
         c.app_routes = v;
       }},
      {"remote_classes",
       "object classes served by remote hosts (docs/hosts.md), comma-separated: their mail is kept "
       "while no host is connected",
       [](Config& c, const std::string& v) { c.remote_classes = v; }},
      {"host_class_linger_ms",
       "a class no remote host has served this long, with nothing waiting for it, is forgotten (default 60000)",
       [](Config& c, const std::string& v) { c.host_class_linger_ms = to_u64("host_class_linger_ms", v); }},
      {"max_remote_classes", "classes remote hosts may register, node-wide (default 4096)",
       [](Config& c, const std::string& v) {
         c.max_remote_classes = to_u64("max_remote_classes", v);
         if (c.max_remote_classes == 0) throw ConfigError("max_remote_classes: expected > 0");
       }},
      {"host_turn_timeout_ms",
       "a remote host that sends nothing this long during a turn is closed (default 30000)",
       [](Config& c, const std::string& v) {
         c.host_turn_timeout_ms = to_u64("host_turn_timeout_ms", v);
         if (c.host_turn_timeout_ms < 100) throw ConfigError("host_turn_timeout_ms: expected >= 100");
       }},
      {"actor_mail_memory_bytes",
       "waiting mail data an object keeps in memory; a longer backlog stays on disk (default 1048576)",
       [](Config& c, const std::string& v) {
         c.actor_mail_memory_bytes = to_u64("actor_mail_memory_bytes", v);
       }},
      {"initial_storage_bytes", "the storage map's first size; it doubles on demand (default 268435456)",
       [](Config& c, const std::string& v) {
         c.initial_storage_bytes = to_u64("initial_storage_bytes", v);
         if (c.initial_storage_bytes < (1u << 20))
           throw ConfigError("initial_storage_bytes: expected at least 1048576");
       }},
      {"static_dir", "serve this folder's files at / (default none); flag also --static",
       [](Config& c, const std::string& v) { c.static_dir = v; }},
      {"auth_secret", "HS256 secret for JWT bearer tokens; empty = only loopback clients",
       [](Config& c, const std::string& v) { c.auth_secret = v; }},
      {"allowed_origins",
       "Origins allowed for WebSockets and state-changing requests, comma-separated, * = any (default: same host)",
       [](Config& c, const std::string& v) { c.allowed_origins = v; }},
      {"trusted_proxies",
       "proxy addresses whose X-Forwarded-For names the client objects see, comma-separated (default none)",
       [](Config& c, const std::string& v) { c.trusted_proxies = v; }},
      {"cf_tokens",
       "Cloudflare API tokens the Cloudflare Queues routes accept and the queues each grants: "
       "\"TOKEN:queue,queue;TOKEN2:>\" (docs/cloudflare.md)",
       [](Config& c, const std::string& v) {
         if (auto t = gateway::parse_cf_tokens(v); !t) throw ConfigError(t.error().message);
         c.cf_tokens = v;
       }},
      {"push_allowed_hosts",
       "hosts that push targets and channel webhooks may name, comma-separated, * = any (default "
       "127.0.0.1,::1,localhost; docs/sidecar.md)",
       [](Config& c, const std::string& v) { c.push_allowed_hosts = v; }},
      {"queue_push",
       "queues pushed to HTTP services, set at start: \"QUEUE=URL[,concurrency=N][,timeout_ms=N][,batch_size=N];…\"",
       [](Config& c, const std::string& v) {
         if (auto p = parse_queue_push(v); !p) throw ConfigError(p.error().message);
         c.queue_push = v;
       }},
      {"channel_webhooks", "channel patterns forwarded to HTTP URLs, at most once: \"PATTERN=URL;…\"",
       [](Config& c, const std::string& v) {
         if (auto p = parse_channel_webhooks(v); !p) throw ConfigError(p.error().message);
         c.channel_webhooks = v;
       }},
      {"allowed_hosts",
       "Host names this node answers to without an auth_secret, besides addresses and localhost (comma-separated)",
       [](Config& c, const std::string& v) { c.allowed_hosts = v; }},
      {"max_subscriptions_per_connection",
       "channel subscriptions one WebSocket or native client may hold (default 1024)",
       [](Config& c, const std::string& v) {
         c.max_subscriptions_per_connection = to_u64("max_subscriptions_per_connection", v);
         if (c.max_subscriptions_per_connection == 0)
           throw ConfigError("max_subscriptions_per_connection: expected > 0");
       }},
      {"max_connections_per_ip", "concurrent connections from one address (default 256)",
       [](Config& c, const std::string& v) {
         c.max_connections_per_ip = to_u64("max_connections_per_ip", v);
       }},
      {"max_ws_message_bytes", "largest WebSocket message from a client (default 65536)",
       [](Config& c, const std::string& v) { c.max_ws_message_bytes = to_u64("max_ws_message_bytes", v); }},
      {"ws_idle_timeout_ms", "silent WebSockets are pinged, then closed (default 60000)",
       [](Config& c, const std::string& v) { c.ws_idle_timeout_ms = to_u64("ws_idle_timeout_ms", v); }},
      {"ws_compression", "offer permessage-deflate on WebSockets (default false)",
       [](Config& c, const std::string& v) { c.ws_compression = to_bool("ws_compression", v); }},
      {"channel_history", "messages kept per channel for resume (default 0)",
       [](Config& c, const std::string& v) { c.channel_history = to_u64("channel_history", v); }},
      {"channel_history_ttl_ms", "how long history is kept; 0 = until pushed out (default 0)",
       [](Config& c, const std::string& v) {
         c.channel_history_ttl_ms = to_u64("channel_history_ttl_ms", v);
       }},
      {"channel_slow_policy", "drop | disconnect for subscribers that fall behind (default drop)",
       [](Config& c, const std::string& v) {
         one_of("channel_slow_policy", v, {"drop", "disconnect"});
         c.channel_slow_policy = v;
       }},
      {"channel_buffer_messages", "per-subscriber buffer in messages (default 1024)",
       [](Config& c, const std::string& v) {
         c.channel_buffer_messages = to_u64("channel_buffer_messages", v);
       }},
      {"channel_buffer_bytes", "per-subscriber buffer in bytes (default 1048576)",
       [](Config& c, const std::string& v) { c.channel_buffer_bytes = to_u64("channel_buffer_bytes", v); }},
      {"channel_idle_ms",
       "a channel with no kept history and no direct subscriber is forgotten after this long unused; it comes back with a new epoch (default 600000)",
       [](Config& c, const std::string& v) { c.channel_idle_ms = to_u64("channel_idle_ms", v); }},
      {"channel_namespaces",
       "per-prefix settings: \"chat.:history=50,history_ttl_ms=60000,join_leave=true;x.:policy=disconnect\"",
       [](Config& c, const std::string& v) {
         c.channel_namespaces = v;
         (void)c.hub_options();  // validates
       }},
      {"log_level", "trace | debug | info | warn | error (default info)",
       [](Config& c, const std::string& v) {
         one_of("log_level", v, {"trace", "debug", "info", "warn", "error"});
         c.log_level = v;
       }},
      {"log_format", "text | json (default text)",
       [](Config& c, const std::string& v) {
         one_of("log_format", v, {"text", "json"});
         c.log_format = v;
       }},
  };
  return k;
}

std::string flag_of(const char* key) {
  std::string f = std::string("--") + key;
  for (auto& ch : f) {
    if (ch == '_') ch = '-';
  }
  return f;
}

std::string env_of(const char* key) {
  std::string e = std::string("ROOST_") + key;
  for (auto& ch : e) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return e;
}

const Key* find_flag(const std::string& flag) {
  for (const auto& k : keys()) {
    if (flag_of(k.name) == flag) return &k;
  }
  return nullptr;
}

std::string toml_scalar(const std::string& key, const toml::value& v) {
  if (v.is_string()) return v.as_string().str;
  if (v.is_integer()) {
    if (v.as_integer() < 0) throw ConfigError(key + ": must not be negative");
    return std::to_string(v.as_integer());
  }
  if (v.is_boolean()) return v.as_boolean() ? "true" : "false";
  throw ConfigError(key + ": expected a string, integer or boolean");
}

}  // namespace

Config load_config(const std::vector<std::string>& args) {
  // Pass 1: flags into a list; --config may name the file.
  std::vector<std::pair<const Key*, std::string>> flags;
  std::filesystem::path file;
  bool file_explicit = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos && a.starts_with("--")) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    auto need_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw ConfigError(a + ": needs a value");
      return args[++i];
    };
    if (a == "--static") a = "--static-dir";
    if (a == "--config") {
      file = need_value();
      file_explicit = true;
      continue;
    }
    const Key* k = find_flag(a);
    if (k == nullptr) throw ConfigError("unknown option " + a + " (see roost serve --help)");
    flags.emplace_back(k, need_value());
  }
  if (!file_explicit) {
    if (const char* env = std::getenv("ROOST_CONFIG")) {
      file = env;
      file_explicit = true;
    } else if (std::filesystem::exists("roost.toml")) {
      file = "roost.toml";
    }
  }

  Config c;
  if (!file.empty()) {
    if (!std::filesystem::exists(file)) throw ConfigError("config file " + file.string() + " not found");
    toml::value root;
    try {
      root = toml::parse(file.string());
    } catch (const std::exception& e) {
      throw ConfigError("config file " + file.string() + ": " + e.what());
    }
    if (!root.is_table()) throw ConfigError("config file " + file.string() + ": not a table");
    for (const auto& [name, value] : root.as_table()) {
      const Key* k = nullptr;
      for (const auto& key : keys()) {
        if (name == key.name) k = &key;
      }
      if (k == nullptr) throw ConfigError(file.string() + ": unknown key '" + name + "'");
      k->set(c, toml_scalar(name, value));
    }
    c.config_file = file;
  }
  for (const auto& k : keys()) {
    if (const char* v = std::getenv(env_of(k.name).c_str())) k.set(c, v);
  }
  for (const auto& [k, v] : flags) k->set(c, v);
  if (c.max_request_bytes < c.max_message_bytes) {
    throw ConfigError("max_request_bytes must be at least max_message_bytes");
  }
  if (!c.mesh_etcd.empty() && c.auth_secret.empty() && !c.mesh_insecure) {
    throw ConfigError(
        "a mesh (mesh_etcd) needs auth_secret: it proves peers to each other and encrypts their links "
        "(mesh_insecure = true runs one without, for loopback tests only)");
  }
  // Every configured push and webhook target must be one the operator allows.
  auto allowed = push_hosts(c.push_allowed_hosts);
  auto pushed = parse_queue_push(c.queue_push);
  for (const auto& [queue, target] : *pushed) {
    if (auto e = check_push_url(target.url, allowed)) throw ConfigError("queue_push: " + e->message);
  }
  auto hooks = parse_channel_webhooks(c.channel_webhooks);
  for (const auto& [pattern, url] : *hooks) {
    if (auto e = check_push_url(url, allowed)) throw ConfigError("channel_webhooks: " + e->message);
  }
  return c;
}

channels::HubOptions Config::hub_options() const {
  channels::HubOptions o;
  auto& d = o.defaults;
  d.history_size = channel_history;
  d.history_ttl_ms = channel_history_ttl_ms;
  d.policy =
      channel_slow_policy == "disconnect" ? channels::SlowPolicy::kDisconnect : channels::SlowPolicy::kDrop;
  d.buffer_messages = channel_buffer_messages;
  d.buffer_bytes = channel_buffer_bytes;
  std::string_view rest = channel_namespaces;
  while (!rest.empty()) {
    auto semi = rest.find(';');
    std::string_view spec = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    if (spec.empty()) continue;
    auto colon = spec.find(':');
    channels::NamespaceConfig ns = d;
    ns.prefix = std::string(spec.substr(0, colon));
    if (ns.prefix.empty()) throw ConfigError("channel_namespaces: a namespace needs a prefix");
    std::string_view settings = colon == std::string_view::npos ? std::string_view() : spec.substr(colon + 1);
    while (!settings.empty()) {
      auto comma = settings.find(',');
      std::string_view kv = settings.substr(0, comma);
      settings = comma == std::string_view::npos ? std::string_view() : settings.substr(comma + 1);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos) {
        throw ConfigError("channel_namespaces: expected key=value, got '" + std::string(kv) + "'");
      }
      std::string key(kv.substr(0, eq));
      std::string value(kv.substr(eq + 1));
      std::string where = "channel_namespaces " + ns.prefix + " " + key;
      if (key == "history")
        ns.history_size = to_u64(where, value);
      else if (key == "history_ttl_ms")
        ns.history_ttl_ms = to_u64(where, value);
      else if (key == "buffer_messages")
        ns.buffer_messages = to_u64(where, value);
      else if (key == "buffer_bytes")
        ns.buffer_bytes = to_u64(where, value);
      else if (key == "join_leave")
        ns.join_leave = to_bool(where, value);
      else if (key == "policy") {
        one_of(where, value, {"drop", "disconnect"});
        ns.policy = value == "drop" ? channels::SlowPolicy::kDrop : channels::SlowPolicy::kDisconnect;
      } else {
        throw ConfigError("channel_namespaces: unknown setting '" + key + "'");
      }
    }
    o.namespaces.push_back(std::move(ns));
  }
  return o;
}

std::string config_help() {
  std::ostringstream out;
  out << "  --config FILE            configuration file (default ./roost.toml if present;"
         " env ROOST_CONFIG)\n";
  for (const auto& k : keys()) {
    std::string flag = flag_of(k.name) + " V";
    out << "  " << flag << std::string(flag.size() < 25 ? 25 - flag.size() : 1, ' ') << k.help << "\n"
        << std::string(27, ' ') << "toml: " << k.name << ", env: " << env_of(k.name) << "\n";
  }
  return out.str();
}

}  // namespace roost::broker
