#include "roost/durable/mailbox_store.h"

#include "codec.h"

#include <set>

namespace roost::durable {

namespace {

std::string seq_key(std::string_view okey, std::uint64_t seq) {
  std::string k(okey);
  codec::put_be(k, seq, 8);
  return k;
}

std::string named_key(std::string_view okey, std::string_view name) {
  std::string k(okey);
  k.append(name);
  return k;
}

// The least string above every string that starts with `p` ("" when there is none: all 0xff).
std::string prefix_successor(std::string p) {
  while (!p.empty() && static_cast<unsigned char>(p.back()) == 0xff) p.pop_back();
  if (!p.empty()) p.back() = static_cast<char>(static_cast<unsigned char>(p.back()) + 1);
  return p;
}

// due (8, biased so negative times still sort) + okey + name
std::string alarm_key(std::int64_t due_ms, std::string_view okey, std::string_view name) {
  std::string k;
  codec::put_be(k, static_cast<std::uint64_t>(due_ms) ^ (1ull << 63), 8);
  k.append(okey);
  k.append(name);
  return k;
}

std::int64_t alarm_key_due(std::string_view k) {
  return static_cast<std::int64_t>(codec::get_be(k, 0, 8) ^ (1ull << 63));
}

// The length of the okey that starts `k` (0 when malformed).
std::size_t okey_length(std::string_view k) {
  if (k.empty()) return 0;
  std::size_t cls = static_cast<std::uint8_t>(k[0]);
  if (k.size() < 1 + cls + 2) return 0;
  std::size_t name = codec::get_be(k, 1 + cls, 2);
  if (k.size() < 3 + cls + name) return 0;
  return 3 + cls + name;
}

std::string alarm_value(std::uint64_t every_ms) {
  std::string v;
  codec::Writer(v).num(every_ms);
  return v;
}

}  // namespace

std::string MailRecord::encode() const {
  std::string out;
  codec::Writer w(out);
  w.num(static_cast<std::uint8_t>(kind)).num(static_cast<std::uint8_t>(content_type));
  w.num(enqueued_ms).num(scheduled_ms).num(missed).str16(subject).bytes(data);
  return out;
}

std::optional<MailRecord> MailRecord::decode(std::string_view bytes) {
  codec::Reader r(bytes);
  MailRecord m;
  auto kind = r.num<std::uint8_t>();
  auto type = r.num<std::uint8_t>();
  m.enqueued_ms = r.num<std::int64_t>();
  m.scheduled_ms = r.num<std::int64_t>();
  m.missed = r.num<std::uint64_t>();
  m.subject = std::string(r.str16());
  m.data = std::string(r.rest());
  if (!r.ok() || kind > 2 || type > 2) return std::nullopt;
  m.kind = static_cast<MailKind>(kind);
  m.content_type = static_cast<ContentType>(type);
  return m;
}

MailboxStore::MailboxStore(Env& env) : env_(env) {
  objects_ = env_.open_db("objects");
  mbox_ = env_.open_db("mbox");
  kv_ = env_.open_db("kv");
  alarms_ = env_.open_db("alarms");
  alarmx_ = env_.open_db("alarmx");
  osubs_ = env_.open_db("osubs");
}

std::string MailboxStore::object_key(std::string_view object_class, std::string_view name) {
  std::string k;
  k.push_back(static_cast<char>(object_class.size()));
  k.append(object_class);
  codec::put_be(k, name.size(), 2);
  k.append(name);
  return k;
}

std::optional<ObjectRef> MailboxStore::parse_object_key(std::string_view okey) {
  if (okey_length(okey) != okey.size()) return std::nullopt;
  std::size_t cls = static_cast<std::uint8_t>(okey[0]);
  return ObjectRef{std::string(okey.substr(1, cls)), std::string(okey.substr(3 + cls))};
}

std::uint64_t MailboxStore::append_in(Txn& txn, std::string_view okey, const MailRecord& record) {
  std::uint64_t seq = 1;
  if (auto v = txn.get(objects_, okey); v && v->size() == 8) seq = codec::get_be(*v, 0, 8);
  std::string next;
  codec::put_be(next, seq + 1, 8);
  txn.put(objects_, okey, next);
  txn.put(mbox_, seq_key(okey, seq), record.encode());
  return seq;
}

bool MailboxStore::consume_in(Txn& txn, std::string_view okey, std::uint64_t seq) {
  return txn.del(mbox_, seq_key(okey, seq));
}

void MailboxStore::kv_put_in(Txn& txn, std::string_view okey, std::string_view key, std::string_view value) {
  txn.put(kv_, named_key(okey, key), value);
}

bool MailboxStore::kv_del_in(Txn& txn, std::string_view okey, std::string_view key) {
  return txn.del(kv_, named_key(okey, key));
}

void MailboxStore::alarm_set_in(Txn& txn, std::string_view okey, std::string_view name, std::int64_t due_ms,
                                std::uint64_t every_ms) {
  alarm_cancel_in(txn, okey, name);
  std::string due;
  codec::put_be(due, static_cast<std::uint64_t>(due_ms), 8);
  txn.put(alarmx_, named_key(okey, name), due);
  txn.put(alarms_, alarm_key(due_ms, okey, name), alarm_value(every_ms));
}

void MailboxStore::alarm_cancel_in(Txn& txn, std::string_view okey, std::string_view name) {
  auto ix = named_key(okey, name);
  auto old = txn.get(alarmx_, ix);
  if (!old || old->size() != 8) return;
  auto due = static_cast<std::int64_t>(codec::get_be(*old, 0, 8));
  txn.del(alarms_, alarm_key(due, okey, name));
  txn.del(alarmx_, ix);
}

std::vector<PendingMail> MailboxStore::fire_due_in(Txn& txn, std::int64_t now_ms, std::size_t limit,
                                                   const std::function<bool(std::string_view)>& skip) {
  struct Hit {
    std::string key;
    std::uint64_t every;
  };
  std::vector<Hit> hits;
  {
    Cursor c(txn, alarms_);
    for (auto e = c.first(); e && hits.size() < limit; e = c.next()) {
      if (e->key.size() < 8 || alarm_key_due(e->key) > now_ms) break;
      if (skip) {
        auto rest = e->key.substr(8);
        if (auto olen = okey_length(rest); olen != 0 && skip(rest.substr(0, olen))) continue;
      }
      codec::Reader r(e->value);
      hits.push_back({std::string(e->key), r.num<std::uint64_t>()});
    }
  }
  std::vector<PendingMail> out;
  for (auto& h : hits) {
    std::int64_t due = alarm_key_due(h.key);
    std::string_view rest = std::string_view(h.key).substr(8);
    std::size_t olen = okey_length(rest);
    txn.del(alarms_, h.key);
    if (olen == 0) continue;  // malformed: drop it rather than fire it forever
    std::string okey(rest.substr(0, olen));
    std::string name(rest.substr(olen));
    MailRecord m;
    m.kind = MailKind::kAlarm;
    m.enqueued_ms = now_ms;
    m.subject = name;
    m.scheduled_ms = due;
    if (h.every > 0) {
      auto skipped = static_cast<std::uint64_t>(now_ms - due) / h.every;
      m.missed = skipped;
      std::int64_t next = due + static_cast<std::int64_t>((skipped + 1) * h.every);
      std::string nd;
      codec::put_be(nd, static_cast<std::uint64_t>(next), 8);
      txn.put(alarmx_, named_key(okey, name), nd);
      txn.put(alarms_, alarm_key(next, okey, name), alarm_value(h.every));
    } else {
      txn.del(alarmx_, named_key(okey, name));
    }
    auto ref = parse_object_key(okey);
    std::uint64_t seq = append_in(txn, okey, m);
    out.push_back(PendingMail{std::move(*ref), seq, std::move(m)});
  }
  return out;
}

void MailboxStore::subscription_set_in(Txn& txn, std::string_view okey, std::string_view pattern, bool on) {
  if (on) {
    txn.put(osubs_, named_key(okey, pattern), "");
  } else {
    txn.del(osubs_, named_key(okey, pattern));
  }
}

std::optional<std::string> MailboxStore::kv_get(std::string_view okey, std::string_view key) const {
  Txn txn = env_.begin_read();
  auto v = txn.get(kv_, named_key(okey, key));
  if (!v) return std::nullopt;
  return std::string(*v);
}

bool MailboxStore::class_has_work(std::string_view object_class) const {
  std::string prefix;
  prefix.push_back(static_cast<char>(object_class.size()));
  prefix.append(object_class);
  Txn txn = env_.begin_read();
  for (MDB_dbi table : {mbox_, alarmx_, osubs_}) {
    Cursor c(txn, table);
    if (auto e = c.seek(prefix); e && e->key.starts_with(prefix)) return true;
  }
  return false;
}

std::vector<std::pair<std::string, std::string>> MailboxStore::kv_scan(
    std::string_view okey, std::string_view prefix, std::string_view start, std::string_view end,
    std::size_t limit, bool reverse, std::size_t max_bytes, bool* over) const {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t bytes = 0;
  // False once what was read passes max_bytes (then *over is set and the scan stops).
  auto room = [&](const Cursor::Entry& e) {
    bytes += e.key.size() - okey.size() + e.value.size();
    if (max_bytes == 0 || bytes <= max_bytes) return true;
    if (over != nullptr) *over = true;
    return false;
  };
  const std::string_view from_key = start > prefix ? start : prefix;
  auto in_range = [&](std::string_view key) {
    return key.starts_with(okey) && key.substr(okey.size()).starts_with(prefix) &&
           key.substr(okey.size()) >= from_key && (end.empty() || key.substr(okey.size()) < end);
  };
  Txn txn = env_.begin_read();
  Cursor c(txn, kv_);
  if (!reverse) {
    for (auto e = c.seek(named_key(okey, from_key)); e && in_range(e->key); e = c.next()) {
      if (!room(*e)) break;
      out.emplace_back(std::string(e->key.substr(okey.size())), std::string(e->value));
      if (limit != 0 && out.size() >= limit) break;
    }
    return out;
  }
  // From the last key below the upper bound: the lower of `end` and the first key past `prefix`
  // (within this object's keys, which all start with `okey`).
  std::string upper = prefix_successor(named_key(okey, prefix));
  if (!end.empty()) upper = std::min(upper.empty() ? named_key(okey, end) : upper, named_key(okey, end));
  std::optional<Cursor::Entry> e;
  if (upper.empty()) {
    e = c.last();
  } else {
    e = c.seek(upper);            // the first key at or past the bound…
    e = e ? c.prev() : c.last();  // …so the one before it (or the very last one)
  }
  for (; e; e = c.prev()) {
    if (!in_range(e->key)) {
      if (e->key < named_key(okey, from_key)) break;  // below the range: done
      continue;                                       // above it (end inside the prefix): step down
    }
    if (!room(*e)) break;
    out.emplace_back(std::string(e->key.substr(okey.size())), std::string(e->value));
    if (limit != 0 && out.size() >= limit) break;
  }
  return out;
}

std::vector<PendingMail> MailboxStore::all_pending(std::uint64_t data_budget) const {
  std::vector<PendingMail> out;
  Txn txn = env_.begin_read();
  Cursor c(txn, mbox_);
  std::string current;
  std::uint64_t used = 0;
  for (auto e = c.first(); e; e = c.next()) {
    std::size_t olen = okey_length(e->key);
    if (olen == 0 || e->key.size() != olen + 8) continue;
    auto okey = e->key.substr(0, olen);
    if (okey != current) {
      current = std::string(okey);
      used = 0;
    }
    auto ref = parse_object_key(okey);
    auto rec = MailRecord::decode(e->value);
    if (!ref || !rec) continue;
    PendingMail pm{std::move(*ref), codec::get_be(e->key, olen, 8), std::move(*rec)};
    if (used + pm.record.data.size() > data_budget) {
      pm.record.data.clear();
      pm.record.data.shrink_to_fit();
      pm.data_on_disk = true;
    } else {
      used += pm.record.data.size();
    }
    out.push_back(std::move(pm));
  }
  return out;
}

std::optional<MailRecord> MailboxStore::mail(std::string_view okey, std::uint64_t seq) const {
  Txn txn = env_.begin_read();
  auto v = txn.get(mbox_, seq_key(okey, seq));
  if (!v) return std::nullopt;
  return MailRecord::decode(*v);
}

std::vector<std::pair<ObjectRef, std::string>> MailboxStore::all_subscriptions() const {
  std::vector<std::pair<ObjectRef, std::string>> out;
  Txn txn = env_.begin_read();
  Cursor c(txn, osubs_);
  for (auto e = c.first(); e; e = c.next()) {
    std::size_t olen = okey_length(e->key);
    if (olen == 0) continue;
    auto ref = parse_object_key(e->key.substr(0, olen));
    if (ref) out.emplace_back(std::move(*ref), std::string(e->key.substr(olen)));
  }
  return out;
}

std::optional<std::int64_t> MailboxStore::next_alarm_ms() const {
  Txn txn = env_.begin_read();
  Cursor c(txn, alarms_);
  auto e = c.first();
  if (!e || e->key.size() < 8) return std::nullopt;
  return alarm_key_due(e->key);
}

std::optional<DueAlarm> MailboxStore::alarm(std::string_view okey, std::string_view name) const {
  Txn txn = env_.begin_read();
  auto due = txn.get(alarmx_, named_key(okey, name));
  if (!due || due->size() != 8) return std::nullopt;
  auto t = static_cast<std::int64_t>(codec::get_be(*due, 0, 8));
  auto v = txn.get(alarms_, alarm_key(t, okey, name));
  DueAlarm a{*parse_object_key(okey), std::string(name), t, 0};
  if (v) a.every_ms = codec::Reader(*v).num<std::uint64_t>();
  return a;
}

std::vector<DueAlarm> MailboxStore::alarms_of(std::string_view okey) const {
  std::vector<DueAlarm> out;
  std::vector<std::string> names;
  {
    Txn txn = env_.begin_read();
    Cursor c(txn, alarmx_);
    for (auto e = c.seek(okey); e && e->key.starts_with(okey); e = c.next()) {
      names.emplace_back(e->key.substr(okey.size()));
    }
  }
  for (const auto& n : names) {
    if (auto a = alarm(okey, n)) out.push_back(std::move(*a));
  }
  return out;
}

std::uint64_t MailboxStore::waiting(std::string_view okey, std::uint64_t limit) const {
  Txn txn = env_.begin_read();
  Cursor c(txn, mbox_);
  std::uint64_t n = 0;
  for (auto e = c.seek(okey); e && n < limit; e = c.next()) {
    if (e->key.size() != okey.size() + 8 || !e->key.starts_with(okey)) break;
    ++n;
  }
  return n;
}

std::uint64_t MailboxStore::object_count() const {
  Txn txn = env_.begin_read();
  MDB_stat st{};
  mdb_stat(txn.raw(), objects_, &st);
  return st.ms_entries;
}

// ---- shard moves -------------------------------------------------------------------------------
//
// An exported chunk: rows of (u8 table, u32 key length, key, u32 value length, value); tables
// 0 objects, 1 mbox, 2 kv, 3 alarms, 4 alarmx, 5 osubs.

std::vector<std::string> MailboxStore::object_keys(const std::function<bool(const ObjectRef&)>& in) const {
  std::set<std::string> keys;
  Txn txn = env_.begin_read();
  for (MDB_dbi dbi : {objects_, kv_, alarmx_, osubs_}) {
    Cursor c(txn, dbi);
    for (auto e = c.first(); e;) {
      std::size_t len = okey_length(e->key);
      if (len == 0) {
        e = c.next();
        continue;
      }
      std::string okey(e->key.substr(0, len));
      if (auto ref = parse_object_key(okey); ref && in(*ref)) keys.insert(okey);
      auto after = prefix_successor(okey);
      if (after.empty()) break;
      e = c.seek(after);
    }
  }
  return {keys.begin(), keys.end()};
}

std::vector<std::string> MailboxStore::export_objects(const std::vector<std::string>& okeys,
                                                      std::size_t chunk_bytes) const {
  std::vector<std::string> chunks(1);
  auto row = [&](std::uint8_t table, std::string_view key, std::string_view value) {
    if (!chunks.back().empty() && chunks.back().size() + key.size() + value.size() + 9 > chunk_bytes) {
      chunks.emplace_back();
    }
    codec::Writer w(chunks.back());
    w.num(table).num(static_cast<std::uint32_t>(key.size())).bytes(key);
    w.num(static_cast<std::uint32_t>(value.size())).bytes(value);
  };
  Txn txn = env_.begin_read();
  for (const auto& okey : okeys) {
    if (auto v = txn.get(objects_, okey)) row(0, okey, *v);
    std::pair<MDB_dbi, std::uint8_t> by_prefix[] = {{mbox_, 1}, {kv_, 2}, {alarmx_, 4}, {osubs_, 5}};
    for (auto [dbi, table] : by_prefix) {
      Cursor c(txn, dbi);
      for (auto e = c.seek(okey); e && e->key.starts_with(okey) && okey_length(e->key) == okey.size();
           e = c.next()) {
        row(table, e->key, e->value);
        if (table == 4 && e->value.size() == 8) {  // the alarm itself, found by its due time
          auto due = static_cast<std::int64_t>(codec::get_be(e->value, 0, 8));
          auto ak = alarm_key(due, okey, e->key.substr(okey.size()));
          if (auto a = txn.get(alarms_, ak)) row(3, ak, *a);
        }
      }
    }
  }
  if (chunks.back().empty()) chunks.pop_back();
  return chunks;
}

namespace {
struct Row {
  std::uint8_t table;
  std::string_view key, value;
};
// The rows of an exported chunk, each with the object it belongs to; nullopt when malformed.
std::optional<std::vector<Row>> parse_chunk(std::string_view chunk, std::set<std::string>* okeys) {
  std::vector<Row> rows;
  codec::Reader p(chunk);
  std::size_t at = 0;
  while (at < chunk.size()) {
    Row r;
    r.table = p.num<std::uint8_t>();
    r.key = p.bytes(p.num<std::uint32_t>());
    r.value = p.bytes(p.num<std::uint32_t>());
    if (!p.ok() || r.table > 5 || r.key.empty()) return std::nullopt;
    // The object a row belongs to: its key starts with the okey (an alarm's after its due time).
    auto owner = r.table == 3 ? r.key.substr(std::min<std::size_t>(8, r.key.size())) : r.key;
    auto olen = okey_length(owner);
    if (olen == 0) return std::nullopt;
    if (okeys != nullptr) okeys->insert(std::string(owner.substr(0, olen)));
    rows.push_back(r);
    at += 9 + r.key.size() + r.value.size();
  }
  return rows;
}
}  // namespace

std::optional<std::set<std::string>> MailboxStore::chunk_objects(std::string_view chunk) {
  std::set<std::string> okeys;
  if (!parse_chunk(chunk, &okeys)) return std::nullopt;
  return okeys;
}

bool MailboxStore::import_in(Txn& txn, std::string_view chunk, std::set<std::string>* okeys) {
  const MDB_dbi tables[] = {objects_, mbox_, kv_, alarms_, alarmx_, osubs_};
  auto rows = parse_chunk(chunk, okeys);
  if (!rows) return false;
  for (const auto& r : *rows) txn.put(tables[r.table], r.key, r.value);
  return true;
}

void MailboxStore::drop_in(Txn& txn, const std::vector<std::string>& okeys) {
  for (const auto& okey : okeys) {
    txn.del(objects_, okey);
    for (MDB_dbi dbi : {mbox_, kv_, alarmx_, osubs_}) {
      std::vector<std::pair<std::string, std::string>> rows;
      {
        Cursor c(txn, dbi);
        for (auto e = c.seek(okey); e && e->key.starts_with(okey) && okey_length(e->key) == okey.size();
             e = c.next()) {
          rows.emplace_back(std::string(e->key), std::string(e->value));
        }
      }
      for (const auto& [k, v] : rows) {
        if (dbi == alarmx_ && v.size() == 8) {
          auto due = static_cast<std::int64_t>(codec::get_be(v, 0, 8));
          txn.del(alarms_, alarm_key(due, okey, std::string_view(k).substr(okey.size())));
        }
        txn.del(dbi, k);
      }
    }
  }
}

std::vector<PendingMail> MailboxStore::pending_of(std::string_view okey) const {
  std::vector<PendingMail> out;
  auto ref = parse_object_key(okey);
  if (!ref) return out;
  Txn txn = env_.begin_read();
  Cursor c(txn, mbox_);
  for (auto e = c.seek(okey); e && e->key.size() == okey.size() + 8 && e->key.starts_with(okey);
       e = c.next()) {
    auto rec = MailRecord::decode(e->value);
    if (rec) out.push_back(PendingMail{*ref, codec::get_be(e->key, okey.size(), 8), std::move(*rec)});
  }
  return out;
}

std::vector<std::string> MailboxStore::subscriptions_of(std::string_view okey) const {
  std::vector<std::string> out;
  Txn txn = env_.begin_read();
  Cursor c(txn, osubs_);
  for (auto e = c.seek(okey); e && e->key.starts_with(okey) && okey_length(e->key) == okey.size();
       e = c.next()) {
    out.emplace_back(e->key.substr(okey.size()));
  }
  return out;
}

}  // namespace roost::durable
