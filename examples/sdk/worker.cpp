// A worker: the node pushes jobs (at most --window unsettled at a time); each is acked when done,
// or retried in a second if it fails. Stops after --count jobs (0 = run until killed).
//   worker [--url tcp://127.0.0.1:7400] [--queue jobs] [--window 32] [--count 0]
#include <roost/client/client.h>

#include "example_flags.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>

int main(int argc, char** argv) {
  std::string url = "tcp://127.0.0.1:7400", queue = "jobs", window_flag = "32", count_flag = "0";
  example::read_flags(
      argc, argv,
      {{"--url", &url}, {"--queue", &queue}, {"--window", &window_flag}, {"--count", &count_flag}});
  const auto window = static_cast<std::uint32_t>(std::atoi(window_flag.c_str()));
  const long count = std::atol(count_flag.c_str());
  auto client = example::connect_or_exit(url);
  std::mutex mu;
  std::condition_variable cv;
  long done = 0;
  roost::Consumer consumer(*client, queue);
  // Handlers run one at a time on the client's dispatch thread; they may block.
  auto stream = consumer.consume(
      [&](const roost::Delivery& d) {
        bool worked = !d.message.body.empty();  // your work here
        if (worked) {
          d.ack();
        } else {
          d.retry(std::chrono::seconds(1));
        }
        std::lock_guard lock(mu);
        ++done;
        cv.notify_all();
      },
      window);
  if (!stream) {
    std::cerr << "cannot consume: " << stream.error().message << '\n';
    return 1;
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return count > 0 && done >= count; });
  std::cout << done << " jobs processed from " << queue << '\n';
  return 0;
}
