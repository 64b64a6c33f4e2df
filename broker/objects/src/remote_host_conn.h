// RemoteHosts' insides shared by its two files: a host's connection (Conn: registration, requests
// outside turns, front requests, the turns it was sent) and the RemoteActor an object of a remote
// class is while in memory. remote_hosts.cpp keeps the registry of hosts and classes,
// host_turns.cpp (HostTurns) drives turns (sends them, applies the host's ops).
#pragma once

#include "host_frames.h"

#include <roost/broker/actor_runtime.h>
#include <roost/broker/remote_hosts.h>
#include <roost/core/log.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>

namespace roost::broker {

using namespace host_protocol;

// them (one worker at a time, in order).
struct RemoteHosts::TurnWait {
  std::uint64_t id = 0;
  std::shared_ptr<ActorRuntime::AsyncTurn> turn;
  std::weak_ptr<Conn> host;
  Mutex mu;
  std::deque<json::object> frames ROOST_GUARDED_BY(mu);
  bool closed ROOST_GUARDED_BY(mu) = false;    // the host went away
  bool deferred ROOST_GUARDED_BY(mu) = false;  // waits to be sent: the host's queue is full enough
  bool overflow ROOST_GUARDED_BY(mu) = false;  // it sent more than a turn may
  bool draining ROOST_GUARDED_BY(mu) = false;  // a worker applies its frames now
  bool done ROOST_GUARDED_BY(mu) = false;
  std::size_t received ROOST_GUARDED_BY(mu) = 0;
  std::size_t received_bytes ROOST_GUARDED_BY(mu) = 0;
  std::int64_t last_ms ROOST_GUARDED_BY(mu) = 0;  // steady ms of the host's last frame for it

  // Under mu: whether the caller must post a drain.
  bool wake() ROOST_REQUIRES(mu) {
    if (draining || done) return false;
    draining = true;
    return true;
  }
};

class RemoteHosts::Conn final : public HostSession, public std::enable_shared_from_this<Conn> {
 public:
  Conn(RemoteHosts& reg, std::shared_ptr<HostLink> link, HostGrant grant, std::uint64_t id)
      : reg_(reg), link_(std::move(link)), grant_(std::move(grant)), id_(id) {}

  void on_frame(std::string text) override {
    if (!alive_.load()) return;  // closed (stalled, too slow, refused): what it sends now is void
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return protocol_error("a frame is a JSON object");
    auto& o = v.get_object();
    try {
      auto t = str(o, "t");
      if (t == "op" || t == "done" || t == "fail") {
        auto turn = u64(o, "turn");  // before `o` is moved from
        return to_turn(turn, std::move(o), text.size());
      }
      if (!registered_ && t != "register") throw ProtocolError("send \"register\" first");
      if (t == "register") return on_register(o);
      if (t == "tell" || t == "call" || t == "fetch") return on_request(t, o);
      if (t == "front_done") return on_front_done(o);
      if (t == "ping") {
        send(json::object{{"t", "pong"}});
        return;
      }
      throw ProtocolError("unknown frame type \"" + t + "\"");
    } catch (const ProtocolError& e) {
      protocol_error(e.what());
    } catch (const std::exception& e) {
      protocol_error(e.what());
    }
  }

  void on_closed() override {
    if (alive_.exchange(false)) {
      module_logger("actors")->info("remote host {} ({}) disconnected", id_, grant_.peer);
    }
    std::vector<std::shared_ptr<TurnWait>> waits;
    std::map<std::uint64_t, Callback<FrontReply>> fronts;
    {
      MutexLock lock(mu_);
      for (auto& [id, w] : turns_) waits.push_back(w);
      fronts.swap(fronts_);
      deferred_.clear();
    }
    for (auto& [id, done] : fronts) {
      done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the host disconnected before it answered"}));
    }
    for (auto& w : waits) {
      bool post = false;
      {
        MutexLock lock(w->mu);
        w->closed = true;
        post = w->wake();
      }
      if (post) reg_.post_drain(w);
    }
    reg_.remove_host(this);
  }

  bool alive() const { return alive_.load(); }
  bool serves_front() const { return front_.load(); }
  std::size_t fronts_waiting() {
    MutexLock lock(mu_);
    return fronts_.size();
  }
  // Sends a front request; `done` is answered once (by the host, its end, or the deadline).
  void front(std::uint64_t id, const ObjectHttpRequest& request, Callback<FrontReply> done) {
    {
      MutexLock lock(mu_);
      fronts_.emplace(id, std::move(done));
    }
    if (!send(json::object{{"t", "front"}, {"id", id}, {"request", request_json(request)}})) {
      finish_front(id, std::unexpected(Error{ErrorCode::UNAVAILABLE, "the host's connection closed"}));
    }
  }
  void finish_front(std::uint64_t id, Result<FrontReply> r) {
    Callback<FrontReply> done;
    {
      MutexLock lock(mu_);
      auto it = fronts_.find(id);
      if (it == fronts_.end()) return;
      done = std::move(it->second);
      fronts_.erase(it);
    }
    done(std::move(r));
  }
  std::uint64_t id() const { return id_; }
  const HostGrant& grant() const { return grant_; }
  std::atomic<std::size_t> objects{0};

  // False when the host is closed or its queue is over the bound (the link then ends it, and
  // on_closed follows at once).
  bool send(const json::object& frame) { return alive_.load() && link_->send(json::serialize(frame)); }
  void close(std::uint16_t code, std::string reason) {
    alive_ = false;
    link_->close(code, std::move(reason));
  }

  void open_turn(const std::shared_ptr<TurnWait>& w) {
    MutexLock lock(mu_);
    turns_.emplace(w->id, w);
  }
  // Sends a turn's frame, or keeps it while kPaceBytes are queued to the host already (or turns
  // wait before it): a host that reads is never sent a backlog faster than it reads — a burst of
  // waiting turns (a host connecting to many waiting objects) would otherwise pass its queue's
  // bound and close it as too slow. send_deferred() sends what waits. False: the link is closed.
  bool send_turn(const std::shared_ptr<TurnWait>& w, json::object frame) {
    {
      MutexLock lock(mu_);
      if (!deferred_.empty() || link_->queued_bytes() > kPaceBytes) {
        {
          MutexLock wl(w->mu);
          w->deferred = true;
        }
        deferred_.emplace_back(w, json::serialize(frame));
        return alive_.load();
      }
    }
    return send(frame);
  }
  // Sends deferred turns while the host's queue is below kPaceBytes (watchdog).
  void send_deferred() {
    for (;;) {
      std::shared_ptr<TurnWait> w;
      std::string frame;
      {
        MutexLock lock(mu_);
        if (deferred_.empty() || link_->queued_bytes() > kPaceBytes) return;
        w = std::move(deferred_.front().first);
        frame = std::move(deferred_.front().second);
        deferred_.pop_front();
      }
      {
        MutexLock wl(w->mu);
        if (w->done) continue;
        w->deferred = false;
        w->last_ms = steady_ms();
      }
      if (!alive_.load() || !link_->send(std::move(frame))) return;
    }
  }
  // Whether the host has sent nothing for any turn for `timeout_ms` while a turn it was sent waits on
  // it (none counts while a worker applies its frames, nor while a turn waits to be sent). A host
  // busy with a backlog of turns sends frames for the earlier ones: it is not stalled.
  bool stalled(std::int64_t now, std::int64_t timeout_ms) {
    const std::int64_t heard = last_heard_.load(std::memory_order_relaxed);
    MutexLock lock(mu_);
    for (auto& [id, w] : turns_) {
      MutexLock wl(w->mu);
      if (!w->draining && !w->done && !w->deferred && now - std::max(w->last_ms, heard) > timeout_ms) {
        return true;
      }
    }
    return false;
  }
  void close_turn(std::uint64_t turn) {
    MutexLock lock(mu_);
    turns_.erase(turn);
  }

  // Whether the host may reach this object outside its own (its token's objects grant, or a class
  // it serves).
  bool may_reach(std::string_view cls, std::string_view name) const {
    return grant_.principal.may_use_object(cls, name) || grant_.may_host(std::string(cls));
  }

 private:
  void protocol_error(std::string message) {
    module_logger("actors")->warn("remote host {} ({}): {}", id_, grant_.peer, message);
    send(
        json::object{{"t", "error"}, {"error", error_json(Error{ErrorCode::MALFORMED, std::move(message)})}});
  }

  void to_turn(std::uint64_t turn, json::object frame, std::size_t bytes) {
    // Work on any of its turns shows the host alive (pings do not: they hold no turn).
    last_heard_.store(steady_ms(), std::memory_order_relaxed);
    std::shared_ptr<TurnWait> w;
    {
      MutexLock lock(mu_);
      auto it = turns_.find(turn);
      if (it == turns_.end()) return;  // a turn that failed or timed out: its late frames are void
      w = it->second;
    }
    bool post = false;
    {
      MutexLock lock(w->mu);
      w->received_bytes += bytes;
      if (++w->received > reg_.options_.max_turn_frames || w->received_bytes > reg_.options_.max_turn_bytes) {
        w->overflow = true;
      } else {
        w->frames.push_back(std::move(frame));
      }
      w->last_ms = steady_ms();
      post = w->wake();
    }
    if (post) reg_.post_drain(w);
  }

  void on_register(const json::object& o) {
    if (registering_) throw ProtocolError("registered already");
    const auto* list = field(o, "classes");
    const auto* front = field(o, "front");
    bool serves_front = front != nullptr && front->is_bool() && front->get_bool();
    if (list == nullptr || !list->is_array() || (list->get_array().empty() && !serves_front)) {
      throw ProtocolError("\"classes\" must be a non-empty array (or \"front\": true)");
    }
    if (list->get_array().size() > reg_.options_.max_classes_per_host) {
      throw ProtocolError("at most " + std::to_string(reg_.options_.max_classes_per_host) +
                          " classes a host");
    }
    std::vector<std::string> names;
    std::map<std::string, ActorClassOptions> options;
    for (const auto& c : list->get_array()) {
      std::string name;
      ActorClassOptions opts;
      if (c.is_string()) {
        name = std::string(c.get_string());
      } else if (c.is_object()) {
        const auto& co = c.get_object();
        name = str(co, "name");
        opts.max_retries =
            static_cast<std::uint32_t>(std::min<std::uint64_t>(u64(co, "max_retries", 3), 100));
        opts.retry_delay_ms = std::min<std::uint64_t>(u64(co, "retry_delay_ms", 100), 3'600'000);
        opts.dead_letter_queue = str(co, "dead_letter_queue", false);
      } else {
        throw ProtocolError("a class is a name or {\"name\": …}");
      }
      names.push_back(name);
      options[name] = std::move(opts);
    }
    registering_ = true;
    // Adding a class reads its waiting mail from LMDB: on an actor worker, not on the gateway's
    // io thread that delivered this frame.
    reg_.rt_.post([self = shared_from_this(), names = std::move(names), options = std::move(options),
                   serves_front]() mutable {
      if (auto e = self->reg_.add_host(self, names, options)) {
        self->send(json::object{{"t", "error"}, {"error", error_json(*e)}});
        self->close(e->code == ErrorCode::FORBIDDEN ? 4403 : 4400, e->message);
        return;
      }
      self->front_ = serves_front;
      self->registered_ = true;
      json::array classes;
      for (auto& n : names) classes.push_back(json::string(n));
      self->send(json::object{{"t", "registered"}, {"host", self->id_}, {"classes", std::move(classes)}});
      module_logger("actors")->info("remote host {} ({}) serves {} classes", self->id_, self->grant_.peer,
                                    names.size());
    });
  }

  // Requests outside turns: what a host's front code sends (docs/hosts.md, "Requests").
  void on_request(const std::string& t, const json::object& o) {
    auto id = u64(o, "id");
    auto cls = str(o, "class");
    auto name = str(o, "object");
    auto answer = [self = shared_from_this(), id](json::object reply) {
      reply["t"] = "reply";
      reply["id"] = id;
      self->requests_.fetch_sub(1);
      self->send(reply);
    };
    auto fail = [&](const Error& e) {
      send(json::object{{"t", "reply"}, {"id", id}, {"error", error_json(e)}});
    };
    if (!may_reach(cls, name)) {
      return fail(Error{ErrorCode::FORBIDDEN, "this host may not use object " + cls + "/" + name});
    }
    // Everything read before a slot is taken: a malformed request costs none.
    auto type = ContentType::kJson;
    std::string data;
    ObjectHttpRequest req;
    try {
      if (t == "fetch") {
        req = request_of(object_at(o, "request"));
        req.client_address = grant_.peer;
        req.claims = grant_.principal.claims;
      } else {
        type = content_type(o);
        data = data_of(o, type);
      }
    } catch (const ProtocolError& e) {
      return fail(Error{ErrorCode::MALFORMED, e.what()});
    }
    auto timeout_ms = reg_.call_timeout(o);
    if (requests_.fetch_add(1) >= reg_.options_.max_host_requests) {
      requests_.fetch_sub(1);
      return fail(
          Error{ErrorCode::TOO_MANY_REQUESTS, "too many requests outstanding on this host connection"});
    }
    reg_.metrics_.requests.fetch_add(1, std::memory_order_relaxed);
    auto& router = reg_.router_;
    if (t == "tell") {
      router.object_tell(
          std::move(cls), std::move(name), std::move(data), type, [answer](Result<std::uint64_t> r) {
            answer(r ? json::object{{"seq", *r}} : json::object{{"error", error_json(r.error())}});
          });
    } else if (t == "call") {
      router.object_call(std::move(cls), std::move(name), std::move(data), type, timeout_ms,
                         [answer](Result<ObjectReply> r) {
                           json::object out;
                           if (r) {
                             put_data(out, r->data, r->content_type);
                           } else {
                             out["error"] = error_json(r.error());
                           }
                           answer(std::move(out));
                         });
    } else {
      router.object_fetch(std::move(cls), std::move(name), std::move(req), timeout_ms,
                          [answer](Result<ObjectReply> r) {
                            answer(r ? json::object{{"response", response_json(*r)}}
                                     : json::object{{"error", error_json(r.error())}});
                          });
    }
  }

  RemoteHosts& reg_;
  std::shared_ptr<HostLink> link_;
  HostGrant grant_;
  std::uint64_t id_;
  std::atomic<bool> alive_{true};
  std::atomic<std::int64_t> last_heard_{0};  // steady ms of the host's last frame for a turn
  bool registering_ = false;                 // a register frame came (frames arrive one at a time)
  std::atomic<bool> registered_{false};      // its classes are added (on a worker)
  std::atomic<std::size_t> requests_{0};
  Mutex mu_;
  std::map<std::uint64_t, std::shared_ptr<TurnWait>> turns_ ROOST_GUARDED_BY(mu_);
  std::deque<std::pair<std::shared_ptr<TurnWait>, std::string>> deferred_ ROOST_GUARDED_BY(mu_);
  std::atomic<bool> front_{false};  // registered front code (app_routes)
  std::map<std::uint64_t, Callback<FrontReply>> fronts_ ROOST_GUARDED_BY(mu_);

  void on_front_done(const json::object& o) {
    auto id = u64(o, "id");
    FrontReply out;
    if (const auto* up = field(o, "upgrade"); up != nullptr && up->is_object()) {
      out.upgrade_class = str(up->get_object(), "class");
      out.upgrade_object = str(up->get_object(), "object");
      if (!may_reach(out.upgrade_class, out.upgrade_object)) {
        return finish_front(id, std::unexpected(Error{ErrorCode::FORBIDDEN, "this host may not use object " +
                                                                                out.upgrade_class + "/" +
                                                                                out.upgrade_object}));
      }
    } else if (const auto* res = field(o, "response"); res != nullptr && res->is_object()) {
      const auto& r = res->get_object();
      auto status = u64(r, "status", 200);
      out.response.status = static_cast<std::uint16_t>(std::min<std::uint64_t>(status, 65535));
      out.response.headers = headers_of(r);
      out.response.data = bytes_of(r, "body");
      out.response.content_type = ContentType::kBytes;
    } else {
      auto message = str(o, "error", false);
      reg_.metrics_.fronts_failed.fetch_add(1, std::memory_order_relaxed);
      return finish_front(id, std::unexpected(Error{ErrorCode::ACTOR_ERROR,
                                                    message.empty() ? "the front code failed" : message}));
    }
    finish_front(id, std::move(out));
  }
};

// One object of a remote class while it is in memory: which host has it, and whether that host got
// its snapshot. Destroyed at hibernation (or after a failed turn): the host is told to let go.
class RemoteHosts::RemoteActor final : public Actor {
 public:
  RemoteActor(RemoteHosts& reg, std::string cls) : reg_(reg), cls_(std::move(cls)) {}
  ~RemoteActor() override { unbind(true); }

  // Keeps the host that has this object, or takes the least loaded one of its class (null: none).
  std::shared_ptr<Conn> bind() {
    if (host_ && host_->alive()) return host_;
    unbind(false);
    host_ = reg_.pick(cls_);
    if (host_) host_->objects.fetch_add(1);
    return host_;
  }
  bool host_knows = false;  // the host got this object's snapshot
  std::string object;       // its name (set by its first turn)

 private:
  void unbind(bool release) {
    if (!host_) return;
    host_->objects.fetch_sub(1);
    if (release && host_knows) {
      reg_.metrics_.releases.fetch_add(1, std::memory_order_relaxed);
      host_->send(json::object{{"t", "release"}, {"class", cls_}, {"object", object}});
    }
    host_.reset();
    host_knows = false;
  }

  RemoteHosts& reg_;
  std::string cls_;
  std::shared_ptr<Conn> host_;
};

}  // namespace roost::broker
