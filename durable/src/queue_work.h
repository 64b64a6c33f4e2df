// QueueStore's insides, shared by its files: the tables, a queue's cached state, and Work — one
// write transaction's view of the queues (queue_work.cpp: placing, moving and expiring messages,
// publishing the transaction's effects; queue_operations.cpp: the operations a caller submits).
// queue_store.cpp holds QueueStore itself. Committer thread only.
#pragma once

#include <roost/durable/queue_store.h>

#include <roost/core/log.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <limits>
#include <optional>

#include "queue_records.h"

namespace roost::durable {

constexpr std::uint64_t kMaxDelayMs = 12ull * 3600 * 1000;  // 12 h, as Cloudflare Queues
constexpr std::size_t kMaxKeyBytes = 1024;
constexpr std::size_t kMaxIdBytes = 1024;

inline Error err(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

struct QueueStore::Tables {
  MDB_dbi queues, meta, body, state, ready, due, keyq, dedup, dedupx, mvmap;
};

struct QueueStore::Queue {
  std::string name;
  QueueRecord rec;
  bool dirty = false;
  bool deleted = false;
  QueueConfig& config() { return rec.config; }
  QueueStats& counters() { return rec.counters; }
};

// The algorithms of one write transaction. Lives from Participant::begin to committed/aborted.
class QueueStore::Work {
 public:
  Work(QueueStore& store, WriteContext& ctx);

  std::int64_t now() const;
  bool storage_full() const;

  Queue* find(std::string_view name);

  Queue* find_by_qid(std::uint32_t qid);

  Queue& create(std::string_view name, const QueueConfig& config);

  Queue& find_or_create(std::string_view name);

  // ---- message placement -------------------------------------------------------------------

  std::optional<MsgState> get_state(const Queue& q, std::uint64_t seq);
  void put_state(const Queue& q, std::uint64_t seq, const MsgState& st);

  void count(Queue& q, MsgStateKind kind, std::int64_t delta);

  // Makes a message that is not blocked ready or delayed according to st.visible_at.
  void activate(Queue& q, std::uint64_t seq, MsgState& st);

  // Adds a message (body already stored) to q: behind its key's active message, or activated.
  void place(Queue& q, std::uint64_t seq, MsgState st, std::string_view key);

  // Takes a message out of the index its state puts it in (ready, due); counts it out.
  void detach(Queue& q, std::uint64_t seq, const MsgState& st);

  std::string read_key(std::uint64_t seq);

  // Removes a message from q (its body stays). If it was its key's active message, the next
  // message of that key becomes active.
  void remove(Queue& q, std::uint64_t seq, const MsgState& st);

  void destroy(Queue& q, std::uint64_t seq, const MsgState& st);

  // Moves a message to another queue, keeping its body and id; it is visible there at once.
  void move(Queue& from, std::uint64_t seq, const MsgState& st, Queue& to);

  std::int64_t expiry(Queue& q) const;

  void dead_letter(Queue& q, std::uint64_t seq, const MsgState& st);

  // A lease ran out: the delivery failed. Dead-letter after max_retries, else visible again.
  void expire_lease(Queue& q, std::uint64_t seq, MsgState st);

  // Promotes q's due entries whose time has come. Returns how many it handled.
  std::uint32_t promote_due(Queue& q, std::uint32_t limit);

  // Removes q's oldest messages whose TTL has passed, oldest first, stopping at the first that
  // has not expired. Returns how many it removed.
  std::uint32_t sweep_expired(Queue& q, std::uint32_t limit);

  std::uint32_t sweep_dedup(std::uint32_t qid, std::uint32_t limit);

  void del_prefix(MDB_dbi dbi, std::string_view prefix);

  // The message `lease` names while that lease holds; with `late`, also once it ran out while the
  // message has not been delivered again (Cloudflare's and SQS's late acks).
  std::optional<std::pair<std::uint64_t, MsgState>> check_lease(Queue& q, std::string_view lease,
                                                                bool late = false);

  std::uint64_t next_nonce();

  // ---- operations --------------------------------------------------------------------------

  Result<QueueInfo> put_queue(const std::string& name, const QueueConfigPatch& patch);

  Result<bool> delete_queue(const std::string& name);
  // delete_queue without the gate: a moved queue's stale copy (queue_move.cpp).
  Result<bool> remove_queue(const std::string& name);

  // Every reason enqueue() could refuse, checked without writing.
  std::optional<Error> check_enqueue(const std::string& name, const std::vector<NewMessage>& messages);

  Result<std::vector<std::string>> enqueue(const std::string& name, const std::vector<NewMessage>& messages);

  Result<std::vector<LeasedMessage>> pull(const std::string& name, const PullOptions& opts);

  Result<AckResult> ack(const std::string& name, const std::vector<std::string>& acks,
                        const std::vector<RetryRequest>& retries);

  Result<ExtendResult> extend(const std::string& name, const std::vector<std::string>& leases,
                              std::uint64_t vis_ms);

  Result<std::uint64_t> redrive(const std::string& from, const std::string& to, std::uint64_t max);

  // Every message row of q (state, body) and their indexes (ready, due, keyq); not its dedup
  // entries or record. Returns how many messages.
  std::uint64_t delete_messages(const Queue& q);
  Result<std::uint64_t> purge(const std::string& name);

  Result<std::vector<LeasedMessage>> peek(const std::string& name, std::uint32_t max);

  // ---- shard moves (queue_move.cpp) ---------------------------------------------------------

  // owner_unavailable when the gate closes `name` (its shard is moving away).
  std::optional<Error> closed(std::string_view name) const;
  Result<std::uint64_t> import_bodies(std::uint64_t move,
                                      const std::vector<std::pair<std::uint64_t, std::string>>& bodies);
  Result<std::uint64_t> import_queues(std::uint64_t move, const std::vector<std::string>& exported);
  Result<std::uint64_t> import_abort(std::uint64_t move);

  // ---- transaction end ----------------------------------------------------------------------

  void flush();

  void publish();

  const std::unordered_set<std::string>& ready_queues() const;

 private:
  QueueStore& s_;
  WriteContext& ctx_;
  Txn& txn_;
  const Tables& t_;
  std::int64_t now_;
  std::uint32_t next_qid_;
  std::uint64_t next_seq_;
  std::uint64_t seq_reserved_;
  static constexpr std::uint64_t kSeqBlock = 1 << 16;
  bool meta_dirty_ = false;
  std::unordered_map<std::string, Queue> cache_;
  std::unordered_set<std::string> ready_queues_;
  std::vector<std::pair<std::uint32_t, std::string>> created_;
  std::vector<std::uint32_t> deleted_;
};

// Runs fn(Work&) as one Op of the next group; `done` gets its result after the commit.
template <class T, class F>
void QueueStore::submit(Callback<T> done, F fn, bool flush) {
  class FnOp final : public Op {
   public:
    FnOp(QueueStore* store, Callback<T> done, F fn, bool flush)
        : store_(store), done_(std::move(done)), fn_(std::move(fn)), flush_(flush) {}
    void apply(WriteContext&) override { result_ = fn_(*store_->work_); }
    bool needs_flush() const override { return flush_; }
    void complete(const Error* error) override {
      if (error != nullptr) {
        done_(std::unexpected(*error));
      } else {
        done_(std::move(result_));
      }
    }

   private:
    QueueStore* store_;
    Callback<T> done_;
    F fn_;
    bool flush_;
    Result<T> result_ = std::unexpected(Error{ErrorCode::INTERNAL, "not applied"});
  };
  committer_.submit(std::make_unique<FnOp>(this, std::move(done), std::move(fn), flush));
}

}  // namespace roost::durable
