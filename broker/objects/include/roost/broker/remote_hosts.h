// RemoteHosts: object classes served by other processes (docs/hosts.md).
//
// A host connects over a WebSocket (the gateway's /v1/hosts/connect) and registers classes. Each
// becomes an ActorRuntime class whose actor — a RemoteActor, one per object in memory — forwards
// every turn to a host of its class and applies, on the worker that runs the turn, what the host
// answers: storage reads are answered from the object's current view (TurnContext), effects are
// recorded in the turn, and the turn ends with the host's `done`. So every guarantee of
// docs/objects.md — one turn at a time in FIFO order, effects committed with the item, outputs after
// the commit, retries and dead letters, hibernation with sockets kept, alarms, durable
// subscriptions — is the runtime's own, for remote classes as for C++ ones.
//
// An object stays on the host that woke it until it hibernates (the host gets `release`); several
// hosts of a class share its objects (the least loaded takes a new one). A host that disconnects
// or stalls (no frame for turn_timeout_ms while a turn waits on it; it is then closed) fails the
// turns it had: nothing of them was applied, and they run again on another host of the class, or
// when one comes back. While no host serves a class, its mail waits; calls and connects answer
// `unavailable`.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <roost/actor.h>
#include <roost/broker/actor_runtime.h>
#include <roost/core/host_types.h>
#include <roost/core/router.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/fwd.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace roost::broker {

class ActorRuntime;
class HostTurns;

struct RemoteHostsOptions {
  // A turn whose host sends nothing for this long fails, and the host is closed (4008).
  std::uint64_t turn_timeout_ms = 30'000;
  std::size_t max_classes_per_host = 64;
  // Requests a host may have outstanding outside turns (tell, call, fetch from its front code).
  std::size_t max_host_requests = 1024;
  // Frames one turn may send (ops, effects) before it is failed.
  std::size_t max_turn_frames = 100'000;
  // Bytes of frames one turn may send: the effects a turn records are held in memory until it
  // commits, so a host cannot make the node hold more than this for one turn.
  std::size_t max_turn_bytes = 64u << 20;
  // A front request (app_routes) the host does not answer in this time answers 504 timeout.
  std::uint64_t front_timeout_ms = 10'000;
  // The longest a host's call or fetch may wait for another object (a turn's op or a request
  // outside turns): a larger timeout_ms is cut to it (call_timeout_ms).
  std::uint64_t call_timeout_ms = 10'000;
  // One answer to a host's read (get_many, list): at most this many keys asked by get_many, and
  // this many bytes of keys and values, counted before the answer is built; past either the op
  // answers payload_too_large (Cloudflare's get() takes 128 keys).
  std::size_t max_get_keys = 128;
  std::size_t max_answer_bytes = 8u << 20;
  // Classes hosts registered, node-wide (remote_classes from the config aside): past it a host's
  // new class is refused (too_many_requests).
  std::size_t max_remote_classes = 4096;
  // A class no host has served for this long, with nothing waiting for it (no object in memory,
  // no mail, alarm or durable subscription), is forgotten (its storage stays).
  std::uint64_t class_linger_ms = 60'000;
};

class RemoteHosts final : public ActorRuntime::AsyncTurnDriver {
 public:
  // `timers` runs the deadlines of front requests.
  RemoteHosts(ActorRuntime& runtime, Router& router, boost::asio::io_context& timers,
              RemoteHostsOptions options);
  ~RemoteHosts() override;
  RemoteHosts(const RemoteHosts&) = delete;
  RemoteHosts& operator=(const RemoteHosts&) = delete;

  // A class served by hosts only (config remote_classes): known — tells accepted, mail kept — before
  // any host registers it. REQUIRES: before the runtime starts.
  void declare(const std::string& object_class);
  std::shared_ptr<HostSession> connect(std::shared_ptr<HostLink> link, HostGrant grant);
  // A request for the app's own routes, to a host that registered front code (least busy first).
  void front(ObjectHttpRequest request, Callback<FrontReply> done);
  // Closes every host (1001); their waiting turns fail.
  void stop();
  std::string metrics_text() const;
  // AsyncTurnDriver: sends the turn to a host of its class (or gives it back: none now).
  void begin(std::shared_ptr<ActorRuntime::AsyncTurn> turn) override;

  class Conn;
  class RemoteActor;
  struct TurnWait;

 private:
  friend class Conn;
  friend class RemoteActor;
  // The least loaded live host of the class, or null.
  std::shared_ptr<Conn> pick(const std::string& object_class);
  // Registers the classes a host serves; an error names the first it may not.
  std::optional<Error> add_host(const std::shared_ptr<Conn>& conn, const std::vector<std::string>& classes,
                                const std::map<std::string, ActorClassOptions>& options);
  void remove_host(const Conn* conn);
  void ensure_class(const std::string& object_class, ActorClassOptions options);
  // Turns in flight: HostTurns (host_turns.h). The host's frames for a turn are applied on an
  // actor worker; a frame's timeout_ms, 0 meaning the default, is cut to call_timeout_ms.
  void post_drain(const std::shared_ptr<TurnWait>& w);
  std::uint64_t call_timeout(const boost::json::object& f) const;
  std::unique_ptr<HostTurns> turns_;
  // Closes hosts that stall a turn past turn_timeout_ms (every 250 ms).
  void watch();
  std::optional<boost::asio::steady_timer> watchdog_;

  ActorRuntime& rt_;
  Router& router_;
  boost::asio::io_context& timers_;
  RemoteHostsOptions options_;
  std::atomic<std::uint64_t> next_turn_{1};  // turns' and front requests' ids (one space per host)
  std::atomic<std::uint64_t> next_host_{1};

  // Forgets classes that lingered unserved past class_linger_ms (from watch(); skipped while a
  // registration holds change_mu_).
  void forget_unserved(std::int64_t now);
  void forget_unserved_locked(std::int64_t now) ROOST_REQUIRES(change_mu_);

  // Held while classes are added for a host or forgotten (before mu_): a class is never forgotten
  // while a host registers it.
  Mutex change_mu_;
  mutable Mutex mu_;
  std::map<std::string, std::vector<std::weak_ptr<Conn>>> hosts_ ROOST_GUARDED_BY(mu_);  // class → hosts
  std::set<std::string> declared_ ROOST_GUARDED_BY(mu_);                      // remote_classes: kept
  std::map<std::string, std::int64_t> unserved_since_ ROOST_GUARDED_BY(mu_);  // class → steady ms
  std::map<const Conn*, std::weak_ptr<Conn>> conns_ ROOST_GUARDED_BY(mu_);
  bool stopped_ ROOST_GUARDED_BY(mu_) = false;

  struct Metrics {
    std::atomic<std::uint64_t> connects{0}, turns{0}, turns_failed{0}, timeouts{0}, releases{0}, requests{0},
        fronts{0}, fronts_failed{0}, classes_forgotten{0};
  };
  Metrics metrics_;
};

}  // namespace roost::broker
