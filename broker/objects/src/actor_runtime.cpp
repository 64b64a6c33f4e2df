#include "roost/broker/actor_runtime.h"

#include "actor_ops.h"

#include <roost/durable/outbox_store.h>
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

// ---------------------------------------------------------------------------------------------
// The runtime

ActorRuntime::ActorRuntime(durable::MailboxStore& store, durable::Committer& committer,
                           durable::QueueStore& queues, channels::Hub& hub, ActorRuntimeOptions options,
                           std::function<std::int64_t()> clock)
    : store_(store),
      committer_(committer),
      queues_(queues),
      hub_(hub),
      options_(options),
      clock_(std::move(clock)),
      metrics_(std::make_unique<Metrics>()) {
  committer_.add_participant(this);
}

ActorRuntime::~ActorRuntime() { stop(); }

void ActorRuntime::start() {
  auto log = module_logger("actors");
  started_ = true;
  workers_ = std::make_unique<asio::thread_pool>(std::max(1u, options_.threads));
  worker_count_ = static_cast<int>(std::max(1u, options_.threads));
  if (options_.max_threads == 0) options_.max_threads = std::max(16u, 4 * options_.threads);
  publisher_.emplace(asio::make_strand(workers_->get_executor()));
  // Objects of a shard closed here from the start (a move left it unsettled: MeshRouter::hold)
  // wait: adopt() loads them if the shard is this node's after all.
  auto closed = [this](const std::string& cls, const std::string& name) {
    return mesh_effects_ != nullptr && mesh_effects_->object_closed(cls, name);
  };
  std::size_t subs = 0, held = 0;
  for (auto& [ref, pattern] : store_.all_subscriptions()) {
    if (!has_class(ref.object_class)) continue;
    if (closed(ref.object_class, ref.name)) {
      ++held;
      continue;
    }
    subscribe_object(MailboxStore::object_key(ref.object_class, ref.name), ref.object_class, ref.name,
                     pattern);
    ++subs;
  }
  auto pending = store_.all_pending(options_.mail_memory_bytes);
  std::size_t orphans = 0;
  std::erase_if(pending, [&](const PendingMail& m) {
    bool gone = !has_class(m.object.object_class);
    orphans += gone;
    if (!gone && closed(m.object.object_class, m.object.name)) {
      ++held;
      return true;
    }
    return gone;
  });
  std::size_t class_count = 0;
  {
    ReaderLock lock(classes_mu_);
    class_count = classes_.size();
  }
  log->info(
      "actor runtime: {} classes, {} threads, {} messages waiting in mailboxes, {} durable "
      "subscriptions, idle_ms {}",
      class_count, options_.threads, pending.size(), subs, options_.idle_ms);
  if (orphans > 0) {
    log->warn("{} mailbox messages belong to classes not registered on this node; they wait", orphans);
  }
  if (held > 0) log->info("{} mailbox messages and subscriptions wait for their shard to be settled", held);
  deliver_mail(std::move(pending));
  timer_ = std::thread([this] {
    roost::name_this_thread("roost-alarms");
    timer_loop();
  });
}

void ActorRuntime::stop() {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  halt_ = true;
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  if (workers_) workers_->join();
  for (auto& t : extra_workers_) t.join();  // they leave attach() once the pool's work is done
  extra_workers_.clear();
  // Running turns are done; what they submitted completes when the committer drains. Waiting
  // calls and connects are told now.
  std::vector<std::shared_ptr<Obj>> objs;
  {
    MutexLock lock(mu_);
    for (auto& [k, o] : objects_) objs.push_back(o);
    for (auto& [k, id] : durable_subs_) unsubscribe_channel(id);
    durable_subs_.clear();
  }
  Error e{ErrorCode::UNAVAILABLE, "the node is shutting down"};
  for (auto& o : objs) {
    std::deque<Item> items;
    {
      MutexLock lock(o->mu);
      items.swap(o->queue);
    }
    for (auto& it : items) {
      if (it.reply) it.reply->finish(std::unexpected(e));
      if (it.attached) it.attached->finish(std::unexpected(e));
    }
  }
}

std::shared_ptr<ActorRuntime::Obj> ActorRuntime::object(const std::string& cls, const std::string& name,
                                                        bool create) {
  auto okey = MailboxStore::object_key(cls, name);
  auto it = objects_.find(okey);
  if (it != objects_.end()) return it->second;
  if (!create) return nullptr;
  auto k = find_class(cls);
  if (k == nullptr) return nullptr;
  auto o = std::make_shared<Obj>();
  o->okey = okey;
  o->cls = cls;
  o->name = name;
  o->klass = k;
  {
    MutexLock olock(o->mu);  // not shared yet; the analysis asks for it all the same
    o->last_active = clock_();
  }
  objects_.emplace(std::move(okey), o);
  return o;
}

void ActorRuntime::push(const std::shared_ptr<Obj>& obj, Item item, bool front) {
  MutexLock lock(obj->mu);
  if (obj->evicted) {
    lock.unlock();
    if (item.kind != Item::Kind::kMail) {
      fail_item(obj, std::move(item),
                Error{ErrorCode::OWNER_UNAVAILABLE, "the object moved to another node"});
    }
    return;
  }
  if (front) {
    obj->queue.push_front(std::move(item));
  } else {
    obj->queue.push_back(std::move(item));
  }
  schedule_locked(obj);
}

void ActorRuntime::schedule_locked(const std::shared_ptr<Obj>& obj) ROOST_REQUIRES(obj->mu) {
  if (obj->evicted || obj->running || obj->queue.empty() || obj->blocked_until > clock_() || !workers_ ||
      !obj->klass->available.load()) {
    return;
  }
  obj->running = true;
  queued_slices_.fetch_add(1, std::memory_order_relaxed);
  asio::post(*workers_, [this, obj] { run_slice(obj); });
}

std::int64_t ActorRuntime::steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Timer thread. Every worker busy, work waiting, and no slice started for stall_ms: the running
// turns block. Another worker lets the waiting objects run.
void ActorRuntime::add_worker_if_stalled() {
  const std::int64_t now = steady_now_ms();
  if (queued_slices_.load() <= 0 || busy_workers_.load() < worker_count_.load()) return;
  if (now - last_slice_start_.load() < static_cast<std::int64_t>(options_.stall_ms)) return;
  if (worker_count_.load() >= static_cast<int>(options_.max_threads) || halt_.load()) return;
  int n = worker_count_.fetch_add(1) + 1;
  last_slice_start_ = now;  // give the new worker its chance before adding another
  metrics_->workers_added.fetch_add(1, std::memory_order_relaxed);
  module_logger("actors")->warn(
      "every actor worker has been busy for {} ms with {} objects waiting (a turn blocks?): worker {} of at most {} added",
      options_.stall_ms, queued_slices_.load(), n, options_.max_threads);
  extra_workers_.emplace_back([this, n] {
    roost::name_this_thread("roost-actor-" + std::to_string(n));
    workers_->attach();
  });
}

void ActorRuntime::deliver_mail(std::vector<PendingMail> mail) {
  if (mail.empty()) return;
  MutexLock lock(mu_);
  if (stopping_) return;  // it is on disk; the next start delivers it
  for (auto& m : mail) {
    auto obj = object(m.object.object_class, m.object.name, true);
    if (!obj) continue;
    Item item;
    item.kind = Item::Kind::kMail;
    item.seq = m.seq;
    item.mail = std::move(m.record);
    item.data_on_disk = m.data_on_disk;
    MutexLock olock(obj->mu);
    if (item.seq <= obj->last_seq) continue;  // queued already (a class added while mail committed)
    obj->last_seq = item.seq;
    if (!item.data_on_disk) {
      if (obj->mail_bytes + item.mail.data.size() > options_.mail_memory_bytes) {
        // A backlog: keep its place in line, not its bytes.
        item.mail.data.clear();
        item.mail.data.shrink_to_fit();
        item.data_on_disk = true;
      } else {
        obj->mail_bytes += item.mail.data.size();
      }
    }
    obj->queue.push_back(std::move(item));
    schedule_locked(obj);
  }
}

void ActorRuntime::tell(std::string cls, std::string name, std::string data, ContentType type,
                        Callback<std::uint64_t> done) {
  if (auto e = check(cls, name)) return done(std::unexpected(*e));
  if (data.size() > options_.max_message_bytes) {
    return done(
        std::unexpected(Error{ErrorCode::MESSAGE_TOO_LARGE, "message of " + std::to_string(data.size()) +
                                                                " bytes exceeds max_message_bytes " +
                                                                std::to_string(options_.max_message_bytes)}));
  }
  PendingMail m;
  m.object = durable::ObjectRef{std::move(cls), std::move(name)};
  m.record.content_type = type;
  m.record.enqueued_ms = clock_();
  m.record.data = std::move(data);
  std::vector<PendingMail> one;
  one.push_back(std::move(m));
  metrics_->tells.fetch_add(1, std::memory_order_relaxed);
  committer_.submit(
      std::make_unique<MailOp>(*this, std::move(one), false,
                               [this, done = std::move(done)](Result<std::vector<PendingMail>> r) mutable {
                                 if (!r) return done(std::unexpected(r.error()));
                                 std::uint64_t seq = r->front().seq;
                                 deliver_mail(std::move(*r));
                                 done(seq);
                               }));
}

void ActorRuntime::apply_mesh_effects(std::string origin, std::uint32_t shard,
                                      std::vector<MeshEffect> effects, Callback<std::uint64_t> done) {
  if (outbox_ == nullptr) {
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "this node is not in a mesh"}));
  }
  committer_.submit(
      std::make_unique<InboxOp>(*this, std::move(origin), shard, std::move(effects), std::move(done)));
}

void ActorRuntime::call(std::string cls, std::string name, std::string data, ContentType type,
                        std::uint64_t timeout_ms, Callback<ObjectReply> done,
                        std::vector<std::string> chain) {
  if (auto e = check(cls, name)) return done(std::unexpected(*e));
  if (data.size() > options_.max_message_bytes) {
    return done(
        std::unexpected(Error{ErrorCode::MESSAGE_TOO_LARGE, "request of " + std::to_string(data.size()) +
                                                                " bytes exceeds max_message_bytes"}));
  }
  if (auto e = refuse_unserved(cls)) return done(std::unexpected(*e));
  Item item;
  item.kind = Item::Kind::kCall;
  item.data = std::move(data);
  item.type = type;
  item.chain = std::move(chain);
  submit_call(cls, name, std::move(item), timeout_ms, std::move(done));
}

void ActorRuntime::fetch(std::string cls, std::string name, ObjectHttpRequest request,
                         std::uint64_t timeout_ms, Callback<ObjectReply> done,
                         std::vector<std::string> chain) {
  if (auto e = check(cls, name)) return done(std::unexpected(*e));
  if (request.body.size() > options_.max_message_bytes) {
    return done(std::unexpected(Error{
        ErrorCode::MESSAGE_TOO_LARGE,
        "request body of " + std::to_string(request.body.size()) + " bytes exceeds max_message_bytes"}));
  }
  if (auto e = refuse_unserved(cls)) return done(std::unexpected(*e));
  Item item;
  item.kind = Item::Kind::kCall;
  item.http = std::move(request);
  item.chain = std::move(chain);
  submit_call(cls, name, std::move(item), timeout_ms, std::move(done));
}

void ActorRuntime::submit_call(const std::string& cls, const std::string& name, Item item,
                               std::uint64_t timeout_ms, Callback<ObjectReply> done) {
  if (timeout_ms == 0) timeout_ms = options_.default_call_timeout_ms;
  auto wait = std::make_shared<CallWait>(std::move(done));
  item.reply = wait;
  MutexLock lock(mu_);
  if (stopping_) {
    wait->finish(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the node is shutting down"}));
    return;
  }
  auto deadline = clock_() + static_cast<std::int64_t>(timeout_ms);
  wait->deadline = call_deadlines_.emplace(deadline, wait);
  wait->has_deadline = true;
  if (timer_wake_ == 0 || deadline < timer_wake_) {
    timer_wake_ = deadline;
    timer_cv_.notify_all();
  }
  push(object(cls, name, true), std::move(item));
}

void ActorRuntime::connect(std::string cls, std::string name, std::shared_ptr<ObjectSocket> socket,
                           ObjectConnectRequest request, Callback<std::uint64_t> done) {
  if (auto e = check(cls, name)) return done(std::unexpected(*e));
  if (auto e = refuse_unserved(cls)) return done(std::unexpected(*e));
  Item item;
  item.kind = Item::Kind::kConnect;
  item.socket = next_socket_.fetch_add(1);
  item.sink = std::move(socket);
  item.request = std::move(request);
  item.attached = std::make_shared<Once<std::uint64_t>>(std::move(done));
  MutexLock lock(mu_);
  if (stopping_) {
    item.attached->finish(std::unexpected(Error{ErrorCode::UNAVAILABLE, "the node is shutting down"}));
    return;
  }
  push(object(cls, name, true), std::move(item));
}

void ActorRuntime::socket_message(std::uint64_t socket, std::string text) {
  MutexLock lock(mu_);
  auto it = socket_owner_.find(socket);
  if (it == socket_owner_.end() || stopping_) return;
  auto obj = it->second.lock();
  if (!obj) return;
  if (!obj->klass->available.load()) {
    metrics_->frames_dropped.fetch_add(1, std::memory_order_relaxed);
    return;  // no host serves its class now: a socket frame is at most once, like a failed turn's
  }
  {
    MutexLock olock(obj->mu);
    if (!obj->auto_request.empty() && text == obj->auto_request) {
      auto s = obj->sockets.find(socket);
      if (s != obj->sockets.end()) {
        auto sink = s->second.sink;
        auto response = obj->auto_response;
        olock.unlock();
        sink->send(std::move(response));
        metrics_->auto_responses.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }
  Item item;
  item.kind = Item::Kind::kSocketMessage;
  item.socket = socket;
  item.data = std::move(text);
  push(obj, std::move(item));
}

void ActorRuntime::socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason) {
  MutexLock lock(mu_);
  auto it = socket_owner_.find(socket);
  if (it == socket_owner_.end()) return;
  auto obj = it->second.lock();
  socket_owner_.erase(it);
  if (!obj) return;
  Item item;
  item.kind = Item::Kind::kDisconnect;
  item.socket = socket;
  item.code = code;
  item.data = std::move(reason);
  {
    MutexLock olock(obj->mu);
    if (auto s = obj->sockets.find(socket); s != obj->sockets.end()) {
      // Gone from the object's sockets, but its on_disconnect still reads who it was.
      item.left_tags = std::move(s->second.tags);
      item.left_attachment = std::move(s->second.attachment);
      obj->sockets.erase(s);
    }
  }
  if (stopping_) return;
  push(obj, std::move(item));
}

namespace {
// Delivers a durable subscription's channel messages into the object's mailbox.
class MailboxSubscriber final : public channels::Subscriber {
 public:
  using Sink = std::function<void(const channels::MessagePtr&)>;
  explicit MailboxSubscriber(Sink sink) : sink_(std::move(sink)) {}
  void deliver(const channels::MessagePtr& m) override {
    if (m->kind == channels::MessageKind::kData) sink_(m);
  }

 private:
  Sink sink_;
};
}  // namespace

void ActorRuntime::subscribe_object(const std::string& okey, const std::string& cls, const std::string& name,
                                    const std::string& pattern) {
  auto key = okey + '\0' + pattern;
  {
    MutexLock lock(mu_);
    if (durable_subs_.contains(key) || stopping_) return;
  }
  auto sub = std::make_shared<MailboxSubscriber>([this, cls, name](const channels::MessagePtr& m) {
    PendingMail pm;
    pm.object = durable::ObjectRef{cls, name};
    pm.record.kind = MailKind::kChannel;
    pm.record.content_type = m->content_type;
    pm.record.enqueued_ms = m->timestamp_ms;
    pm.record.subject = m->channel;
    pm.record.data = m->data;
    std::vector<PendingMail> one;
    one.push_back(std::move(pm));
    committer_.submit(
        std::make_unique<MailOp>(*this, std::move(one), false, [this](Result<std::vector<PendingMail>> r) {
          if (r) deliver_mail(std::move(*r));
        }));
  });
  auto r = mesh_effects_ != nullptr ? mesh_effects_->subscribe(pattern, sub)
                                    : hub_.subscribe(pattern, sub, std::nullopt);
  if (!r) {
    module_logger("actors")->warn("durable subscription of {}/{} to {} failed: {}", cls, name, pattern,
                                  r.error().message);
    return;
  }
  MutexLock lock(mu_);
  if (!durable_subs_.emplace(key, r->id).second) unsubscribe_channel(r->id);
}

void ActorRuntime::unsubscribe_channel(std::uint64_t id) {
  if (mesh_effects_ != nullptr) return mesh_effects_->unsubscribe(id);
  hub_.unsubscribe(id);
}

void ActorRuntime::unsubscribe_object(const std::string& okey, const std::string& pattern) {
  MutexLock lock(mu_);
  auto it = durable_subs_.find(okey + '\0' + pattern);
  if (it == durable_subs_.end()) return;
  unsubscribe_channel(it->second);
  durable_subs_.erase(it);
}

void ActorRuntime::timer_loop() {
  auto sweep_every = static_cast<std::int64_t>(std::clamp<std::uint64_t>(options_.idle_ms / 4, 5, 1000));
  std::int64_t next_sweep = clock_() + sweep_every;
  MutexLock lock(mu_);
  while (!stopping_) {
    std::int64_t now = clock_();
    std::int64_t wake = std::min(next_sweep, now + 50);  // alarms are checked every 50 ms
    if (timer_wake_ != 0) wake = std::min(wake, timer_wake_);
    if (wake > now) {
      timer_cv_.wait_for(lock.native(), std::chrono::milliseconds(wake - now));
      if (stopping_) break;
      now = clock_();
    }
    timer_wake_ = 0;
    add_worker_if_stalled();
    // Backoffs that are over.
    std::vector<std::pair<std::int64_t, std::shared_ptr<Obj>>> ready;
    while (!retry_at_.empty() && retry_at_.begin()->first <= now) {
      if (auto o = retry_at_.begin()->second.lock())
        ready.emplace_back(retry_at_.begin()->first, std::move(o));
      retry_at_.erase(retry_at_.begin());
    }
    if (!retry_at_.empty()) timer_wake_ = retry_at_.begin()->first;
    for (auto& [at, o] : ready) {
      MutexLock olock(o->mu);
      // This backoff is over (even if the wall clock stepped back meanwhile); a later one, set by
      // a newer failure, has its own entry.
      if (o->blocked_until <= at) o->blocked_until = 0;
      schedule_locked(o);
    }
    // Calls out of time.
    std::vector<std::shared_ptr<CallWait>> late;
    while (!call_deadlines_.empty() && call_deadlines_.begin()->first <= now) {
      if (auto w = call_deadlines_.begin()->second.lock()) {
        w->has_deadline = false;
        late.push_back(std::move(w));
      }
      call_deadlines_.erase(call_deadlines_.begin());
    }
    if (!call_deadlines_.empty() && (timer_wake_ == 0 || call_deadlines_.begin()->first < timer_wake_)) {
      timer_wake_ = call_deadlines_.begin()->first;
    }
    bool fire = !alarm_op_in_flight_;
    lock.unlock();
    for (auto& w : late) {
      if (w->finish(std::unexpected(Error{ErrorCode::CALL_TIMEOUT, "the object did not reply in time"}))) {
        metrics_->calls_timed_out.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (fire) {
      auto next = store_.next_alarm_ms();
      if (next && *next <= now) {
        {
          MutexLock l(mu_);
          alarm_op_in_flight_ = true;
        }
        committer_.submit(std::make_unique<MailOp>(*this, std::vector<PendingMail>{}, true,
                                                   [this](Result<std::vector<PendingMail>> r) {
                                                     {
                                                       MutexLock l(mu_);
                                                       alarm_op_in_flight_ = false;
                                                     }
                                                     if (r) deliver_mail(std::move(*r));
                                                   }));
      }
    }
    if (now >= next_sweep) {
      sweep(now);
      next_sweep = now + sweep_every;
    }
    lock.lock();
  }
}

void ActorRuntime::evict(const std::vector<std::string>& okeys) {
  std::vector<std::shared_ptr<Obj>> gone;
  {
    MutexLock lock(mu_);
    for (const auto& okey : okeys) {
      if (auto it = objects_.find(okey); it != objects_.end()) {
        gone.push_back(it->second);
        objects_.erase(it);
      }
      // Durable subscriptions: okey + '\0' + pattern.
      auto prefix = okey + '\0';
      for (auto it = durable_subs_.lower_bound(prefix);
           it != durable_subs_.end() && it->first.starts_with(prefix);) {
        unsubscribe_channel(it->second);
        it = durable_subs_.erase(it);
      }
    }
  }
  const Error moved{ErrorCode::OWNER_UNAVAILABLE, "the object moved to another node"};
  for (auto& obj : gone) {
    std::deque<Item> items;
    std::map<std::uint64_t, Obj::SocketEntry> sockets;
    std::unique_ptr<Actor> instance;
    {
      MutexLock olock(obj->mu);
      obj->evicted = true;
      items.swap(obj->queue);
      sockets.swap(obj->sockets);
      if (!obj->running) instance = std::move(obj->instance);
    }
    {
      MutexLock lock(mu_);
      for (const auto& [id, entry] : sockets) socket_owner_.erase(id);
    }
    for (auto& item : items) {
      if (item.kind != Item::Kind::kMail) fail_item(obj, std::move(item), moved);
    }
    for (auto& [id, entry] : sockets) {
      if (entry.sink) entry.sink->close(1012, "the object moved to another node");
    }
  }
  if (!gone.empty())
    module_logger("actors")->info("{} objects left memory: their shard moved away", gone.size());
}

void ActorRuntime::adopt(const std::vector<std::string>& okeys) {
  std::vector<PendingMail> mail;
  for (const auto& okey : okeys) {
    auto ref = MailboxStore::parse_object_key(okey);
    if (!ref || !has_class(ref->object_class)) continue;
    for (const auto& pattern : store_.subscriptions_of(okey)) {
      subscribe_object(okey, ref->object_class, ref->name, pattern);
    }
    auto pending = store_.pending_of(okey);
    mail.insert(mail.end(), std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.end()));
  }
  deliver_mail(std::move(mail));
  wake_at(clock_());  // their alarms: the timer looks again now
}

void ActorRuntime::sweep(std::int64_t now) {
  std::vector<std::unique_ptr<Actor>> hibernated;  // destroyed outside the locks
  {
    MutexLock lock(mu_);
    for (auto it = objects_.begin(); it != objects_.end();) {
      auto& o = *it->second;
      MutexLock olock(o.mu);
      bool idle = !o.running && o.queue.empty() && o.inflight.empty();
      if (idle && o.last_active + static_cast<std::int64_t>(options_.idle_ms) <= now) {
        if (o.instance) hibernated.push_back(std::move(o.instance));
        if (o.sockets.empty()) {  // nothing left to keep: the object leaves memory
          it = objects_.erase(it);
          continue;
        }
      }
      ++it;
    }
  }
  metrics_->hibernations.fetch_add(hibernated.size(), std::memory_order_relaxed);
}

ObjectInfo ActorRuntime::info(const std::string& cls, const std::string& name) const {
  ObjectInfo out;
  out.object_class = cls;
  out.name = name;
  auto okey = MailboxStore::object_key(cls, name);
  out.waiting = store_.waiting(okey);
  for (auto& a : store_.alarms_of(okey)) out.alarms.push_back({a.name, a.due_ms, a.every_ms});
  MutexLock lock(mu_);
  if (auto it = objects_.find(okey); it != objects_.end()) {
    MutexLock olock(it->second->mu);
    out.in_memory = true;
    out.active = it->second->instance != nullptr || it->second->running;
    out.sockets = it->second->sockets.size();
  }
  return out;
}

std::size_t ActorRuntime::objects_in_memory() const {
  MutexLock lock(mu_);
  return objects_.size();
}

std::size_t ActorRuntime::active_actors() const {
  MutexLock lock(mu_);
  std::size_t n = 0;
  for (const auto& [k, o] : objects_) {
    MutexLock olock(o->mu);
    n += o->instance != nullptr || o->running;
  }
  return n;
}

std::string ActorRuntime::metrics_text() const {
  const auto& m = *metrics_;
  MetricsWriter w;
  auto counter = [&](const char* name, const char* help, std::uint64_t v) { w.counter(name, help, v); };
  auto gauge = [&](const char* name, const char* help, std::uint64_t v) { w.gauge(name, help, v); };
  counter("roost_actor_turns_total", "Actor turns run (including failed ones).", m.turns.load());
  counter("roost_actor_turns_failed_total", "Actor turns whose handler threw.", m.turns_failed.load());
  counter("roost_actor_activations_total", "Actors created (first use or wake from hibernation).",
          m.activations.load());
  counter("roost_actor_hibernations_total", "Idle actors freed.", m.hibernations.load());
  counter("roost_actor_dead_lettered_total", "Mailbox messages moved to a dead-letter queue.",
          m.dead_lettered.load());
  counter("roost_actor_rollbacks_total", "Turn commits that failed and were run again.", m.rollbacks.load());
  counter("roost_actor_calls_timed_out_total", "Object calls answered call_timeout.",
          m.calls_timed_out.load());
  counter("roost_actor_auto_responses_total", "Socket frames answered without waking the object.",
          m.auto_responses.load());
  counter("roost_actor_turns_uncommitted_total",
          "Turns with nothing durable and no turn before them awaiting a commit: outputs left at once.",
          m.direct_turns.load());
  counter("roost_actor_mail_read_from_disk_total",
          "Waiting messages whose data was left on disk (an object's backlog past mail_memory_bytes).",
          m.mail_from_disk.load());
  counter("roost_actor_tells_total", "Messages told to objects from outside a turn.", m.tells.load());
  if (outbox_ != nullptr) {
    counter("roost_mesh_effects_refused_total",
            "Tells and enqueues of peers' turns this node could not apply (no such queue or class, full).",
            mesh_refused_.load());
    w.gauge("roost_mesh_outbox_entries", "Effects of this node's turns waiting for another node's shard.",
            outbox_->size());
  }
  gauge("roost_actor_objects_in_memory", "Objects in memory (working, or holding sockets).",
        objects_in_memory());
  std::size_t waiting_calls = 0;
  {
    MutexLock lock(mu_);
    waiting_calls = call_deadlines_.size();
  }
  gauge("roost_actor_calls_waiting", "Object calls not answered yet.", waiting_calls);
  gauge("roost_actor_workers", "Actor worker threads (threads, plus those added while turns blocked).",
        worker_count_.load());
  counter("roost_actor_workers_added_total", "Workers added because every worker was busy with work waiting.",
          m.workers_added.load());
  counter("roost_actor_socket_frames_dropped_total",
          "Socket frames dropped because no remote host served the object's class.", m.frames_dropped.load());
  return std::move(w).text();
}

}  // namespace roost::broker
