// The write-ahead log of sync durability (docs/storage.md "Write-ahead log"): one sequential
// flush per commit instead of LMDB's two scattered ones.
//
// LMDB runs with MDB_NOSYNC. Every write transaction's mutations (puts and deletes, by table
// name) are appended to a pre-zeroed log segment and fdatasync'd before the commit is answered.
// A checkpoint thread flushes the data file now and then and records, in the header of a log
// segment, the LMDB meta page of the state it flushed (the "base"). The pages of the base stay
// intact until the next base is on disk, because a read transaction pins that snapshot (LMDB does
// not reuse pages a reader may see). After a power cut, recovery writes the base's meta page back
// into both meta slots of the data file (whatever later meta page reached the disk may point at
// pages that did not), opens LMDB on it and replays the log's records after the base. A record
// is a list of puts and deletes: replaying it onto the state before it or the state after it
// gives the state after it, so a record replayed twice is harmless.
//
// Two segment files alternate: records go to one while the other's header holds the current base;
// at a checkpoint the writer switches segments and the new base is written into the header of the
// segment the records now go to. Every record carries its segment's generation and a sequence
// number: recovery takes the highest valid header as the base and accepts only the records that
// continue that chain, so stale records of an earlier round never replay.
#pragma once

#include <roost/core/thread_annotations.h>
#include <roost/durable/env.h>

#include <lmdb.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace roost::durable {

// CRC-32C of the log's records and headers (the CPU's crc32 instruction where it has one), and
// the table-driven one it must agree with.
std::uint32_t crc32c(const char* data, std::size_t n);
std::uint32_t crc32c_portable(const char* data, std::size_t n);

class Wal {
 public:
  struct Options {
    std::filesystem::path dir;
    std::uint64_t segment_bytes = 16ull << 20;
    // A checkpoint starts when this much log was written since the last one, or this long passed.
    std::uint64_t checkpoint_bytes = 8ull << 20;
    std::chrono::milliseconds checkpoint_interval{1000};
    // Between checkpoints the data file's writeback starts this often (sync_file_range).
    std::chrono::milliseconds writeback_interval{2};
  };

  // Before LMDB opens the data file: reads the segment headers and, if there is a base, writes
  // its meta page back into the data file's meta slots (and flushes it). Throws on I/O errors.
  explicit Wal(Options options);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // After mdb_env_open: replays the records after the base (through `apply`, which runs one
  // record's mutations in a write transaction of its own and commits it without the log), then
  // flushes the data file and starts a new chain on it. Starts the checkpoint thread.
  using ApplyRecord = std::function<void(std::string_view mutations)>;
  void recover(MDB_env* env, const ApplyRecord& apply);

  // The mutations of the write transaction in progress (committer thread only): appended by
  // Txn::put / del / reserve, sealed and written by Txn::commit.
  void begin_record();
  void log_put(std::string_view table, unsigned table_flags, std::string_view key, std::string_view value);
  // A reserved value is copied in by the next seal(): its bytes are filled after the put, and
  // its memory stays valid only until the transaction's next update (LMDB's rule), so every
  // update and the commit seal first.
  void log_reserve(std::string_view table, unsigned table_flags, std::string_view key, const char* value,
                   std::size_t size);
  void log_del(std::string_view table, unsigned table_flags, std::string_view key);
  // Copies reserved values in; call before every update and before mdb_txn_commit.
  void seal();
  // After mdb_txn_commit: writes the record and flushes it; starts a checkpoint when one is due.
  // Throws MdbError(EIO) if the log cannot be written: the store must stop taking writes (LMDB
  // holds a commit the log does not), see failed().
  // flush = false: written, not flushed (Op::needs_flush); flush() or the next flushed record
  // makes it durable (the log is read in order: a flushed record implies every one before it).
  // may_block = false: no segment switch, no checkpoint start (they may flush or wait): a full
  // segment grows past its size until checkpoint_if_due() switches.
  void write_committed(bool flush, bool may_block = true);
  // Starts a checkpoint if one is due and none runs (committer thread, no write txn open).
  void checkpoint_if_due();
  // Flushes what was written without a flush. Any thread, also while a commit writes.
  void flush();
  bool unflushed() const;
  bool failed() const { return failed_.load(); }

  // Runs a checkpoint now and waits for it (map full: pages pinned by the base become reusable).
  // Committer thread only, no write transaction open.
  void checkpoint_now();
  // Checkpoints and stops the thread (clean close: nothing to replay at the next start).
  void close();

  struct Stats {
    std::uint64_t records = 0;
    std::uint64_t bytes = 0;
    std::uint64_t checkpoints = 0;
    std::uint64_t replayed = 0;  // at the last start
  };
  Stats stats() const;

 private:
  struct Header;
  struct Checkpoint {
    int segment = 0;
    std::uint64_t gen = 0;
    std::uint64_t base_seq = 0;
    std::uint64_t txnid = 0;
    std::string meta;
    MDB_txn* pin = nullptr;
  };

  void open_segments();
  void create_segment(int index);
  std::string read_meta_page(std::uint64_t txnid) const;
  void restore_meta(const std::string& meta, std::uint64_t txnid);
  // Switches segments and hands the current state to the checkpoint thread (committer thread).
  void start_checkpoint();
  void wait_checkpoint();
  void checkpoint_loop();
  bool write_header(int segment, const Checkpoint& cp);
  void write_all(int fd, const char* data, std::size_t n, std::uint64_t at);

  Options options_;
  MDB_env* env_ = nullptr;
  int fd_[2] = {-1, -1};
  int data_fd_ = -1;  // data.mdb, read-only: the meta pages
  std::uint32_t page_size_ = 4096;

  // Base found at open (recovery).
  bool have_base_ = false;
  int base_segment_ = 0;
  std::uint64_t base_gen_ = 0;
  std::uint64_t base_seq_ = 0;
  std::uint64_t base_txnid_ = 0;
  std::uint64_t max_gen_ = 0;

  // Writer state: committer thread only.
  std::string record_;
  struct Reserved {
    std::size_t at;
    const char* from;
    std::size_t size;
  };
  std::vector<Reserved> reserved_;
  std::uint32_t count_ = 0;
  int segment_ = 0;
  std::uint64_t gen_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t since_checkpoint_ = 0;
  std::chrono::steady_clock::time_point last_checkpoint_;
  std::atomic<bool> failed_{false};

  // Which records are on disk: the writer sets written_seq_ and switches segments under it;
  // flush() from any thread flushes the segment being written.
  mutable roost::Mutex flush_mu_;
  std::uint64_t written_seq_ ROOST_GUARDED_BY(flush_mu_) = 0;
  std::uint64_t flushed_seq_ ROOST_GUARDED_BY(flush_mu_) = 0;
  int writing_segment_ ROOST_GUARDED_BY(flush_mu_) = 0;

  // Shared with the checkpoint thread.
  mutable roost::Mutex mu_;
  std::condition_variable cv_;
  bool job_ ROOST_GUARDED_BY(mu_) = false;  // a checkpoint handed over, not finished
  bool stop_ ROOST_GUARDED_BY(mu_) = false;
  Checkpoint pending_ ROOST_GUARDED_BY(mu_);
  MDB_txn* base_pin_ ROOST_GUARDED_BY(mu_) = nullptr;  // pins the base on disk
  Stats stats_ ROOST_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace roost::durable
