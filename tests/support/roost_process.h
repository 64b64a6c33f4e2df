// Starts the real `roost` binary as a child process on 127.0.0.1 with a free port, and stops it
// (SIGTERM, or SIGKILL for crash tests). The data directory outlives restarts.
#pragma once

#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace roost::test {

class RoostProcess {
 public:
  // `binary` runs with the same arguments as `roost serve` (an embedding binary takes them too).
  RoostProcess(std::filesystem::path data_dir, std::vector<std::string> extra_args = {},
               std::string binary = ROOST_BINARY)
      : data_dir_(std::move(data_dir)), extra_(std::move(extra_args)), binary_(std::move(binary)) {
    start();
  }
  ~RoostProcess() {
    // A node that died on its own (a crash, a sanitizer report) leaves its log on stderr, where
    // ctest --output-on-failure shows it.
    if (pid_ > 0) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        std::fprintf(stderr, "roost exited unexpectedly (status %d); its log:\n%s\n", status, log().c_str());
      }
    }
    stop(SIGKILL);
    // ROOST_KEEP_LOGS=1 keeps the node's logs (their paths are printed) for a failure to be read.
    for (const auto& l : logs_) {
      if (std::getenv("ROOST_KEEP_LOGS") != nullptr) {
        std::fprintf(stderr, "roost log kept: %s\n", l.c_str());
      } else {
        std::filesystem::remove(l);
      }
    }
  }
  RoostProcess(const RoostProcess&) = delete;
  RoostProcess& operator=(const RoostProcess&) = delete;

  void start() {
    // Logs live outside the data directory, which a test may fill up.
    static std::atomic<int> counter{0};
    log_path_ = (std::filesystem::temp_directory_path() /
                 ("roost-test-" + std::to_string(getpid()) + "-" + std::to_string(++counter) + ".log"))
                    .string();
    logs_.push_back(log_path_);
    std::vector<std::string> args = {binary_,         "serve",
                                     "--data-dir",    data_dir_.string(),
                                     "--http-listen", "127.0.0.1:" + std::to_string(port_),
                                     "--io-threads",  "2"};
    bool own_endpoint = false;
    for (const auto& a : extra_) own_endpoint |= a.starts_with("--endpoint");
    if (!own_endpoint) {
      // A free port on first start; restarts keep the endpoint so clients can reconnect.
      args.push_back("--endpoint");
      args.push_back(endpoint_.empty() ? "tcp://127.0.0.1:*" : endpoint_);
    }
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = spawn_logged(std::move(args), log_path_);
    // Wait for the "gateway listening on http://127.0.0.1:PORT" line.
    static const std::regex kListening(R"(gateway listening on http://127\.0\.0\.1:(\d+))");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      std::string text = log();
      if (std::regex_search(text, m, kListening)) {
        port_ = std::stoi(m[1]);  // restarts keep the same port
        static const std::regex kEndpoint(R"(endpoint listening on ((tcp|ipc)://[^ \n]+))");
        std::smatch e;
        if (std::regex_search(text, e, kEndpoint)) {
          endpoint_ = e[1];
          return;
        }
        if (text.find("endpoint listening") == std::string::npos && !expects_endpoint()) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        // Read the log again: what it wrote between the read above and its exit (the reason it
        // stopped, typically) is there now. (A CI run caught the race: the reason was missing.)
        throw std::runtime_error("roost exited at start-up:\n" + log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("roost did not start listening:\n" + log());
  }

  // Sends `sig` and waits for the process; returns its exit status (or the signal as 128+n).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

  // Sends `sig` and waits at most `limit` for the process to exit: its exit status, or nullopt
  // when it did not (it is then killed with SIGKILL and reaped, so nothing is left running).
  std::optional<int> stop_within(std::chrono::milliseconds limit, int sig = SIGTERM) {
    if (pid_ <= 0) return std::nullopt;
    kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return std::nullopt;
  }

  void restart(int sig = SIGTERM) {
    stop(sig);
    start();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // The native protocol endpoint, e.g. "tcp://127.0.0.1:41234".
  std::string endpoint() const { return endpoint_; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::filesystem::path data_dir_;
  std::vector<std::string> extra_;
  std::string binary_;
  std::string log_path_;
  std::vector<std::string> logs_;
  bool expects_endpoint() const {
    for (std::size_t i = 0; i + 1 < extra_.size(); ++i) {
      if (extra_[i] == "--endpoint" && extra_[i + 1] == "off") return false;
    }
    return true;
  }
  std::string endpoint_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace roost::test
