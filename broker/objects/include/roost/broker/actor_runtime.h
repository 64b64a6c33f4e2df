// ActorRuntime: runs object mailboxes (roost/actor.h) on one node.
//
// Each object in memory has a FIFO of work items: durable mail (tells, alarms, messages of durable
// subscriptions — in the `mbox` table until a turn consumes them) and transient items (calls,
// socket connects, socket messages, disconnects). One worker at a time runs an object's items,
// one turn each. A turn's effects go to the committer as one Op, which writes them and consumes
// the mail in the group transaction; the outputs (socket frames, publishes, replies, wake-ups of
// told objects) are released from the Op's completion, after the commit (the output gate). A turn
// with nothing durable (no storage write, no mail consumed — a call, a socket frame — no tell,
// enqueue, alarm or subscription) while no earlier turn of its object awaits a commit needs no
// commit: its outputs leave at once. The
// next turn may start before the commit: storage reads see earlier turns' writes through an
// in-memory overlay that is dropped key by key as the commits land.
//
// If a commit fails (storage full), every turn of that object after the last commit is undone:
// its items go back to the front of the mailbox and run again after a backoff, on a fresh actor.
// A throwing turn has no effects; its mail is retried with exponential backoff and then
// dead-lettered (to the class's dead-letter queue) with the error.
//
// Objects are activated on their first item and hibernate after `idle_ms` without work: the actor
// and the overlay are freed; an object without attached sockets or pending work leaves memory
// entirely. Attached sockets (with tags, attachment and the auto-response) stay in memory.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <roost/core/channel_types.h>
#include <roost/core/mesh_types.h>

#include <roost/actor.h>
#include <roost/core/router.h>
#include <roost/core/thread_annotations.h>
#include <roost/durable/committer.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

namespace roost::durable {
class MailboxStore;
class OutboxStore;
class QueueStore;
struct PendingMail;
}  // namespace roost::durable

namespace roost::channels {
class Hub;
}

namespace roost::broker {

struct ActorRuntimeOptions {
  unsigned threads = 2;  // actor worker threads
  // Turns that block (a handler sleeping, waiting on I/O) must not starve other objects: when work
  // waits while every worker is busy and no turn has started for stall_ms, a worker is added, up
  // to max_threads (0 = max(16, 4 × threads)). Added workers stay until the runtime stops.
  unsigned max_threads = 0;
  std::uint64_t stall_ms = 200;
  std::uint64_t idle_ms = 10'000;  // hibernate an object after this long without work
  std::uint64_t max_message_bytes = 1u << 20;
  std::uint64_t max_value_bytes = 1u << 20;  // storage values
  std::uint64_t max_key_bytes = 1024;        // storage keys
  std::uint64_t max_attachment_bytes = 16u << 10;
  std::size_t max_tags = 10;
  std::uint64_t default_call_timeout_ms = 10'000;
  std::uint32_t max_turns_per_slice = 64;  // turns one worker runs for an object before yielding
  // Bytes of waiting mail data one object keeps in memory; past it, waiting mail keeps only its
  // place in line and its data is read from disk when its turn comes.
  std::uint64_t mail_memory_bytes = 1u << 20;
};

class ActorRuntime final : public durable::Participant {
 public:
  struct AsyncTurn;
  // Runs the turns of a class elsewhere (RemoteHosts): begin() starts a turn and returns at once;
  // the driver ends it later with AsyncTurn::end() (effects recorded through its context), or
  // gives its item back with AsyncTurn::requeue() (no host now). No worker waits meanwhile.
  class AsyncTurnDriver {
   public:
    virtual ~AsyncTurnDriver() = default;
    virtual void begin(std::shared_ptr<AsyncTurn> turn) = 0;
  };

  // A node in a mesh (docs/mesh.md): which of a turn's tells and enqueues belong to a shard this
  // node does not own — they are written to the outbox in the turn's transaction — and whom to wake
  // once the outbox has more. Called on the committer thread.
  class MeshEffects {
   public:
    virtual ~MeshEffects() = default;
    // False until the node has joined (shards unknown): a turn with tells or enqueues waits.
    virtual bool ready() = 0;
    virtual std::optional<std::uint32_t> remote_queue(std::string_view queue) = 0;
    virtual std::optional<std::uint32_t> remote_object(std::string_view object_class,
                                                       std::string_view name) = 0;
    virtual void outbox_written() = 0;
    // A call made within a turn to an object of another node (any thread).
    virtual void call(std::string object_class, std::string name, std::string data, ContentType type,
                      std::uint64_t timeout_ms, Callback<ObjectReply> done) = 0;
    // Objects' durable subscriptions: through the mesh's channel interest, so that publishes on
    // other nodes reach them too.
    virtual Result<channels::SubscribeResult> subscribe(const std::string& pattern,
                                                        std::shared_ptr<channels::Subscriber> subscriber) = 0;
    virtual void unsubscribe(std::uint64_t subscription) = 0;
    // A turn's publish, after its commit: to the channel's home (sequenced there).
    virtual void turn_publish(const std::string& channel, std::string data, ContentType type) = 0;
    // Whether a shard is closed here (moving away): mail and effects for it are refused, to be
    // retried where it lives next. Asked on the committer thread, where they would take effect.
    virtual bool shard_closed(std::uint32_t shard) = 0;
    virtual bool object_closed(std::string_view object_class, std::string_view name) = 0;
  };

  ActorRuntime(durable::MailboxStore& store, durable::Committer& committer, durable::QueueStore& queues,
               channels::Hub& hub, ActorRuntimeOptions options, std::function<std::int64_t()> clock);
  ~ActorRuntime() override;
  ActorRuntime(const ActorRuntime&) = delete;
  ActorRuntime& operator=(const ActorRuntime&) = delete;

  // REQUIRES: before start(). Throws std::invalid_argument for a bad or duplicate class name.
  void register_class(std::string name, ActorFactory factory, ActorClassOptions options = {},
                      AsyncTurnDriver* driver = nullptr);
  // A class added while the node runs (a remote host registered it): its mail waiting on disk and
  // its durable subscriptions are loaded. Returns false when the class exists already.
  bool add_class(std::string name, ActorFactory factory, ActorClassOptions options = {},
                 AsyncTurnDriver* driver = nullptr);
  bool has_class(std::string_view name) const;
  // A remote class without a host: its objects' items wait (mail, socket closes) or are refused
  // (calls, fetches, connects: unavailable; socket frames are dropped) until it is available again.
  void set_class_available(const std::string& name, bool available);
  // Drops a remote class that no host serves, with no object in memory and nothing on disk that
  // needs it (mail, alarms, durable subscriptions); its storage stays for a host that registers it
  // again. False (and nothing done) otherwise.
  bool forget_class(const std::string& name);

  // REQUIRES: before start().
  void set_mesh(durable::OutboxStore* outbox, MeshEffects* mesh) {
    outbox_ = outbox;
    mesh_effects_ = mesh;
  }
  // (target) Effects a peer's turns had on this node's shard `shard`, in its outbox order: those
  // after the last one applied from `origin` are applied in one transaction with that mark
  // (exactly once); answers the mark. An effect the target refuses (no such queue, queue full,
  // unknown class) is dropped and counted: retrying it would block every later one.
  void apply_mesh_effects(std::string origin, std::uint32_t shard, std::vector<MeshEffect> effects,
                          Callback<std::uint64_t> done);

  // Loads the mail left by a previous run and the durable subscriptions, starts the workers and
  // the timer thread. REQUIRES: the committer is started.
  void start();
  // Stops taking work; waits for running turns; fails pending calls with `unavailable`. The mail
  // stays on disk. REQUIRES: before the committer stops.
  void stop();

  // --- what the Router forwards ---
  // Durable send; answers the mailbox seq after the commit.
  void tell(std::string object_class, std::string name, std::string data, ContentType type,
            Callback<std::uint64_t> done);
  // `chain`: the objects whose turns wait on this call (a call made inside a turn), for cycles.
  void call(std::string object_class, std::string name, std::string data, ContentType type,
            std::uint64_t timeout_ms, Callback<ObjectReply> done, std::vector<std::string> chain = {});
  // An HTTP request to the object's on_fetch: a call whose request and answer are HTTP's.
  void fetch(std::string object_class, std::string name, ObjectHttpRequest request, std::uint64_t timeout_ms,
             Callback<ObjectReply> done, std::vector<std::string> chain = {});
  // Runs on_connect; on acceptance the socket is attached and `done` gets its id.
  void connect(std::string object_class, std::string name, std::shared_ptr<ObjectSocket> socket,
               ObjectConnectRequest request, Callback<std::uint64_t> done);
  void socket_message(std::uint64_t socket, std::string text);
  // The socket is gone; its on_disconnect turn still sees its tags and attachment.
  void socket_closed(std::uint64_t socket, std::uint16_t code, std::string reason = {});

  // --- shard moves (docs/mesh.md, "Moving shards") ---
  // (source, the shard moved away) The objects leave memory for good: waiting calls and connects
  // answer owner_unavailable (their senders retry where the objects live now), their WebSockets
  // close with 1012 (the browsers reconnect), their durable subscriptions end here.
  void evict(const std::vector<std::string>& okeys);
  // (target, the shard moved here) Loads their mail and durable subscriptions, as start() does.
  void adopt(const std::vector<std::string>& okeys);

  // Mailbox depth, memory state, sockets and alarms of one object (reads; any thread).
  ObjectInfo info(const std::string& object_class, const std::string& name) const;

  static std::optional<Error> validate_class(std::string_view name);
  static std::optional<Error> validate_name(std::string_view name);

  std::string metrics_text() const;
  // Runs `work` on an actor worker (drivers of async turns apply their frames there).
  void post(std::move_only_function<void()> work);
  // Objects in memory (active or holding sockets) and with a live actor.
  std::size_t objects_in_memory() const;
  std::size_t active_actors() const;

  // Participant (committer thread).
  void begin(durable::WriteContext& ctx) override;

  struct Obj;
  struct Item;
  class WorkScope;
  struct Effects;
  class TurnContext;
  class TurnOp;
  class MailOp;
  class InboxOp;

 private:
  struct Klass;
  struct Metrics;
  struct CallWait;

  std::optional<Error> check(std::string_view cls, std::string_view name) const;
  void unsubscribe_channel(std::uint64_t id);  // a durable subscription's (hub or mesh)
  void fail_item(const std::shared_ptr<Obj>& obj, Item item, const Error& error);
  // Answers a call and drops its timeout entry.
  void answer_call(const std::shared_ptr<CallWait>& wait, Result<ObjectReply> r);
  // Queues a call item (a call or a fetch) with its timeout; `done` gets the answer.
  void submit_call(const std::string& cls, const std::string& name, Item item, std::uint64_t timeout_ms,
                   Callback<ObjectReply> done);
  void submit_turn(const std::shared_ptr<Obj>& obj, Item item, Effects fx, std::uint64_t generation);
  // After a turn's handler: its effects to the committer, or (failure) the item retried or failed.
  void finish_turn(const std::shared_ptr<Obj>& obj, Item item, Effects fx, std::uint64_t generation,
                   std::optional<Error> failure);
  // The item back at the front of its object's line (no host for it now); the object is free.
  void requeue_front(const std::shared_ptr<Obj>& obj, Item item, bool rolled_back);

  std::shared_ptr<Obj> object(const std::string& cls, const std::string& name, bool create)
      ROOST_REQUIRES(mu_);
  // Under mu_, so the sweeper cannot drop the object in between.
  void push(const std::shared_ptr<Obj>& obj, Item item, bool front = false) ROOST_REQUIRES(mu_);
  // With obj->mu held (annotated on the definition: Obj is incomplete here).
  void schedule_locked(const std::shared_ptr<Obj>& obj);
  void run_slice(std::shared_ptr<Obj> obj);
  void on_turn_done(const std::shared_ptr<Obj>& obj, std::uint64_t turn, std::uint64_t generation,
                    Effects& effects, const Error* error);
  void deliver_mail(std::vector<durable::PendingMail> mail);
  void timer_loop();
  void wake_at(std::int64_t when_ms);
  void sweep(std::int64_t now);
  void subscribe_object(const std::string& okey, const std::string& cls, const std::string& name,
                        const std::string& pattern);
  void unsubscribe_object(const std::string& okey, const std::string& pattern);

  durable::MailboxStore& store_;
  durable::Committer& committer_;
  durable::QueueStore& queues_;
  channels::Hub& hub_;
  ActorRuntimeOptions options_;
  std::function<std::int64_t()> clock_;
  // Never erased, so a Klass* stays valid; classes are added at start and by remote hosts.
  mutable SharedMutex classes_mu_;
  std::unordered_map<std::string, std::shared_ptr<Klass>> classes_ ROOST_GUARDED_BY(classes_mu_);
  std::shared_ptr<Klass> find_class(std::string_view name) const;
  // Refuses a transient item (call, fetch, connect) for a class no host serves.
  std::optional<Error> refuse_unserved(const std::string& cls) const;
  std::unique_ptr<boost::asio::thread_pool> workers_;
  // Channel publishes of committed turns, in commit order, off the committer thread (a publish
  // fans out to every subscriber).
  std::optional<boost::asio::strand<boost::asio::thread_pool::executor_type>> publisher_;
  std::unique_ptr<Metrics> metrics_;

  mutable Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Obj>> objects_ ROOST_GUARDED_BY(mu_);
  std::unordered_map<std::uint64_t, std::weak_ptr<Obj>> socket_owner_ ROOST_GUARDED_BY(mu_);
  std::map<std::string, std::uint64_t> durable_subs_ ROOST_GUARDED_BY(mu_);  // okey + '\0' + pattern → hub id
  std::multimap<std::int64_t, std::weak_ptr<Obj>> retry_at_ ROOST_GUARDED_BY(mu_);
  std::multimap<std::int64_t, std::weak_ptr<CallWait>> call_deadlines_ ROOST_GUARDED_BY(mu_);
  std::atomic<std::uint64_t> next_socket_{1};
  std::atomic<bool> halt_{false};  // workers take no new item
  // Workers on demand (see ActorRuntimeOptions::stall_ms).
  std::atomic<int> queued_slices_{0};  // slices posted, not started
  std::atomic<int> busy_workers_{0};   // slices running
  std::atomic<int> worker_count_{0};
  std::atomic<std::int64_t> last_slice_start_{0};  // steady ms (the stall check ignores wall-clock steps)
  std::vector<std::thread> extra_workers_;         // attached to workers_; timer thread and stop() only
  void add_worker_if_stalled();
  static std::int64_t steady_now_ms();
  bool stopping_ ROOST_GUARDED_BY(mu_) = false;
  bool started_ = false;
  bool alarm_op_in_flight_ ROOST_GUARDED_BY(mu_) = false;

  std::condition_variable timer_cv_;
  std::int64_t timer_wake_ ROOST_GUARDED_BY(mu_) = 0;
  std::thread timer_;

  // Committer thread only: objects whose turn failed in this group's apply (later turns of the
  // same object in the group must fail too). Reset by begin().
  std::vector<const Obj*> poisoned_;
  durable::OutboxStore* outbox_ = nullptr;
  MeshEffects* mesh_effects_ = nullptr;
  std::atomic<std::uint64_t> mesh_refused_{0};  // peers' effects this node could not apply
};

}  // namespace roost::broker
