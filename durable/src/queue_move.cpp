// Moving a shard's queues to another node (docs/mesh.md, "Moving shards"): the source reads its
// queues (bodies while it still serves them, then records and message states once the gate has
// closed them); the target stores the bodies under seqs of its own, then builds the queues on
// them in one transaction.
//
//   mvmap   move(8) source seq(8) -> target seq(8)    (bodies imported for a move in progress)
//
// An exported queue (export_queue):
//   u8 version, str16 name, u32 len + QueueRecord,
//   u64 n, n × (u64 source seq, u16 len + MsgState),
//   u64 n, n × (str16 id, u64 source seq, i64 expires)      (dedup entries)
#include "queue_work.h"

namespace roost::durable {

namespace {

constexpr std::uint8_t kExportVersion = 1;

std::string move_key(std::uint64_t move, std::uint64_t seq) {
  std::string k;
  codec::put_be(k, move, 8);
  codec::put_be(k, seq, 8);
  return k;
}

struct ExportedQueue {
  std::string_view name;
  QueueRecord rec;
  std::vector<std::pair<std::uint64_t, MsgState>> states;
  struct Dedup {
    std::string_view id;
    std::uint64_t seq;
    std::int64_t expires;
  };
  std::vector<Dedup> dedup;
};

std::optional<ExportedQueue> decode_export(std::string_view in) {
  codec::Reader r(in);
  ExportedQueue q;
  if (r.num<std::uint8_t>() != kExportVersion) return std::nullopt;
  q.name = r.str16();
  auto rec = QueueRecord::decode(r.bytes(r.num<std::uint32_t>()));
  if (!r.ok() || !rec) return std::nullopt;
  q.rec = std::move(*rec);
  auto n = r.num<std::uint64_t>();
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    auto seq = r.num<std::uint64_t>();
    auto st = MsgState::decode(r.str16());
    if (!st) return std::nullopt;
    q.states.emplace_back(seq, *st);
  }
  n = r.num<std::uint64_t>();
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    ExportedQueue::Dedup d;
    d.id = r.str16();
    d.seq = r.num<std::uint64_t>();
    d.expires = r.num<std::int64_t>();
    q.dedup.push_back(d);
  }
  if (!r.ok()) return std::nullopt;
  return q;
}

}  // namespace

// ---- source ------------------------------------------------------------------------------------

std::string QueueStore::exported_name(std::string_view exported) {
  codec::Reader r(exported);
  r.num<std::uint8_t>();
  auto name = r.str16();
  return r.ok() ? std::string(name) : std::string();
}

std::uint64_t QueueStore::exported_messages(std::string_view exported) {
  codec::Reader r(exported);
  r.num<std::uint8_t>();
  r.str16();
  r.bytes(r.num<std::uint32_t>());
  auto n = r.num<std::uint64_t>();
  return r.ok() ? n : 0;
}

std::vector<std::uint64_t> QueueStore::message_seqs(std::string_view queue) const {
  std::vector<std::uint64_t> out;
  Txn txn = env_.begin_read();
  auto raw = txn.get(tables_->queues, queue);
  if (!raw) return out;
  auto rec = QueueRecord::decode(*raw);
  if (!rec) return out;
  std::string prefix = keys::qid(rec->qid);
  Cursor c(txn, tables_->state);
  for (auto e = c.seek(prefix); e && starts_with(e->key, prefix); e = c.next()) {
    out.push_back(keys::tail_seq(e->key));
  }
  return out;
}

std::vector<std::pair<std::uint64_t, std::string>> QueueStore::read_bodies(
    std::span<const std::uint64_t> seqs, std::size_t from, std::size_t max_bytes, std::size_t* next) const {
  std::vector<std::pair<std::uint64_t, std::string>> out;
  std::size_t bytes = 0;
  std::size_t i = from;
  Txn txn = env_.begin_read();
  for (; i < seqs.size() && (out.empty() || bytes < max_bytes); ++i) {
    auto raw = txn.get(tables_->body, keys::seq(seqs[i]));
    if (!raw) continue;  // acked since the seqs were listed
    bytes += raw->size() + 16;
    out.emplace_back(seqs[i], std::string(*raw));
  }
  if (next != nullptr) *next = i;
  return out;
}

std::optional<std::string> QueueStore::export_queue(std::string_view queue) const {
  Txn txn = env_.begin_read();
  auto raw = txn.get(tables_->queues, queue);
  if (!raw) return std::nullopt;
  auto rec = QueueRecord::decode(*raw);
  if (!rec) return std::nullopt;
  std::string out;
  codec::Writer w(out);
  w.num(kExportVersion).str16(queue).num(static_cast<std::uint32_t>(raw->size())).bytes(*raw);
  const std::string prefix = keys::qid(rec->qid);
  {
    std::string states;
    std::uint64_t n = 0;
    codec::Writer sw(states);
    Cursor c(txn, tables_->state);
    for (auto e = c.seek(prefix); e && starts_with(e->key, prefix); e = c.next()) {
      sw.num(keys::tail_seq(e->key)).str16(e->value);
      ++n;
    }
    w.num(n).bytes(states);
  }
  {
    std::string dedup;
    std::uint64_t n = 0;
    codec::Writer dw(dedup);
    Cursor c(txn, tables_->dedup);
    for (auto e = c.seek(prefix); e && starts_with(e->key, prefix); e = c.next()) {
      if (e->value.size() != 16) continue;
      dw.str16(e->key.substr(4))
          .num(codec::get_be(e->value, 0, 8))
          .num(static_cast<std::int64_t>(codec::get_be(e->value, 8, 8)));
      ++n;
    }
    w.num(n).bytes(dedup);
  }
  return out;
}

void QueueStore::drop_queues(std::vector<std::string> names, Callback<std::uint64_t> done) {
  submit<std::uint64_t>(std::move(done), [names = std::move(names)](Work& w) -> Result<std::uint64_t> {
    // Past the gate: the gate closes these queues for good on this node.
    std::uint64_t dropped = 0;
    for (const auto& n : names) {
      if (w.find(n) != nullptr && w.remove_queue(n)) ++dropped;
    }
    return dropped;
  });
}

// ---- target ------------------------------------------------------------------------------------

void QueueStore::import_bodies(std::uint64_t move, std::vector<std::pair<std::uint64_t, std::string>> bodies,
                               Callback<std::uint64_t> done) {
  submit<std::uint64_t>(
      std::move(done), [move, bodies = std::move(bodies)](Work& w) { return w.import_bodies(move, bodies); });
}

void QueueStore::import_queues(std::uint64_t move, std::vector<std::string> exported,
                               Callback<std::uint64_t> done) {
  submit<std::uint64_t>(std::move(done), [move, exported = std::move(exported)](Work& w) {
    return w.import_queues(move, exported);
  });
}

void QueueStore::import_abort(std::uint64_t move, Callback<std::uint64_t> done) {
  submit<std::uint64_t>(std::move(done), [move](Work& w) { return w.import_abort(move); });
}

void QueueStore::forget_moves() {
  std::vector<std::uint64_t> moves;
  {
    Txn txn = env_.begin_read();
    Cursor c(txn, tables_->mvmap);
    for (auto e = c.first(); e; e = c.next()) {
      auto m = codec::get_be(e->key, 0, 8);
      if (moves.empty() || moves.back() != m) moves.push_back(m);
    }
  }
  for (auto m : moves) {
    Txn txn = env_.begin_write();
    WriteContext ctx{txn, clock_(), false};
    Work work(*this, ctx);
    auto n = work.import_abort(m);
    work.flush();
    txn.commit();
    work.publish();
    roost::module_logger("durable")->info("dropped {} bodies of shard move {:x}, left by the last run",
                                          n ? *n : 0, m);
  }
}

std::optional<Error> QueueStore::Work::closed(std::string_view name) const {
  if (s_.gate_ && s_.gate_(name)) {
    return err(ErrorCode::OWNER_UNAVAILABLE, "queue " + std::string(name) + " is moving to another node");
  }
  return std::nullopt;
}

Result<std::uint64_t> QueueStore::Work::import_bodies(
    std::uint64_t move, const std::vector<std::pair<std::uint64_t, std::string>>& bodies) {
  if (ctx_.storage_full) return std::unexpected(err(ErrorCode::STORAGE_FULL, "storage is full"));
  std::uint64_t n = 0;
  for (const auto& [source, raw] : bodies) {
    std::string mk = move_key(move, source);
    if (txn_.get(t_.mvmap, mk)) continue;  // sent twice (a retried chunk)
    if (!BodyRecord::decode(raw))
      return std::unexpected(err(ErrorCode::MALFORMED, "a body record is malformed"));
    std::uint64_t seq = next_seq_++;
    txn_.put(t_.body, keys::seq(seq), raw, MDB_APPEND);
    txn_.put(t_.mvmap, mk, keys::seq(seq));
    ++n;
  }
  return n;
}

Result<std::uint64_t> QueueStore::Work::import_queues(std::uint64_t move,
                                                      const std::vector<std::string>& exported) {
  if (ctx_.storage_full) return std::unexpected(err(ErrorCode::STORAGE_FULL, "storage is full"));
  std::vector<ExportedQueue> queues;
  for (const auto& blob : exported) {
    auto q = decode_export(blob);
    if (!q) return std::unexpected(err(ErrorCode::MALFORMED, "an exported queue is malformed"));
    queues.push_back(std::move(*q));
  }
  // Check every body first: the transaction is left untouched on a refusal.
  const std::string prefix = move_key(move, 0).substr(0, 8);
  auto mapped = [&](std::uint64_t source) -> std::optional<std::uint64_t> {
    auto v = txn_.get(t_.mvmap, move_key(move, source));
    if (!v || v->size() != 8) return std::nullopt;
    return codec::get_be(*v, 0, 8);
  };
  for (const auto& q : queues) {
    for (const auto& [source, st] : q.states) {
      if (!mapped(source)) {
        return std::unexpected(err(ErrorCode::INTERNAL, "queue " + std::string(q.name) +
                                                            ": the body of message " + message_id(source) +
                                                            " was not copied"));
      }
    }
  }
  std::unordered_set<std::uint64_t> used;
  std::uint64_t placed = 0;
  for (const auto& x : queues) {
    if (find(x.name) != nullptr) {
      roost::module_logger("durable")->warn(
          "queue {}: the copy here was stale (its shard was elsewhere); replaced", x.name);
      if (auto r = remove_queue(std::string(x.name)); !r) return std::unexpected(r.error());
    }
    Queue& q = create(x.name, x.rec.config);
    q.rec.created_at = x.rec.created_at;
    q.rec.counters = x.rec.counters;
    for (auto* depth : {&q.counters().ready, &q.counters().delayed, &q.counters().in_flight,
                        &q.counters().blocked, &q.counters().messages, &q.counters().bytes}) {
      *depth = 0;  // place() counts the messages again
    }
    std::unordered_map<std::uint64_t, std::uint64_t> seq_of;  // source → here, for dedup
    for (auto [source, st] : x.states) {
      std::uint64_t seq = *mapped(source);
      used.insert(seq);
      seq_of[source] = seq;
      if (st.kind == MsgStateKind::kLeased) {
        st.visible_at = now_;  // leases do not survive a move
        st.lease_nonce = 0;
      } else if (st.kind == MsgStateKind::kReady) {
        st.visible_at = std::min(st.visible_at, now_);
      }
      place(q, seq, st, st.has_key ? read_key(seq) : std::string());
      ++placed;
    }
    for (const auto& d : x.dedup) {
      // A producer's duplicate answers the first message's id: the one it has here (a message
      // already acked gets a fresh seq that only names it).
      std::uint64_t seq = 0;
      if (auto it = seq_of.find(d.seq); it != seq_of.end()) {
        seq = it->second;
      } else {
        seq = next_seq_++;
      }
      std::string v;
      codec::put_be(v, seq, 8);
      codec::put_be(v, static_cast<std::uint64_t>(d.expires), 8);
      txn_.put(t_.dedup, keys::dedup(q.rec.qid, d.id), v);
      txn_.put(t_.dedupx, keys::dedupx(q.rec.qid, d.expires, d.id), {});
    }
    q.dirty = true;
  }
  // End the move: drop the mapping, and the bodies of messages acked before the copy finished.
  std::vector<std::pair<std::string, std::uint64_t>> rows;
  {
    Cursor c(txn_, t_.mvmap);
    for (auto e = c.seek(prefix); e && starts_with(e->key, prefix); e = c.next()) {
      rows.emplace_back(std::string(e->key), codec::get_be(e->value, 0, 8));
    }
  }
  for (const auto& [k, seq] : rows) {
    if (!used.contains(seq)) txn_.del(t_.body, keys::seq(seq));
    txn_.del(t_.mvmap, k);
  }
  return placed;
}

Result<std::uint64_t> QueueStore::Work::import_abort(std::uint64_t move) {
  const std::string prefix = move_key(move, 0).substr(0, 8);
  std::uint64_t n = 0;
  for (;;) {
    std::vector<std::pair<std::string, std::uint64_t>> rows;
    {
      Cursor c(txn_, t_.mvmap);
      for (auto e = c.seek(prefix); e && starts_with(e->key, prefix) && rows.size() < 4096; e = c.next()) {
        rows.emplace_back(std::string(e->key), codec::get_be(e->value, 0, 8));
      }
    }
    if (rows.empty()) return n;
    for (const auto& [k, seq] : rows) {
      txn_.del(t_.body, keys::seq(seq));
      txn_.del(t_.mvmap, k);
      ++n;
    }
  }
}

}  // namespace roost::durable
