#include "wal.h"

#include <roost/core/log.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace roost::durable {

namespace {

constexpr std::uint64_t kMagic = 0x4c415754534f4f52ull;  // "ROOSTWAL"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint64_t kHeaderBytes = 4096;            // records start here
constexpr std::size_t kMetaBytes = 256;                 // LMDB's page header + MDB_meta fit in 152
constexpr std::size_t kRecordHead = 4 + 4 + 8 + 8 + 4;  // len, crc, gen, seq, count
constexpr std::uint8_t kPut = 1;
constexpr std::uint8_t kDel = 2;

// CRC-32C (Castagnoli): with SSE 4.2's crc32 instruction where the CPU has it (8 bytes a step),
// else table driven. Both give the same value.
const std::array<std::uint32_t, 256>& crc_table() {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

std::uint32_t crc32c_table(std::uint32_t c, const char* data, std::size_t n) {
  const auto& t = crc_table();
  for (std::size_t i = 0; i < n; ++i) c = t[(c ^ static_cast<std::uint8_t>(data[i])) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t c, const char* data,
                                                             std::size_t n) {
  std::uint64_t c64 = c;
  for (; n >= 8; n -= 8, data += 8) {
    std::uint64_t v;
    std::memcpy(&v, data, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
  }
  c = static_cast<std::uint32_t>(c64);
  for (; n > 0; --n, ++data) c = __builtin_ia32_crc32qi(c, static_cast<unsigned char>(*data));
  return c;
}
#endif

}  // namespace

std::uint32_t crc32c(const char* data, std::size_t n) {
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  if (hw) return crc32c_sse42(0xffffffffu, data, n) ^ 0xffffffffu;
#endif
  return crc32c_table(0xffffffffu, data, n) ^ 0xffffffffu;
}

std::uint32_t crc32c_portable(const char* data, std::size_t n) {
  return crc32c_table(0xffffffffu, data, n) ^ 0xffffffffu;
}

namespace {

template <class T>
void put_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof v);  // the platforms Roost builds on are little-endian
  out.append(b, sizeof b);
}
template <class T>
void store_le(char* at, T v) {
  std::memcpy(at, &v, sizeof v);
}
template <class T>
T load_le(const char* at) {
  T v;
  std::memcpy(&v, at, sizeof v);
  return v;
}

[[noreturn]] void io_error(std::string_view what, int err) {
  throw MdbError(EIO, std::string(what) + ": " + std::strerror(err));
}

bool read_all(int fd, char* data, std::size_t n, std::uint64_t at) {
  while (n > 0) {
    ssize_t r = pread(fd, data, n, static_cast<off_t>(at));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    data += r;
    n -= static_cast<std::size_t>(r);
    at += static_cast<std::uint64_t>(r);
  }
  return true;
}

std::string segment_path(const std::filesystem::path& dir, int index) {
  return (dir / ("wal." + std::to_string(index))).string();
}

}  // namespace

// A segment's header: where the base of the chain this segment continues lies.
struct Wal::Header {
  std::uint64_t gen = 0;
  std::uint64_t base_seq = 0;
  std::uint64_t txnid = 0;
  std::uint32_t page_size = 0;
  std::string meta;

  std::string encode() const {
    std::string out;
    put_le(out, kMagic);
    put_le(out, kVersion);
    put_le(out, page_size);
    put_le(out, gen);
    put_le(out, base_seq);
    put_le(out, txnid);
    put_le(out, static_cast<std::uint32_t>(meta.size()));
    out += meta;
    put_le(out, crc32c(out.data(), out.size()));
    out.resize(kHeaderBytes, '\0');
    return out;
  }
  static std::optional<Header> decode(const char* p) {
    constexpr std::size_t fixed = 8 + 4 + 4 + 8 + 8 + 8 + 4;
    if (load_le<std::uint64_t>(p) != kMagic || load_le<std::uint32_t>(p + 8) != kVersion) return std::nullopt;
    std::uint32_t meta_len = load_le<std::uint32_t>(p + fixed - 4);
    if (meta_len != kMetaBytes) return std::nullopt;
    if (load_le<std::uint32_t>(p + fixed + meta_len) != crc32c(p, fixed + meta_len)) return std::nullopt;
    Header h;
    h.page_size = load_le<std::uint32_t>(p + 12);
    h.gen = load_le<std::uint64_t>(p + 16);
    h.base_seq = load_le<std::uint64_t>(p + 24);
    h.txnid = load_le<std::uint64_t>(p + 32);
    h.meta.assign(p + fixed, meta_len);
    return h;
  }
};

Wal::Wal(Options options) : options_(std::move(options)) {
  open_segments();
  std::optional<Header> headers[2];
  for (int i = 0; i < 2; ++i) {
    std::string buf(kHeaderBytes, '\0');
    if (read_all(fd_[i], buf.data(), buf.size(), 0)) headers[i] = Header::decode(buf.data());
    if (headers[i]) max_gen_ = std::max(max_gen_, headers[i]->gen);
  }
  for (int i = 0; i < 2; ++i) {
    if (headers[i] && headers[i]->gen == max_gen_) {
      have_base_ = true;
      base_segment_ = i;
      base_gen_ = headers[i]->gen;
      base_seq_ = headers[i]->base_seq;
      base_txnid_ = headers[i]->txnid;
      page_size_ = headers[i]->page_size;
      restore_meta(headers[i]->meta, headers[i]->txnid);
    }
  }
}

Wal::~Wal() {
  close();
  for (int fd : fd_)
    if (fd >= 0) ::close(fd);
  if (data_fd_ >= 0) ::close(data_fd_);
}

void Wal::open_segments() {
  for (int i = 0; i < 2; ++i) {
    std::string path = segment_path(options_.dir, i);
    fd_[i] = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_[i] < 0 && errno == ENOENT) {
      create_segment(i);
    } else if (fd_[i] < 0) {
      io_error("opening " + path, errno);
    }
  }
}

// A new segment is written with zeros to its full size and flushed, so that appending a record
// later rewrites allocated blocks: its fdatasync then flushes data only, no file system journal.
void Wal::create_segment(int index) {
  // No rename into place: a segment cut short by a crash here has no header, and a start finds
  // no base in it (the data file was flushed before any record could be written).
  std::string path = segment_path(options_.dir, index);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_error("creating " + path, errno);
  fd_[index] = fd;
  static const std::string zeros(1 << 20, '\0');
  for (std::uint64_t at = 0; at < options_.segment_bytes; at += zeros.size()) {
    std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), options_.segment_bytes - at));
    write_all(fd, zeros.data(), n, at);
  }
  if (fsync(fd) != 0) io_error("flushing " + path, errno);
  int dir = ::open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    ::close(dir);
  }
}

void Wal::write_all(int fd, const char* data, std::size_t n, std::uint64_t at) {
  while (n > 0) {
    ssize_t w = pwrite(fd, data, n, static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) io_error("writing the write-ahead log", w < 0 ? errno : EIO);
    data += w;
    n -= static_cast<std::size_t>(w);
    at += static_cast<std::uint64_t>(w);
  }
}

// Puts the base's meta page back into both meta slots of the data file (the one its txnid
// selects, and a copy in the other so that no later meta page that reached the disk wins).
void Wal::restore_meta(const std::string& meta, std::uint64_t txnid) {
  std::string path = (options_.dir / "data.mdb").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) io_error("the write-ahead log has a base but " + path + " cannot be opened", errno);
  for (std::uint64_t slot = 0; slot < 2; ++slot) {
    std::string page = meta;
    // A page header starts with its page number.
    std::uint64_t pgno = slot;
    std::memcpy(page.data(), &pgno, sizeof pgno);
    write_all(fd, page.data(), page.size(), slot * page_size_);
  }
  if (fdatasync(fd) != 0) {
    int err = errno;
    ::close(fd);
    io_error("flushing " + path, err);
  }
  ::close(fd);
  roost::module_logger("durable")->debug(
      "write-ahead log: data file's meta pages reset to the checkpoint (txn {})", txnid);
}

std::string Wal::read_meta_page(std::uint64_t txnid) const {
  std::string page(kMetaBytes, '\0');
  if (!read_all(data_fd_, page.data(), page.size(), (txnid & 1) * page_size_)) {
    io_error("reading the data file's meta page", errno != 0 ? errno : EIO);
  }
  return page;
}

void Wal::recover(MDB_env* env, const ApplyRecord& apply) {
  auto log = roost::module_logger("durable");
  env_ = env;
  MDB_stat st;
  mdb_env_stat(env_, &st);
  if (have_base_ && st.ms_psize != page_size_) {
    throw MdbError(MDB_INVALID, "write-ahead log: page size differs from the data file's");
  }
  page_size_ = st.ms_psize;
  std::string path = (options_.dir / "data.mdb").string();
  data_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (data_fd_ < 0) io_error("opening " + path, errno);

  MDB_txn* replay_pin = nullptr;
  std::uint64_t last_seq = 0;
  std::uint64_t replayed = 0;
  if (have_base_) {
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    if (info.me_last_txnid != base_txnid_) {
      throw MdbError(MDB_INVALID,
                     "write-ahead log: the data file did not open at the checkpoint's transaction (" +
                         std::to_string(info.me_last_txnid) + " instead of " + std::to_string(base_txnid_) +
                         ")");
    }
    // Keep the base's pages from being reused while records replay: a cut during recovery
    // recovers from the same base again.
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &replay_pin); rc != MDB_SUCCESS) {
      throw MdbError(rc, "write-ahead log: pinning the base");
    }
    last_seq = base_seq_;
    auto started = std::chrono::steady_clock::now();
    auto next_report = started + std::chrono::seconds(2);
    // The base segment's records, then the other segment's if they continue the chain.
    int segment = base_segment_;
    std::uint64_t gen = base_gen_;
    std::string head(kRecordHead, '\0');
    std::string body;
    for (int pass = 0; pass < 2; ++pass) {
      struct stat fst;
      if (fstat(fd_[segment], &fst) != 0) io_error("stat of the write-ahead log", errno);
      std::uint64_t size = static_cast<std::uint64_t>(fst.st_size);
      std::uint64_t at = kHeaderBytes;
      while (at + kRecordHead <= size && read_all(fd_[segment], head.data(), kRecordHead, at)) {
        auto len = load_le<std::uint32_t>(head.data());
        auto crc = load_le<std::uint32_t>(head.data() + 4);
        auto rgen = load_le<std::uint64_t>(head.data() + 8);
        auto seq = load_le<std::uint64_t>(head.data() + 16);
        if (len < kRecordHead || at + len > size || rgen != gen || seq != last_seq + 1) break;
        body.resize(len);
        if (!read_all(fd_[segment], body.data(), len, at)) break;
        if (crc32c(body.data() + 8, len - 8) != crc) break;
        apply(std::string_view(body).substr(kRecordHead));
        last_seq = seq;
        ++replayed;
        at += len;
        if (std::chrono::steady_clock::now() >= next_report) {
          log->info("write-ahead log: {} records replayed", replayed);
          next_report += std::chrono::seconds(2);
        }
      }
      if (pass == 1) break;
      segment = 1 - segment;
      gen = base_gen_ + 1;
    }
    log->info(
        "write-ahead log: {} records replayed onto the last checkpoint (txn {}) in {} ms", replayed,
        base_txnid_,
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
            .count());
  }
  if (int rc = mdb_env_sync(env_, 1); rc != MDB_SUCCESS)
    throw MdbError(rc, "write-ahead log: flushing the data file");

  // A new chain on the state now on disk.
  segment_ = have_base_ ? 1 - base_segment_ : 0;
  {
    MutexLock lock(flush_mu_);
    writing_segment_ = segment_;
    written_seq_ = flushed_seq_ = last_seq;
  }
  // Above every generation a record on disk may carry (the base's, and the next one's in the
  // segment whose header did not make it), so no stale record continues the new chain.
  gen_ = max_gen_ + 2;
  next_seq_ = last_seq + 1;
  Checkpoint cp;
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  cp.segment = segment_;
  cp.gen = gen_;
  cp.base_seq = last_seq;
  cp.txnid = info.me_last_txnid;
  cp.meta = read_meta_page(cp.txnid);
  if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &cp.pin); rc != MDB_SUCCESS) {
    if (replay_pin) mdb_txn_abort(replay_pin);
    throw MdbError(rc, "write-ahead log: pinning the checkpoint");
  }
  if (!write_header(segment_, cp)) {
    mdb_txn_abort(cp.pin);
    if (replay_pin) mdb_txn_abort(replay_pin);
    io_error("writing the write-ahead log's header", errno != 0 ? errno : EIO);
  }
  if (replay_pin) mdb_txn_abort(replay_pin);
  offset_ = kHeaderBytes;
  last_checkpoint_ = std::chrono::steady_clock::now();
  {
    MutexLock lock(mu_);
    base_pin_ = cp.pin;
    stats_.replayed = replayed;
  }
  thread_ = std::thread([this] { checkpoint_loop(); });
}

bool Wal::write_header(int segment, const Checkpoint& cp) {
  Header h;
  h.gen = cp.gen;
  h.base_seq = cp.base_seq;
  h.txnid = cp.txnid;
  h.page_size = page_size_;
  h.meta = cp.meta;
  std::string bytes = h.encode();
  try {
    write_all(fd_[segment], bytes.data(), bytes.size(), 0);
  } catch (const MdbError&) {
    return false;
  }
  return fdatasync(fd_[segment]) == 0;
}

void Wal::begin_record() {
  record_.assign(kRecordHead, '\0');
  reserved_.clear();
  count_ = 0;
}

namespace {
void put_table(std::string& out, std::uint8_t op, std::string_view table, unsigned flags,
               std::string_view key) {
  out.push_back(static_cast<char>(op));
  out.push_back(static_cast<char>(table.size()));
  out.append(table);
  put_le(out, static_cast<std::uint32_t>(flags));
  put_le(out, static_cast<std::uint32_t>(key.size()));
  out.append(key);
}
}  // namespace

void Wal::log_put(std::string_view table, unsigned table_flags, std::string_view key,
                  std::string_view value) {
  put_table(record_, kPut, table, table_flags, key);
  put_le(record_, static_cast<std::uint32_t>(value.size()));
  record_.append(value);
  ++count_;
}

void Wal::log_reserve(std::string_view table, unsigned table_flags, std::string_view key, const char* value,
                      std::size_t size) {
  put_table(record_, kPut, table, table_flags, key);
  put_le(record_, static_cast<std::uint32_t>(size));
  reserved_.push_back({record_.size(), value, size});
  record_.append(size, '\0');
  ++count_;
}

void Wal::log_del(std::string_view table, unsigned table_flags, std::string_view key) {
  put_table(record_, kDel, table, table_flags, key);
  ++count_;
}

void Wal::seal() {
  for (const auto& r : reserved_) std::memcpy(record_.data() + r.at, r.from, r.size);
  reserved_.clear();
}

void Wal::write_committed(bool flush, bool may_block) {
  if (failed_) throw MdbError(EIO, "the write-ahead log failed earlier");
  try {
    if (may_block && offset_ + record_.size() > options_.segment_bytes && offset_ > kHeaderBytes) {
      // The segment is full: the other one takes the records once its base is handed over.
      wait_checkpoint();
      start_checkpoint();
    }
    char* head = record_.data();
    store_le(head, static_cast<std::uint32_t>(record_.size()));
    store_le(head + 8, gen_);
    store_le(head + 16, next_seq_);
    store_le(head + 24, count_);
    store_le(head + 4, crc32c(record_.data() + 8, record_.size() - 8));
    write_all(fd_[segment_], record_.data(), record_.size(), offset_);
    {
      MutexLock lock(flush_mu_);
      written_seq_ = next_seq_;
    }
    if (flush) {
      if (fdatasync(fd_[segment_]) != 0) io_error("flushing the write-ahead log", errno);
      MutexLock lock(flush_mu_);
      flushed_seq_ = std::max(flushed_seq_, next_seq_);
    }
  } catch (const MdbError& e) {
    failed_ = true;
    roost::module_logger("durable")->critical(
        "write-ahead log failed ({}): this node takes no more writes until it restarts", e.what());
    throw;
  }
  offset_ += record_.size();
  since_checkpoint_ += record_.size();
  ++next_seq_;
  {
    MutexLock lock(mu_);
    ++stats_.records;
    stats_.bytes += record_.size();
  }
  if (may_block) checkpoint_if_due();
}

void Wal::checkpoint_if_due() {
  if (failed_ || since_checkpoint_ == 0) return;
  {
    MutexLock lock(mu_);
    if (job_) return;
  }
  if (offset_ > options_.segment_bytes || since_checkpoint_ >= options_.checkpoint_bytes ||
      std::chrono::steady_clock::now() - last_checkpoint_ >= options_.checkpoint_interval) {
    start_checkpoint();
  }
}

void Wal::flush() {
  std::uint64_t target = 0;
  int fd = -1;
  {
    MutexLock lock(flush_mu_);
    if (flushed_seq_ >= written_seq_ || failed_) return;
    target = written_seq_;
    fd = fd_[writing_segment_];  // earlier segments were flushed when the writer left them
  }
  if (fdatasync(fd) != 0) {
    failed_ = true;
    roost::module_logger("durable")->critical(
        "write-ahead log: flushing failed ({}): this node takes no more writes until it restarts",
        std::strerror(errno));
    throw MdbError(EIO, "flushing the write-ahead log");
  }
  MutexLock lock(flush_mu_);
  flushed_seq_ = std::max(flushed_seq_, target);
}

bool Wal::unflushed() const {
  MutexLock lock(flush_mu_);
  return flushed_seq_ < written_seq_;
}

void Wal::start_checkpoint() {
  // Records after the switch go to the other segment: the ones before must be on disk before a
  // flush of the other segment can acknowledge anything (recovery reads the chain in order).
  flush();
  Checkpoint cp;
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  cp.txnid = info.me_last_txnid;
  cp.meta = read_meta_page(cp.txnid);
  if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &cp.pin); rc != MDB_SUCCESS) {
    throw MdbError(rc, "write-ahead log: pinning a checkpoint");
  }
  if (mdb_txn_id(cp.pin) != cp.txnid) {
    mdb_txn_abort(cp.pin);
    throw MdbError(MDB_BAD_TXN, "write-ahead log: a commit ran during the checkpoint's capture");
  }
  segment_ = 1 - segment_;
  {
    MutexLock lock(flush_mu_);
    writing_segment_ = segment_;
  }
  ++gen_;
  offset_ = kHeaderBytes;
  since_checkpoint_ = 0;
  last_checkpoint_ = std::chrono::steady_clock::now();
  cp.segment = segment_;
  cp.gen = gen_;
  cp.base_seq = next_seq_ - 1;
  {
    MutexLock lock(mu_);
    pending_ = std::move(cp);
    job_ = true;
  }
  cv_.notify_all();
}

void Wal::wait_checkpoint() {
  MutexLock lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (job_) {
    if (cv_.wait_until(lock.native(), deadline) == std::cv_status::timeout && job_) {
      throw MdbError(EIO, "write-ahead log: a checkpoint did not finish in 30 s");
    }
  }
}

void Wal::checkpoint_loop() {
  auto log = roost::module_logger("durable");
  mdb_filehandle_t data_fd = -1;
  mdb_env_get_fd(env_, &data_fd);
  for (;;) {
    Checkpoint cp;
    {
      MutexLock lock(mu_);
      while (!job_ && !stop_) {
        if (cv_.wait_for(lock.native(), options_.writeback_interval) == std::cv_status::timeout && !job_ &&
            !stop_) {
          // Between checkpoints, the data file's dirty pages go to the disk as a trickle, not as
          // one burst at the checkpoint that the log's flushes would wait behind.
          lock.unlock();
          if (data_fd >= 0) sync_file_range(data_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
          lock.lock();
        }
      }
      if (!job_) return;
      cp = pending_;
    }
    // The data file first (everything up to the checkpoint's commit), then the header that makes
    // it the base. Retried until it works: until then the previous base stays pinned and valid.
    for (int attempt = 0;; ++attempt) {
      int rc = mdb_env_sync(env_, 1);
      if (rc == MDB_SUCCESS && write_header(cp.segment, cp)) break;
      if (attempt % 50 == 0) {
        log->error("write-ahead log: checkpoint failed ({}), retrying",
                   rc != MDB_SUCCESS ? mdb_strerror(rc) : "header write");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      MutexLock lock(mu_);
      if (stop_) break;
    }
    MDB_txn* old = nullptr;
    {
      MutexLock lock(mu_);
      old = base_pin_;
      base_pin_ = cp.pin;
      job_ = false;
      ++stats_.checkpoints;
    }
    if (old != nullptr) mdb_txn_abort(old);
    cv_.notify_all();
  }
}

void Wal::checkpoint_now() {
  wait_checkpoint();
  start_checkpoint();
  wait_checkpoint();
}

void Wal::close() {
  if (!thread_.joinable()) return;
  if (!failed_) {
    try {
      wait_checkpoint();
      if (since_checkpoint_ > 0) checkpoint_now();
    } catch (const MdbError& e) {
      roost::module_logger("durable")->error("write-ahead log: last checkpoint failed: {}", e.what());
    }
  }
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  MDB_txn* pin = nullptr;
  {
    MutexLock lock(mu_);
    pin = base_pin_;
    base_pin_ = nullptr;
    if (job_ && pending_.pin != nullptr) mdb_txn_abort(pending_.pin);
    job_ = false;
  }
  if (pin != nullptr) mdb_txn_abort(pin);
}

Wal::Stats Wal::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

}  // namespace roost::durable
