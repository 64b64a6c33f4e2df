#include "roost/broker/mesh.h"

#include <roost/broker/etcd_client.h>
#include <roost/core/log.h>
#include <roost/core/thread_name.h>

#include <boost/json.hpp>

namespace roost::broker {

namespace json = boost::json;

namespace {
// The part of the TTL a renewal may take on the way, and the clock drift we allow for.
constexpr auto kFenceMargin = std::chrono::milliseconds(500);
}  // namespace

Mesh::Mesh(MeshOptions options) : options_(std::move(options)) {}

Mesh::~Mesh() { stop(); }

void Mesh::start() {
  thread_ = std::thread([this] {
    roost::name_this_thread("roost-mesh");
    run();
  });
}

void Mesh::stop() {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  if (auto lease = lease_.exchange(0); lease != 0) {
    EtcdClient etcd(options_.etcd, std::chrono::milliseconds(1000));
    if (etcd.revoke(lease)) {
      module_logger("mesh")->info("left the mesh {} (lease revoked)", options_.cluster);
    }
  }
}

std::vector<MeshMember> Mesh::members() const {
  MutexLock lock(mu_);
  return members_;
}

std::chrono::steady_clock::time_point Mesh::lease_valid_until() const {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(valid_until_ns_.load()));
}

void Mesh::run() {
  auto log = module_logger("mesh");
  log->info("mesh {}: node {} joining through etcd {} (lease TTL {} ms)", options_.cluster,
            options_.node_name, options_.etcd, options_.lease_ttl.count());
  const auto period = options_.lease_ttl / 3;
  bool was_ok = true;
  for (;;) {
    bool ok = tick();
    if (ok != was_ok) {
      if (ok) {
        log->info("etcd reachable again");
      } else {
        log->warn(
            "etcd unreachable at {}: this node cannot renew its membership (its shards are fenced "
            "when the lease runs out)",
            options_.etcd);
      }
      was_ok = ok;
    }
    etcd_ok_ = ok;
    MutexLock lock(mu_);
    if (stopping_) return;
    cv_.wait_for(lock.native(), ok ? period : std::chrono::milliseconds(250));
    if (stopping_) return;
  }
}

bool Mesh::tick() {
  auto log = module_logger("mesh");
  EtcdClient etcd(options_.etcd, options_.lease_ttl / 3);
  const std::string prefix = "/" + options_.cluster + "/";
  if (shards_.load() == 0) {
    auto c = etcd.create(prefix + "config/shards", std::to_string(options_.shards));
    if (!c) return false;
    std::uint32_t n = options_.shards;
    if (!c->created && c->existing) n = static_cast<std::uint32_t>(std::stoul(c->existing->value));
    if (n != options_.shards) {
      log->warn("mesh {} was created with {} shards; mesh_shards {} is ignored", options_.cluster, n,
                options_.shards);
    }
    shards_ = n;
  }
  auto sent = std::chrono::steady_clock::now();
  auto lease = lease_.load();
  bool renewed = false;
  if (lease != 0) {
    auto ttl = etcd.keepalive(lease);
    if (!ttl) return false;
    renewed = *ttl > 0;
    if (!renewed) log->warn("the membership lease expired (etcd unreachable or this node paused); rejoining");
  }
  if (!renewed) {
    auto ttl_s = std::max<std::int64_t>(1, (options_.lease_ttl.count() + 999) / 1000);
    auto granted = etcd.grant(ttl_s);
    if (!granted) return false;
    json::object me{{"mesh", options_.mesh_advertise},
                    {"http", options_.http_advertise},
                    {"native", options_.native_advertise}};
    if (!etcd.put(prefix + "members/" + options_.node_name, json::serialize(me), *granted)) return false;
    lease_ = *granted;
    log->info("joined mesh {} as {} (lease {:x})", options_.cluster, options_.node_name, *granted);
  }
  valid_until_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        (sent + options_.lease_ttl - kFenceMargin).time_since_epoch())
                        .count();
  auto listed = etcd.list(prefix + "members/");
  if (!listed) return false;
  std::vector<MeshMember> members;
  for (const auto& kv : *listed) {
    MeshMember m;
    m.name = kv.key.substr(prefix.size() + 8);
    m.joined_revision = kv.create_revision;
    boost::system::error_code ec;
    auto v = json::parse(kv.value, ec);
    if (!ec && v.is_object()) {
      auto s = [&](const char* k) {
        auto* x = v.as_object().if_contains(k);
        return x != nullptr && x->is_string() ? std::string(x->get_string()) : std::string();
      };
      m.mesh = s("mesh");
      m.http = s("http");
      m.native = s("native");
    }
    members.push_back(std::move(m));
  }
  MutexLock lock(mu_);
  members_ = std::move(members);
  return true;
}

std::string Mesh::status_json() const {
  json::array members;
  for (const auto& m : this->members()) {
    members.push_back(
        json::object{{"name", m.name}, {"mesh", m.mesh}, {"http", m.http}, {"native", m.native}});
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(lease_valid_until() -
                                                                    std::chrono::steady_clock::now())
                  .count();
  return json::serialize(json::object{{"node", options_.node_name},
                                      {"cluster", options_.cluster},
                                      {"etcd", etcd_ok() ? "ok" : "unreachable"},
                                      {"joined", joined()},
                                      {"shards", shards()},
                                      {"lease_ttl_ms", options_.lease_ttl.count()},
                                      {"lease_valid_ms", std::max<std::int64_t>(0, left)},
                                      {"members", std::move(members)}});
}

}  // namespace roost::broker
