// QueueStore: durable at-least-once queues on LMDB.
//
// Thread-safety: every method may be called from any thread. Writes (including pulls, which lease)
// are submitted to the Committer and complete through the callback on the committer thread, after
// the group commit; callbacks must be cheap (post the result elsewhere). Reads (get_queue,
// list_queues) use short read-only transactions on the calling thread.
//
// Semantics, in brief (docs/queues.md has the long form):
//  - enqueue: acknowledged after commit; a producer `id` suppresses duplicates for dedup_window_ms
//    (the duplicate answers with the first message's id); `delay_ms` defers visibility.
//  - pull: leases up to batch_size ready messages for a visibility timeout; attempts += 1.
//  - ack removes; retry makes the message visible again after a delay. A lease that expires, or a
//    retry, of a message already delivered max_retries + 1 times moves it to the dead-letter queue
//    (or drops it, counted, if none is configured).
//  - messages with an ordering `key` are delivered in enqueue order, one in flight per key.
//  - message_ttl_ms removes messages never acked in time (counted as expired).
//  - on open, every lease left by a previous run is released: unacked messages are visible again.
#pragma once

#include <roost/core/error.h>
#include <roost/core/queue_types.h>
#include <roost/durable/committer.h>
#include <roost/durable/env.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace roost::durable {

using roost::Callback;
using roost::Result;

struct QueueStoreOptions {
  bool auto_create_queues = true;              // enqueue to an unknown queue creates it
  std::uint64_t max_message_bytes = 1u << 20;  // largest body accepted
  std::uint32_t max_batch = 1000;              // most messages per enqueue / pull
  std::uint32_t sweep_limit = 10'000;          // most expiries handled per maintenance pass
};

class QueueStore final : public Participant {
 public:
  // Opens the queue tables and releases leases left by a previous run.
  // REQUIRES: the committer is not started yet; call committer.start() afterwards.
  QueueStore(Env& env, Committer& committer, QueueStoreOptions options, std::function<std::int64_t()> clock);
  ~QueueStore() override;
  QueueStore(const QueueStore&) = delete;
  QueueStore& operator=(const QueueStore&) = delete;

  // Called on the committer thread, after a commit, with each queue that got ready messages.
  void set_ready_listener(std::function<void(const std::string& queue)> listener);

  // Creates the queue or updates its configuration.
  void put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done);
  void delete_queue(std::string name, Callback<bool> done);
  // Answers the message ids, in order (for duplicates, the id of the first).
  void enqueue(std::string name, std::vector<NewMessage> messages, Callback<std::vector<std::string>> done);
  void pull(std::string name, PullOptions options, Callback<std::vector<LeasedMessage>> done);
  void ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
           Callback<AckResult> done);
  // Renews leases: each still-held lease now runs `visibility_timeout_ms` (0 = the queue's) from
  // now. Attempts are unchanged.
  void extend(std::string name, std::vector<std::string> leases, std::uint64_t visibility_timeout_ms,
              Callback<ExtendResult> done);
  // Moves up to `max` (0 = all) waiting (not leased) messages of `from` to `to`, attempts reset.
  // Moved messages keep their id and so their place by age: they come before newer messages.
  void redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done);
  // Deletes every message of the queue — waiting, delayed and leased (their lease ids no longer
  // hold) — and keeps the queue, its configuration, counters and dedup entries. Answers how many.
  void purge(std::string name, Callback<std::uint64_t> done);
  // The next `max` messages a pull would lease, in that order, leasing nothing (lease_id empty,
  // attempts = deliveries so far). Due delayed messages are made ready first, as a pull does.
  void peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done);

  // Enqueue from another Op of the same group (an actor turn's effects): same rules as enqueue(),
  // writing into the group transaction. REQUIRES: on the committer thread, inside Op::apply.
  Result<std::vector<std::string>> enqueue_in(const std::string& name,
                                              const std::vector<NewMessage>& messages);
  // What enqueue_in() would refuse, without writing: check every queue first, then write, and a
  // group of enqueues to several queues is all or nothing.
  std::optional<Error> check_enqueue_in(const std::string& name, const std::vector<NewMessage>& messages);

  // ---- moving a shard's queues to another node (docs/mesh.md, "Moving shards") ----------------
  // Writes to a queue for which `closed` answers true are refused with owner_unavailable, and
  // maintenance leaves it alone: the queue's shard is being moved away (or was). Asked on the
  // committer thread, where a write takes effect. REQUIRES: before the committer starts.
  void set_gate(std::function<bool(std::string_view queue)> closed) { gate_ = std::move(closed); }
  // (source) The seqs of every message of `queue` (any state), in order.
  std::vector<std::uint64_t> message_seqs(std::string_view queue) const;
  // (source) The stored body records of seqs[from..] (raw bytes), up to about `max_bytes` (at
  // least one); a seq no longer stored is skipped. `*next` is the index after the last one read.
  std::vector<std::pair<std::uint64_t, std::string>> read_bodies(std::span<const std::uint64_t> seqs,
                                                                 std::size_t from, std::size_t max_bytes,
                                                                 std::size_t* next) const;
  // (source) The queue's record, every message's state and its dedup entries, encoded for
  // import_queues (nullopt: no such queue). Consistent only while the queue is closed by the gate.
  std::optional<std::string> export_queue(std::string_view queue) const;
  // The queue name and message count of an export_queue() result.
  static std::string exported_name(std::string_view exported);
  static std::uint64_t exported_messages(std::string_view exported);
  // (target) Stores body records (source seq, raw record) copied for move `move`: each gets a
  // seq of this node, mapped from the source's (table mvmap) until the move ends.
  void import_bodies(std::uint64_t move, std::vector<std::pair<std::uint64_t, std::string>> bodies,
                     Callback<std::uint64_t> done);
  // (target) In one transaction: replaces each exported queue (a queue of that name here is stale:
  // this node did not own its shard) and places its messages on the bodies imported for `move`,
  // in their order, with their attempts, delays and keys; leases are void, so a leased message is
  // visible again. Ends the move (its mapping and the bodies no message used are removed).
  // Answers the number of messages placed; data_loss when a body is missing (nothing written).
  void import_queues(std::uint64_t move, std::vector<std::string> exported, Callback<std::uint64_t> done);
  // (target) Forgets move `move`: the bodies it imported and their mapping.
  void import_abort(std::uint64_t move, Callback<std::uint64_t> done);
  // (source, once the target owns the shard) Deletes the queues and their messages, past the gate.
  void drop_queues(std::vector<std::string> names, Callback<std::uint64_t> done);

  Result<QueueInfo> get_queue(std::string_view name) const;
  std::vector<QueueInfo> list_queues() const;

  static std::optional<Error> validate_name(std::string_view name);
  static std::optional<Error> validate_config(std::string_view name, const QueueConfig& config);

  // Participant (committer thread only).
  void begin(WriteContext& ctx) override;
  void prepare(WriteContext& ctx) override;
  void committed() override;
  void aborted() override;
  bool maintain(WriteContext& ctx) override;

 private:
  struct Tables;
  struct Queue;  // a QueueRecord cached for one transaction
  class Work;    // the per-transaction algorithms

  // flush = false: the Op's result may be answered before its commit is flushed (Op::needs_flush).
  template <class T, class F>
  void submit(Callback<T> done, F fn, bool flush = true);
  void recover();
  // Removes what moves left when the node stopped during one (their mapping and bodies).
  void forget_moves();

  Env& env_;
  Committer& committer_;
  QueueStoreOptions options_;
  std::function<std::int64_t()> clock_;
  std::function<void(const std::string&)> ready_listener_;
  std::function<bool(std::string_view)> gate_;
  std::unique_ptr<Tables> tables_;

  // Committer-thread state. Committed values and this transaction's changes.
  std::unique_ptr<Work> work_;
  std::uint32_t next_qid_ = 1;
  std::uint64_t next_seq_ = 1;
  std::uint64_t seq_reserved_ = 1;  // "next_seq" as stored: every number handed out is below it
  std::unordered_map<std::uint32_t, std::string> names_;  // committed qid -> name
  std::mt19937_64 nonce_rng_;
};

}  // namespace roost::durable
