// Polling for integration tests: waits for a condition the node reaches on its own time.
#pragma once

#include <chrono>
#include <thread>

namespace roost::test {

// Polls `pred` every 10 ms until it holds or `timeout` passes; returns pred().
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace roost::test
