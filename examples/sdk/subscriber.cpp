// A subscriber: prints every message on channels matching a pattern, with a notice when it
// falls behind. Stops after --count messages (0 = run until killed).
//   subscriber [--url tcp://127.0.0.1:7400] [--pattern 'chat.>'] [--count 0]
// Publish with the CLI: roost pub chat.room1 '{"text":"hi"}' --url tcp://127.0.0.1:7400
#include <roost/client/client.h>

#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>

int main(int argc, char** argv) {
  std::string url = "tcp://127.0.0.1:7400", pattern = "chat.>";
  long count = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--url")
      url = argv[i + 1];
    else if (k == "--pattern")
      pattern = argv[i + 1];
    else if (k == "--count")
      count = std::atol(argv[i + 1]);
  }
  auto client = roost::Client::connect({.url = url});
  if (!client) {
    std::cerr << "cannot connect: " << client.error().message << '\n';
    return 1;
  }
  std::mutex mu;
  std::condition_variable cv;
  long seen = 0;
  roost::SubscribeOptions options;
  options.on_lag = [](std::uint64_t lost) { std::cerr << "(lost " << lost << " messages)\n"; };
  roost::Subscriber subscriber(**client);
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
