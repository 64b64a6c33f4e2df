#include "roost/broker/node.h"

#include <roost/broker/mesh.h>
#include <roost/broker/mesh_router.h>
#include <roost/broker/push_delivery.h>
#include <roost/broker/remote_hosts.h>
#include <roost/broker/shard_mover.h>
#include <roost/client/peer.h>
#include <roost/durable/outbox_store.h>

#include <roost/actor_plugin.h>
#include <roost/broker/actor_runtime.h>
#include <roost/broker/endpoint.h>
#include <roost/broker/local_router.h>
#include <roost/channels/hub.h>
#include <roost/core/log.h>
#include <roost/core/thread_name.h>
#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/queue_store.h>
#include <roost/gateway/server.h>

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace roost::broker {

namespace asio = boost::asio;

namespace {
std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

durable::Durability parse_durability(const std::string& s) {
  if (s == "batch") return durable::Durability::kBatch;
  if (s == "none") return durable::Durability::kNone;
  return durable::Durability::kSync;
}
}  // namespace

struct Node::Impl {
  explicit Impl(Config c) : config(std::move(c)) {}
  Config config;
  std::unique_ptr<durable::Env> env;
  std::unique_ptr<durable::Committer> committer;
  std::atomic<Mesh*> fence_mesh{nullptr};  // the committer's fence asks it (mesh only)
  std::unique_ptr<durable::QueueStore> queues;
  std::unique_ptr<channels::Hub> hub;
  std::unique_ptr<durable::MailboxStore> mailboxes;
  std::unique_ptr<durable::OutboxStore> outbox;  // with mesh_etcd only
  std::unique_ptr<ActorRuntime> actors;
  std::unique_ptr<RemoteHosts> hosts;  // outlives `actors`: remote actors hold it
  std::unique_ptr<Mesh> mesh;          // with mesh_etcd only
  std::vector<void*> plugins;          // dlopen handles, closed after the runtime is gone
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<asio::steady_timer> channel_sweep;  // forgets idle channels
  std::unique_ptr<LocalRouter> router;
  std::unique_ptr<MeshRouter> mesh_router;
  std::unique_ptr<ShardMover>
      mover;  // with mesh_etcd: shard moves, both ways  // with mesh_etcd: what the front ends use
  std::unique_ptr<gateway::Server> server;
  std::unique_ptr<Endpoint> endpoint;
  std::unique_ptr<Endpoint> mesh_endpoint;  // the mesh socket: requests peers forward here
  std::unique_ptr<PushDelivery> push;       // push targets and channel webhooks (docs/sidecar.md)
  // The Router the front ends (gateway, native endpoint) call.
  Router& front() { return mesh_router ? static_cast<Router&>(*mesh_router) : *router; }
  std::vector<std::thread> threads;
  bool started = false;
  bool stopped = false;
};

namespace {
// What push targets may never name (issue 26): this node's listeners — configured, and bound once
// they are — and its etcd endpoints.
std::vector<std::string> own_endpoints(const Config& config, const gateway::Server* server,
                                       const Endpoint* endpoint, const Endpoint* mesh_endpoint) {
  std::vector<std::string> out;
  auto add = [&](std::string_view address) {
    if (auto e = endpoint_of(address)) out.push_back(std::move(*e));
  };
  add(config.http_listen);
  add(config.endpoint);
  if (!config.mesh_etcd.empty()) add(config.mesh_listen);
  for (const auto& item : push_hosts(config.mesh_etcd)) add(item);
  if (server != nullptr) {
    auto ep = server->local_endpoint();
    add(ep.address().to_string().find(':') != std::string::npos
            ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
            : ep.address().to_string() + ":" + std::to_string(ep.port()));
  }
  if (endpoint != nullptr) add(endpoint->bound());
  if (mesh_endpoint != nullptr) add(mesh_endpoint->bound());
  return out;
}
}  // namespace

Node::Node(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {
  auto& d = *impl_;
  auto log = module_logger("broker");
  durable::EnvOptions env;
  env.dir = d.config.data_dir;
  env.durability = parse_durability(d.config.durability);
  env.wal = d.config.wal;
  env.wal_writeback_ms = d.config.wal_writeback_ms;
  env.max_map_bytes = d.config.max_storage_bytes;
  env.initial_map_bytes = d.config.initial_storage_bytes;
  if (env.max_map_bytes != 0 && env.initial_map_bytes > env.max_map_bytes) {
    env.initial_map_bytes = env.max_map_bytes;
  }
  d.env = std::make_unique<durable::Env>(env);
  durable::CommitterOptions copts;
  copts.sync_interval = std::chrono::milliseconds(d.config.sync_interval_ms);
  copts.lead = d.config.inline_commits == "all"        ? durable::LeadMode::kAll
               : d.config.inline_commits == "off"      ? durable::LeadMode::kOff
               : d.config.inline_commits == "no_flush" ? durable::LeadMode::kNoFlush
                                                       : durable::LeadMode::kMayBlock;
  d.committer = std::make_unique<durable::Committer>(*d.env, copts, wall_clock_ms);
  // In a mesh, nothing commits once the node's lease may have run out (docs/mesh.md, fencing).
  d.committer->set_fence([&d] {
    Mesh* m = d.fence_mesh.load();
    return m == nullptr || m->may_commit();
  });
  durable::QueueStoreOptions qopts;
  qopts.auto_create_queues = d.config.auto_create_queues;
  qopts.max_message_bytes = d.config.max_message_bytes;
  d.queues = std::make_unique<durable::QueueStore>(*d.env, *d.committer, qopts, wall_clock_ms);
  // In a mesh, a shard moving away (or moved) takes no more writes here (docs/mesh.md).
  d.queues->set_gate([&d](std::string_view queue) {
    Mesh* m = d.fence_mesh.load();
    return (m != nullptr && m->queue_closed(queue)) || (d.mesh_router && d.mesh_router->held_queue(queue));
  });
  d.hub = std::make_unique<channels::Hub>(d.config.hub_options(), wall_clock_ms);
  d.router = std::make_unique<LocalRouter>(*d.queues, *d.committer, *d.env, *d.hub, d.io,
                                           d.config.max_message_bytes);
  d.mailboxes = std::make_unique<durable::MailboxStore>(*d.env);
  ActorRuntimeOptions aopts;
  aopts.threads = d.config.actor_threads != 0 ? static_cast<unsigned>(d.config.actor_threads)
                                              : std::max(1u, std::thread::hardware_concurrency());
  aopts.idle_ms = d.config.actor_idle_ms;
  aopts.max_threads = static_cast<unsigned>(d.config.actor_max_threads);
  aopts.max_message_bytes = d.config.max_message_bytes;
  aopts.default_call_timeout_ms = d.config.call_timeout_ms;
  aopts.mail_memory_bytes = d.config.actor_mail_memory_bytes;
  d.actors =
      std::make_unique<ActorRuntime>(*d.mailboxes, *d.committer, *d.queues, *d.hub, aopts, wall_clock_ms);
  d.router->set_actors(d.actors.get());
  RemoteHostsOptions hopts;
  hopts.turn_timeout_ms = d.config.host_turn_timeout_ms;
  hopts.class_linger_ms = d.config.host_class_linger_ms;
  hopts.max_remote_classes = d.config.max_remote_classes;
  hopts.front_timeout_ms = d.config.call_timeout_ms;
  hopts.call_timeout_ms = d.config.call_timeout_ms;
  d.hosts = std::make_unique<RemoteHosts>(*d.actors, *d.router, d.io, hopts);
  d.router->set_hosts(d.hosts.get());
  d.router->attach();
  if (!d.config.mesh_etcd.empty()) {
    MeshRouterOptions mopts;
    mopts.auth_secret = d.config.auth_secret;
    // A forwarded request to an owner that died fails once its lease could have run out.
    mopts.request_timeout = std::chrono::milliseconds(d.config.mesh_lease_ttl_ms + 1000);
    d.mesh_router = std::make_unique<MeshRouter>(*d.router, d.io, mopts);
    d.outbox = std::make_unique<durable::OutboxStore>(*d.env);
    d.mesh_router->set_outbox(d.outbox.get(), d.committer.get());
    d.actors->set_mesh(d.outbox.get(), d.mesh_router.get());
    d.mover = std::make_unique<ShardMover>(*d.queues, *d.mailboxes, *d.outbox, *d.committer, *d.actors,
                                           *d.mesh_router);
    d.mover->set_wake([&d](const std::string& queue) { d.router->wake_polls(queue); });
    d.mesh_router->set_mover(d.mover.get());
    d.router->set_mover(d.mover.get());
  }
  gateway::ServerOptions sopts;
  sopts.listen = d.config.http_listen;
  sopts.max_request_bytes = d.config.max_request_bytes;
  sopts.max_header_bytes = d.config.max_header_bytes;
  sopts.idle_timeout_ms = d.config.idle_timeout_ms;
  sopts.max_connections = d.config.max_connections;
  sopts.max_connections_per_ip = d.config.max_connections_per_ip;
  sopts.static_dir = d.config.static_dir;
  sopts.auth_secret = d.config.auth_secret;
  sopts.allowed_origins = d.config.allowed_origins;
  sopts.allowed_hosts = d.config.allowed_hosts;
  sopts.cf_tokens = d.config.cf_tokens;
  sopts.trusted_proxies = d.config.trusted_proxies;
  sopts.app_routes = d.config.app_routes;
  sopts.max_subscriptions = d.config.max_subscriptions_per_connection;
  sopts.max_ws_message_bytes = d.config.max_ws_message_bytes;
  sopts.ws_idle_timeout_ms = d.config.ws_idle_timeout_ms;
  sopts.ws_compression = d.config.ws_compression;
  if (d.config.auth_secret.empty()) {
    module_logger("gateway")->warn(
        "no auth_secret configured: only unauthenticated clients on loopback are accepted");
  }
  d.server = std::make_unique<gateway::Server>(d.io, d.front(), sopts);
  PushOptions popts;
  popts.allowed_hosts = push_hosts(d.config.push_allowed_hosts);
  popts.channel_webhooks = d.config.channel_webhooks;
  d.push = std::make_unique<PushDelivery>(d.front(), popts);
  d.push->forbid(
      own_endpoints(d.config, nullptr, nullptr, nullptr));  // as configured; start() adds the bound ports
  d.router->set_push(d.push.get());
  if (d.config.endpoint != "off") {
    EndpointOptions eopts;
    eopts.bind = d.config.endpoint;
    eopts.curve_secret_key = d.config.endpoint_curve_secret;
    eopts.auth_secret = d.config.auth_secret;
    eopts.heartbeat_ms = static_cast<std::uint32_t>(d.config.heartbeat_ms);
    eopts.max_message_bytes = d.config.max_message_bytes;
    eopts.max_subscriptions = d.config.max_subscriptions_per_connection;
    eopts.version = ROOST_NODE_VERSION;
    d.endpoint = std::make_unique<Endpoint>(d.front(), eopts);
  }
  d.router->set_extra_metrics([&d] {
    std::string out;
    if (d.endpoint) out += d.endpoint->metrics_text();
    if (d.mesh_endpoint) out += d.mesh_endpoint->metrics_text();
    if (d.mesh_router) out += d.mesh_router->forward_metrics();
    if (d.mover) out += d.mover->metrics_text();
    if (d.push) out += d.push->metrics_text();
    return out;
  });
  log->info(
      "data in {} (durability {}{}, map {} MiB{})", std::filesystem::absolute(d.config.data_dir).string(),
      d.config.durability, d.env->uses_wal() ? " through the write-ahead log" : "", d.env->map_bytes() >> 20,
      d.config.max_storage_bytes ? ", capped at " + std::to_string(d.config.max_storage_bytes >> 20) + " MiB"
                                 : "");
}

Node::~Node() { stop(); }

void Node::register_actor(std::string name, ActorFactory factory, ActorClassOptions options) {
  impl_->actors->register_class(std::move(name), std::move(factory), std::move(options));
}

namespace {
class RuntimeRegistry final : public PluginRegistry {
 public:
  explicit RuntimeRegistry(ActorRuntime& rt) : rt_(rt) {}
  void add(std::string name, ActorFactory factory, ActorClassOptions options) override {
    rt_.register_class(std::move(name), std::move(factory), std::move(options));
  }

 private:
  ActorRuntime& rt_;
};
}  // namespace

void Node::load_plugin(const std::string& path) {
  auto& d = *impl_;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) throw std::runtime_error("cannot load actor plugin " + path + ": " + dlerror());
  auto abi = reinterpret_cast<roost_actor_plugin_abi_fn>(dlsym(h, "roost_actor_plugin_abi"));
  auto reg = reinterpret_cast<roost_actor_plugin_register_fn>(dlsym(h, "roost_actor_plugin_register"));
  if (abi == nullptr || reg == nullptr) {
    dlclose(h);
    throw std::runtime_error(
        "actor plugin " + path +
        " has no roost_actor_plugin_abi / roost_actor_plugin_register (use ROOST_ACTOR_PLUGIN)");
  }
  if (auto v = abi(); v != kActorAbiVersion) {
    dlclose(h);
    throw std::runtime_error("actor plugin " + path + " was built for actor ABI " + std::to_string(v) +
                             "; this node has ABI " + std::to_string(kActorAbiVersion) + ": rebuild it");
  }
  RuntimeRegistry registry(*d.actors);
  reg(&registry);
  d.plugins.push_back(h);
  module_logger("actors")->info("loaded actor plugin {}", path);
}

void Node::start() {
  auto& d = *impl_;
  for (std::size_t start = 0; start < d.config.actors.size();) {
    auto comma = d.config.actors.find(',', start);
    auto path = d.config.actors.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!path.empty()) load_plugin(path);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  for (std::size_t start = 0; start < d.config.remote_classes.size();) {
    auto comma = d.config.remote_classes.find(',', start);
    auto cls =
        d.config.remote_classes.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!cls.empty()) d.hosts->declare(cls);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  d.committer->start();
  // Shards a move left unsettled when this node stopped stay closed (their objects do not run)
  // until the mesh says whose they are (ShardMover::settle, once joined).
  std::vector<durable::OutboxStore::MoveMark> unsettled;
  if (d.outbox) {
    unsettled = d.outbox->move_marks();
    std::vector<std::pair<std::uint32_t, std::uint32_t>> held;
    for (const auto& mk : unsettled) held.emplace_back(mk.shard, mk.shards);
    if (!held.empty()) {
      d.mesh_router->hold(held);
      module_logger("mesh")->warn(
          "{} shard moves were unsettled when the node stopped: those shards stay closed "
          "until etcd says whose they are",
          held.size());
    }
  }
  d.actors->start();
  d.work.emplace(asio::make_work_guard(d.io));
  unsigned n = d.config.io_threads != 0 ? static_cast<unsigned>(d.config.io_threads)
                                        : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i)
    d.threads.emplace_back([&d, i] {
      roost::name_this_thread("roost-io-" + std::to_string(i));
      // A handler that throws is a bug; it must not take the node down with it. The handler (and
      // the session it held) is gone; the thread goes on serving the others.
      for (;;) {
        try {
          d.io.run();
          return;
        } catch (const std::exception& e) {
          module_logger("gateway")->error("an io handler threw (bug): {}", e.what());
        } catch (...) {
          module_logger("gateway")->error("an io handler threw a non-exception (bug)");
        }
      }
    });
  d.channel_sweep.emplace(d.io);
  sweep_channels();
  d.started = true;
  d.server->start();
  auto ep = d.server->local_endpoint();
  module_logger("gateway")->info("gateway listening on http://{}:{} ({} io threads)",
                                 ep.address().to_string(), ep.port(), n);
  if (d.endpoint) d.endpoint->start();
  if (!d.config.mesh_etcd.empty()) {
    if (d.config.auth_secret.empty()) {
      module_logger("mesh")->warn(
          "mesh_insecure: this mesh has no auth_secret — any local process may speak to its mesh socket "
          "as a peer, and links are not encrypted; for loopback tests only");
    }
    MeshOptions mo;
    mo.etcd = d.config.mesh_etcd;
    mo.cluster = d.config.mesh_cluster;
    mo.node_name = d.config.node_name;
    if (mo.node_name.empty()) {
      char host[256] = {};
      gethostname(host, sizeof host - 1);
      mo.node_name = host;
    }
    mo.http_advertise = "http://" + ep.address().to_string() + ":" + std::to_string(ep.port());
    mo.native_advertise = d.endpoint ? d.endpoint->bound() : "";
    mo.shards = static_cast<std::uint32_t>(d.config.mesh_shards);
    mo.lease_ttl = std::chrono::milliseconds(d.config.mesh_lease_ttl_ms);
    mo.secret = d.config.auth_secret;
    d.mesh = std::make_unique<Mesh>(std::move(mo));
    // The mesh socket serves what peers forward, straight from this node's stores (a request that
    // reached its owner never hops again).
    EndpointOptions meo;
    meo.bind = d.config.mesh_listen;
    meo.auth_secret = d.config.auth_secret;
    // Peers dial it over CURVE with keys the cluster secret derives (no secret: mesh_insecure).
    if (!d.config.auth_secret.empty())
      meo.curve_secret_key = mesh_curve_keys(d.config.auth_secret).secret_key;
    meo.heartbeat_ms = static_cast<std::uint32_t>(d.config.heartbeat_ms);
    meo.max_message_bytes = d.config.max_message_bytes;
    meo.version = ROOST_NODE_VERSION;
    meo.mesh = d.mesh.get();
    // A peer's link carries what a whole node's subscribers want: more channel events may wait in
    // ZeroMQ for it than for one client (each at most 64 KiB: 64 MiB at worst per peer).
    meo.send_hwm = 1024;
    d.mesh_endpoint = std::make_unique<Endpoint>(*d.router, meo);
    d.mesh_endpoint->start();
    d.mesh->set_mesh_advertise(d.config.mesh_advertise.empty() ? d.mesh_endpoint->bound()
                                                               : d.config.mesh_advertise);
    d.router->set_mesh(d.mesh.get());
    d.mesh_router->set_link_loop(d.endpoint.get());
    d.mesh_router->set_mesh(d.mesh.get());
    d.mover->set_mesh(d.mesh.get());
    d.fence_mesh = d.mesh.get();
    d.mesh->start();
    if (!unsettled.empty()) d.mover->settle(std::move(unsettled));
  }
  d.push->forbid(own_endpoints(d.config, d.server.get(), d.endpoint.get(), d.mesh_endpoint.get()));
  d.push->start();
  apply_queue_push();
}

// queue_push: each queue gets its push target (created if new). In a mesh the owner stores it;
// an owner not reachable yet is logged, and the setting is applied at the next start.
void Node::apply_queue_push() {
  auto& d = *impl_;
  auto pushed = parse_queue_push(d.config.queue_push);
  for (auto& [queue, target] : *pushed) {
    QueueConfigPatch patch;
    patch.push = target;
    std::promise<Result<QueueInfo>> done;
    auto f = done.get_future();
    for (int attempt = 0; attempt < 50; ++attempt) {
      done = {};
      f = done.get_future();
      d.front().put_queue(queue, patch, [&done](Result<QueueInfo> r) { done.set_value(std::move(r)); });
      auto r = f.get();
      if (r) break;
      if (r.error().code != ErrorCode::OWNER_UNAVAILABLE && r.error().code != ErrorCode::UNAVAILABLE) {
        module_logger("push")->error("queue_push: queue {}: {}", queue, r.error().message);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the mesh is joining
      if (attempt == 49) module_logger("push")->error("queue_push: queue {}: {}", queue, r.error().message);
    }
  }
}

// Every quarter of channel_idle_ms (at least 100 ms, at most 60 s) while the io threads run.
void Node::sweep_channels() {
  auto& d = *impl_;
  auto period = std::clamp<std::uint64_t>(d.config.channel_idle_ms / 4, 100, 60'000);
  d.channel_sweep->expires_after(std::chrono::milliseconds(period));
  d.channel_sweep->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    auto& hub = *impl_->hub;
    if (auto n = hub.forget_idle(impl_->config.channel_idle_ms)) {
      module_logger("channels")->debug("forgot {} idle channels ({} left)", n, hub.channels());
    }
    sweep_channels();
  });
}

asio::ip::tcp::endpoint Node::http_endpoint() const { return impl_->server->local_endpoint(); }

void Node::stop() {
  auto& d = *impl_;
  if (d.stopped) return;
  d.stopped = true;
  auto log = module_logger("broker");
  if (d.started) {
    log->info("shutting down: no new connections, draining {} requests in flight",
              d.server->requests_in_flight());
    d.server->stop();
    if (d.endpoint) d.endpoint->stop();
    if (d.mesh_endpoint) d.mesh_endpoint->stop();
    if (d.mesh_router) d.mesh_router->stop();  // what waits on a peer fails now
    if (d.mover) d.mover->stop();              // a move in progress is undone
    if (d.mesh) d.mesh->stop();                // leaves the mesh: the member key goes with the lease
    d.hosts->stop();                           // turns waiting on a host fail, so the workers can finish
    d.actors->stop();
    d.router->shutdown();
    d.push->stop();  // its long polls were just answered; requests in flight finish (acked or retried)
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(d.config.shutdown_grace_ms);
    while (d.server->requests_in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (auto left = d.server->requests_in_flight()) {
      log->warn("grace period over with {} requests unanswered", left);
    }
  }
  d.actors->stop();     // idempotent; also when the node never started
  d.committer->stop();  // commits everything submitted, completes its callbacks
  if (d.started) {
    // Let the last responses go out, then stop the io threads.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (d.server->requests_in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    d.work.reset();
    d.io.stop();
    for (auto& t : d.threads) t.join();
    d.threads.clear();
  }
  d.server.reset();
  d.router->set_extra_metrics(nullptr);
  if (d.mesh_router) d.mesh_router->set_link_loop(nullptr);
  d.endpoint.reset();
  d.mesh_endpoint.reset();
  d.router->set_push(nullptr);
  d.push.reset();
  d.router->set_actors(nullptr);
  d.router->set_hosts(nullptr);
  d.router->set_mesh(nullptr);
  if (d.mesh_router) d.mesh_router->set_mesh(nullptr);
  d.router->set_mover(nullptr);
  if (d.mover) d.mover->stop();
  d.mover.reset();
  d.mesh_router.reset();
  d.actors->set_mesh(nullptr, nullptr);
  d.outbox.reset();
  d.fence_mesh = nullptr;
  d.mesh.reset();
  d.router.reset();
  d.actors.reset();
  d.hosts.reset();
  d.mailboxes.reset();
  d.hub.reset();
  d.queues.reset();
  d.committer.reset();
  d.env.reset();
  for (void* h : d.plugins) dlclose(h);
  d.plugins.clear();
  log->info("stopped; storage closed");
}

int Node::run() {
  {
    asio::io_context signals_io;
    asio::signal_set signals(signals_io, SIGINT, SIGTERM);
    int got = 0;
    signals.async_wait([&](boost::system::error_code, int sig) { got = sig; });
    start();
    signals_io.run();
    module_logger("broker")->info("signal {} received", got);
    stop();  // a second signal meanwhile is caught by the set and changes nothing
    // The set restores the default actions when it goes; a SIGINT or SIGTERM after that (a
    // supervisor repeating itself, a second Ctrl-C) would kill a process that is exiting cleanly
    // — under a sanitizer its exit takes long enough for that to happen. Every other thread of
    // the node has ended, so blocking them on this one keeps them pending until the end.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  return 0;
}

void setup_logging(const Config& config) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("roost", sink);
  if (config.log_format == "json") {
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","module":"%n","msg":"%v"})");
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  logger->set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_default_logger(logger);
  spdlog::drop_all();
  spdlog::set_default_logger(logger);
  for (const char* name : {"broker", "durable", "gateway", "endpoint", "actors"}) {
    auto l = logger->clone(name);
    spdlog::register_logger(l);
  }
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace roost::broker
