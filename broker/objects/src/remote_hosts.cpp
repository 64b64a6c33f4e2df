// RemoteHosts, the registry: host connections accepted, the classes they serve (added, forgotten),
// placement of objects on hosts, front requests, the watchdog, metrics.
#include "roost/broker/remote_hosts.h"

#include "actor_state.h"
#include "host_turns.h"
#include "remote_host_conn.h"
#include "turn_context.h"

#include <roost/broker/actor_runtime.h>
#include <roost/core/base64.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <stdexcept>

namespace roost::broker {

namespace json = boost::json;

RemoteHosts::RemoteHosts(ActorRuntime& runtime, Router& router, boost::asio::io_context& timers,
                         RemoteHostsOptions options)
    : rt_(runtime), router_(router), timers_(timers), options_(options) {
  turns_ = std::make_unique<HostTurns>(rt_, options_, next_turn_, metrics_.turns, metrics_.turns_failed);
  watchdog_.emplace(timers_);
  watch();
}

void RemoteHosts::begin(std::shared_ptr<ActorRuntime::AsyncTurn> turn) { turns_->begin(std::move(turn)); }

void RemoteHosts::post_drain(const std::shared_ptr<TurnWait>& w) { turns_->post_drain(w); }

std::uint64_t RemoteHosts::call_timeout(const boost::json::object& f) const {
  return turns_->call_timeout(f);
}

void RemoteHosts::watch() {
  watchdog_->expires_after(std::chrono::milliseconds(250));
  watchdog_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    std::vector<std::shared_ptr<Conn>> stalled, paced;
    auto now = steady_ms();
    {
      MutexLock lock(mu_);
      if (stopped_) return;
      for (auto& [p, w] : conns_) {
        auto c = w.lock();
        if (c && c->alive() && c->stalled(now, static_cast<std::int64_t>(options_.turn_timeout_ms))) {
          stalled.push_back(std::move(c));
        } else if (c && c->alive()) {
          paced.push_back(std::move(c));
        }
      }
    }
    for (auto& c : paced) c->send_deferred();
    forget_unserved(now);
    for (auto& c : stalled) {
      metrics_.timeouts.fetch_add(1, std::memory_order_relaxed);
      module_logger("actors")->warn("remote host {} ({}) stalled: a turn unanswered for {} ms; closed",
                                    c->id(), c->grant().peer, options_.turn_timeout_ms);
      c->close(4008, "turn timeout");
      c->on_closed();  // its turns fail now (and run again elsewhere), not when the socket ends
    }
    watch();
  });
}

void RemoteHosts::forget_unserved(std::int64_t now) {
  // On the timers' io thread: never wait behind a registration (it loads waiting mail), try later.
  if (!change_mu_.try_lock()) return;
  forget_unserved_locked(now);
  change_mu_.unlock();
}

void RemoteHosts::forget_unserved_locked(std::int64_t now) {
  constexpr std::size_t kPerSweep = 64;  // each costs a short read of the mailbox tables
  std::vector<std::string> due;
  {
    MutexLock lock(mu_);
    for (auto& [cls, since] : unserved_since_) {
      if (now - since < static_cast<std::int64_t>(options_.class_linger_ms)) continue;
      due.push_back(cls);
      since = now;  // when work still waits for it, look again a linger later
      if (due.size() == kPerSweep) break;
    }
  }
  for (const auto& cls : due) {
    bool served = false;
    {
      MutexLock lock(mu_);
      auto it = hosts_.find(cls);
      served = it != hosts_.end() && std::any_of(it->second.begin(), it->second.end(),
                                                 [](const std::weak_ptr<Conn>& w) { return !w.expired(); });
    }
    if (served || !rt_.forget_class(cls)) continue;
    metrics_.classes_forgotten.fetch_add(1, std::memory_order_relaxed);
    MutexLock lock(mu_);
    hosts_.erase(cls);
    unserved_since_.erase(cls);
  }
}

void RemoteHosts::front(ObjectHttpRequest request, Callback<FrontReply> done) {
  std::shared_ptr<Conn> best;
  {
    MutexLock lock(mu_);
    for (auto& [p, w] : conns_) {
      auto c = w.lock();
      if (!c || !c->alive() || !c->serves_front()) continue;
      if (!best || c->fronts_waiting() < best->fronts_waiting()) best = std::move(c);
    }
  }
  if (!best)
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "no host serves the app's routes now"}));
  metrics_.fronts.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t id = next_turn_.fetch_add(1);
  auto timer = std::make_shared<boost::asio::steady_timer>(
      timers_, std::chrono::milliseconds(options_.front_timeout_ms));
  std::weak_ptr<Conn> weak = best;
  timer->async_wait([this, weak, id](boost::system::error_code ec) {
    if (ec) return;
    if (auto c = weak.lock()) {
      metrics_.fronts_failed.fetch_add(1, std::memory_order_relaxed);
      c->finish_front(
          id, std::unexpected(Error{ErrorCode::TIMEOUT, "the app's front code did not answer in time"}));
    }
  });
  best->front(id, request, [timer, done = std::move(done)](Result<FrontReply> r) mutable {
    timer->cancel();
    done(std::move(r));
  });
}

RemoteHosts::~RemoteHosts() { stop(); }

void RemoteHosts::ensure_class(const std::string& cls, ActorClassOptions options) {
  bool added = rt_.add_class(
      cls, [this, cls] { return std::make_unique<RemoteActor>(*this, cls); }, std::move(options), this);
  (void)added;
}

void RemoteHosts::declare(const std::string& cls) {
  ensure_class(cls, {});
  rt_.set_class_available(cls, false);
  MutexLock lock(mu_);
  hosts_[cls];
  declared_.insert(cls);
}

std::shared_ptr<HostSession> RemoteHosts::connect(std::shared_ptr<HostLink> link, HostGrant grant) {
  metrics_.connects.fetch_add(1, std::memory_order_relaxed);
  auto c = std::make_shared<Conn>(*this, std::move(link), std::move(grant), next_host_.fetch_add(1));
  MutexLock lock(mu_);
  if (stopped_) {
    c->close(1001, "the node is shutting down");
    return c;
  }
  conns_.emplace(c.get(), c);
  return c;
}

std::optional<Error> RemoteHosts::add_host(const std::shared_ptr<Conn>& conn,
                                           const std::vector<std::string>& classes,
                                           const std::map<std::string, ActorClassOptions>& options) {
  MutexLock changing(change_mu_);
  std::size_t added = 0;
  for (const auto& cls : classes) {
    if (auto e = ActorRuntime::validate_class(cls)) return e;
    if (!conn->grant().may_host(cls)) {
      return Error{ErrorCode::FORBIDDEN, "this token may not host class " + cls + " (roost.host)"};
    }
    // A class's options are effects like any other: its dead letters go where the token may write.
    // (The default, "dead.<class>", belongs to the class the token may host.)
    if (const auto& dlq = options.at(cls).dead_letter_queue; !dlq.empty()) {
      if (auto e = durable::QueueStore::validate_name(dlq)) return e;
      if (dlq != "dead." + cls && !conn->grant().principal.may_use_queue(dlq)) {
        return Error{ErrorCode::FORBIDDEN, "class " + cls + ": this token may not use queue " + dlq +
                                               " (its dead_letter_queue needs the queues grant)"};
      }
    }
    bool remote = false;
    {
      MutexLock lock(mu_);
      remote = hosts_.contains(cls);
    }
    if (!remote && rt_.has_class(cls)) {
      return Error{ErrorCode::CONFLICT, "class " + cls + " is served in the node itself"};
    }
    if (!remote) ++added;
  }
  {
    MutexLock lock(mu_);
    if (added > 0 && hosts_.size() + added > options_.max_remote_classes) {
      return Error{ErrorCode::TOO_MANY_REQUESTS, "the node serves " + std::to_string(hosts_.size()) +
                                                     " remote classes already (max_remote_classes)"};
    }
  }
  for (const auto& cls : classes) {
    bool known = false;
    {
      MutexLock lock(mu_);
      if (stopped_) return Error{ErrorCode::UNAVAILABLE, "the node is shutting down"};
      auto& list = hosts_[cls];
      known = !list.empty() || rt_.has_class(cls);
      list.push_back(conn);
      unserved_since_.erase(cls);
    }
    if (!known) ensure_class(cls, options.at(cls));
    rt_.set_class_available(cls, true);
  }
  return std::nullopt;
}

void RemoteHosts::remove_host(const Conn* conn) {
  std::vector<std::string> unserved;
  {
    MutexLock lock(mu_);
    conns_.erase(conn);
    for (auto& [cls, list] : hosts_) {
      auto before = list.size();
      std::erase_if(list, [&](const std::weak_ptr<Conn>& w) {
        auto c = w.lock();
        return !c || c.get() == conn;
      });
      if (before != 0 && list.empty()) {
        unserved.push_back(cls);
        if (!declared_.contains(cls)) unserved_since_[cls] = steady_ms();
      }
    }
  }
  for (auto& cls : unserved) rt_.set_class_available(cls, false);
}

std::shared_ptr<RemoteHosts::Conn> RemoteHosts::pick(const std::string& cls) {
  MutexLock lock(mu_);
  auto it = hosts_.find(cls);
  if (it == hosts_.end()) return nullptr;
  std::shared_ptr<Conn> best;
  for (auto& w : it->second) {
    auto c = w.lock();
    if (!c || !c->alive()) continue;
    if (!best || c->objects.load() < best->objects.load()) best = std::move(c);
  }
  return best;
}

void RemoteHosts::stop() {
  std::vector<std::shared_ptr<Conn>> all;
  {
    MutexLock lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [p, w] : conns_) {
      if (auto c = w.lock()) all.push_back(std::move(c));
    }
  }
  for (auto& c : all) {
    c->close(1001, "the node is shutting down");
    c->on_closed();
  }
  if (watchdog_) watchdog_->cancel();
}

std::string RemoteHosts::metrics_text() const {
  MetricsWriter w;
  std::size_t hosts = 0;
  {
    MutexLock lock(mu_);
    hosts = conns_.size();
  }
  w.gauge("roost_remote_hosts", "Remote actor hosts connected.", std::uint64_t{hosts});
  w.counter("roost_remote_host_connects_total", "Remote host connections accepted.",
            metrics_.connects.load());
  w.counter("roost_remote_turns_total", "Turns sent to remote hosts.", metrics_.turns.load());
  w.counter("roost_remote_turns_failed_total", "Remote turns failed (host error, disconnect, timeout).",
            metrics_.turns_failed.load());
  w.counter("roost_remote_turn_timeouts_total", "Remote turns whose host stalled past turn_timeout_ms.",
            metrics_.timeouts.load());
  w.counter("roost_remote_releases_total", "Objects released by their host (hibernation, failure).",
            metrics_.releases.load());
  w.counter("roost_remote_host_requests_total", "Requests hosts sent outside turns.",
            metrics_.requests.load());
  w.counter("roost_remote_classes_forgotten_total",
            "Remote classes dropped after class_linger_ms without a host and with nothing waiting.",
            metrics_.classes_forgotten.load());
  {
    MutexLock lock(mu_);
    w.gauge("roost_remote_classes", "Object classes served by remote hosts (known to the node).",
            std::uint64_t{hosts_.size()});
  }
  w.counter("roost_front_requests_total", "Requests to app_routes handed to a host's front code.",
            metrics_.fronts.load());
  w.counter("roost_front_requests_failed_total", "Front requests that failed (error, timeout).",
            metrics_.fronts_failed.load());
  return std::move(w).text();
}

}  // namespace roost::broker
