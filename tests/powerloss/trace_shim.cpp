// LD_PRELOAD shim for the power-loss simulation (tests/powerloss/powerloss.cpp): records every
// write, flush and truncate the process makes to files under $POWERLOSS_DIR, in order, into
// $POWERLOSS_TRACE — with the data written — so that the files a power cut would leave at any
// point can be rebuilt afterwards. A write through an fd opened O_DSYNC / O_SYNC is durable when
// the call returns (D), and flushes nothing else of the file. The process marks its own events
// (an acknowledged enqueue, an acknowledged ack) with powerloss_marker(), found by dlsym.
//
// Record: u8 type, u32 file, u64 offset, u64 length, then `length` bytes (O: the path, W and D:
// the data, M: the marker's text; Z: a write of zeros, no bytes). S = flush of `file`, T =
// truncate to `offset`.
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

std::mutex g_mu;
int g_trace = -2;  // -2: not opened yet; -1: off
std::string g_dir;
std::vector<int> g_file_of_fd;  // fd → file id + 1 (0 = not traced)
std::vector<bool> g_sync_fd;    // fd opened O_DSYNC / O_SYNC
std::vector<std::string> g_files;

template <class F>
F real(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

void raw_write_all(int fd, const void* p, std::size_t n) {
  static auto w = real<ssize_t (*)(int, const void*, size_t)>("write");
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t r = w(fd, c, n);
    if (r <= 0) std::abort();
    c += r;
    n -= static_cast<std::size_t>(r);
  }
}

bool ready() {
  if (g_trace == -2) {
    const char* dir = std::getenv("POWERLOSS_DIR");
    const char* path = std::getenv("POWERLOSS_TRACE");
    g_trace = -1;
    if (dir && path) {
      static auto o = real<int (*)(const char*, int, ...)>("open");
      g_dir = dir;
      g_trace = o(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
  }
  return g_trace >= 0;
}

void record(char type, std::uint32_t file, std::uint64_t offset, const void* data, std::uint64_t len) {
  char head[21];
  head[0] = type;
  std::memcpy(head + 1, &file, 4);
  std::memcpy(head + 5, &offset, 8);
  std::uint64_t stored = type == 'Z' || type == 'S' || type == 'T' ? 0 : len;
  std::uint64_t shown = type == 'Z' ? len : stored;
  std::memcpy(head + 13, &shown, 8);
  raw_write_all(g_trace, head, sizeof head);
  if (stored) raw_write_all(g_trace, data, stored);
}

void opened(int fd, const char* path, int flags) {
  if (fd < 0 || path == nullptr) return;
  std::lock_guard lock(g_mu);
  if (!ready()) return;
  std::string p = path;
  if (p.compare(0, g_dir.size(), g_dir) != 0) return;
  std::uint32_t id = 0;
  while (id < g_files.size() && g_files[id] != p) ++id;
  if (id == g_files.size()) {
    g_files.push_back(p);
    record('O', id, 0, p.data(), p.size());
  }
  if (static_cast<std::size_t>(fd) >= g_file_of_fd.size()) {
    g_file_of_fd.resize(fd + 64, 0);
    g_sync_fd.resize(fd + 64, false);
  }
  g_file_of_fd[fd] = static_cast<int>(id) + 1;
  g_sync_fd[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
}

int file_of(int fd) {  // REQUIRES: g_mu held
  if (fd < 0 || static_cast<std::size_t>(fd) >= g_file_of_fd.size()) return -1;
  return g_file_of_fd[fd] - 1;
}

bool traced(int fd) {
  std::lock_guard lock(g_mu);
  return file_of(fd) >= 0;
}

void wrote(int fd, std::uint64_t offset, const void* data, std::size_t n) {
  std::lock_guard lock(g_mu);
  int f = file_of(fd);
  if (f < 0 || n == 0) return;
  const char* c = static_cast<const char*>(data);
  bool zeros = true;
  for (std::size_t i = 0; i < n && zeros; ++i) zeros = c[i] == 0;
  // Through an O_DSYNC fd the write itself is durable on return (D) — it flushes nothing else.
  record(g_sync_fd[fd] ? 'D' : zeros ? 'Z' : 'W', static_cast<std::uint32_t>(f), offset, data, n);
}

}  // namespace

extern "C" {

void powerloss_marker(const char* text) {
  std::lock_guard lock(g_mu);
  if (!ready()) return;
  record('M', 0, 0, text, std::strlen(text));
}

int open(const char* path, int flags, ...) {
  static auto o = real<int (*)(const char*, int, ...)>("open");
  va_list ap;
  va_start(ap, flags);
  mode_t mode = (flags & O_CREAT) ? va_arg(ap, mode_t) : 0;
  va_end(ap);
  int fd = o(path, flags, mode);
  opened(fd, path, flags);
  return fd;
}

int open64(const char* path, int flags, ...) {
  static auto o = real<int (*)(const char*, int, ...)>("open64");
  va_list ap;
  va_start(ap, flags);
  mode_t mode = (flags & O_CREAT) ? va_arg(ap, mode_t) : 0;
  va_end(ap);
  int fd = o(path, flags, mode);
  opened(fd, path, flags);
  return fd;
}

int close(int fd) {
  static auto c = real<int (*)(int)>("close");
  {
    std::lock_guard lock(g_mu);
    if (file_of(fd) >= 0) g_file_of_fd[fd] = 0;
  }
  return c(fd);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  static auto p = real<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  ssize_t r = p(fd, buf, n, off);
  if (r > 0) wrote(fd, static_cast<std::uint64_t>(off), buf, static_cast<std::size_t>(r));
  return r;
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t write(int fd, const void* buf, size_t n) {
  static auto w = real<ssize_t (*)(int, const void*, size_t)>("write");
  static auto seek = real<off_t (*)(int, off_t, int)>("lseek");
  off_t at = traced(fd) ? seek(fd, 0, SEEK_CUR) : 0;
  ssize_t r = w(fd, buf, n);
  if (r > 0) wrote(fd, static_cast<std::uint64_t>(at), buf, static_cast<std::size_t>(r));
  return r;
}

ssize_t writev(int fd, const struct iovec* iov, int count) {
  static auto w = real<ssize_t (*)(int, const struct iovec*, int)>("writev");
  static auto seek = real<off_t (*)(int, off_t, int)>("lseek");
  bool mine = traced(fd);
  off_t at = mine ? seek(fd, 0, SEEK_CUR) : 0;
  ssize_t r = w(fd, iov, count);
  if (r > 0 && mine) {
    std::size_t left = static_cast<std::size_t>(r);
    for (int i = 0; i < count && left > 0; ++i) {
      std::size_t n = std::min(left, iov[i].iov_len);
      wrote(fd, static_cast<std::uint64_t>(at), iov[i].iov_base, n);
      at += static_cast<off_t>(n);
      left -= n;
    }
  }
  return r;
}

int fdatasync(int fd) {
  static auto s = real<int (*)(int)>("fdatasync");
  int r = s(fd);
  std::lock_guard lock(g_mu);
  if (r == 0 && file_of(fd) >= 0) record('S', static_cast<std::uint32_t>(file_of(fd)), 0, nullptr, 0);
  return r;
}

int fsync(int fd) {
  static auto s = real<int (*)(int)>("fsync");
  int r = s(fd);
  std::lock_guard lock(g_mu);
  if (r == 0 && file_of(fd) >= 0) record('S', static_cast<std::uint32_t>(file_of(fd)), 0, nullptr, 0);
  return r;
}

int ftruncate(int fd, off_t size) {
  static auto t = real<int (*)(int, off_t)>("ftruncate");
  int r = t(fd, size);
  std::lock_guard lock(g_mu);
  if (r == 0 && file_of(fd) >= 0)
    record('T', static_cast<std::uint32_t>(file_of(fd)), static_cast<std::uint64_t>(size), nullptr, 0);
  return r;
}

}  // extern "C"
