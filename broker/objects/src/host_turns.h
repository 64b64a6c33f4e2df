// RemoteHosts' turn driving (docs/hosts.md, "Turns"): a remote turn sent to a host of its class,
// the host's frames — storage reads, effects, the end — applied on an actor worker in order (one
// drain per turn at a time), the turn ended with its effects or its failure. RemoteHosts keeps the
// connections and classes; this keeps the turns.
//
// Thread-safety: begin() on the worker that starts the turn; post_drain() from any thread (the
// host's connection, when a frame for the turn arrives); the rest on actor workers.
#pragma once

#include "remote_host_conn.h"

#include <roost/broker/actor_runtime.h>
#include <roost/broker/remote_hosts.h>
#include <roost/core/error.h>

#include <boost/json/fwd.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace roost::broker {

class HostTurns {
 public:
  using TurnWait = RemoteHosts::TurnWait;
  using Conn = RemoteHosts::Conn;
  using RemoteActor = RemoteHosts::RemoteActor;

  // `ids` numbers turns (with the registry's front requests); `turns` and `turns_failed` count
  // turns sent to hosts and turns that failed.
  HostTurns(ActorRuntime& rt, const RemoteHostsOptions& options, std::atomic<std::uint64_t>& ids,
            std::atomic<std::uint64_t>& turns, std::atomic<std::uint64_t>& turns_failed)
      : rt_(rt), options_(options), next_turn_(ids), turns_(turns), turns_failed_(turns_failed) {}
  HostTurns(const HostTurns&) = delete;
  HostTurns& operator=(const HostTurns&) = delete;

  // Sends the turn to a host of its class (or gives it back: none now).
  void begin(std::shared_ptr<ActorRuntime::AsyncTurn> turn);
  // The host sent frames for the turn: they are applied on an actor worker.
  void post_drain(const std::shared_ptr<TurnWait>& w);
  // A frame's timeout_ms, 0 meaning the default, cut to call_timeout_ms.
  std::uint64_t call_timeout(const boost::json::object& f) const;

 private:
  void drain(const std::shared_ptr<TurnWait>& w);
  void finish(TurnWait& w, std::optional<Error> failure);
  void apply_all(ActorRuntime::TurnContext& ctx, Conn& host, std::uint64_t turn,
                 const boost::json::object& f);
  void apply(ActorRuntime::TurnContext& ctx, Conn& host, std::uint64_t turn, const boost::json::object& f);
  static void answer(ActorRuntime::TurnContext& ctx, const ActorRuntime::Item& item,
                     const boost::json::object& done);
  static void check_reach(const Conn& host, const std::string& cls, const std::string& name);
  Error too_large_answer(std::string_view op) const;

  ActorRuntime& rt_;
  const RemoteHostsOptions& options_;
  std::atomic<std::uint64_t>& next_turn_;
  std::atomic<std::uint64_t>& turns_;
  std::atomic<std::uint64_t>& turns_failed_;
};

}  // namespace roost::broker
