// What a durable commit pays the disk, without LMDB: page writes followed by fdatasync, with the
// pages scattered over a pre-zeroed file or adjacent; appending; a small O_DSYNC write (LMDB's
// meta page). Explains the commit costs in docs/storage.md on the machine at hand.
//   flush_bench [--dir DIR] [--rounds N]      (DIR: a folder on the disk to measure; default .)
// Prints `name value unit` lines (p50 of N rounds, µs).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kPage = 4096;
constexpr std::size_t kFilePages = 16384;  // 64 MiB

double since_us(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

void write_all(int fd, const char* p, std::size_t n, off_t at) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, at);
    if (w < 0) throw std::runtime_error(std::string("pwrite: ") + std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
    at += w;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = ".";
  int rounds = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--dir")
      dir = argv[i + 1];
    else if (k == "--rounds")
      rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  auto path = dir / "roost-flush-bench.tmp";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::perror("open");
    return 1;
  }
  std::vector<char> zeros(1 << 20, 0);
  for (std::size_t at = 0; at < kFilePages * kPage; at += zeros.size()) {
    write_all(fd, zeros.data(), zeros.size(), static_cast<off_t>(at));
  }
  ::fdatasync(fd);
  std::vector<char> page(kPage, 'x');
  std::mt19937 rng(7);
  auto random_page = [&] { return static_cast<off_t>(rng() % kFilePages) * static_cast<off_t>(kPage); };

  for (int pages : {1, 2, 6, 16}) {
    for (bool adjacent : {false, true}) {
      if (pages == 1 && adjacent) continue;
      std::vector<double> us;
      for (int r = 0; r < rounds; ++r) {
        auto t0 = Clock::now();
        off_t base = random_page() % static_cast<off_t>((kFilePages - 16) * kPage);
        for (int p = 0; p < pages; ++p) {
          off_t at = adjacent ? base + p * static_cast<off_t>(kPage) : random_page();
          write_all(fd, page.data(), kPage, at);
        }
        ::fdatasync(fd);
        us.push_back(since_us(t0));
      }
      std::string name = "flush_" + std::to_string(pages) +
                         (pages == 1 ? "_page"
                          : adjacent ? "_adjacent_pages"
                                     : "_scattered_pages");
      roost::bench::report(name + "_p50", roost::bench::percentile(us, 0.5), "us");
    }
  }
  {
    std::vector<double> us;
    off_t end = static_cast<off_t>(kFilePages * kPage);
    for (int r = 0; r < rounds; ++r) {
      auto t0 = Clock::now();
      write_all(fd, page.data(), kPage, end);
      end += static_cast<off_t>(kPage);
      ::fdatasync(fd);
      us.push_back(since_us(t0));
    }
    roost::bench::report("flush_append_page_p50", roost::bench::percentile(us, 0.5), "us");
  }
  {
    int dfd = ::open(path.c_str(), O_RDWR | O_DSYNC);
    std::vector<double> us;
    for (int r = 0; r < rounds; ++r) {
      auto t0 = Clock::now();
      write_all(dfd, page.data(), 120, static_cast<off_t>((r % 2) * kPage));
      us.push_back(since_us(t0));
    }
    ::close(dfd);
    roost::bench::report("flush_odsync_120_bytes_p50", roost::bench::percentile(us, 0.5), "us");
  }
  ::close(fd);
  std::filesystem::remove(path);
  return 0;
}
