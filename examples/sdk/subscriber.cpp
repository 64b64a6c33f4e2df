// A subscriber: prints every message on channels matching a pattern, with a notice when it
// falls behind. Stops after --count messages (0 = run until killed).
//   subscriber [--url tcp://127.0.0.1:7400] [--pattern 'chat.>'] [--count 0]
// Publish with the CLI: roost pub chat.room1 '{"text":"hi"}' --url tcp://127.0.0.1:7400
#include <roost/client/client.h>

#include "example_flags.h"

#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>

int main(int argc, char** argv) {
  std::string url = "tcp://127.0.0.1:7400", pattern = "chat.>", count_flag = "0";
  example::read_flags(argc, argv, {{"--url", &url}, {"--pattern", &pattern}, {"--count", &count_flag}});
  const long count = std::atol(count_flag.c_str());
  auto client = example::connect_or_exit(url);
  std::mutex mu;
  std::condition_variable cv;
  long seen = 0;
  roost::SubscribeOptions options;
  options.on_lag = [](std::uint64_t lost) { std::cerr << "(lost " << lost << " messages)\n"; };
  roost::Subscriber subscriber(*client);
  auto sub = subscriber.subscribe(
      pattern,
      [&](const roost::ChannelMessage& m) {
        std::lock_guard lock(mu);
        std::cout << m.channel << " #" << m.offset << ": " << m.data << std::endl;
        ++seen;
        cv.notify_all();
      },
      options);
  if (!sub) {
    std::cerr << "cannot subscribe: " << sub.error().message << '\n';
    return 1;
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return count > 0 && seen >= count; });
  return 0;
}
