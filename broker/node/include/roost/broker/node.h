// Node: one Roost process. Owns the storage (Env, Committer, QueueStore), the local Router, the
// io threads and the HTTP gateway, and starts and stops them in order.
#pragma once

#include <roost/actor.h>
#include <roost/broker/config.h>

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace roost::broker {

class Node {
 public:
  // Opens storage (releasing leases of a previous run). Throws on start-up failure.
  explicit Node(Config config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Registers an actor class. REQUIRES: before start(). Throws std::invalid_argument for a bad
  // or duplicate name.
  void register_actor(std::string name, ActorFactory factory, ActorClassOptions options = {});
  template <class T>
  void register_actor(std::string name, ActorClassOptions options = {}) {
    register_actor(
        std::move(name), [] { return std::make_unique<T>(); }, std::move(options));
  }
  // Loads an actor plugin (roost/actor_plugin.h) and registers its classes. REQUIRES: before
  // start(). Throws std::runtime_error if it cannot be loaded or was built for another ABI.
  void load_plugin(const std::string& path);

  // Loads the configured plugins (`actors`), starts the committer, the actor runtime, the io
  // threads and the gateway. Throws if the gateway cannot bind or a plugin cannot load.
  void start();
  boost::asio::ip::tcp::endpoint http_endpoint() const;
  // Graceful stop: stop accepting, answer waiting long polls, wait up to shutdown_grace_ms for
  // requests in flight, commit what is pending, close storage. Idempotent.
  void stop();
  // start(), then block until SIGINT or SIGTERM, then stop(). Returns the process exit code.
  // A further SIGINT / SIGTERM during the stop changes nothing; after it they stay blocked on
  // the calling thread, so the process's own exit is not cut short by one.
  int run();

 private:
  void apply_queue_push();
  void sweep_channels();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Configures the module loggers (level, text or JSON lines) from the config.
void setup_logging(const Config& config);

}  // namespace roost::broker
