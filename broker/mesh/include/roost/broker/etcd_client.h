// EtcdClient: the mesh's coordination store, spoken to over etcd's v3 JSON gateway (HTTP/1.1 with
// Boost.Beast; keys and values base64, 64-bit numbers as strings) — no client library.
//
// Blocking calls with a per-call deadline; on a connection failure the next endpoint of the list
// is tried. Errors come back as Result errors (UNAVAILABLE when no endpoint answers), never as
// exceptions.
//
// Thread-safety: one EtcdClient per thread (each holds one keep-alive connection).
#pragma once

#include <roost/core/error.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace roost::broker {

struct EtcdKv {
  std::string key, value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

struct EtcdCreateResult {
  bool created = false;       // false: the key existed; `existing` holds it
  std::int64_t revision = 0;  // the store's revision after the transaction
  std::optional<EtcdKv> existing;
};

class EtcdClient {
 public:
  // `endpoints`: comma-separated http://host:port.
  explicit EtcdClient(std::string endpoints,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // A lease of `ttl_seconds`; its id.
  Result<std::int64_t> grant(std::int64_t ttl_seconds);
  // Renews the lease; its remaining TTL (0: it had expired).
  Result<std::int64_t> keepalive(std::int64_t lease);
  Result<bool> revoke(std::int64_t lease);
  Result<std::int64_t> put(const std::string& key, const std::string& value, std::int64_t lease = 0);
  // Puts only when the key does not exist (compare create_revision == 0): the claim primitive.
  Result<EtcdCreateResult> create(const std::string& key, const std::string& value, std::int64_t lease = 0);
  // Deletes `key` only while its create_revision is `revision` (releasing a claim we still hold).
  Result<bool> delete_if(const std::string& key, std::int64_t create_revision);
  // In one transaction, while `owner_key` is the claim created at `create_revision` with value
  // `owner`: sets `home_key` to `home` and deletes the claim (a shard move's switch). False when the
  // claim is no longer that one.
  Result<bool> switch_home(const std::string& owner_key, std::int64_t create_revision,
                           const std::string& owner, const std::string& home_key, const std::string& home);
  Result<std::optional<EtcdKv>> get(const std::string& key);
  // Every key starting with `prefix`, in key order.
  Result<std::vector<EtcdKv>> list(const std::string& prefix);
  Result<bool> del(const std::string& key);

  // POST a v3 gateway path with a JSON body; the JSON answer (exposed for tests and tools).
  Result<std::string> call(const std::string& path, const std::string& body);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The end of a prefix range (etcd's range_end): the prefix with its last byte incremented.
std::string etcd_prefix_end(std::string prefix);

}  // namespace roost::broker
