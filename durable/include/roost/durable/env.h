// RAII wrappers over LMDB: one Env per node, short read transactions from any thread, write
// transactions only from the Committer thread.
//
// Errors inside the engine are thrown as MdbError (an LMDB return code); the Committer turns them
// into roost::Error values at its boundary, so nothing above durable/ sees an exception from here.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace roost::durable {

enum class Durability {
  kSync,   // fsync before a commit is acknowledged (default)
  kBatch,  // commit without fsync; fsync every sync_interval_ms
  kNone,   // never fsync explicitly; the OS decides
};

struct EnvOptions {
  std::filesystem::path dir;  // created if missing
  Durability durability = Durability::kSync;
  std::uint64_t initial_map_bytes = 256ull << 20;  // grows on demand (doubling)
  std::uint64_t max_map_bytes = 0;                 // 0 = grow until the disk is full
  // With max_map_bytes: room beyond the cap that only writes which free or rewrite data may use
  // (acks, deletes, pulls, recovery), so that a full store can always be drained. Writes that add
  // data are refused once the data reaches max_map_bytes. 0 = max(2 MiB, max_map_bytes / 8).
  std::uint64_t reserve_bytes = 0;
  unsigned max_dbs = 32;
  unsigned max_readers = 512;
  // In sync durability, the data file is kept zero-filled this far beyond its last used page
  // (see Env::zero_ahead). 0 turns it off.
  std::uint64_t zero_ahead_bytes = 4ull << 20;
  // Sync durability through the write-ahead log (durable/src/wal.h, docs/storage.md): one
  // sequential flush per commit. false: LMDB's own fsync'd commit (two scattered flushes).
  bool wal = true;
  std::uint64_t wal_segment_bytes = 16ull << 20;  // each of the two segment files
  // A checkpoint (data file flushed, base moved) at least this often while commits come, and
  // whenever half a segment was written since the last.
  std::uint64_t wal_checkpoint_ms = 1000;
  // Between checkpoints, the data file's dirty pages are sent to the disk this often, so that a
  // checkpoint's flush is no burst the log's flushes wait behind.
  std::uint64_t wal_writeback_ms = 2;
};

class MdbError : public std::runtime_error {
 public:
  explicit MdbError(int rc, std::string_view what);
  int rc() const { return rc_; }

 private:
  int rc_;
};

inline MDB_val to_val(std::span<const std::uint8_t> bytes) {
  return MDB_val{bytes.size(), const_cast<std::uint8_t*>(bytes.data())};
}
inline MDB_val to_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view as_view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

class Txn;
class Wal;

// The LMDB environment. Thread-safe. Readers and the map-resize path are coordinated by a
// shared_mutex: a Txn holds it shared for its life; grow_map() takes it exclusively.
class Env {
 public:
  explicit Env(EnvOptions options);  // throws on start-up failure
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  // Opens (creating if needed) a named database. Call only at start-up, before concurrent use.
  MDB_dbi open_db(const char* name, unsigned flags = 0);

  Txn begin_read() const;
  // REQUIRES: called only from the Committer thread.
  Txn begin_write();

  // Doubles the map size, bounded by max_map_bytes plus the reserve. Returns false if already
  // there.
  // REQUIRES: no transaction of this process is open on the calling thread.
  bool grow_map();
  // Commits a tiny write so that pages freed by the previous commit become reusable (LMDB reuses
  // a commit's freed pages only after a later transaction committed). Returns false on failure.
  // REQUIRES: called only from the Committer thread, with no write transaction open.
  bool bump();
  // True when the filesystem holding the data has less than 8 MiB (or 1 %) free. LMDB reports a
  // short write on a full disk as EIO; this tells that apart from a real I/O error.
  bool disk_low() const;
  // Flushes committed data to disk (batch durability).
  void sync();
  // Flushes log records committed without a flush (Txn::commit(false)). Any thread.
  void flush_log();
  // True when the log holds records written without a flush.
  bool log_unflushed() const;
  // Starts a log checkpoint (and segment switch) if one is due. Committer thread, no write txn.
  void checkpoint_if_due();
  // Keeps zero_ahead_bytes of zero-filled, flushed file beyond the last used page, extending it
  // by writing zeros when less than half is left. A commit that grows the database then
  // overwrites blocks the file system has already allocated, and its fdatasync flushes only
  // data: appending pages also commits the file system's journal (the new size and blocks),
  // which on the test machine makes a growing commit's flush ~200 µs instead of ~120 µs. Does
  // nothing outside sync durability, while commits grow the database by more than 64 KiB each
  // on average (then the zeros' write costs more than it saves), when the disk is low, or past
  // the map size; a failed write only stops it until the next call.
  // REQUIRES: called only from the Committer thread, with no write transaction open.
  void zero_ahead();

  MDB_env* raw() const { return env_; }
  const EnvOptions& options() const { return options_; }
  std::uint64_t map_bytes() const { return map_bytes_; }
  // Bytes of the data file actually used (last page * page size).
  std::uint64_t used_bytes() const;
  // True when the data (used pages less the free list) is over max_map_bytes: writes that add
  // data must be refused; the reserve beyond the cap is for writes that free or rewrite. Cheap
  // while the file's last page is below the cap; past it, reads the free list.
  bool over_cap() const;
  // The map's hard limit: max_map_bytes plus the reserve (0 = none).
  std::uint64_t hard_cap() const;
  // True when sync commits go through the write-ahead log.
  bool uses_wal() const { return wal_ != nullptr; }
  struct WalStats {
    std::uint64_t records = 0, bytes = 0, checkpoints = 0, replayed = 0;
  };
  WalStats wal_stats() const;

 private:
  struct Table {
    std::string name;  // "" = LMDB's main database
    unsigned flags = 0;
  };
  const Table& table(MDB_dbi dbi) const;
  // Runs one log record's mutations (recovery); grows the map as needed.
  void apply_record(std::string_view mutations);
  bool grow_for_recovery();

  EnvOptions options_;
  MDB_env* env_ = nullptr;
  std::uint64_t map_bytes_ = 0;
  std::uint64_t zeroed_to_ = 0;  // the data file holds allocated blocks up to here
  std::uint64_t last_used_ = 0;  // used_bytes() at the last zero_ahead()
  double growth_avg_ = 0;        // bytes the recent commits grew the database by, on average
  static constexpr double kZeroAheadMaxGrowth = 64 << 10;
  mutable std::shared_mutex resize_mu_;
  std::vector<Table> tables_;  // by dbi; written only at start-up (open_db)
  std::unique_ptr<Wal> wal_;
  friend class Txn;
};

// A transaction. Destroyed without commit() it aborts. Move-only. Values returned by get() point
// into the map and are valid only until the transaction ends: copy them out.
class Txn {
 public:
  Txn(Txn&& other) noexcept;
  Txn& operator=(Txn&&) = delete;
  Txn(const Txn&) = delete;
  ~Txn();

  std::optional<std::string_view> get(MDB_dbi dbi, std::string_view key) const;
  void put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags = 0);
  // Reserves `size` bytes for the value and returns a pointer to fill before the txn ends.
  char* reserve(MDB_dbi dbi, std::string_view key, std::size_t size, unsigned flags = 0);
  // Returns false when the key was absent ("not found" is a value, not an error).
  bool del(MDB_dbi dbi, std::string_view key);
  // flush = false (write-ahead log only): returns once the log record is written, before it is
  // flushed; a later flushed commit, or Env::flush_log(), makes it durable. may_block = false:
  // no log segment switch and no checkpoint start here (a leading I/O thread): the record goes
  // at the end of the current segment, and Env::checkpoint_if_due() does the rest later.
  void commit(bool flush = true, bool may_block = true);
  void abort();

  MDB_txn* raw() const { return txn_; }

 private:
  friend class Env;
  Txn(MDB_txn* txn, std::shared_lock<std::shared_mutex> lock, const Env* env = nullptr, Wal* wal = nullptr);
  MDB_txn* txn_;
  std::shared_lock<std::shared_mutex> lock_;
  const Env* env_;  // write transactions logged to the write-ahead log only
  Wal* wal_;
};

// A cursor over one database, closed on destruction. Positions return the key/value or nullopt.
class Cursor {
 public:
  Cursor(const Txn& txn, MDB_dbi dbi);
  ~Cursor();
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  struct Entry {
    std::string_view key;
    std::string_view value;
  };
  std::optional<Entry> seek(std::string_view key);  // first entry with key >= `key`
  std::optional<Entry> first();
  std::optional<Entry> next();
  std::optional<Entry> last();
  std::optional<Entry> prev();

 private:
  std::optional<Entry> op(MDB_cursor_op op, MDB_val* key = nullptr);
  MDB_cursor* cursor_ = nullptr;
};

}  // namespace roost::durable
