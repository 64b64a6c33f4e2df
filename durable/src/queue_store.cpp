#include "roost/durable/queue_store.h"

#include <roost/core/log.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>
#include <limits>

#include "queue_records.h"

namespace roost::durable {

namespace {
constexpr std::uint64_t kMaxDelayMs = 12ull * 3600 * 1000;  // 12 h, as Cloudflare Queues
constexpr std::size_t kMaxKeyBytes = 1024;
constexpr std::size_t kMaxIdBytes = 1024;

Error err(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}
}  // namespace

struct QueueStore::Tables {
  MDB_dbi queues, meta, body, state, ready, due, keyq, dedup, dedupx;
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
  Work(QueueStore& store, WriteContext& ctx)
      : s_(store), ctx_(ctx), txn_(ctx.txn), t_(*store.tables_), now_(ctx.now_ms),
        next_qid_(store.next_qid_), next_seq_(store.next_seq_), seq_reserved_(store.seq_reserved_) {}

  std::int64_t now() const { return now_; }
  bool storage_full() const { return ctx_.storage_full; }

  Queue* find(std::string_view name) {
    auto it = cache_.find(std::string(name));
    if (it != cache_.end()) return it->second.deleted ? nullptr : &it->second;
    auto raw = txn_.get(t_.queues, name);
    if (!raw) return nullptr;
    auto rec = QueueRecord::decode(*raw);
    if (!rec) throw MdbError(MDB_CORRUPTED, "queue record of " + std::string(name));
    auto& q = cache_[std::string(name)];
    q.name = std::string(name);
    q.rec = std::move(*rec);
    return &q;
  }

  Queue* find_by_qid(std::uint32_t qid) {
    auto it = s_.names_.find(qid);
    if (it != s_.names_.end()) {
      Queue* q = find(it->second);
      if (q != nullptr && q->rec.qid == qid) return q;
    }
    for (auto& [qid2, name] : created_) {
      if (qid2 == qid) return find(name);
    }
    return nullptr;
  }

  Queue& create(std::string_view name, const QueueConfig& config) {
    auto& q = cache_[std::string(name)];
    q = Queue{};
    q.name = std::string(name);
    q.rec.qid = next_qid_++;
    q.rec.created_at = now_;
    q.rec.config = config;
    q.dirty = true;
    meta_dirty_ = true;
    created_.emplace_back(q.rec.qid, q.name);
    roost::module_logger("durable")->info("queue {} created (qid {})", name, q.rec.qid);
    return q;
  }

  Queue& find_or_create(std::string_view name) {
    if (Queue* q = find(name)) return *q;
    return create(name, QueueConfig{});
  }

  // ---- message placement -------------------------------------------------------------------

  std::optional<MsgState> get_state(const Queue& q, std::uint64_t seq) {
    auto raw = txn_.get(t_.state, keys::qseq(q.rec.qid, seq));
    if (!raw) return std::nullopt;
    return MsgState::decode(*raw);
  }
  void put_state(const Queue& q, std::uint64_t seq, const MsgState& st) {
    txn_.put(t_.state, keys::qseq(q.rec.qid, seq), st.encode());
  }

  void count(Queue& q, MsgStateKind kind, std::int64_t delta) {
    auto& c = q.counters();
    std::uint64_t* field = nullptr;
    switch (kind) {
      case MsgStateKind::kReady: field = &c.ready; break;
      case MsgStateKind::kDelayed: field = &c.delayed; break;
      case MsgStateKind::kLeased: field = &c.in_flight; break;
      case MsgStateKind::kBlocked: field = &c.blocked; break;
    }
    *field = static_cast<std::uint64_t>(static_cast<std::int64_t>(*field) + delta);
    q.dirty = true;
  }

  // Makes a message that is not blocked ready or delayed according to st.visible_at.
  void activate(Queue& q, std::uint64_t seq, MsgState& st) {
    if (st.visible_at > now_) {
      st.kind = MsgStateKind::kDelayed;
      txn_.put(t_.due, keys::due(q.rec.qid, st.visible_at, seq), {});
    } else {
      st.kind = MsgStateKind::kReady;
      txn_.put(t_.ready, keys::qseq(q.rec.qid, seq), {});
      ready_queues_.insert(q.name);
    }
    count(q, st.kind, +1);
    put_state(q, seq, st);
  }

  // Adds a message (body already stored) to q: behind its key's active message, or activated.
  void place(Queue& q, std::uint64_t seq, MsgState st, std::string_view key) {
    q.counters().messages += 1;
    q.counters().bytes += st.body_size;
    q.dirty = true;
    if (st.has_key) {
      std::string prefix = keys::key_prefix(q.rec.qid, key);
      Cursor c(txn_, t_.keyq);
      auto e = c.seek(prefix);
      bool blocked = e && starts_with(e->key, prefix);
      txn_.put(t_.keyq, prefix + keys::seq(seq), {});
      if (blocked) {
        st.kind = MsgStateKind::kBlocked;
        count(q, st.kind, +1);
        put_state(q, seq, st);
        return;
      }
    }
    activate(q, seq, st);
  }

  // Takes a message out of the index its state puts it in (ready, due); counts it out.
  void detach(Queue& q, std::uint64_t seq, const MsgState& st) {
    switch (st.kind) {
      case MsgStateKind::kReady: txn_.del(t_.ready, keys::qseq(q.rec.qid, seq)); break;
      case MsgStateKind::kDelayed:
      case MsgStateKind::kLeased:
        txn_.del(t_.due, keys::due(q.rec.qid, st.visible_at, seq));
        break;
      case MsgStateKind::kBlocked: break;
    }
    count(q, st.kind, -1);
  }

  std::string read_key(std::uint64_t seq) {
    auto raw = txn_.get(t_.body, keys::seq(seq));
    if (!raw) return {};
    auto body = BodyRecord::decode(*raw);
    return body ? std::string(body->key) : std::string();
  }

  // Removes a message from q (its body stays). If it was its key's active message, the next
  // message of that key becomes active.
  void remove(Queue& q, std::uint64_t seq, const MsgState& st) {
    detach(q, seq, st);
    txn_.del(t_.state, keys::qseq(q.rec.qid, seq));
    q.counters().messages -= 1;
    q.counters().bytes -= st.body_size;
    if (!st.has_key) return;
    std::string prefix = keys::key_prefix(q.rec.qid, read_key(seq));
    txn_.del(t_.keyq, prefix + keys::seq(seq));
    if (st.kind == MsgStateKind::kBlocked) return;
    Cursor c(txn_, t_.keyq);
    auto e = c.seek(prefix);
    if (!e || !starts_with(e->key, prefix)) return;
    std::uint64_t next = keys::tail_seq(e->key);
    auto nst = get_state(q, next);
    if (!nst || nst->kind != MsgStateKind::kBlocked) return;
    count(q, MsgStateKind::kBlocked, -1);
    activate(q, next, *nst);
  }

  void destroy(Queue& q, std::uint64_t seq, const MsgState& st) {
    remove(q, seq, st);
    txn_.del(t_.body, keys::seq(seq));
  }

  // Moves a message to another queue, keeping its body and id; it is visible there at once.
  void move(Queue& from, std::uint64_t seq, const MsgState& st, Queue& to) {
    std::string key = st.has_key ? read_key(seq) : std::string();
    remove(from, seq, st);
    MsgState ns = st;
    ns.attempts = 0;
    ns.lease_nonce = 0;
    ns.visible_at = now_;
    ns.expires_at = expiry(to);
    place(to, seq, ns, key);
  }

  std::int64_t expiry(Queue& q) const {
    auto ttl = q.config().message_ttl_ms;
    return ttl == 0 ? 0 : now_ + static_cast<std::int64_t>(ttl);
  }

  void dead_letter(Queue& q, std::uint64_t seq, const MsgState& st) {
    q.counters().dead_lettered += 1;
    const std::string& dlq_name = q.config().dead_letter_queue;
    if (dlq_name.empty() || dlq_name == q.name) {
      destroy(q, seq, st);
      q.counters().dropped += 1;
      return;
    }
    Queue& dlq = find_or_create(dlq_name);
    move(q, seq, st, dlq);
  }

  // A lease ran out: the delivery failed. Dead-letter after max_retries, else visible again.
  void expire_lease(Queue& q, std::uint64_t seq, MsgState st) {
    if (st.attempts > q.config().max_retries) {
      dead_letter(q, seq, st);
      return;
    }
    detach(q, seq, st);
    st.lease_nonce = 0;
    st.visible_at = now_;
    activate(q, seq, st);
  }

  // Promotes q's due entries whose time has come. Returns how many it handled.
  std::uint32_t promote_due(Queue& q, std::uint32_t limit) {
    std::vector<std::uint64_t> seqs;
    {
      std::string prefix = keys::qid(q.rec.qid);
      Cursor c(txn_, t_.due);
      for (auto e = c.seek(prefix); e && seqs.size() < limit; e = c.next()) {
        if (!starts_with(e->key, prefix)) break;
        if (static_cast<std::int64_t>(codec::get_be(e->key, 4, 8)) > now_) break;
        seqs.push_back(keys::tail_seq(e->key));
      }
    }
    for (std::uint64_t seq : seqs) {
      auto st = get_state(q, seq);
      if (!st) continue;
      if (st->kind == MsgStateKind::kLeased) {
        expire_lease(q, seq, *st);
      } else if (st->kind == MsgStateKind::kDelayed) {
        detach(q, seq, *st);
        activate(q, seq, *st);
      }
    }
    return static_cast<std::uint32_t>(seqs.size());
  }

  // Removes q's oldest messages whose TTL has passed, oldest first, stopping at the first that
  // has not expired. Returns how many it removed.
  std::uint32_t sweep_expired(Queue& q, std::uint32_t limit) {
    std::vector<std::pair<std::uint64_t, MsgState>> victims;
    {
      std::string prefix = keys::qid(q.rec.qid);
      Cursor c(txn_, t_.state);
      for (auto e = c.seek(prefix); e && victims.size() < limit; e = c.next()) {
        if (!starts_with(e->key, prefix)) break;
        auto st = MsgState::decode(e->value);
        if (!st || st->expires_at == 0 || st->expires_at > now_) break;
        victims.emplace_back(keys::tail_seq(e->key), *st);
      }
    }
    for (auto& [seq, st] : victims) {
      // An earlier removal may have activated this one: read its state again.
      auto cur = get_state(q, seq);
      if (!cur) continue;
      destroy(q, seq, *cur);
      q.counters().expired += 1;
    }
    return static_cast<std::uint32_t>(victims.size());
  }

  std::uint32_t sweep_dedup(std::uint32_t qid, std::uint32_t limit) {
    std::vector<std::string> expired;
    std::string prefix = keys::qid(qid);
    {
      Cursor c(txn_, t_.dedupx);
      for (auto e = c.seek(prefix); e && expired.size() < limit; e = c.next()) {
        if (!starts_with(e->key, prefix)) break;
        if (static_cast<std::int64_t>(codec::get_be(e->key, 4, 8)) > now_) break;
        expired.emplace_back(e->key);
      }
    }
    for (const auto& k : expired) {
      txn_.del(t_.dedupx, k);
      std::string_view id = std::string_view(k).substr(12);
      std::string dkey = keys::dedup(qid, id);
      auto v = txn_.get(t_.dedup, dkey);
      // Only drop the dedup entry if it is the one this expiry entry was written for.
      if (v && v->size() == 16 && codec::get_be(*v, 8, 8) == codec::get_be(k, 4, 8)) {
        txn_.del(t_.dedup, dkey);
      }
    }
    return static_cast<std::uint32_t>(expired.size());
  }

  void del_prefix(MDB_dbi dbi, std::string_view prefix) {
    for (;;) {
      std::vector<std::string> batch;
      {
        Cursor c(txn_, dbi);
        for (auto e = c.seek(prefix); e && batch.size() < 4096; e = c.next()) {
          if (!starts_with(e->key, prefix)) break;
          batch.emplace_back(e->key);
        }
      }
      if (batch.empty()) return;
      for (const auto& k : batch) txn_.del(dbi, k);
    }
  }

  std::optional<std::pair<std::uint64_t, MsgState>> check_lease(Queue& q, std::string_view lease) {
    auto parsed = parse_lease_id(lease);
    if (!parsed) return std::nullopt;
    auto st = get_state(q, parsed->first);
    if (!st || st->kind != MsgStateKind::kLeased || st->lease_nonce != parsed->second ||
        st->visible_at <= now_) {
      return std::nullopt;
    }
    return std::pair{parsed->first, *st};
  }

  std::uint64_t next_nonce() {
    std::uint64_t n;
    do n = s_.nonce_rng_(); while (n == 0);
    return n;
  }

  // ---- operations --------------------------------------------------------------------------

  Result<QueueInfo> put_queue(const std::string& name, const QueueConfigPatch& patch) {
    if (auto e = validate_name(name)) return std::unexpected(*e);
    Queue* q = find(name);
    QueueConfig config = q != nullptr ? q->config() : QueueConfig{};
    patch.apply_to(config);
    if (auto e = validate_config(name, config)) return std::unexpected(*e);
    if (q == nullptr) {
      if (storage_full()) return std::unexpected(err(ErrorCode::STORAGE_FULL, "storage is full"));
      q = &create(name, config);
    } else {
      q->config() = config;
      q->dirty = true;
    }
    return QueueInfo{q->name, q->config(), q->counters(), q->rec.created_at};
  }

  Result<bool> delete_queue(const std::string& name) {
    Queue* q = find(name);
    if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
    std::string prefix = keys::qid(q->rec.qid);
    for (;;) {
      std::vector<std::string> batch;
      {
        Cursor c(txn_, t_.state);
        for (auto e = c.seek(prefix); e && batch.size() < 4096; e = c.next()) {
          if (!starts_with(e->key, prefix)) break;
          batch.emplace_back(e->key);
        }
      }
      if (batch.empty()) break;
      for (const auto& k : batch) {
        txn_.del(t_.body, keys::seq(keys::tail_seq(k)));
        txn_.del(t_.state, k);
      }
    }
    for (MDB_dbi dbi : {t_.ready, t_.due, t_.keyq, t_.dedup, t_.dedupx}) del_prefix(dbi, prefix);
    q->deleted = true;
    deleted_.push_back(q->rec.qid);
    roost::module_logger("durable")->info("queue {} deleted ({} messages)", name, q->counters().messages);
    return true;
  }

  // Every reason enqueue() could refuse, checked without writing.
  std::optional<Error> check_enqueue(const std::string& name, const std::vector<NewMessage>& messages) {
    const auto& opt = s_.options_;
    if (messages.empty()) return err(ErrorCode::INVALID_ARGUMENT, "no messages to enqueue");
    if (messages.size() > opt.max_batch) {
      return err(ErrorCode::INVALID_ARGUMENT, "at most " + std::to_string(opt.max_batch) + " messages a batch");
    }
    std::uint64_t batch_bytes = 0;
    for (const auto& m : messages) {
      if (m.body.size() > opt.max_message_bytes) {
        return err(ErrorCode::MESSAGE_TOO_LARGE, "message body of " + std::to_string(m.body.size()) +
                                                     " bytes exceeds max_message_bytes " +
                                                     std::to_string(opt.max_message_bytes));
      }
      if (m.delay_ms > kMaxDelayMs) return err(ErrorCode::INVALID_ARGUMENT, "delay_ms exceeds 12 hours");
      if (m.key.size() > kMaxKeyBytes || m.id.size() > kMaxIdBytes) {
        return err(ErrorCode::INVALID_ARGUMENT, "key or id longer than 1024 bytes");
      }
      batch_bytes += m.body.size();
    }
    if (auto e = validate_name(name)) return e;
    if (storage_full()) return err(ErrorCode::STORAGE_FULL, "storage is full");
    Queue* q = find(name);
    if (q == nullptr) {
      // A new queue has the default configuration: no limits to check.
      if (!opt.auto_create_queues) return err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name);
      return std::nullopt;
    }
    const auto& cfg = q->config();
    const auto& c = q->counters();
    if (cfg.max_messages != 0 && c.messages + messages.size() > cfg.max_messages) {
      return err(ErrorCode::QUEUE_FULL,
                 "queue " + name + " holds its max_messages " + std::to_string(cfg.max_messages));
    }
    if (cfg.max_bytes != 0 && c.bytes + batch_bytes > cfg.max_bytes) {
      return err(ErrorCode::QUEUE_FULL, "queue " + name + " holds its max_bytes " + std::to_string(cfg.max_bytes));
    }
    return std::nullopt;
  }

  Result<std::vector<std::string>> enqueue(const std::string& name,
                                           const std::vector<NewMessage>& messages) {
    if (auto e = check_enqueue(name, messages)) return std::unexpected(*e);
    Queue* q = find(name);
    if (q == nullptr) q = &create(name, QueueConfig{});
    const auto& cfg = q->config();
    auto& c = q->counters();
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    for (const auto& m : messages) {
      std::string dkey;
      if (!m.id.empty()) {
        dkey = keys::dedup(q->rec.qid, m.id);
        auto hit = txn_.get(t_.dedup, dkey);
        if (hit && hit->size() == 16 &&
            static_cast<std::int64_t>(codec::get_be(*hit, 8, 8)) > now_) {
          ids.push_back(message_id(codec::get_be(*hit, 0, 8)));
          c.deduplicated += 1;
          q->dirty = true;
          continue;
        }
      }
      std::uint64_t seq = next_seq_++;
      BodyRecord body{m.content_type, now_, m.key, m.id, m.body};
      txn_.put(t_.body, keys::seq(seq), body.encode(), MDB_APPEND);
      MsgState st;
      st.has_key = !m.key.empty();
      st.body_size = static_cast<std::uint32_t>(m.body.size());
      st.expires_at = expiry(*q);
      st.visible_at = now_ + static_cast<std::int64_t>(m.delay_ms);
      place(*q, seq, st, m.key);
      c.enqueued += 1;
      if (!m.id.empty() && cfg.dedup_window_ms > 0) {
        auto until = now_ + static_cast<std::int64_t>(cfg.dedup_window_ms);
        std::string v;
        codec::put_be(v, seq, 8);
        codec::put_be(v, static_cast<std::uint64_t>(until), 8);
        txn_.put(t_.dedup, dkey, v);
        txn_.put(t_.dedupx, keys::dedupx(q->rec.qid, until, m.id), {});
      }
      ids.push_back(message_id(seq));
    }
    return ids;
  }

  Result<std::vector<LeasedMessage>> pull(const std::string& name, const PullOptions& opts) {
    Queue* q = find(name);
    if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
    if (opts.batch_size == 0 || opts.batch_size > s_.options_.max_batch) {
      return std::unexpected(err(ErrorCode::INVALID_ARGUMENT,
                                 "batch_size must be 1.." + std::to_string(s_.options_.max_batch)));
    }
    std::uint64_t vis = opts.visibility_timeout_ms.value_or(q->config().visibility_timeout_ms);
    if (vis == 0 || vis > kMaxDelayMs) {
      return std::unexpected(err(ErrorCode::INVALID_ARGUMENT,
                                 "visibility_timeout_ms must be 1..43200000"));
    }
    promote_due(*q, s_.options_.sweep_limit);
    std::vector<LeasedMessage> out;
    std::string prefix = keys::qid(q->rec.qid);
    while (out.size() < opts.batch_size) {
      std::vector<std::uint64_t> seqs;
      {
        Cursor c(txn_, t_.ready);
        for (auto e = c.seek(prefix); e && seqs.size() < opts.batch_size - out.size();
             e = c.next()) {
          if (!starts_with(e->key, prefix)) break;
          seqs.push_back(keys::tail_seq(e->key));
        }
      }
      if (seqs.empty()) break;
      for (std::uint64_t seq : seqs) {
        auto st = get_state(*q, seq);
        if (!st || st->kind != MsgStateKind::kReady) {
          txn_.del(t_.ready, keys::qseq(q->rec.qid, seq));  // stale index entry
          continue;
        }
        if (st->expires_at != 0 && st->expires_at <= now_) {
          destroy(*q, seq, *st);
          q->counters().expired += 1;
          continue;
        }
        auto raw = txn_.get(t_.body, keys::seq(seq));
        auto body = raw ? BodyRecord::decode(*raw) : std::nullopt;
        if (!body) throw MdbError(MDB_CORRUPTED, "message body " + message_id(seq));
        detach(*q, seq, *st);
        st->kind = MsgStateKind::kLeased;
        st->attempts += 1;
        st->visible_at = now_ + static_cast<std::int64_t>(vis);
        st->lease_nonce = next_nonce();
        txn_.put(t_.due, keys::due(q->rec.qid, st->visible_at, seq), {});
        count(*q, MsgStateKind::kLeased, +1);
        put_state(*q, seq, *st);
        out.push_back(LeasedMessage{message_id(seq), lease_id(seq, st->lease_nonce),
                                    std::string(body->body), body->content_type, st->attempts,
                                    body->enqueued_at, std::string(body->key)});
      }
    }
    return out;
  }

  Result<AckResult> ack(const std::string& name, const std::vector<std::string>& acks,
                        const std::vector<RetryRequest>& retries) {
    Queue* q = find(name);
    if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
    AckResult r;
    for (const auto& lease : acks) {
      auto held = check_lease(*q, lease);
      if (!held) {
        r.unknown.push_back(lease);
        continue;
      }
      destroy(*q, held->first, held->second);
      q->counters().acked += 1;
      r.acked += 1;
    }
    for (const auto& retry : retries) {
      std::uint64_t delay = retry.delay_ms.value_or(q->config().retry_delay_ms);
      if (delay > kMaxDelayMs) {
        return std::unexpected(err(ErrorCode::INVALID_ARGUMENT, "delay_ms exceeds 12 hours"));
      }
    }
    for (const auto& retry : retries) {
      auto held = check_lease(*q, retry.lease_id);
      if (!held) {
        r.unknown.push_back(retry.lease_id);
        continue;
      }
      auto [seq, st] = *held;
      r.retried += 1;
      q->counters().retried += 1;
      if (st.attempts > q->config().max_retries) {
        dead_letter(*q, seq, st);
        continue;
      }
      detach(*q, seq, st);
      st.lease_nonce = 0;
      st.visible_at =
          now_ + static_cast<std::int64_t>(retry.delay_ms.value_or(q->config().retry_delay_ms));
      activate(*q, seq, st);
    }
    return r;
  }

  Result<ExtendResult> extend(const std::string& name, const std::vector<std::string>& leases,
                              std::uint64_t vis_ms) {
    Queue* q = find(name);
    if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
    std::uint64_t vis = vis_ms != 0 ? vis_ms : q->config().visibility_timeout_ms;
    if (vis > kMaxDelayMs) {
      return std::unexpected(err(ErrorCode::INVALID_ARGUMENT,
                                 "visibility_timeout_ms must be 1..43200000"));
    }
    ExtendResult r;
    for (const auto& lease : leases) {
      auto held = check_lease(*q, lease);
      if (!held) {
        r.unknown.push_back(lease);
        continue;
      }
      auto [seq, st] = *held;
      txn_.del(t_.due, keys::due(q->rec.qid, st.visible_at, seq));
      st.visible_at = now_ + static_cast<std::int64_t>(vis);
      txn_.put(t_.due, keys::due(q->rec.qid, st.visible_at, seq), {});
      put_state(*q, seq, st);
      r.extended += 1;
    }
    return r;
  }

  Result<std::uint64_t> redrive(const std::string& from, const std::string& to,
                                std::uint64_t max) {
    if (auto e = validate_name(to)) return std::unexpected(*e);
    if (from == to) {
      return std::unexpected(err(ErrorCode::CONFLICT, "cannot redrive a queue into itself"));
    }
    Queue* src = find(from);
    if (src == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + from));
    Queue* dst = find(to);
    if (dst == nullptr) {
      if (!s_.options_.auto_create_queues) {
        return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + to));
      }
      dst = &create(to, QueueConfig{});
    }
    std::uint64_t moved = 0;
    std::string prefix = keys::qid(src->rec.qid);
    std::uint64_t after = 0;  // resume point: seqs below were looked at
    for (;;) {
      std::vector<std::pair<std::uint64_t, MsgState>> batch;
      {
        Cursor c(txn_, t_.state);
        for (auto e = c.seek(keys::qseq(src->rec.qid, after)); e && batch.size() < 4096;
             e = c.next()) {
          if (!starts_with(e->key, prefix)) break;
          if (max != 0 && moved + batch.size() >= max) break;
          auto st = MsgState::decode(e->value);
          after = keys::tail_seq(e->key) + 1;
          if (st && st->kind != MsgStateKind::kLeased) batch.emplace_back(after - 1, *st);
        }
      }
      if (batch.empty()) break;
      for (auto& [seq, st] : batch) {
        auto cur = get_state(*src, seq);  // a move may have activated a blocked one
        if (!cur || cur->kind == MsgStateKind::kLeased) continue;
        move(*src, seq, *cur, *dst);
        src->counters().redriven += 1;
        ++moved;
      }
    }
    return moved;
  }

  // ---- transaction end ----------------------------------------------------------------------

  void flush() {
    for (auto& [name, q] : cache_) {
      if (q.deleted) {
        txn_.del(t_.queues, name);
      } else if (q.dirty) {
        txn_.put(t_.queues, name, q.rec.encode());
      }
    }
    if (meta_dirty_) {
      std::string v;
      codec::put_be(v, next_qid_, 4);
      txn_.put(t_.meta, "next_qid", v);
    }
    // "next_seq" is a reservation: every sequence number handed out is below it, and a restart
    // begins there. Moving it a block at a time keeps the meta table out of almost every commit
    // (one page less to flush); a restart skips what was left of the block.
    if (next_seq_ > seq_reserved_) {
      seq_reserved_ = next_seq_ + kSeqBlock;
      std::string v;
      codec::put_be(v, seq_reserved_, 8);
      txn_.put(t_.meta, "next_seq", v);
    }
  }

  void publish() {
    s_.next_qid_ = next_qid_;
    s_.next_seq_ = next_seq_;
    s_.seq_reserved_ = seq_reserved_;
    for (auto& [qid, name] : created_) s_.names_[qid] = name;
    for (auto qid : deleted_) s_.names_.erase(qid);
  }

  const std::unordered_set<std::string>& ready_queues() const { return ready_queues_; }

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

// ---- QueueStore --------------------------------------------------------------------------------

QueueStore::QueueStore(Env& env, Committer& committer, QueueStoreOptions options,
                       std::function<std::int64_t()> clock)
    : env_(env), committer_(committer), options_(options), clock_(std::move(clock)),
      tables_(std::make_unique<Tables>()), nonce_rng_(std::random_device{}()) {
  auto& t = *tables_;
  t.queues = env_.open_db("queues");
  t.meta = env_.open_db("meta");
  t.body = env_.open_db("body");
  t.state = env_.open_db("state");
  t.ready = env_.open_db("ready");
  t.due = env_.open_db("due");
  t.keyq = env_.open_db("keyq");
  t.dedup = env_.open_db("dedup");
  t.dedupx = env_.open_db("dedupx");
  {
    Txn txn = env_.begin_read();
    if (auto v = txn.get(t.meta, "next_qid"); v && v->size() == 4) {
      next_qid_ = static_cast<std::uint32_t>(codec::get_be(*v, 0, 4));
    }
    if (auto v = txn.get(t.meta, "next_seq"); v && v->size() == 8) {
      next_seq_ = codec::get_be(*v, 0, 8);
    }
    seq_reserved_ = next_seq_;
    Cursor c(txn, t.queues);
    for (auto e = c.first(); e; e = c.next()) {
      if (auto rec = QueueRecord::decode(e->value)) names_[rec->qid] = std::string(e->key);
    }
  }
  recover();
  committer_.add_participant(this);
}

QueueStore::~QueueStore() = default;

// Leases do not survive a restart: every leased message becomes visible again. Done in
// transactions of at most kRecoverBatch messages, none holding the map's resize lock while the
// map grows (a write transaction holds it shared: growing inside one deadlocked), with progress
// logged every few seconds. When the storage is full and cannot grow, the rest stays leased: the
// leases run out at their visibility timeouts and the queue redelivers them then, so the node
// still starts (and can drain) on a full disk.
void QueueStore::recover() {
  auto log = roost::module_logger("durable");
  constexpr std::size_t kRecoverBatch = 20'000;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> leased;
  {
    Txn txn = env_.begin_read();
    Cursor c(txn, tables_->due);
    for (auto e = c.first(); e; e = c.next()) {
      leased.emplace_back(keys::qid_of(e->key), keys::tail_seq(e->key));
    }
  }
  if (leased.size() > kRecoverBatch) {
    log->info("recovery: {} messages were leased at the last stop; making them visible again", leased.size());
  }
  std::uint64_t released = 0;
  std::size_t at = 0;
  std::size_t batch = kRecoverBatch;
  bool bumped = false;
  auto started = std::chrono::steady_clock::now();
  auto last_log = started;
  while (true) {
    std::size_t end = std::min(leased.size(), at + batch);
    std::optional<MdbError> full;
    {
      Txn txn = env_.begin_write();
      WriteContext ctx{txn, clock_(), false};
      Work work(*this, ctx);
      std::uint64_t n = 0;
      try {
        for (std::size_t i = at; i < end; ++i) {
          auto [qid, seq] = leased[i];
          Queue* q = work.find_by_qid(qid);
          if (q == nullptr) continue;
          auto st = work.get_state(*q, seq);
          if (!st || st->kind != MsgStateKind::kLeased) continue;
          work.detach(*q, seq, *st);
          st->lease_nonce = 0;
          st->visible_at = ctx.now_ms;
          work.activate(*q, seq, *st);
          ++n;
        }
        work.flush();
        txn.commit();
        work.publish();
        released += n;
        at = end;
        bumped = false;
      } catch (const MdbError& e) {
        bool disk_full = e.rc() == ENOSPC || e.rc() == EDQUOT || (e.rc() == EIO && env_.disk_low());
        if (e.rc() != MDB_MAP_FULL && !disk_full) throw;
        full = e;
      }
    }  // the transaction is over (aborted unless committed) before the map may grow
    if (full) {
      if (full->rc() == MDB_MAP_FULL && env_.grow_map()) continue;
      if (!bumped && env_.bump()) {
        bumped = true;
        continue;
      }
      if (batch > 16) {
        batch /= 8;  // a smaller transaction needs fewer new pages
        continue;
      }
      log->warn("recovery: storage is full ({}); {} messages stay leased until their visibility timeout",
                full->what(), leased.size() - at);
      break;
    }
    if (at >= leased.size()) break;
    if (auto now = std::chrono::steady_clock::now(); now - last_log >= std::chrono::seconds(2)) {
      last_log = now;
      log->info("recovery: {} of {} leased messages visible again ({:.0f} s)", at, leased.size(),
                std::chrono::duration<double>(now - started).count());
    }
  }
  log->info("queue store open: {} queues, next message seq {}, {} leases released", names_.size(), next_seq_,
            released);
}

void QueueStore::set_ready_listener(std::function<void(const std::string&)> listener) {
  ready_listener_ = std::move(listener);
}

template <class T, class F>
void QueueStore::submit(Callback<T> done, F fn) {
  class FnOp final : public Op {
   public:
    FnOp(QueueStore* store, Callback<T> done, F fn)
        : store_(store), done_(std::move(done)), fn_(std::move(fn)) {}
    void apply(WriteContext&) override { result_ = fn_(*store_->work_); }
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
    Result<T> result_ = std::unexpected(Error{ErrorCode::INTERNAL, "not applied"});
  };
  committer_.submit(std::make_unique<FnOp>(this, std::move(done), std::move(fn)));
}

void QueueStore::put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) {
  submit<QueueInfo>(std::move(done), [name = std::move(name), patch = std::move(patch)](Work& w) {
    return w.put_queue(name, patch);
  });
}

void QueueStore::delete_queue(std::string name, Callback<bool> done) {
  submit<bool>(std::move(done), [name = std::move(name)](Work& w) { return w.delete_queue(name); });
}

void QueueStore::enqueue(std::string name, std::vector<NewMessage> messages,
                         Callback<std::vector<std::string>> done) {
  submit<std::vector<std::string>>(
      std::move(done), [name = std::move(name), messages = std::move(messages)](Work& w) {
        return w.enqueue(name, messages);
      });
}

Result<std::vector<std::string>> QueueStore::enqueue_in(const std::string& name,
                                                        const std::vector<NewMessage>& messages) {
  return work_->enqueue(name, messages);
}

std::optional<Error> QueueStore::check_enqueue_in(const std::string& name,
                                                  const std::vector<NewMessage>& messages) {
  return work_->check_enqueue(name, messages);
}

void QueueStore::pull(std::string name, PullOptions options,
                      Callback<std::vector<LeasedMessage>> done) {
  submit<std::vector<LeasedMessage>>(
      std::move(done),
      [name = std::move(name), options](Work& w) { return w.pull(name, options); });
}

void QueueStore::ack(std::string name, std::vector<std::string> acks,
                     std::vector<RetryRequest> retries, Callback<AckResult> done) {
  submit<AckResult>(std::move(done), [name = std::move(name), acks = std::move(acks),
                                      retries = std::move(retries)](Work& w) {
    return w.ack(name, acks, retries);
  });
}

void QueueStore::extend(std::string name, std::vector<std::string> leases,
                        std::uint64_t visibility_timeout_ms, Callback<ExtendResult> done) {
  submit<ExtendResult>(std::move(done), [name = std::move(name), leases = std::move(leases),
                                         visibility_timeout_ms](Work& w) {
    return w.extend(name, leases, visibility_timeout_ms);
  });
}

void QueueStore::redrive(std::string from, std::string to, std::uint64_t max,
                         Callback<std::uint64_t> done) {
  submit<std::uint64_t>(std::move(done),
                        [from = std::move(from), to = std::move(to), max](Work& w) {
                          return w.redrive(from, to, max);
                        });
}

void QueueStore::begin(WriteContext& ctx) { work_ = std::make_unique<Work>(*this, ctx); }
void QueueStore::prepare(WriteContext&) { work_->flush(); }

void QueueStore::committed() {
  work_->publish();
  auto ready = work_->ready_queues();
  work_.reset();
  if (ready_listener_) {
    for (const auto& name : ready) ready_listener_(name);
  }
}

void QueueStore::aborted() { work_.reset(); }

bool QueueStore::maintain(WriteContext& ctx) {
  Work& w = *work_;
  std::uint32_t budget = options_.sweep_limit;
  std::uint32_t done = 0;
  // Each pass walks one index jumping from queue to queue, so its cost is one seek per queue.
  auto walk = [&](MDB_dbi dbi, auto&& handle) {
    std::uint32_t qid = 0;
    while (budget > 0) {
      std::optional<std::pair<std::uint32_t, std::int64_t>> head;
      {
        Cursor c(ctx.txn, dbi);
        auto e = c.seek(keys::qid(qid));
        if (!e) return;
        head.emplace(keys::qid_of(e->key), 0);
      }
      qid = head->first;
      std::uint32_t n = handle(qid);
      done += n;
      budget = n >= budget ? 0 : budget - n;
      if (qid == std::numeric_limits<std::uint32_t>::max()) return;
      ++qid;
    }
  };
  walk(tables_->due, [&](std::uint32_t qid) -> std::uint32_t {
    Queue* q = w.find_by_qid(qid);
    return q == nullptr ? 0 : w.promote_due(*q, budget);
  });
  walk(tables_->state, [&](std::uint32_t qid) -> std::uint32_t {
    Queue* q = w.find_by_qid(qid);
    return q == nullptr ? 0 : w.sweep_expired(*q, budget);
  });
  walk(tables_->dedupx, [&](std::uint32_t qid) -> std::uint32_t {
    return w.sweep_dedup(qid, budget);
  });
  return done > 0;
}

// ---- reads ------------------------------------------------------------------------------------

namespace {
QueueInfo info_from(std::string name, const QueueRecord& rec) {
  return QueueInfo{std::move(name), rec.config, rec.counters, rec.created_at};
}
}  // namespace

Result<QueueInfo> QueueStore::get_queue(std::string_view name) const {
  Txn txn = env_.begin_read();
  auto raw = txn.get(tables_->queues, name);
  if (!raw) {
    return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + std::string(name)));
  }
  auto rec = QueueRecord::decode(*raw);
  if (!rec) return std::unexpected(err(ErrorCode::INTERNAL, "corrupt queue record"));
  QueueInfo info = info_from(std::string(name), *rec);
  std::string prefix = keys::qid(rec->qid);
  Cursor c(txn, tables_->state);
  if (auto e = c.seek(prefix); e && starts_with(e->key, prefix)) {
    if (auto b = txn.get(tables_->body, keys::seq(keys::tail_seq(e->key)))) {
      if (auto body = BodyRecord::decode(*b)) {
        info.stats.oldest_age_ms = std::max<std::int64_t>(0, clock_() - body->enqueued_at);
      }
    }
  }
  return info;
}

std::vector<QueueInfo> QueueStore::list_queues() const {
  std::vector<std::string> names;
  {
    Txn txn = env_.begin_read();
    Cursor c(txn, tables_->queues);
    for (auto e = c.first(); e; e = c.next()) names.emplace_back(e->key);
  }
  std::vector<QueueInfo> out;
  for (const auto& n : names) {
    if (auto info = get_queue(n)) out.push_back(std::move(*info));
  }
  return out;
}

// ---- validation -------------------------------------------------------------------------------

std::optional<Error> QueueStore::validate_name(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return err(ErrorCode::INVALID_NAME, "queue names are 1 to 128 characters");
  }
  for (char ch : name) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.';
    if (!ok) {
      return err(ErrorCode::INVALID_NAME,
                 "queue name '" + std::string(name) + "' may hold only A-Z a-z 0-9 - _ .");
    }
  }
  if (name.front() == '.' || name.back() == '.') {
    return err(ErrorCode::INVALID_NAME, "queue names do not start or end with '.'");
  }
  return std::nullopt;
}

std::optional<Error> QueueStore::validate_config(std::string_view name, const QueueConfig& c) {
  auto bad = [](std::string m) { return err(ErrorCode::INVALID_ARGUMENT, std::move(m)); };
  if (c.visibility_timeout_ms == 0 || c.visibility_timeout_ms > kMaxDelayMs) {
    return bad("visibility_timeout_ms must be 1..43200000");
  }
  if (c.max_retries > 1000) return bad("max_retries must be 0..1000");
  if (c.retry_delay_ms > kMaxDelayMs) return bad("retry_delay_ms must be 0..43200000");
  if (c.dedup_window_ms > 7ull * 24 * 3600 * 1000) return bad("dedup_window_ms must be <= 7 days");
  if (!c.dead_letter_queue.empty()) {
    if (auto e = validate_name(c.dead_letter_queue)) return e;
    if (c.dead_letter_queue == name) {
      return err(ErrorCode::CONFLICT, "a queue cannot be its own dead_letter_queue");
    }
  }
  return std::nullopt;
}

}  // namespace roost::durable
