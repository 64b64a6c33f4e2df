// MailboxStore: the LMDB tables of object mailboxes — per-object FIFO mailboxes, object storage
// (key → value), durable alarms and durable channel subscriptions.
//
// The store holds no thread or cache of its own: the actor runtime (broker/) calls the `*_in`
// functions from its Ops on the committer thread, inside the group transaction, so that one turn's
// effects and the consumption of its message commit together; and the read functions from any
// thread (each opens a short read-only transaction).
//
// Tables (keys big-endian; docs/storage.md has the layouts):
//   objects  okey → next mailbox seq (u64)            okey = u8 len + class + u16 len + name
//   mbox     okey + seq → MailRecord
//   kv       okey + key → value
//   alarms   due_ms + okey + name → AlarmRecord        (ordered by due time)
//   alarmx   okey + name → due_ms                      (find an object's alarm by name)
//   osubs    okey + pattern → ""                       (durable subscriptions)
#pragma once

#include <roost/core/content_type.h>
#include <roost/durable/env.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace roost::durable {

enum class MailKind : std::uint8_t { kMessage = 0, kAlarm = 1, kChannel = 2 };

struct MailRecord {
  MailKind kind = MailKind::kMessage;
  ContentType content_type = ContentType::kJson;
  std::int64_t enqueued_ms = 0;
  std::string subject;            // channel subject (kChannel) or alarm name (kAlarm)
  std::int64_t scheduled_ms = 0;  // kAlarm: when it was due
  std::uint64_t missed = 0;       // kAlarm: skipped occurrences of a repeating alarm
  std::string data;

  std::string encode() const;
  static std::optional<MailRecord> decode(std::string_view bytes);
};

struct ObjectRef {
  std::string object_class;
  std::string name;
};

struct PendingMail {
  ObjectRef object;
  std::uint64_t seq = 0;
  MailRecord record;
  bool data_on_disk = false;  // record.data was left out: read it with mail() when needed
};

struct DueAlarm {
  ObjectRef object;
  std::string name;
  std::int64_t due_ms = 0;
  std::uint64_t every_ms = 0;
};

class MailboxStore {
 public:
  // Opens (creating) the tables. REQUIRES: before concurrent use of `env`.
  explicit MailboxStore(Env& env);
  MailboxStore(const MailboxStore&) = delete;
  MailboxStore& operator=(const MailboxStore&) = delete;

  static std::string object_key(std::string_view object_class, std::string_view name);
  static std::optional<ObjectRef> parse_object_key(std::string_view okey);

  // --- inside a write transaction (committer thread) ---
  // Appends to the object's mailbox; returns the message's seq.
  std::uint64_t append_in(Txn& txn, std::string_view okey, const MailRecord& record);
  // Removes a consumed message. Returns false if it was not there.
  bool consume_in(Txn& txn, std::string_view okey, std::uint64_t seq);
  void kv_put_in(Txn& txn, std::string_view okey, std::string_view key, std::string_view value);
  bool kv_del_in(Txn& txn, std::string_view okey, std::string_view key);
  // Sets or replaces the named alarm.
  void alarm_set_in(Txn& txn, std::string_view okey, std::string_view name, std::int64_t due_ms,
                    std::uint64_t every_ms);
  void alarm_cancel_in(Txn& txn, std::string_view okey, std::string_view name);
  // Turns due alarms (due_ms <= now) into mailbox records, at most `limit`: a one-shot alarm is
  // removed, a repeating one moves to its next occurrence after `now` and reports how many it
  // skipped. Returns the appended mail.
  // `skip`: objects whose alarms wait (their shard is moving away).
  std::vector<PendingMail> fire_due_in(Txn& txn, std::int64_t now_ms, std::size_t limit,
                                       const std::function<bool(std::string_view okey)>& skip = nullptr);
  void subscription_set_in(Txn& txn, std::string_view okey, std::string_view pattern, bool on);
  // (shard moves, target) Writes rows exported by export_objects (one chunk). False: malformed.
  // `okeys` gets the objects the rows belong to.
  bool import_in(Txn& txn, std::string_view chunk, std::set<std::string>* okeys = nullptr);
  // The objects an exported chunk holds rows of; nullopt when it is malformed.
  static std::optional<std::set<std::string>> chunk_objects(std::string_view chunk);
  // (shard moves) Deletes every row of these objects (mailbox, storage, alarms, subscriptions).
  void drop_in(Txn& txn, const std::vector<std::string>& okeys);

  // --- reads (any thread) ---
  std::optional<std::string> kv_get(std::string_view okey, std::string_view key) const;
  // Whether any object of `object_class` has mail waiting, an alarm set or a durable subscription
  // (what would need the class again).
  bool class_has_work(std::string_view object_class) const;
  // Entries with `prefix` and start <= key < end (empty end = no upper bound), in key order (or
  // from the last one down with `reverse`), at most `limit` (0 = all); keys are returned without
  // the object prefix. Reads only the entries it returns (plus one). With `max_bytes` (keys and
  // values, 0 = no bound) it stops before the entry that would pass it and sets `*over`.
  std::vector<std::pair<std::string, std::string>> kv_scan(std::string_view okey, std::string_view prefix,
                                                           std::string_view start, std::string_view end,
                                                           std::size_t limit, bool reverse = false,
                                                           std::size_t max_bytes = 0,
                                                           bool* over = nullptr) const;
  // Every message waiting in every mailbox, in (object, seq) order. Used once at start-up. Past
  // `data_budget` bytes of one object's data, data is left on disk (data_on_disk).
  std::vector<PendingMail> all_pending(std::uint64_t data_budget = ~0ull) const;
  // One waiting message, or nullopt when it is not (or no longer) in the mailbox.
  std::optional<MailRecord> mail(std::string_view okey, std::uint64_t seq) const;
  // Every durable subscription: (object, pattern).
  std::vector<std::pair<ObjectRef, std::string>> all_subscriptions() const;
  // The earliest alarm's due time, if any.
  std::optional<std::int64_t> next_alarm_ms() const;
  std::optional<DueAlarm> alarm(std::string_view okey, std::string_view name) const;
  // The object's alarms, by name.
  std::vector<DueAlarm> alarms_of(std::string_view okey) const;
  // How many messages wait in the object's mailbox (counting stops at `limit`).
  std::uint64_t waiting(std::string_view okey, std::uint64_t limit = 1'000'000) const;
  std::uint64_t object_count() const;
  // (shard moves, source) Every object key for which `in` answers true that has data here.
  std::vector<std::string> object_keys(const std::function<bool(const ObjectRef&)>& in) const;
  // (source) Every row of these objects, in chunks of about `chunk_bytes` (at least one row).
  std::vector<std::string> export_objects(const std::vector<std::string>& okeys,
                                          std::size_t chunk_bytes) const;
  // The messages waiting in one object's mailbox, in order (as all_pending).
  std::vector<PendingMail> pending_of(std::string_view okey) const;
  // The object's durable subscriptions (patterns).
  std::vector<std::string> subscriptions_of(std::string_view okey) const;

 private:
  Env& env_;
  MDB_dbi objects_, mbox_, kv_, alarms_, alarmx_, osubs_;
};

}  // namespace roost::durable
