#include "queue_work.h"

namespace roost::durable {

QueueStore::Work::Work(QueueStore& store, WriteContext& ctx)
    : s_(store),
      ctx_(ctx),
      txn_(ctx.txn),
      t_(*store.tables_),
      now_(ctx.now_ms),
      next_qid_(store.next_qid_),
      next_seq_(store.next_seq_),
      seq_reserved_(store.seq_reserved_) {}

std::int64_t QueueStore::Work::now() const { return now_; }

bool QueueStore::Work::storage_full() const { return ctx_.storage_full; }

QueueStore::Queue* QueueStore::Work::find(std::string_view name) {
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

QueueStore::Queue* QueueStore::Work::find_by_qid(std::uint32_t qid) {
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

QueueStore::Queue& QueueStore::Work::create(std::string_view name, const QueueConfig& config) {
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

QueueStore::Queue& QueueStore::Work::find_or_create(std::string_view name) {
  if (Queue* q = find(name)) return *q;
  return create(name, QueueConfig{});
}

std::optional<MsgState> QueueStore::Work::get_state(const Queue& q, std::uint64_t seq) {
  auto raw = txn_.get(t_.state, keys::qseq(q.rec.qid, seq));
  if (!raw) return std::nullopt;
  return MsgState::decode(*raw);
}

void QueueStore::Work::put_state(const Queue& q, std::uint64_t seq, const MsgState& st) {
  txn_.put(t_.state, keys::qseq(q.rec.qid, seq), st.encode());
}

void QueueStore::Work::count(Queue& q, MsgStateKind kind, std::int64_t delta) {
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

void QueueStore::Work::activate(Queue& q, std::uint64_t seq, MsgState& st) {
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

void QueueStore::Work::place(Queue& q, std::uint64_t seq, MsgState st, std::string_view key) {
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

void QueueStore::Work::detach(Queue& q, std::uint64_t seq, const MsgState& st) {
  switch (st.kind) {
    case MsgStateKind::kReady: txn_.del(t_.ready, keys::qseq(q.rec.qid, seq)); break;
    case MsgStateKind::kDelayed:
    case MsgStateKind::kLeased: txn_.del(t_.due, keys::due(q.rec.qid, st.visible_at, seq)); break;
    case MsgStateKind::kBlocked: break;
  }
  count(q, st.kind, -1);
}

std::string QueueStore::Work::read_key(std::uint64_t seq) {
  auto raw = txn_.get(t_.body, keys::seq(seq));
  if (!raw) return {};
  auto body = BodyRecord::decode(*raw);
  return body ? std::string(body->key) : std::string();
}

void QueueStore::Work::remove(Queue& q, std::uint64_t seq, const MsgState& st) {
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

void QueueStore::Work::destroy(Queue& q, std::uint64_t seq, const MsgState& st) {
  remove(q, seq, st);
  txn_.del(t_.body, keys::seq(seq));
}

void QueueStore::Work::move(Queue& from, std::uint64_t seq, const MsgState& st, Queue& to) {
  std::string key = st.has_key ? read_key(seq) : std::string();
  remove(from, seq, st);
  MsgState ns = st;
  ns.attempts = 0;
  ns.lease_nonce = 0;
  ns.visible_at = now_;
  ns.expires_at = expiry(to);
  place(to, seq, ns, key);
}

std::int64_t QueueStore::Work::expiry(Queue& q) const {
  auto ttl = q.config().message_ttl_ms;
  return ttl == 0 ? 0 : now_ + static_cast<std::int64_t>(ttl);
}

void QueueStore::Work::dead_letter(Queue& q, std::uint64_t seq, const MsgState& st) {
  q.counters().dead_lettered += 1;
  const std::string& dlq_name = q.config().dead_letter_queue;
  if (dlq_name.empty() || dlq_name == q.name) {
    destroy(q, seq, st);
    q.counters().dropped += 1;
    return;
  }
  if (closed(dlq_name)) {
    // The dead-letter queue's shard is moving away: its copy must not change now. The message
    // waits a second and is dead-lettered where the queue then lives.
    q.counters().dead_lettered -= 1;
    detach(q, seq, st);
    MsgState later = st;
    later.lease_nonce = 0;
    later.visible_at = now_ + 1000;
    activate(q, seq, later);
    return;
  }
  Queue& dlq = find_or_create(dlq_name);
  move(q, seq, st, dlq);
}

void QueueStore::Work::expire_lease(Queue& q, std::uint64_t seq, MsgState st) {
  if (st.attempts > q.config().max_retries) {
    dead_letter(q, seq, st);
    return;
  }
  detach(q, seq, st);
  st.visible_at = now_;  // the nonce stays: a late ack of this lease still counts (check_lease)
  activate(q, seq, st);
}

std::uint32_t QueueStore::Work::promote_due(Queue& q, std::uint32_t limit) {
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

std::uint32_t QueueStore::Work::sweep_expired(Queue& q, std::uint32_t limit) {
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

std::uint32_t QueueStore::Work::sweep_dedup(std::uint32_t qid, std::uint32_t limit) {
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

void QueueStore::Work::del_prefix(MDB_dbi dbi, std::string_view prefix) {
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

void QueueStore::Work::flush() {
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

void QueueStore::Work::publish() {
  s_.next_qid_ = next_qid_;
  s_.next_seq_ = next_seq_;
  s_.seq_reserved_ = seq_reserved_;
  for (auto& [qid, name] : created_) s_.names_[qid] = name;
  for (auto qid : deleted_) s_.names_.erase(qid);
}

const std::unordered_set<std::string>& QueueStore::Work::ready_queues() const { return ready_queues_; }

}  // namespace roost::durable
