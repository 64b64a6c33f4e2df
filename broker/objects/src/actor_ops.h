// The runtime's write Ops: TurnOp commits one turn's effects with the consumption of its mail;
// MailOp appends mail from outside a turn (tells, durable-subscription messages) or turns due
// alarms into mail. Both run on the committer thread. Private to broker/src.
#pragma once

#include "actor_state.h"

#include <roost/core/log.h>
#include <roost/durable/committer.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/outbox_store.h>
#include <roost/durable/queue_store.h>

#include <algorithm>
#include <functional>

namespace roost::broker {

using durable::MailboxStore;
using durable::PendingMail;

// One turn's effects and the consumption of its mail, in the group transaction.
class ActorRuntime::TurnOp final : public durable::Op {
 public:
  TurnOp(ActorRuntime& rt, std::shared_ptr<Obj> obj, std::uint64_t turn, std::uint64_t generation, Effects fx)
      : rt_(rt), obj_(std::move(obj)), turn_(turn), generation_(generation), fx_(std::move(fx)) {}

  void apply(durable::WriteContext& ctx) override {
    error_.reset();
    if (rt_.mesh_effects_ != nullptr && rt_.mesh_effects_->object_closed(obj_->cls, obj_->name)) {
      // The object's shard is moving away: its state was copied as it is. The turn runs again
      // where the object lives next (its mail is still in the mailbox).
      error_ = Error{ErrorCode::OWNER_UNAVAILABLE, "the object's shard is moving to another node"};
      return;
    }
    auto& poisoned = rt_.poisoned_;
    if (generation_ != obj_->generation.load() ||
        std::find(poisoned.begin(), poisoned.end(), obj_.get()) != poisoned.end()) {
      error_ = Error{ErrorCode::UNAVAILABLE, "an earlier turn of this object failed to commit"};
      return;
    }
    if (ctx.storage_full && fx_.adds_data()) {
      error_ = Error{ErrorCode::STORAGE_FULL, "storage is full"};
      poisoned.push_back(obj_.get());
      return;
    }
    // In a mesh, effects on another node's shard go to the outbox (delivered exactly once).
    auto* mesh = rt_.mesh_effects_;
    remote_ = false;
    if (mesh != nullptr && (!fx_.enqueues.empty() || !fx_.tells.empty()) && !mesh->ready()) {
      error_ = Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"};
      poisoned.push_back(obj_.get());
      return;
    }
    std::vector<std::pair<const std::string*, std::uint32_t>> remote_queues;
    for (auto& [queue, messages] : fx_.enqueues) {
      if (mesh == nullptr) break;
      if (auto shard = mesh->remote_queue(queue)) remote_queues.emplace_back(&queue, *shard);
    }
    auto is_remote = [&](const std::string& queue) {
      return std::any_of(remote_queues.begin(), remote_queues.end(),
                         [&](const auto& r) { return *r.first == queue; });
    };
    // Enqueues are the only effects that can be refused (queue_full): check them all before
    // anything is written, so the turn commits whole or not at all.
    for (auto& [queue, messages] : fx_.enqueues) {
      if (is_remote(queue)) continue;
      if (auto e = rt_.queues_.check_enqueue_in(queue, messages)) {
        error_ = *e;
        poisoned.push_back(obj_.get());
        return;
      }
    }
    for (const auto& [queue, shard] : remote_queues) {
      for (const auto& m : fx_.enqueues.at(*queue)) {
        MeshEffect e;
        e.queue = *queue;
        e.message = m;
        rt_.outbox_->append_in(ctx.txn, shard, e);
        remote_ = true;
      }
    }
    for (auto& [queue, messages] : fx_.enqueues) {
      if (is_remote(queue)) continue;
      if (auto r = rt_.queues_.enqueue_in(queue, messages); !r) {
        // Cannot happen (checked just above, nothing changed since); failing the whole group is
        // the one answer that writes nothing partial.
        throw durable::MdbError(MDB_BAD_TXN, "enqueue refused after its check: " + r.error().message);
      }
    }
    auto& store = rt_.store_;
    const auto& okey = obj_->okey;
    if (fx_.consume_seq != 0) store.consume_in(ctx.txn, okey, fx_.consume_seq);
    for (const auto& [k, v] : fx_.writes) {
      if (v) {
        store.kv_put_in(ctx.txn, okey, k, *v);
      } else {
        store.kv_del_in(ctx.txn, okey, k);
      }
    }
    for (auto& t : fx_.tells) {
      t.remote = false;
      if (mesh != nullptr) {
        if (auto shard = mesh->remote_object(t.cls, t.name)) {
          MeshEffect e;
          e.object_class = t.cls;
          e.name = t.name;
          e.message.body = t.mail.data;
          e.message.content_type = t.mail.content_type;
          rt_.outbox_->append_in(ctx.txn, *shard, e);
          t.remote = remote_ = true;
          continue;
        }
      }
      t.seq = store.append_in(ctx.txn, t.okey, t.mail);
    }
    for (const auto& a : fx_.alarms) {
      if (a.set) {
        store.alarm_set_in(ctx.txn, okey, a.name, a.due_ms, a.every_ms);
      } else {
        store.alarm_cancel_in(ctx.txn, okey, a.name);
      }
    }
    for (const auto& [pattern, on] : fx_.subscriptions) {
      store.subscription_set_in(ctx.txn, okey, pattern, on);
    }
  }

  void complete(const Error* error) override {
    if (error == nullptr && error_) error = &*error_;
    if (error == nullptr && remote_) rt_.mesh_effects_->outbox_written();
    rt_.on_turn_done(obj_, turn_, generation_, fx_, error);
  }

 private:
  ActorRuntime& rt_;
  std::shared_ptr<Obj> obj_;
  std::uint64_t turn_;
  std::uint64_t generation_;
  Effects fx_;
  std::optional<Error> error_;
  bool remote_ = false;  // something went to the outbox
};

// Appends mail from outside a turn (tells, messages of durable subscriptions) or fires due alarms.
class ActorRuntime::MailOp final : public durable::Op {
 public:
  using Done = std::move_only_function<void(Result<std::vector<PendingMail>>)>;
  MailOp(ActorRuntime& rt, std::vector<PendingMail> mail, bool fire_alarms, Done done)
      : rt_(rt), mail_(std::move(mail)), fire_alarms_(fire_alarms), done_(std::move(done)) {}

  void apply(durable::WriteContext& ctx) override {
    fired_.clear();
    refused_ = false;
    if (fire_alarms_) {
      auto* mesh = rt_.mesh_effects_;
      auto skip = [mesh](std::string_view okey) {  // an object whose shard is moving: its alarms wait
        auto ref = MailboxStore::parse_object_key(okey);
        return ref && mesh->object_closed(ref->object_class, ref->name);
      };
      fired_ = rt_.store_.fire_due_in(
          ctx.txn, ctx.now_ms, 1000, mesh != nullptr ? std::function<bool(std::string_view)>(skip) : nullptr);
      return;
    }
    if (ctx.storage_full) {
      refused_ = true;
      return;
    }
    closed_ = false;
    if (auto* mesh = rt_.mesh_effects_) {
      for (const auto& m : mail_) {
        if (mesh->object_closed(m.object.object_class, m.object.name)) {
          closed_ = true;  // its shard is moving away: the sender retries where it lives next
          return;
        }
      }
    }
    for (auto& m : mail_) {
      m.seq = rt_.store_.append_in(ctx.txn, MailboxStore::object_key(m.object.object_class, m.object.name),
                                   m.record);
    }
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    if (refused_) {
      return done_(std::unexpected(Error{ErrorCode::STORAGE_FULL, "storage is full"}));
    }
    if (closed_) {
      return done_(std::unexpected(
          Error{ErrorCode::OWNER_UNAVAILABLE, "the object's shard is moving to another node"}));
    }
    done_(fire_alarms_ ? std::move(fired_) : std::move(mail_));
  }

 private:
  ActorRuntime& rt_;
  std::vector<PendingMail> mail_;
  bool fire_alarms_;
  Done done_;
  std::vector<PendingMail> fired_;
  bool refused_ = false;
  bool closed_ = false;
};

// (target) A peer's outbox effects on a shard of this node, applied once each: those after the last
// applied from that origin, with the new mark, in one transaction.
class ActorRuntime::InboxOp final : public durable::Op {
 public:
  InboxOp(ActorRuntime& rt, std::string origin, std::uint32_t shard, std::vector<MeshEffect> effects,
          Callback<std::uint64_t> done)
      : rt_(rt),
        origin_(std::move(origin)),
        shard_(shard),
        effects_(std::move(effects)),
        done_(std::move(done)) {}

  void apply(durable::WriteContext& ctx) override {
    mail_.clear();
    refused_ = 0;
    full_ = false;
    jumped_ = 0;
    if (ctx.storage_full) {
      full_ = true;
      return;
    }
    closed_ = rt_.mesh_effects_ != nullptr && rt_.mesh_effects_->shard_closed(shard_);
    if (closed_) return;  // moving away: the origin delivers them where the shard lives next
    mark_ = rt_.outbox_->applied_in(ctx.txn, origin_, shard_);
    // An origin numbers a shard's effects without gaps: the first one this node sees from it may
    // start anywhere, every later one is the mark + 1. A seq that jumps is refused whole, and
    // nothing is recorded (it would make the origin's next real effects look applied).
    {
      std::uint64_t expect = mark_;
      for (const auto& e : effects_) {
        if (e.seq <= expect) continue;
        if (expect != 0 && e.seq != expect + 1) {
          jumped_ = e.seq;
          return;
        }
        expect = e.seq;
      }
    }
    for (const auto& e : effects_) {
      if (e.seq <= mark_) continue;  // applied before (the answer was lost)
      mark_ = e.seq;
      if (!e.queue.empty()) {
        std::vector<NewMessage> one{e.message};
        if (rt_.queues_.check_enqueue_in(e.queue, one) || !rt_.queues_.enqueue_in(e.queue, one)) ++refused_;
        continue;
      }
      if (rt_.check(e.object_class, e.name)) {
        ++refused_;
        continue;
      }
      PendingMail m;
      m.object = durable::ObjectRef{e.object_class, e.name};
      m.record.content_type = e.message.content_type;
      m.record.enqueued_ms = ctx.now_ms;
      m.record.data = e.message.body;
      m.seq = rt_.store_.append_in(ctx.txn, MailboxStore::object_key(e.object_class, e.name), m.record);
      mail_.push_back(std::move(m));
    }
    rt_.outbox_->set_applied_in(ctx.txn, origin_, shard_, mark_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    if (full_) return done_(std::unexpected(Error{ErrorCode::STORAGE_FULL, "storage is full"}));
    if (jumped_ != 0) {
      module_logger("mesh")->warn("effects from {} on shard {}: seq {} jumps past the mark {}: refused",
                                  origin_, shard_, jumped_, mark_);
      return done_(std::unexpected(
          Error{ErrorCode::INVALID_ARGUMENT, "effect seq " + std::to_string(jumped_) + " jumps past " +
                                                 std::to_string(mark_) + " + 1: refused"}));
    }
    if (closed_) {
      return done_(std::unexpected(Error{ErrorCode::OWNER_UNAVAILABLE,
                                         "shard " + std::to_string(shard_) + " is moving to another node"}));
    }
    if (refused_ > 0) {
      rt_.mesh_refused_.fetch_add(refused_, std::memory_order_relaxed);
      module_logger("mesh")->warn(
          "{} effects from {} on shard {} refused here (no such queue or class, or full)", refused_, origin_,
          shard_);
    }
    rt_.deliver_mail(std::move(mail_));
    done_(mark_);
  }

 private:
  ActorRuntime& rt_;
  std::string origin_;
  std::uint32_t shard_;
  std::vector<MeshEffect> effects_;
  Callback<std::uint64_t> done_;
  std::vector<PendingMail> mail_;
  std::uint64_t mark_ = 0;
  std::uint64_t refused_ = 0;
  std::uint64_t jumped_ = 0;  // a seq past mark + 1: the batch is refused
  bool full_ = false;
  bool closed_ = false;
};

}  // namespace roost::broker
