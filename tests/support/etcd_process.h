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

}  // namespace roost::test
