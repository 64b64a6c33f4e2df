#include "roost/broker/mesh.h"

#include <roost/broker/etcd_client.h>
#include <roost/core/auth.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/thread_name.h>

#include <boost/asio/post.hpp>
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
  requests_ = std::make_unique<boost::asio::thread_pool>(1);
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
  if (requests_) requests_->join();
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
    if (!ok) failed_ticks_.fetch_add(1, std::memory_order_relaxed);
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
  // A renewal may take up to half the TTL (etcd fsyncs its writes): later, the lease is at risk.
  EtcdClient etcd(options_.etcd, options_.lease_ttl / 2);
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
    // The claims this node held were bound to the lost lease: etcd has dropped them, and so must
    // this node before a new lease makes it "valid" again — else a request that carries an old
    // epoch (it waited in a socket while this node was paused) would pass the route check until
    // the claims are read again. Found by the SIGSTOP test: two such requests were committed.
    valid_until_ns_ = 0;
    {
      MutexLock lock(mu_);
      std::size_t dropped = 0;
      for (auto& [shard, slot] : shards_table_) {
        if (slot.owner != options_.node_name) continue;
        slot.owner.clear();
        slot.epoch = 0;
        ++dropped;
      }
      if (dropped > 0) log->warn("dropped {} shard claims of the lost lease", dropped);
    }
    auto ttl_s = std::max<std::int64_t>(1, (options_.lease_ttl.count() + 999) / 1000);
    auto granted = etcd.grant(ttl_s);
    if (!granted) return false;
    json::object me{{"mesh", options_.mesh_advertise},
                    {"http", options_.http_advertise},
                    {"native", options_.native_advertise}};
    if (!options_.secret.empty()) {
      me["proof"] = member_proof(options_.secret, options_.node_name, options_.mesh_advertise,
                                 options_.http_advertise, options_.native_advertise);
    }
    if (!etcd.put(prefix + "members/" + options_.node_name, json::serialize(me), *granted)) return false;
    lease_ = *granted;
    log->info("joined mesh {} as {} (lease {:x})", options_.cluster, options_.node_name, *granted);
  }
  valid_until_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        (sent + options_.lease_ttl - kFenceMargin).time_since_epoch())
                        .count();
  ever_valid_ = true;
  if (!list_members(etcd)) return false;
  return claim(etcd);
}

std::string member_proof(std::string_view secret, const std::string& name, const std::string& mesh,
                         const std::string& http, const std::string& native) {
  auto mac = hmac_sha256(secret, "roost member v1\n" + name + "\n" + mesh + "\n" + http + "\n" + native);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : mac) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool Mesh::list_members(EtcdClient& etcd) {
  const std::string prefix = "/" + options_.cluster + "/";
  auto listed = etcd.list(prefix + "members/");
  if (!listed) return false;
  std::vector<MeshMember> members;
  std::vector<std::string> unproven;  // entries written by someone without the cluster secret
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
      if (!options_.secret.empty() &&
          s("proof") != member_proof(options_.secret, m.name, m.mesh, m.http, m.native)) {
        unproven.push_back(kv.key + "=" + kv.value);
        continue;
      }
    } else if (!options_.secret.empty()) {
      unproven.push_back(kv.key + "=" + kv.value);
      continue;
    }
    members.push_back(std::move(m));
  }
  {
    MutexLock lock(mu_);
    members_ = std::move(members);
    for (auto& u : unproven) {
      if (unproven_.insert(u).second) {
        module_logger("mesh")->warn("member entry {} does not prove the cluster secret: not a member",
                                    u.substr(0, 200));
      }
    }
  }
  return true;
}

namespace {
// A finalizer (MurmurHash3's fmix64): every input bit reaches every output bit. FNV-1a alone
// leaves the high bits of names that differ in one byte nearly alike, and rendezvous compares
// whole weights: with members a, b, c node c homed none of 64 shards, and of node-1…3 node-1 all.
std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}
}  // namespace

std::string Mesh::channel_home(const std::vector<std::string>& names, std::string_view channel) {
  std::string_view best;
  std::uint64_t best_weight = 0;
  for (const auto& n : names) {
    auto w = fmix64(placement_hash("channel", n, channel));
    if (best.empty() || w > best_weight || (w == best_weight && n < best)) {
      best = n;
      best_weight = w;
    }
  }
  return std::string(best);
}

std::string Mesh::rendezvous(const std::vector<MeshMember>& members, std::uint32_t shard) {
  std::string best;
  std::uint64_t best_weight = 0;
  for (const auto& m : members) {
    auto w = fmix64(placement_hash("home", m.name, std::to_string(shard)));
    if (best.empty() || w > best_weight || (w == best_weight && m.name < best)) {
      best = m.name;
      best_weight = w;
    }
  }
  return best;
}

// Homes are persistent keys /{cluster}/shards/{n}/home; owners lease-backed /{cluster}/shards/{n}/owner.
bool Mesh::claim(EtcdClient& etcd) {
  const std::string prefix = "/" + options_.cluster + "/shards/";
  auto listed = etcd.list(prefix);
  if (!listed) return false;
  std::map<std::uint32_t, ShardPlacement> table;
  for (const auto& kv : *listed) {
    auto rest = kv.key.substr(prefix.size());
    auto slash = rest.find('/');
    if (slash == std::string::npos) continue;
    auto n = static_cast<std::uint32_t>(std::strtoul(rest.substr(0, slash).c_str(), nullptr, 10));
    auto& p = table[n];
    p.shard = n;
    if (rest.substr(slash + 1) == "home") p.home = kv.value;
    if (rest.substr(slash + 1) == "owner") {
      if (kv.value == options_.node_name && kv.lease != lease_.load()) {
        // A claim of this node's previous life (killed, restarted within the TTL): its lease will
        // run out, but serving under it would reuse an epoch across two processes. Drop it and
        // claim anew (a higher epoch), so that peers holding the old one are refused and refresh.
        if (!etcd.delete_if(kv.key, kv.create_revision)) return false;
        module_logger("mesh")->info("shard {}: dropped the claim of this node's previous run (epoch {})", n,
                                    kv.create_revision);
        continue;
      }
      p.owner = kv.value;
      p.epoch = kv.create_revision;
    }
  }
  for (auto& [n, p] : table) {
    if (p.home != options_.node_name || !p.owner.empty()) continue;
    if (!claim_one(etcd, p)) return false;
  }
  MutexLock lock(mu_);
  for (auto& [n, p] : shards_table_) {
    // Log what changed hands (one line per ownership change seen).
    auto it = table.find(n);
    if (!p.owner.empty() && (it == table.end() || it->second.owner.empty())) {
      owners_lost_.fetch_add(1, std::memory_order_relaxed);
      module_logger("mesh")->warn("shard {}: owner {} is gone (epoch {}); it waits for its home {}", n,
                                  p.owner, p.epoch, p.home);
    }
  }
  shards_table_ = std::move(table);
  return true;
}

bool Mesh::claim_one(EtcdClient& etcd, ShardPlacement& p) {
  auto lease = lease_.load();
  if (lease == 0) return true;
  auto c = etcd.create("/" + options_.cluster + "/shards/" + std::to_string(p.shard) + "/owner",
                       options_.node_name, lease);
  if (!c) return false;
  if (c->created) {
    p.owner = options_.node_name;
    p.epoch = c->revision;
    claims_.fetch_add(1, std::memory_order_relaxed);
    module_logger("mesh")->info("shard {}: owned by {} from epoch {}", p.shard, p.owner, p.epoch);
  } else if (c->existing) {
    p.owner = c->existing->value;
    p.epoch = c->existing->create_revision;
  }
  return true;
}

Result<ShardPlacement> Mesh::resolve(std::uint32_t shard, bool refresh) {
  ShardPlacement p;
  p.shard = shard;
  {
    MutexLock lock(mu_);
    if (auto it = shards_table_.find(shard); it != shards_table_.end() && !it->second.home.empty()) {
      if (!it->second.owner.empty() && !refresh) return it->second;
      p.home = it->second.home;  // known home (it never moves by itself): ask etcd for the owner now
    }
  }
  EtcdClient etcd(options_.etcd, options_.lease_ttl / 2);
  // A refresh reads the members too: the owner may have come back since the last listing.
  if (refresh && !list_members(etcd))
    return std::unexpected(Error{ErrorCode::UNAVAILABLE, "etcd did not answer"});
  if (p.home.empty()) {
    auto members = this->members();
    if (members.empty())
      return std::unexpected(Error{ErrorCode::UNAVAILABLE, "no live members to home a shard on"});
    const std::string key = "/" + options_.cluster + "/shards/" + std::to_string(shard) + "/home";
    auto winner = rendezvous(members, shard);
    auto c = etcd.create(key, winner);
    if (!c) return std::unexpected(c.error());
    p.home = c->created ? winner : (c->existing ? c->existing->value : std::string());
    if (c->created) module_logger("mesh")->info("shard {}: homed on {}", shard, p.home);
  }
  if (auto owner = etcd.get("/" + options_.cluster + "/shards/" + std::to_string(shard) + "/owner"); !owner) {
    return std::unexpected(owner.error());
  } else if (*owner && ((*owner)->value != options_.node_name || (*owner)->lease == lease_.load())) {
    p.owner = (*owner)->value;
    p.epoch = (*owner)->create_revision;
  } else if (*owner) {
    // This node's previous run holds it: the next listing drops that claim and claims anew.
  } else if (p.home == options_.node_name && !claim_one(etcd, p)) {
    return std::unexpected(Error{ErrorCode::UNAVAILABLE, "etcd did not answer the claim"});
  }
  MutexLock lock(mu_);
  auto& slot = shards_table_[shard];
  if (refresh || slot.home.empty() || slot.owner.empty()) slot = p;
  return slot;
}

void Mesh::resolve_async(std::uint32_t shard, bool refresh, Callback<ShardPlacement> done) {
  if (!requests_) return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the mesh is not started"}));
  boost::asio::post(*requests_, [this, shard, refresh, done = std::move(done)]() mutable {
    done(resolve(shard, refresh));
  });
}

std::optional<ShardPlacement> Mesh::cached(std::uint32_t shard) const {
  MutexLock lock(mu_);
  auto it = shards_table_.find(shard);
  if (it == shards_table_.end() || it->second.home.empty()) return std::nullopt;
  return it->second;
}

bool Mesh::serves(std::uint32_t shard, std::int64_t epoch) const {
  if (std::chrono::steady_clock::now() >= lease_valid_until()) return false;  // fenced
  if (shard_closed(shard)) return false;                                      // moving away
  MutexLock lock(mu_);
  auto it = shards_table_.find(shard);
  return it != shards_table_.end() && it->second.owner == options_.node_name && it->second.epoch == epoch;
}

Result<std::string> Mesh::placement_json(const std::string& kind, const std::string& name) {
  auto n = shards();
  if (n == 0) return std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"});
  std::uint32_t shard = 0;
  if (kind == "queue") {
    shard = shard_of_queue(name, n);
  } else if (kind == "object") {
    auto slash = name.find('/');
    if (slash == std::string::npos)
      return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "object is CLASS/NAME"});
    shard = shard_of_object(name.substr(0, slash), name.substr(slash + 1), n);
  } else {
    return std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "placement of a queue or an object"});
  }
  auto p = resolve(shard);
  if (!p) return std::unexpected(p.error());
  return json::serialize(
      json::object{{"shard", p->shard},
                   {"home", p->home},
                   {"owner", p->owner.empty() ? json::value(nullptr) : json::value(p->owner)},
                   {"epoch", p->epoch}});
}

void Mesh::placement(std::string kind, std::string name, Callback<std::string> done) {
  if (!requests_) return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the mesh is not started"}));
  boost::asio::post(*requests_, [this, kind = std::move(kind), name = std::move(name),
                                 done = std::move(done)]() mutable { done(placement_json(kind, name)); });
}

std::vector<ShardPlacement> Mesh::owned() const {
  std::vector<ShardPlacement> out;
  if (std::chrono::steady_clock::now() >= lease_valid_until()) return out;  // fenced
  MutexLock lock(mu_);
  for (const auto& [n, p] : shards_table_) {
    if (p.owner == options_.node_name) out.push_back(p);
  }
  return out;
}

void Mesh::close_shard(std::uint32_t shard) {
  if (shard >= closed_bits_.size() * 64) return;  // not a shard (mesh_shards ≤ 65,536)
  const auto bit = std::uint64_t{1} << (shard % 64);
  if ((closed_bits_[shard / 64].fetch_or(bit) & bit) == 0) closed_count_.fetch_add(1);
}

void Mesh::reopen_shard(std::uint32_t shard) {
  if (shard >= closed_bits_.size() * 64) return;
  const auto bit = std::uint64_t{1} << (shard % 64);
  if ((closed_bits_[shard / 64].fetch_and(~bit) & bit) != 0) closed_count_.fetch_sub(1);
}

bool Mesh::holds(std::uint32_t shard, std::int64_t epoch) const {
  if (std::chrono::steady_clock::now() >= lease_valid_until()) return false;
  MutexLock lock(mu_);
  auto it = shards_table_.find(shard);
  return it != shards_table_.end() && it->second.owner == options_.node_name && it->second.epoch == epoch;
}

bool Mesh::shard_closed(std::uint32_t shard) const {
  if (closed_count_.load() == 0 || shard >= closed_bits_.size() * 64) return false;
  return (closed_bits_[shard / 64].load() >> (shard % 64)) & 1;
}

bool Mesh::queue_closed(std::string_view queue) const {
  if (closed_count_.load() == 0) return false;
  auto n = shards();
  return n != 0 && shard_closed(shard_of_queue(queue, n));
}

Result<std::int64_t> Mesh::take_over(std::uint32_t shard, const std::string& from, std::int64_t epoch) {
  EtcdClient etcd(options_.etcd, options_.lease_ttl / 2);
  const std::string prefix = "/" + options_.cluster + "/shards/" + std::to_string(shard) + "/";
  auto switched = etcd.switch_home(prefix + "owner", epoch, from, prefix + "home", options_.node_name);
  if (!switched) return std::unexpected(switched.error());
  if (!*switched) {
    return std::unexpected(Error{ErrorCode::CONFLICT, "shard " + std::to_string(shard) +
                                                          " is no longer owned by " + from + " under epoch " +
                                                          std::to_string(epoch)});
  }
  reopen_shard(shard);  // it may have moved away from here before
  ShardPlacement p;
  p.shard = shard;
  p.home = options_.node_name;
  if (!claim_one(etcd, p) || p.owner != options_.node_name) {
    // The home is switched: the claim loop claims it within a renewal period.
    module_logger("mesh")->warn("shard {}: homed here now, claim deferred to the next renewal", shard);
    MutexLock lock(mu_);
    shards_table_[shard] = ShardPlacement{shard, options_.node_name, {}, 0};
    return std::int64_t{0};
  }
  module_logger("mesh")->info("shard {}: moved here from {} (epoch {} -> {})", shard, from, epoch, p.epoch);
  MutexLock lock(mu_);
  shards_table_[shard] = p;
  return p.epoch;
}

Result<std::int64_t> Mesh::reclaim(std::uint32_t shard, std::int64_t epoch) {
  EtcdClient etcd(options_.etcd, options_.lease_ttl / 2);
  const std::string key = "/" + options_.cluster + "/shards/" + std::to_string(shard) + "/owner";
  auto deleted = etcd.delete_if(key, epoch);
  if (!deleted) return std::unexpected(deleted.error());
  ShardPlacement p;
  p.shard = shard;
  p.home = options_.node_name;
  if (!claim_one(etcd, p))
    return std::unexpected(Error{ErrorCode::UNAVAILABLE, "etcd did not answer the claim"});
  if (p.owner != options_.node_name) {
    return std::unexpected(
        Error{ErrorCode::CONFLICT, "shard " + std::to_string(shard) + " is owned by " + p.owner});
  }
  module_logger("mesh")->info("shard {}: claimed anew after a failed move (epoch {} -> {})", shard, epoch,
                              p.epoch);
  MutexLock lock(mu_);
  auto& slot = shards_table_[shard];
  slot.shard = shard;
  slot.owner = p.owner;
  slot.epoch = p.epoch;
  return p.epoch;
}

void Mesh::moved_away(std::uint32_t shard, const std::string& to, std::int64_t epoch) {
  module_logger("mesh")->info("shard {}: moved to {} (epoch {})", shard, to, epoch);
  MutexLock lock(mu_);
  auto& slot = shards_table_[shard];
  slot.shard = shard;
  slot.home = to;
  slot.owner = epoch != 0 ? to : std::string();
  slot.epoch = epoch;
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
  json::object per_node;
  json::array placements;  // every shard in use: where it lives, under which epoch
  {
    MutexLock lock(mu_);
    for (const auto& [n, p] : shards_table_) {
      placements.push_back(
          json::object{{"shard", p.shard},
                       {"home", p.home},
                       {"owner", p.owner.empty() ? json::value(nullptr) : json::value(p.owner)},
                       {"epoch", p.epoch}});
      if (p.owner.empty()) continue;
      auto& v = per_node[p.owner];
      v = v.is_null() ? json::value(1) : json::value(v.to_number<std::int64_t>() + 1);
    }
  }
  return json::serialize(json::object{{"node", options_.node_name},
                                      {"owned_shards", std::move(per_node)},
                                      {"cluster", options_.cluster},
                                      {"etcd", etcd_ok() ? "ok" : "unreachable"},
                                      {"joined", joined()},
                                      {"shards", shards()},
                                      {"lease_ttl_ms", options_.lease_ttl.count()},
                                      {"lease_valid_ms", std::max<std::int64_t>(0, left)},
                                      {"members", std::move(members)},
                                      {"placements", std::move(placements)}});
}

std::string Mesh::metrics_text() const {
  MetricsWriter w;
  std::uint64_t members = 0, owned = 0;
  {
    MutexLock lock(mu_);
    members = members_.size();
    for (const auto& [n, p] : shards_table_) owned += p.owner == options_.node_name;
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(lease_valid_until() -
                                                                    std::chrono::steady_clock::now())
                  .count();
  w.gauge("roost_mesh_members", "Live members of the mesh, as last listed.", members);
  w.gauge("roost_mesh_etcd_up", "1 when etcd answered the last renewal.", std::uint64_t{etcd_ok() ? 1u : 0u});
  w.gauge("roost_mesh_owned_shards", "Shards this node owns.", owned);
  w.gauge("roost_mesh_lease_valid_seconds", "Time left before this node must stop serving its shards.",
          static_cast<double>(std::max<std::int64_t>(0, left)) / 1000.0);
  w.counter("roost_mesh_renewals_failed_total", "Membership renewals etcd did not answer.",
            failed_ticks_.load());
  w.counter("roost_mesh_claims_total", "Shards this node claimed (each a new epoch).", claims_.load());
  w.counter("roost_mesh_owners_lost_total", "Shard owners this node saw go.", owners_lost_.load());

  return std::move(w).text();
}

}  // namespace roost::broker
