// roost::Host: serve object classes from your own process, against a remote node (docs/hosts.md).
//
// The classes are ordinary roost::Actor subclasses — the same roost/actor.h API as a plugin loaded
// into the node — and keep every guarantee of docs/objects.md: the node holds the mailboxes,
// storage, sockets and alarms, and commits each turn's effects with its item; this process runs the
// handlers. Storage reads and calls within a turn are round trips to the node; everything else a
// turn does is sent as it happens and applied by the node with the turn.
//
//   roost::Host host({.url = "http://127.0.0.1:8080", .token = token});
//   host.add<Counter>("counter");
//   host.start();   // connected and registered, or throws
//   …
//   host.stop();
//
// Thread-safety: add() before start(); start() and stop() from one thread. Handlers run on the
// host's worker threads, one turn of an object at a time (the node sends them so); handlers of
// different objects may run at the same time.
#pragma once

#include <roost/actor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace roost {

struct HostOptions {
  std::string url = "http://127.0.0.1:8080";  // the node's HTTP gateway
  std::string token;     // a JWT with the roost.host grant (empty: loopback node without auth)
  unsigned threads = 4;  // worker threads running turns
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
};

class Host {
 public:
  explicit Host(HostOptions options);
  ~Host();  // stop()
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  void add(std::string object_class, ActorFactory factory, ActorClassOptions options = {});
  template <class A>
  void add(std::string object_class, ActorClassOptions options = {}) {
    add(
        std::move(object_class), [] { return std::make_unique<A>(); }, std::move(options));
  }

  // Connects and registers the classes; returns once the node accepted them. Throws
  // std::runtime_error when the first connection fails or is refused. Later disconnects
  // reconnect by themselves (the node retries the turns they cut).
  void start();
  // Disconnects and joins the threads; a turn in progress is failed (the node retries it).
  void stop();
  // Connections made so far (1 after start(); more after reconnects).
  std::uint64_t connections() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace roost
