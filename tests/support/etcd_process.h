// Starts a single-member etcd (Debian's etcd-server, installed by scripts/install-deps.sh --test)
// on loopback ports picked free, with its data in a temporary directory, for the mesh tests; and
// stops it (SIGKILL by default: a crash is what the tests want to survive).
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <roost/broker/etcd_client.h>

#include "spawn.h"
#include "temp_dir.h"

namespace roost::test {

// A TCP port free on 127.0.0.1 now (bound, read back, closed).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool etcd_installed() { return std::filesystem::exists("/usr/bin/etcd"); }

class EtcdProcess {
 public:
  EtcdProcess() : client_port_(free_port()), peer_port_(free_port()) { start(); }
  ~EtcdProcess() { stop(); }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  void start() {
    auto client = "http://127.0.0.1:" + std::to_string(client_port_);
    auto peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--name",
                                     "test",
                                     "--data-dir",
                                     (dir_.path() / "etcd").string(),
                                     "--listen-client-urls",
                                     client,
                                     "--advertise-client-urls",
                                     client,
                                     "--listen-peer-urls",
                                     peer,
                                     "--initial-advertise-peer-urls",
                                     peer,
                                     "--initial-cluster",
                                     "test=" + peer,
                                     "--log-level",
                                     "warn"};
    auto log = (dir_.path() / "etcd.log").string();
    pid_ = spawn_logged(std::move(args), log, /*append=*/true);
    broker::EtcdClient probe(url(), std::chrono::milliseconds(500));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (probe.get("/probe")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("etcd did not start (log in " + log + ")");
  }
  void stop(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }

 private:
  TempDir dir_;
  int client_port_, peer_port_;
  pid_t pid_ = -1;
};

// A three-member etcd cluster on loopback (members m0..m2): the mesh must ride out the loss of one
// member and say so when quorum is gone.
class EtcdCluster {
 public:
  static constexpr int kMembers = 3;
  EtcdCluster() {
    for (int i = 0; i < kMembers; ++i) {
      client_[i] = free_port();
      peer_[i] = free_port();
    }
    for (int i = 0; i < kMembers; ++i) spawn(i);
    wait_ready(url());
  }
  ~EtcdCluster() {
    for (int i = 0; i < kMembers; ++i) stop(i);
  }
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  void stop(int i) {
    if (pid_[i] <= 0) return;
    kill(pid_[i], SIGKILL);
    int status = 0;
    waitpid(pid_[i], &status, 0);
    pid_[i] = -1;
  }
  void start(int i) { spawn(i); }
  std::string member_url(int i) const { return "http://127.0.0.1:" + std::to_string(client_[i]); }
  std::string url() const {  // every member, comma-separated (what mesh_etcd takes)
    std::string out;
    for (int i = 0; i < kMembers; ++i) out += (i ? "," : "") + member_url(i);
    return out;
  }

 private:
  void spawn(int i) {
    std::string cluster;
    for (int k = 0; k < kMembers; ++k) {
      cluster += (k ? "," : "") + std::string("m") + std::to_string(k) +
                 "=http://127.0.0.1:" + std::to_string(peer_[k]);
    }
    auto peer = "http://127.0.0.1:" + std::to_string(peer_[i]);
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--name",
                                     "m" + std::to_string(i),
                                     "--data-dir",
                                     (dir_.path() / ("m" + std::to_string(i))).string(),
                                     "--listen-client-urls",
                                     member_url(i),
                                     "--advertise-client-urls",
                                     member_url(i),
                                     "--listen-peer-urls",
                                     peer,
                                     "--initial-advertise-peer-urls",
                                     peer,
                                     "--initial-cluster",
                                     cluster,
                                     "--initial-cluster-state",
                                     "new",
                                     "--log-level",
                                     "warn"};
    pid_[i] = spawn_logged(std::move(args), (dir_.path() / ("m" + std::to_string(i) + ".log")).string(),
                           /*append=*/true);
  }
  void wait_ready(const std::string& urls) {
    broker::EtcdClient probe(urls, std::chrono::milliseconds(500));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (probe.put("/probe", "1")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("the etcd cluster did not form (logs in " + dir_.path().string() + ")");
  }

  TempDir dir_;
  int client_[kMembers] = {}, peer_[kMembers] = {};
  pid_t pid_[kMembers] = {-1, -1, -1};
};

}  // namespace roost::test
