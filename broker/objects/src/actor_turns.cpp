// ActorRuntime's turns: running a slice of an object's mailbox, submitting a turn's effects to the
// committer with the consumption of its item, retrying or dead-lettering a failed item, and letting
// the outputs leave once the commit has landed (the output gate). actor_runtime.cpp holds the rest.
#include "roost/broker/actor_runtime.h"

#include "actor_ops.h"
#include "actor_state.h"
#include "turn_context.h"

#include <roost/channels/hub.h>
#include <roost/core/base64.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/subject.h>
#include <roost/core/thread_name.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/queue_store.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <random>
#include <stdexcept>

namespace roost::broker {

namespace asio = boost::asio;
namespace json = boost::json;
using durable::MailboxStore;
using durable::PendingMail;

namespace {

std::string dead_letter_json(const ActorRuntime::Obj& obj, const ActorRuntime::Item& item,
                             const Error& error) {
  json::object o;
  o["object"] = json::object{{"class", obj.cls}, {"name", obj.name}};
  o["seq"] = item.seq;
  o["attempts"] = item.attempt;
  o["error"] = json::object{{"code", std::string(error_code_name(error.code))}, {"message", error.message}};
  const auto& m = item.mail;
  o["kind"] = m.kind == MailKind::kAlarm ? "alarm" : m.kind == MailKind::kChannel ? "channel" : "message";
  if (!m.subject.empty()) o["subject"] = m.subject;
  if (m.content_type == ContentType::kJson) {
    boost::system::error_code ec;
    auto v = json::parse(m.data, ec);
    if (!ec) {
      o["data"] = std::move(v);
    } else {
      o["data"] = m.data;
    }
  } else if (m.content_type == ContentType::kText) {
    o["data"] = m.data;
  } else {
    o["data"] = base64_encode(m.data);
    o["encoding"] = "base64";
  }
  return json::serialize(o);
}

}  // namespace

// A worker's piece of work from its start to the end of the scope: it left the queue, counts as
// busy, and marks when the last one started (what the stall detector reads).
class ActorRuntime::WorkScope {
 public:
  explicit WorkScope(ActorRuntime& rt) : rt_(rt) {
    rt_.queued_slices_.fetch_sub(1, std::memory_order_relaxed);
    rt_.busy_workers_.fetch_add(1, std::memory_order_relaxed);
    rt_.last_slice_start_ = steady_now_ms();
  }
  ~WorkScope() { rt_.busy_workers_.fetch_sub(1, std::memory_order_relaxed); }
  WorkScope(const WorkScope&) = delete;
  WorkScope& operator=(const WorkScope&) = delete;

 private:
  ActorRuntime& rt_;
};

void ActorRuntime::run_slice(std::shared_ptr<Obj> obj) {
  auto log = module_logger("actors");
  WorkScope busy(*this);
  for (std::uint32_t n = 0; n < options_.max_turns_per_slice; ++n) {
    Item item;
    std::uint64_t generation = 0;
    bool rolled_back = false;  // one of the items a failed commit put back
    std::int64_t now = clock_();
    {
      MutexLock lock(obj->mu);
      if (obj->queue.empty() || obj->blocked_until > now || halt_.load()) {
        obj->running = false;
        return;
      }
      item = std::move(obj->queue.front());
      obj->queue.pop_front();
      rolled_back = obj->requeued > 0;
      if (rolled_back) --obj->requeued;
      if (item.kind == Item::Kind::kMail && !item.data_on_disk) {
        obj->mail_bytes -= std::min(obj->mail_bytes, item.mail.data.size());
      }
      generation = obj->generation.load();
      if (obj->reset_actor) {
        obj->reset_actor = false;
        obj->instance.reset();
      }
      obj->last_active = now;
    }
    if (item.kind == Item::Kind::kMail && item.data_on_disk) {
      auto rec = store_.mail(obj->okey, item.seq);
      if (!rec) {
        log->warn("object {}/{}: message {} is no longer in the mailbox; skipped", obj->cls, obj->name,
                  item.seq);
        continue;
      }
      item.mail = std::move(*rec);
      item.data_on_disk = false;
      metrics_->mail_from_disk.fetch_add(1, std::memory_order_relaxed);
    }
    if (obj->klass->driver != nullptr) {
      // A turn that runs elsewhere (a remote host): the worker is free while it runs; the object
      // stays `running` until the driver ends the turn.
      auto turn = std::make_shared<AsyncTurn>(*this, obj, std::move(item), generation, now, rolled_back);
      try {
        if (!obj->instance) {
          obj->instance = obj->klass->factory();
          metrics_->activations.fetch_add(1, std::memory_order_relaxed);
        }
      } catch (const std::exception& e) {
        turn->end(Error{ErrorCode::ACTOR_ERROR, e.what()});
        return;
      }
      turn->instance = obj->instance.get();
      obj->klass->driver->begin(std::move(turn));
      return;
    }
    Effects fx;
    TurnContext ctx(*this, *obj, fx, item, now);
    std::optional<Error> failure;
    try {
      if (!obj->instance) {
        obj->instance = obj->klass->factory();
        if (!obj->instance) throw std::runtime_error("the actor factory returned no actor");
        metrics_->activations.fetch_add(1, std::memory_order_relaxed);
        obj->instance->on_activate(ctx);
      }
      Actor& a = *obj->instance;
      switch (item.kind) {
        case Item::Kind::kMail: {
          const auto& m = item.mail;
          if (m.kind == MailKind::kAlarm) {
            AlarmInfo info{m.subject, m.scheduled_ms, item.attempt - 1, m.missed};
            a.on_alarm(ctx, info);
          } else {
            Message msg{m.data, m.content_type, item.seq, item.attempt,
                        m.kind == MailKind::kChannel ? std::string_view(m.subject) : std::string_view()};
            a.on_message(ctx, msg);
          }
          break;
        }
        case Item::Kind::kCall: {
          if (item.http) {
            const auto& h = *item.http;
            HttpRequest req{h.method, h.path, h.query, h.headers, h.body, h.client_address, h.claims};
            HttpResponse res = a.on_fetch(ctx, req);
            fx.reply =
                ObjectReply{std::move(res.body), ContentType::kBytes, res.status, std::move(res.headers)};
            break;
          }
          Message msg{item.data, item.type, 0, 1, {}};
          a.on_call(ctx, msg);
          break;
        }
        case Item::Kind::kConnect: {
          const auto& r = item.request;
          ConnectRequest req{r.query, r.origin, r.protocol, r.path, r.headers, r.client_address, r.claims};
          a.on_connect(ctx, Socket{item.socket}, req);
          break;
        }
        case Item::Kind::kSocketMessage: a.on_socket_message(ctx, Socket{item.socket}, item.data); break;
        case Item::Kind::kDisconnect:
          a.on_disconnect(ctx, Socket{item.socket}, CloseInfo{item.code, item.data, item.code != 1006});
          break;
      }
    } catch (const Reject& r) {
      failure = Error{
          item.kind == Item::Kind::kConnect ? ErrorCode::CONNECT_REJECTED : ErrorCode::ACTOR_ERROR, r.what()};
    } catch (const std::exception& e) {
      failure = Error{ErrorCode::ACTOR_ERROR, e.what()};
    } catch (...) {
      failure = Error{ErrorCode::ACTOR_ERROR, "the handler threw a non-standard exception"};
    }
    finish_turn(obj, std::move(item), std::move(fx), generation, std::move(failure));
  }
  MutexLock lock(obj->mu);
  obj->running = false;
  schedule_locked(obj);
}

void ActorRuntime::finish_turn(const std::shared_ptr<Obj>& obj, Item item, Effects fx,
                               std::uint64_t generation, std::optional<Error> failure) {
  metrics_->turns.fetch_add(1, std::memory_order_relaxed);
  if (failure) {
    // Its memory may be half-updated: the next turn gets a fresh one. A refused connect is an
    // answer, not a failure: the actor stays.
    if (failure->code != ErrorCode::CONNECT_REJECTED) obj->instance.reset();
    if (failure->code != ErrorCode::CONNECT_REJECTED) {
      metrics_->turns_failed.fetch_add(1, std::memory_order_relaxed);
      module_logger("actors")->warn("object {}/{}: turn failed: {}", obj->cls, obj->name, failure->message);
    }
    fail_item(obj, std::move(item), *failure);
    return;
  }
  if (item.kind == Item::Kind::kMail) fx.consume_seq = item.seq;
  submit_turn(obj, std::move(item), std::move(fx), generation);
}

void ActorRuntime::requeue_front(const std::shared_ptr<Obj>& obj, Item item, bool rolled_back) {
  // The class is usually marked unavailable already (then nothing runs until a host comes); if
  // its last host is still on its way out, a short pause keeps this from spinning.
  std::int64_t at = clock_() + 50;
  {
    MutexLock lock(obj->mu);
    if (item.kind == Item::Kind::kMail && !item.data_on_disk) obj->mail_bytes += item.mail.data.size();
    obj->queue.push_front(std::move(item));
    if (rolled_back) ++obj->requeued;
    obj->running = false;
    obj->blocked_until = at;
  }
  wake_at(at);
  MutexLock lock(mu_);
  retry_at_.emplace(at, obj);
}

void ActorRuntime::AsyncTurn::end(std::optional<Error> failure) {
  if (ended.exchange(true)) return;
  auto& rt = ctx.runtime();
  auto o = obj;
  rt.finish_turn(o, std::move(item), std::move(fx), generation, std::move(failure));
  MutexLock lock(o->mu);
  o->running = false;
  rt.schedule_locked(o);
}

void ActorRuntime::AsyncTurn::requeue() {
  if (ended.exchange(true)) return;
  ctx.runtime().requeue_front(obj, std::move(item), rolled_back);
}

void ActorRuntime::post(std::move_only_function<void()> work) {
  if (!workers_) return;
  // Counted like a slice: work posted here (a host's frames being applied) can block in a call as a
  // turn can, and the stall detector must see it to add a worker.
  queued_slices_.fetch_add(1, std::memory_order_relaxed);
  asio::post(*workers_, [this, work = std::move(work)]() mutable {
    WorkScope busy(*this);
    work();
  });
}

void ActorRuntime::submit_turn(const std::shared_ptr<Obj>& obj, Item item, Effects fx,
                               std::uint64_t generation) {
  std::uint64_t turn = 0;
  bool direct = false;
  {
    MutexLock lock(obj->mu);
    if (generation != obj->generation.load()) {
      // A commit failed while this turn ran on what it wrote: run it again after the rolled-back
      // turns, which are now at the front.
      auto at = obj->queue.begin() + static_cast<std::ptrdiff_t>(std::min(obj->requeued, obj->queue.size()));
      if (item.kind == Item::Kind::kMail) obj->mail_bytes += item.mail.data.size();
      obj->queue.insert(at, std::move(item));
      ++obj->requeued;
      obj->reset_actor = true;
      return;
    }
    turn = obj->next_turn++;
    for (const auto& [k, v] : fx.writes) obj->overlay.insert_or_assign(k, Obj::Pending{v, turn});
    // Socket tags, attachments and the auto-response are memory only: later turns (which may run
    // before this one commits) must see them, so they apply now. The socket being connected is
    // not attached yet: its settings apply with the attachment, at the commit.
    auto apply_now = [&](auto& changes, auto field) ROOST_REQUIRES(obj->mu) {
      for (auto it = changes.begin(); it != changes.end();) {
        auto sock = obj->sockets.find(it->first);
        if (sock == obj->sockets.end()) {
          ++it;
          continue;
        }
        sock->second.*field = std::move(it->second);
        it = changes.erase(it);
      }
    };
    apply_now(fx.tags, &Obj::SocketEntry::tags);
    apply_now(fx.attachments, &Obj::SocketEntry::attachment);
    if (fx.auto_response) {
      obj->auto_request = std::move(fx.auto_response->first);
      obj->auto_response = std::move(fx.auto_response->second);
      fx.auto_response.reset();
    }
    obj->inflight.push_back(std::move(item));
    // Nothing to make durable, and no earlier turn waiting for its commit: this turn's outputs
    // depend on nothing uncommitted, so they may leave now, without a commit.
    direct = fx.writes.empty() && fx.consume_seq == 0 && fx.tells.empty() && fx.enqueues.empty() &&
             fx.alarms.empty() && fx.subscriptions.empty() && obj->inflight.size() == 1;
  }
  if (direct) {
    metrics_->direct_turns.fetch_add(1, std::memory_order_relaxed);
    return on_turn_done(obj, turn, generation, fx, nullptr);
  }
  committer_.submit(std::make_unique<TurnOp>(*this, obj, turn, generation, std::move(fx)));
}

void ActorRuntime::fail_item(const std::shared_ptr<Obj>& obj, Item item, const Error& error) {
  switch (item.kind) {
    case Item::Kind::kCall: answer_call(item.reply, std::unexpected(error)); return;
    case Item::Kind::kConnect: item.attached->finish(std::unexpected(error)); return;
    case Item::Kind::kSocketMessage:
    case Item::Kind::kDisconnect:
      return;  // nothing to retry: the frame is dropped (logged and counted above)
    case Item::Kind::kMail: break;
  }
  const auto& opts = obj->klass->options;
  if (item.attempt > opts.max_retries) {
    // Dead-letter: consume the mail and enqueue it, with the error, in one commit.
    module_logger("actors")->warn("object {}/{}: message {} dead-lettered to {} after {} attempts", obj->cls,
                                  obj->name, item.seq, opts.dead_letter_queue, item.attempt);
    metrics_->dead_lettered.fetch_add(1, std::memory_order_relaxed);
    Effects fx;
    fx.consume_seq = item.seq;
    NewMessage m;
    m.body = dead_letter_json(*obj, item, error);
    fx.enqueues[opts.dead_letter_queue].push_back(std::move(m));
    submit_turn(obj, std::move(item), std::move(fx), obj->generation.load());
    return;
  }
  std::uint64_t delay = opts.retry_delay_ms << std::min<std::uint32_t>(item.attempt - 1, 16);
  delay = std::min<std::uint64_t>(delay, 10'000);
  item.attempt += 1;
  std::int64_t at = clock_() + static_cast<std::int64_t>(delay);
  {
    MutexLock lock(obj->mu);
    obj->mail_bytes += item.mail.data.size();
    obj->queue.push_front(std::move(item));
    obj->blocked_until = at;
  }
  wake_at(at);
  MutexLock lock(mu_);
  retry_at_.emplace(at, obj);
}

void ActorRuntime::answer_call(const std::shared_ptr<CallWait>& wait, Result<ObjectReply> r) {
  {
    // Its deadline goes first: once answered, the caller may read roost_actor_calls_waiting.
    MutexLock lock(mu_);
    if (wait->has_deadline) {
      call_deadlines_.erase(wait->deadline);
      wait->has_deadline = false;
    }
  }
  wait->finish(std::move(r));
}

void ActorRuntime::wake_at(std::int64_t when_ms) {
  MutexLock lock(mu_);
  if (timer_wake_ == 0 || when_ms < timer_wake_) {
    timer_wake_ = when_ms;
    timer_cv_.notify_all();
  }
}

void ActorRuntime::begin(durable::WriteContext&) { poisoned_.clear(); }

void ActorRuntime::on_turn_done(const std::shared_ptr<Obj>& obj, std::uint64_t turn, std::uint64_t generation,
                                Effects& fx, const Error* error) {
  auto now = clock_();
  if (error != nullptr) {
    std::int64_t at = 0;
    std::uint32_t failures = 0;
    std::deque<Item> evicted_items;
    {
      MutexLock lock(obj->mu);
      if (generation != obj->generation.load()) return;  // rolled back already
      obj->generation.fetch_add(1);
      // Undo every turn after the last commit: their items run again, in order, on a fresh actor.
      obj->requeued = obj->inflight.size();
      for (auto it = obj->inflight.rbegin(); it != obj->inflight.rend(); ++it) {
        if (it->kind == Item::Kind::kMail) obj->mail_bytes += it->mail.data.size();
        obj->queue.push_front(std::move(*it));
      }
      obj->inflight.clear();
      obj->overlay.clear();
      obj->reset_actor = true;
      // A cause that lasts (storage full) must not turn into a busy loop: the wait doubles per
      // failure in a row, up to 10 s.
      failures = ++obj->failed_commits;
      if (obj->evicted) {
        // Its shard moved away meanwhile: what was put back is answered, not run here again.
        evicted_items.swap(obj->queue);
      }
      auto base = std::max<std::uint64_t>(obj->klass->options.retry_delay_ms, 100);
      at = now + static_cast<std::int64_t>(
                     std::min<std::uint64_t>(base << std::min<std::uint32_t>(failures - 1, 7), 10'000));
      obj->blocked_until = at;
    }
    metrics_->rollbacks.fetch_add(1, std::memory_order_relaxed);
    if (!evicted_items.empty()) {
      const Error moved{ErrorCode::OWNER_UNAVAILABLE, "the object moved to another node"};
      for (auto& item : evicted_items) {
        if (item.kind != Item::Kind::kMail) fail_item(obj, std::move(item), moved);
      }
      return;
    }
    if (failures <= 3 || failures % 16 == 0) {
      module_logger("actors")->warn(
          "object {}/{}: turn {} not committed ({}); its turns run again ({} in a row)", obj->cls, obj->name,
          turn, error->message, failures);
    }
    wake_at(at);
    MutexLock lock(mu_);
    retry_at_.emplace(at, obj);
    return;
  }
  Item item;
  std::vector<std::pair<std::shared_ptr<ObjectSocket>, std::string>> sends;
  std::vector<std::pair<std::shared_ptr<ObjectSocket>, Effects::Close>> closes;
  {
    MutexLock lock(obj->mu);
    if (obj->inflight.empty()) return;  // cannot happen: commits complete in submission order
    item = std::move(obj->inflight.front());
    obj->inflight.pop_front();
    obj->failed_commits = 0;
    for (const auto& [k, v] : fx.writes) {
      auto it = obj->overlay.find(k);
      if (it != obj->overlay.end() && it->second.turn == turn) obj->overlay.erase(it);
    }
    if (item.kind == Item::Kind::kConnect && item.attached) {
      obj->sockets[item.socket] = Obj::SocketEntry{item.sink, {}, {}};
    }
    for (auto& [id, tags] : fx.tags) {
      if (auto it = obj->sockets.find(id); it != obj->sockets.end()) it->second.tags = std::move(tags);
    }
    for (auto& [id, a] : fx.attachments) {
      if (auto it = obj->sockets.find(id); it != obj->sockets.end()) it->second.attachment = std::move(a);
    }
    for (auto& [id, text] : fx.sends) {
      if (auto it = obj->sockets.find(id); it != obj->sockets.end()) {
        sends.emplace_back(it->second.sink, std::move(text));
      }
    }
    for (auto& c : fx.closes) {
      if (auto it = obj->sockets.find(c.socket); it != obj->sockets.end()) {
        closes.emplace_back(it->second.sink, std::move(c));
      }
    }
    obj->last_active = now;
  }
  // The output gate opens: everything below leaves only now that the turn is durable.
  if (item.kind == Item::Kind::kConnect && item.attached) {
    {
      MutexLock lock(mu_);
      socket_owner_[item.socket] = obj;
    }
    if (!item.attached->finish(item.socket)) {
      // The client went away while on_connect ran: detach it again.
      socket_closed(item.socket, 1006);
    }
  }
  for (auto& [sink, text] : sends) sink->send(std::move(text));
  for (auto& [sink, c] : closes) sink->close(c.code, std::move(c.reason));
  if (!fx.publishes.empty()) {
    asio::post(*publisher_, [this, obj, publishes = std::move(fx.publishes)]() mutable {
      for (auto& p : publishes) {
        if (mesh_effects_ != nullptr) {
          mesh_effects_->turn_publish(p.subject, std::move(p.data), p.type);
          continue;
        }
        auto r = hub_.publish(p.subject, std::move(p.data), p.type);
        if (!r) {
          module_logger("actors")->warn("object {}/{}: publish to {} failed: {}", obj->cls, obj->name,
                                        p.subject, r.error().message);
        }
      }
    });
  }
  if (item.kind == Item::Kind::kCall) {
    // A handler that returns without replying is a bug in the actor: its caller learns so at
    // once (the turn's other effects stand) instead of receiving a null it cannot tell apart.
    if (fx.reply) {
      answer_call(item.reply, std::move(*fx.reply));
    } else {
      answer_call(item.reply,
                  std::unexpected(Error{ErrorCode::NO_REPLY, "object " + obj->cls + "/" + obj->name +
                                                                 ": on_call returned without ctx.reply()"}));
    }
  }
  for (const auto& [pattern, on] : fx.subscriptions) {
    if (on) {
      subscribe_object(obj->okey, obj->cls, obj->name, pattern);
    } else {
      unsubscribe_object(obj->okey, pattern);
    }
  }
  if (!fx.tells.empty()) {
    std::vector<PendingMail> mail;
    for (auto& t : fx.tells) {
      if (t.remote) continue;  // in the outbox: the owner's node delivers it
      mail.push_back(
          PendingMail{durable::ObjectRef{std::move(t.cls), std::move(t.name)}, t.seq, std::move(t.mail)});
    }
    deliver_mail(std::move(mail));
  }
}

}  // namespace roost::broker
