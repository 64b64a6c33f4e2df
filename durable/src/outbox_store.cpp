#include "roost/durable/outbox_store.h"

#include "codec.h"

namespace roost::durable {

namespace {
// The outbox's next seq (LMDB keys cannot be empty; node names cannot start with NUL).
constexpr std::string_view kNextSeq{"\0", 1};

std::string entry_key(std::uint32_t shard, std::uint64_t seq) {
  std::string k;
  codec::put_be(k, shard, 4);
  codec::put_be(k, seq, 8);
  return k;
}

std::string applied_key(std::string_view origin, std::uint32_t shard) {
  std::string k(origin);
  k.push_back('\0');
  codec::put_be(k, shard, 4);
  return k;
}

std::string encode(const MeshEffect& e) {
  std::string out;
  codec::Writer w(out);
  w.num(static_cast<std::uint8_t>(e.message.content_type)).num(e.message.delay_ms);
  w.str16(e.queue).str16(e.object_class).str16(e.name).str16(e.message.id).str16(e.message.key);
  w.bytes(e.message.body);
  return out;
}

std::optional<MeshEffect> decode(std::string_view in, std::uint64_t seq) {
  codec::Reader r(in);
  MeshEffect e;
  e.seq = seq;
  e.message.content_type = static_cast<ContentType>(r.num<std::uint8_t>());
  e.message.delay_ms = r.num<std::uint64_t>();
  e.queue = r.str16();
  e.object_class = r.str16();
  e.name = r.str16();
  e.message.id = r.str16();
  e.message.key = r.str16();
  e.message.body = r.rest();
  if (!r.ok()) return std::nullopt;
  return e;
}
}  // namespace

OutboxStore::OutboxStore(Env& env) : env_(env) {
  outbox_ = env_.open_db("outbox");
  meshin_ = env_.open_db("meshin");
  movemark_ = env_.open_db("movemark");
}

void OutboxStore::set_move_mark_in(Txn& txn, const MoveMark& mark) {
  std::string k, v;
  codec::put_be(k, mark.shard, 4);
  codec::put_be(v, mark.shards, 4);
  v += mark.peer;
  txn.put(movemark_, k, v);
}

void OutboxStore::clear_move_mark_in(Txn& txn, std::uint32_t shard) {
  std::string k;
  codec::put_be(k, shard, 4);
  txn.del(movemark_, k);
}

std::vector<OutboxStore::MoveMark> OutboxStore::move_marks() const {
  std::vector<MoveMark> out;
  auto txn = env_.begin_read();
  Cursor c(txn, movemark_);
  for (auto e = c.first(); e; e = c.next()) {
    if (e->key.size() != 4 || e->value.size() < 4) continue;
    out.push_back(MoveMark{static_cast<std::uint32_t>(codec::get_be(e->key, 0, 4)),
                           static_cast<std::uint32_t>(codec::get_be(e->value, 0, 4)),
                           std::string(e->value.substr(4))});
  }
  return out;
}

std::uint64_t OutboxStore::append_in(Txn& txn, std::uint32_t shard, MeshEffect& effect) {
  // Each shard's effects are numbered 1, 2, 3, … with no gap, so the target can refuse a seq that
  // jumps. (A store from before per-shard numbering continues from its node-wide counter.)
  std::string key(kNextSeq);
  codec::put_be(key, shard, 4);
  std::uint64_t seq = 1;
  if (auto v = txn.get(meshin_, key); v && v->size() == 8) {
    seq = codec::get_be(*v, 0, 8);
  } else if (auto g = txn.get(meshin_, kNextSeq); g && g->size() == 8) {
    seq = codec::get_be(*g, 0, 8);
  }
  std::string next;
  codec::put_be(next, seq + 1, 8);
  txn.put(meshin_, key, next);
  effect.seq = seq;
  txn.put(outbox_, entry_key(shard, seq), encode(effect));
  return seq;
}

void OutboxStore::remove_upto_in(Txn& txn, std::uint32_t shard, std::uint64_t seq) {
  std::vector<std::string> keys;
  {
    Cursor c(txn, outbox_);
    for (auto e = c.seek(entry_key(shard, 0)); e; e = c.next()) {
      if (e->key.size() != 12 || codec::get_be(e->key, 0, 4) != shard || codec::get_be(e->key, 4, 8) > seq)
        break;
      keys.emplace_back(e->key);
    }
  }
  for (const auto& k : keys) txn.del(outbox_, k);
}

std::uint64_t OutboxStore::applied_in(Txn& txn, std::string_view origin, std::uint32_t shard) {
  auto v = txn.get(meshin_, applied_key(origin, shard));
  return v && v->size() == 8 ? codec::get_be(*v, 0, 8) : 0;
}

void OutboxStore::set_applied_in(Txn& txn, std::string_view origin, std::uint32_t shard, std::uint64_t seq) {
  std::string v;
  codec::put_be(v, seq, 8);
  txn.put(meshin_, applied_key(origin, shard), v);
}

std::map<std::uint32_t, std::vector<MeshEffect>> OutboxStore::pending(std::size_t limit) const {
  std::map<std::uint32_t, std::vector<MeshEffect>> out;
  auto txn = env_.begin_read();
  Cursor c(txn, outbox_);
  // Shard by shard: the first `limit` of each, then a seek past the rest.
  for (auto e = c.first(); e && e->key.size() == 12;) {
    auto shard = static_cast<std::uint32_t>(codec::get_be(e->key, 0, 4));
    auto& list = out[shard];
    for (; e && e->key.size() == 12 && codec::get_be(e->key, 0, 4) == shard && list.size() < limit;
         e = c.next()) {
      if (auto d = decode(e->value, codec::get_be(e->key, 4, 8))) list.push_back(std::move(*d));
    }
    if (e && e->key.size() == 12 && codec::get_be(e->key, 0, 4) == shard) e = c.seek(entry_key(shard + 1, 0));
  }
  return out;
}

std::uint64_t OutboxStore::size() const {
  auto txn = env_.begin_read();
  MDB_stat st{};
  if (mdb_stat(txn.raw(), outbox_, &st) != 0) return 0;
  return st.ms_entries;
}

std::vector<std::pair<std::string, std::uint64_t>> OutboxStore::marks(std::uint32_t shard) const {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  auto txn = env_.begin_read();
  Cursor c(txn, meshin_);
  for (auto e = c.first(); e; e = c.next()) {
    // origin + NUL + shard(4) → seq(8); the outbox's own counters are "\0" and "\0" + shard(4).
    if (e->key.size() < 6 || e->value.size() != 8 || e->key[e->key.size() - 5] != '\0') continue;
    if (codec::get_be(e->key, e->key.size() - 4, 4) != shard) continue;
    out.emplace_back(std::string(e->key.substr(0, e->key.size() - 5)), codec::get_be(e->value, 0, 8));
  }
  return out;
}

}  // namespace roost::durable
