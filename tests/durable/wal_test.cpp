// The write-ahead log under the Env (durable/src/wal.h): what a crash leaves is recovered from the
// last checkpoint plus the log. A forked child writes and dies without closing (kill -9: the page
// cache survives, no last checkpoint); the parent reopens the directory. Power cuts (unflushed
// writes lost, torn sectors) are tests/powerloss.
#include <roost/durable/env.h>

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "../../durable/src/wal.h"
#include "../support/temp_dir.h"

using namespace roost;

namespace {

durable::EnvOptions wal_options(const std::filesystem::path& dir) {
  durable::EnvOptions o;
  o.dir = dir;
  o.wal_segment_bytes = 256 << 10;  // small: the run crosses many segment switches and checkpoints
  return o;
}

std::string value_of(int i) {
  return std::string(static_cast<std::size_t>(20 + (i * 37) % 3000), static_cast<char>('a' + i % 26));
}

// The state the child's writes leave: key i holds value_of(i), except every third, deleted later.
std::map<std::string, std::string> expected_state(int n) {
  std::map<std::string, std::string> m;
  for (int i = 0; i < n; ++i) m["k" + std::to_string(i)] = value_of(i);
  for (int i = 0; i + 5 < n; i += 3) m.erase("k" + std::to_string(i));
  return m;
}

// In a child: n commits (puts, reserves, deletes), then death without any cleanup.
void write_and_die(const std::filesystem::path& dir, int n) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 0;
    try {
      auto* env = new durable::Env(wal_options(dir));  // never destroyed: no last checkpoint
      MDB_dbi t = env->open_db("t");
      for (int i = 0; i < n; ++i) {
        durable::Txn txn = env->begin_write();
        std::string key = "k" + std::to_string(i);
        if (i % 2 == 0) {
          txn.put(t, key, value_of(i));
        } else {
          std::string v = value_of(i);
          std::memcpy(txn.reserve(t, key, v.size()), v.data(), v.size());
        }
        if (i >= 5 && (i - 5) % 3 == 0) txn.del(t, "k" + std::to_string(i - 5));
        txn.commit();
      }
    } catch (...) {
      rc = 1;
    }
    _exit(rc);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

// Compares the state with what the child wrote, naming the first difference.
std::string diff(const std::map<std::string, std::string>& got,
                 const std::map<std::string, std::string>& want) {
  for (const auto& [k, v] : want) {
    auto it = got.find(k);
    if (it == got.end()) return "missing " + k + " (" + std::to_string(got.size()) + " keys)";
    if (it->second != v) return "wrong value of " + k;
  }
  for (const auto& [k, v] : got)
    if (!want.contains(k)) return "unexpected " + k;
  return "";
}

std::map<std::string, std::string> read_all(durable::Env& env, MDB_dbi t) {
  std::map<std::string, std::string> out;
  durable::Txn txn = env.begin_read();
  durable::Cursor c(txn, t);
  for (auto e = c.first(); e; e = c.next()) out.emplace(std::string(e->key), std::string(e->value));
  return out;
}

}  // namespace

TEST_CASE("wal: a crash without a last checkpoint loses no commit", "[durable][wal]") {
  test::TempDir dir;
  auto data = dir.path() / "data";
  write_and_die(data, 3000);
  durable::Env env(wal_options(data));
  REQUIRE(env.uses_wal());
  CHECK(env.wal_stats().replayed > 0);
  MDB_dbi t = env.open_db("t");
  CHECK(diff(read_all(env, t), expected_state(3000)) == "");
}

TEST_CASE("wal: meta pages that reached the disk after the checkpoint are not trusted", "[durable][wal]") {
  // A power cut may leave a meta page on disk whose data pages never got there; recovery puts the
  // checkpoint's meta page back. Destroying both meta slots shows the data file's own are unused.
  test::TempDir dir;
  auto data = dir.path() / "data";
  write_and_die(data, 1500);
  {
    std::fstream f(data / "data.mdb", std::ios::in | std::ios::out | std::ios::binary);
    std::string junk(2 * 4096, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  durable::Env env(wal_options(data));
  MDB_dbi t = env.open_db("t");
  CHECK(diff(read_all(env, t), expected_state(1500)) == "");
}

TEST_CASE("wal: recovery can itself be cut and run again", "[durable][wal]") {
  test::TempDir dir;
  auto data = dir.path() / "data";
  write_and_die(data, 2000);
  // A child recovers and dies at once: the new chain it started must lead to the same state.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    new durable::Env(wal_options(data));
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  durable::Env env(wal_options(data));
  MDB_dbi t = env.open_db("t");
  CHECK(diff(read_all(env, t), expected_state(2000)) == "");
  // And it goes on taking writes that survive the next crash.
  {
    durable::Txn txn = env.begin_write();
    txn.put(t, "after", "recovery");
    txn.commit();
  }
  CHECK(read_all(env, t).at("after") == "recovery");
}

TEST_CASE("wal: a clean close checkpoints, the next start replays nothing", "[durable][wal]") {
  test::TempDir dir;
  auto data = dir.path() / "data";
  {
    durable::Env env(wal_options(data));
    MDB_dbi t = env.open_db("t");
    for (int i = 0; i < 100; ++i) {
      durable::Txn txn = env.begin_write();
      txn.put(t, "k" + std::to_string(i), value_of(i));
      txn.commit();
    }
    CHECK(env.wal_stats().records >= 100);
  }
  durable::Env env(wal_options(data));
  CHECK(env.wal_stats().replayed == 0);
  MDB_dbi t = env.open_db("t");
  CHECK(read_all(env, t).size() == 100);
}

TEST_CASE("wal: an Env without the log (wal = false) is LMDB's own sync commit", "[durable][wal]") {
  test::TempDir dir;
  auto o = wal_options(dir.path() / "data");
  o.wal = false;
  durable::Env env(o);
  CHECK_FALSE(env.uses_wal());
  CHECK_FALSE(std::filesystem::exists(dir.path() / "data" / "wal.0"));
}

TEST_CASE("wal: CRC-32C of records, by the CPU's instruction and by the table", "[durable][wal]") {
  const std::string check = "123456789";  // the standard check value of CRC-32C
  CHECK(durable::crc32c(check.data(), check.size()) == 0xe3069283u);
  CHECK(durable::crc32c_portable(check.data(), check.size()) == 0xe3069283u);
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>(i * 131 + 7));
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 1000u}) {
    CHECK(durable::crc32c(bytes.data(), n) == durable::crc32c_portable(bytes.data(), n));
  }
}
