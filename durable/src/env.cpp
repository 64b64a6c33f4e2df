#include "roost/durable/env.h"

#include "wal.h"

#include <roost/core/hop_trace.h>
#include <roost/core/log.h>

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <system_error>

namespace roost::durable {

namespace {
void check(int rc, std::string_view what) {
  if (rc != MDB_SUCCESS) throw MdbError(rc, what);
}
}  // namespace

MdbError::MdbError(int rc, std::string_view what)
    : std::runtime_error(std::string(what) + ": " + mdb_strerror(rc)), rc_(rc) {}

Env::Env(EnvOptions options) : options_(std::move(options)) {
  std::filesystem::create_directories(options_.dir);
  check(mdb_env_create(&env_), "mdb_env_create");
  if (options_.max_map_bytes != 0 && options_.reserve_bytes == 0) {
    options_.reserve_bytes = std::max<std::uint64_t>(2u << 20, options_.max_map_bytes / 8);
  }
  map_bytes_ = options_.initial_map_bytes;
  if (options_.max_map_bytes != 0 && map_bytes_ > options_.max_map_bytes) {
    map_bytes_ = options_.max_map_bytes;
  }
  unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
  const bool wal = options_.durability == Durability::kSync && options_.wal;
  // Through the log, LMDB's commits need no flush of their own: the checkpoints flush it.
  if (options_.durability != Durability::kSync || wal) flags |= MDB_NOSYNC;
  try {
    if (wal) {
      Wal::Options wo;
      wo.dir = options_.dir;
      wo.segment_bytes = options_.wal_segment_bytes;
      wo.checkpoint_bytes = options_.wal_segment_bytes / 2;
      wo.checkpoint_interval = std::chrono::milliseconds(options_.wal_checkpoint_ms);
      wo.writeback_interval =
          std::chrono::milliseconds(std::max<std::uint64_t>(1, options_.wal_writeback_ms));
      wal_ = std::make_unique<Wal>(wo);  // puts the last checkpoint's meta page back first
    }
    check(mdb_env_set_maxdbs(env_, options_.max_dbs), "mdb_env_set_maxdbs");
    check(mdb_env_set_maxreaders(env_, options_.max_readers), "mdb_env_set_maxreaders");
    check(mdb_env_set_mapsize(env_, map_bytes_), "mdb_env_set_mapsize");
    check(mdb_env_open(env_, options_.dir.c_str(), flags, 0644), "mdb_env_open");
    // An existing environment may be larger than the configured initial size.
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    map_bytes_ = info.me_mapsize;
    tables_.resize(2);
    tables_[1] = Table{"", 0};  // MAIN_DBI
    if (wal_) wal_->recover(env_, [this](std::string_view m) { apply_record(m); });
  } catch (...) {
    wal_.reset();
    mdb_env_close(env_);
    throw;
  }
  // Whatever lies beyond the used pages (zeros written by an earlier run, or pages of a commit
  // that never completed) is allocated already.
  mdb_filehandle_t fd;
  struct stat st;
  if (mdb_env_get_fd(env_, &fd) == MDB_SUCCESS && fstat(fd, &st) == 0) {
    zeroed_to_ = static_cast<std::uint64_t>(st.st_size);
  }
  last_used_ = used_bytes();
}

Env::~Env() {
  if (env_ != nullptr) {
    if (wal_) wal_->close();  // a last checkpoint: nothing to replay at the next start
    if (options_.durability == Durability::kBatch) mdb_env_sync(env_, 1);
    mdb_env_close(env_);
  }
  wal_.reset();
}

MDB_dbi Env::open_db(const char* name, unsigned flags) {
  Txn txn = begin_write();
  MDB_dbi dbi;
  check(mdb_dbi_open(txn.raw(), name, flags | MDB_CREATE, &dbi), "mdb_dbi_open");
  unsigned persistent = 0;
  check(mdb_dbi_flags(txn.raw(), dbi, &persistent), "mdb_dbi_flags");
  txn.commit();
  if (tables_.size() <= dbi) tables_.resize(dbi + 1);
  tables_[dbi] = Table{name == nullptr ? "" : name, persistent};
  return dbi;
}

Txn Env::begin_read() const {
  std::shared_lock lock(resize_mu_);
  MDB_txn* txn = nullptr;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "mdb_txn_begin(read)");
  return Txn(txn, std::move(lock));
}

Txn Env::begin_write() {
  if (wal_ && wal_->failed()) throw MdbError(EIO, "the write-ahead log failed; restart the node");
  std::shared_lock lock(resize_mu_);
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc == MDB_MAP_RESIZED) {
    // Another process grew the map; adopt its size.
    lock.unlock();
    {
      std::unique_lock ulock(resize_mu_);
      check(mdb_env_set_mapsize(env_, 0), "mdb_env_set_mapsize(0)");
    }
    lock.lock();
    rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  }
  check(rc, "mdb_txn_begin(write)");
  if (wal_) wal_->begin_record();
  return Txn(txn, std::move(lock), this, wal_.get());
}

std::uint64_t Env::hard_cap() const {
  return options_.max_map_bytes == 0 ? 0 : options_.max_map_bytes + options_.reserve_bytes;
}

bool Env::over_cap() const {
  if (options_.max_map_bytes == 0) return false;
  MDB_envinfo info;
  MDB_stat st;
  if (mdb_env_info(env_, &info) != MDB_SUCCESS || mdb_env_stat(env_, &st) != MDB_SUCCESS) return false;
  const std::uint64_t pages = info.me_last_pgno + 1;
  if (pages * st.ms_psize <= options_.max_map_bytes) return false;
  // Past the cap in the file: what counts is what the data holds, so subtract the free list
  // (each record of LMDB's free DB is a page-number list whose first word is its length).
  std::uint64_t free_pages = 0;
  try {
    Txn txn = begin_read();
    MDB_cursor* c = nullptr;
    if (mdb_cursor_open(txn.raw(), 0, &c) != MDB_SUCCESS) return true;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      if (v.mv_size >= sizeof(std::size_t)) {
        std::size_t n;
        std::memcpy(&n, v.mv_data, sizeof n);
        free_pages += n;
      }
    }
    mdb_cursor_close(c);
  } catch (const MdbError&) {
    return true;
  }
  return (pages - std::min(pages, free_pages)) * st.ms_psize > options_.max_map_bytes;
}

bool Env::grow_map() {
  std::uint64_t next = map_bytes_ * 2;
  if (options_.max_map_bytes != 0 && next > hard_cap()) next = hard_cap();
  if (next <= map_bytes_) return false;
  std::unique_lock lock(resize_mu_);
  int rc = mdb_env_set_mapsize(env_, next);
  if (rc != MDB_SUCCESS) {
    roost::module_logger("durable")->error("map resize to {} bytes failed: {}", next, mdb_strerror(rc));
    return false;
  }
  map_bytes_ = next;
  roost::module_logger("durable")->info("storage map grown to {} MiB", next >> 20);
  return true;
}

bool Env::bump() {
  try {
    // Through the log, the pages the checkpoint pins are what a full map is waiting for.
    if (wal_) wal_->checkpoint_now();
    Txn txn = begin_write();
    MDB_dbi main;
    check(mdb_dbi_open(txn.raw(), nullptr, 0, &main), "mdb_dbi_open(main)");
    std::uint64_t n = 0;
    if (auto v = txn.get(main, "roost.bump"); v && v->size() == sizeof n) {
      std::memcpy(&n, v->data(), sizeof n);
    }
    ++n;
    txn.put(main, "roost.bump", std::string_view(reinterpret_cast<const char*>(&n), sizeof n));
    txn.commit();
    return true;
  } catch (const MdbError&) {
    return false;
  }
}

bool Env::disk_low() const {
  struct statvfs st;
  if (statvfs(options_.dir.c_str(), &st) != 0) return false;
  std::uint64_t total = static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
  std::uint64_t avail = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  return avail < (8ull << 20) || avail < total / 100;
}

void Env::sync() { check(mdb_env_sync(env_, 1), "mdb_env_sync"); }

void Env::flush_log() {
  if (wal_) wal_->flush();
}

bool Env::log_unflushed() const { return wal_ && wal_->unflushed(); }

void Env::checkpoint_if_due() {
  if (wal_) wal_->checkpoint_if_due();
}

void Env::zero_ahead() {
  const std::uint64_t ahead = options_.zero_ahead_bytes;
  if (ahead == 0 || options_.durability != Durability::kSync || wal_) return;
  const std::uint64_t used = used_bytes();
  // Zeros cost a second write of every byte the database grows by; they save one journal commit
  // per growing commit. That pays for small commits only: past ~64 KiB of growth per commit
  // (measured here: 1000 enqueues in flight, ~100 KiB commits, lost 10-20 % with zeros ahead)
  // the writes cost more than the journal commits they avoid.
  if (used > last_used_)
    growth_avg_ += (static_cast<double>(used - last_used_) - growth_avg_) / 8;
  else
    growth_avg_ -= growth_avg_ / 8;
  last_used_ = used;
  if (growth_avg_ > kZeroAheadMaxGrowth) return;
  if (zeroed_to_ >= used + ahead / 2) return;
  const std::uint64_t from = std::max(zeroed_to_, used);
  const std::uint64_t to = std::min(used + ahead, map_bytes_);
  if (to <= from || disk_low()) return;
  mdb_filehandle_t fd;
  if (mdb_env_get_fd(env_, &fd) != MDB_SUCCESS) return;
  // Only this thread writes the file, and LMDB writes no page past `used` outside a commit.
  static const std::string zeros(256 << 10, '\0');
  for (std::uint64_t at = from; at < to;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), to - at));
    ssize_t w = pwrite(fd, zeros.data(), n, static_cast<off_t>(at));
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      roost::module_logger("durable")->warn("zero-filling the data file ahead failed: {}",
                                            w < 0 ? std::strerror(errno) : "short write");
      return;
    }
    at += static_cast<std::uint64_t>(w);
  }
  if (fdatasync(fd) != 0) return;
  zeroed_to_ = to;
}

const Env::Table& Env::table(MDB_dbi dbi) const {
  if (dbi >= tables_.size() || (dbi != 1 && tables_[dbi].name.empty())) {
    throw MdbError(MDB_BAD_DBI, "a write to a table not opened through Env::open_db");
  }
  return tables_[dbi];
}

Env::WalStats Env::wal_stats() const {
  if (!wal_) return {};
  auto s = wal_->stats();
  return WalStats{s.records, s.bytes, s.checkpoints, s.replayed};
}

bool Env::grow_for_recovery() {
  // What was committed fitted in the map; replay may need more while the base is pinned, so
  // recovery is not bound by the cap.
  std::unique_lock lock(resize_mu_);
  std::uint64_t next = map_bytes_ * 2;
  if (mdb_env_set_mapsize(env_, next) != MDB_SUCCESS) return false;
  map_bytes_ = next;
  return true;
}

// A record's mutations: op u8 (1 put, 2 delete), table name (u8 length), table flags u32, key
// (u32 length), and for a put the value (u32 length).
void Env::apply_record(std::string_view m) {
  for (;;) {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin(replay)");
    std::map<std::string, MDB_dbi, std::less<>> dbis;
    int rc = MDB_SUCCESS;
    std::size_t at = 0;
    auto take = [&](std::size_t n) {
      if (m.size() - at < n) throw MdbError(MDB_CORRUPTED, "a write-ahead log record is malformed");
      auto out = m.substr(at, n);
      at += n;
      return out;
    };
    auto take_u32 = [&] {
      std::uint32_t v;
      std::memcpy(&v, take(4).data(), 4);
      return v;
    };
    try {
      while (rc == MDB_SUCCESS && at < m.size()) {
        auto op = static_cast<std::uint8_t>(take(1)[0]);
        auto name = take(static_cast<std::uint8_t>(take(1)[0]));
        unsigned flags = take_u32();
        auto key = take(take_u32());
        auto it = dbis.find(name);
        if (it == dbis.end()) {
          MDB_dbi dbi;
          std::string n(name);
          rc = n.empty() ? mdb_dbi_open(txn, nullptr, 0, &dbi)
                         : mdb_dbi_open(txn, n.c_str(), flags | MDB_CREATE, &dbi);
          if (rc != MDB_SUCCESS) break;
          it = dbis.emplace(std::move(n), dbi).first;
        }
        MDB_val k = to_val(key);
        if (op == 1) {
          MDB_val v = to_val(take(take_u32()));
          rc = mdb_put(txn, it->second, &k, &v, 0);
        } else if (op == 2) {
          rc = mdb_del(txn, it->second, &k, nullptr);
          if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
        } else {
          throw MdbError(MDB_CORRUPTED, "a write-ahead log record has an unknown operation");
        }
      }
    } catch (...) {
      mdb_txn_abort(txn);
      throw;
    }
    if (rc == MDB_SUCCESS) {
      rc = mdb_txn_commit(txn);
    } else {
      mdb_txn_abort(txn);
    }
    if (rc == MDB_MAP_FULL && grow_for_recovery()) continue;
    check(rc, "replaying the write-ahead log");
    return;
  }
}

std::uint64_t Env::used_bytes() const {
  MDB_envinfo info;
  MDB_stat stat;
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &stat);
  return (info.me_last_pgno + 1) * static_cast<std::uint64_t>(stat.ms_psize);
}

Txn::Txn(MDB_txn* txn, std::shared_lock<std::shared_mutex> lock, const Env* env, Wal* wal)
    : txn_(txn), lock_(std::move(lock)), env_(env), wal_(wal) {}

Txn::Txn(Txn&& other) noexcept
    : txn_(other.txn_), lock_(std::move(other.lock_)), env_(other.env_), wal_(other.wal_) {
  other.txn_ = nullptr;
  other.wal_ = nullptr;
}

Txn::~Txn() { abort(); }

std::optional<std::string_view> Txn::get(MDB_dbi dbi, std::string_view key) const {
  MDB_val k = to_val(key);
  MDB_val v;
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc, "mdb_get");
  return as_view(v);
}

void Txn::put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags) {
  if (wal_) wal_->seal();  // a reserved value is filled before the next update (LMDB's rule)
  MDB_val k = to_val(key);
  MDB_val v = to_val(value);
  check(mdb_put(txn_, dbi, &k, &v, flags), "mdb_put");
  if (wal_) {
    const auto& t = env_->table(dbi);
    wal_->log_put(t.name, t.flags, key, value);
  }
}

char* Txn::reserve(MDB_dbi dbi, std::string_view key, std::size_t size, unsigned flags) {
  if (wal_) wal_->seal();
  MDB_val k = to_val(key);
  MDB_val v{size, nullptr};
  check(mdb_put(txn_, dbi, &k, &v, flags | MDB_RESERVE), "mdb_put(reserve)");
  if (wal_) {
    const auto& t = env_->table(dbi);
    wal_->log_reserve(t.name, t.flags, key, static_cast<const char*>(v.mv_data), size);
  }
  return static_cast<char*>(v.mv_data);
}

bool Txn::del(MDB_dbi dbi, std::string_view key) {
  if (wal_) wal_->seal();
  MDB_val k = to_val(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "mdb_del");
  if (wal_) {
    const auto& t = env_->table(dbi);
    wal_->log_del(t.name, t.flags, key);
  }
  return true;
}

void Txn::commit(bool flush, bool may_block) {
  MDB_txn* txn = txn_;
  txn_ = nullptr;
  Wal* wal = wal_;
  wal_ = nullptr;
  if (wal) wal->seal();  // reserved values live until the commit
  int rc = mdb_txn_commit(txn);
  if (lock_.owns_lock()) lock_.unlock();
  check(rc, "mdb_txn_commit");
  // In the page cache now; durable (and answerable) once the log record is flushed.
  hop_trace::log_write_began() = hop_trace::now_ns();
  if (wal) wal->write_committed(flush, may_block);
}

void Txn::abort() {
  if (txn_ != nullptr) {
    mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  if (lock_.owns_lock()) lock_.unlock();
}

Cursor::Cursor(const Txn& txn, MDB_dbi dbi) {
  check(mdb_cursor_open(txn.raw(), dbi, &cursor_), "mdb_cursor_open");
}

Cursor::~Cursor() { mdb_cursor_close(cursor_); }

std::optional<Cursor::Entry> Cursor::op(MDB_cursor_op cop, MDB_val* key) {
  MDB_val k{};
  MDB_val v{};
  if (key != nullptr) k = *key;
  int rc = mdb_cursor_get(cursor_, &k, &v, cop);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc, "mdb_cursor_get");
  return Entry{as_view(k), as_view(v)};
}

std::optional<Cursor::Entry> Cursor::seek(std::string_view key) {
  MDB_val k = to_val(key);
  return op(MDB_SET_RANGE, &k);
}
std::optional<Cursor::Entry> Cursor::first() { return op(MDB_FIRST); }
std::optional<Cursor::Entry> Cursor::next() { return op(MDB_NEXT); }
std::optional<Cursor::Entry> Cursor::last() { return op(MDB_LAST); }
std::optional<Cursor::Entry> Cursor::prev() { return op(MDB_PREV); }

}  // namespace roost::durable
