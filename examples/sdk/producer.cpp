// A producer: sends N jobs to a queue, pipelined, and waits until every one is durable.
//   producer [--url tcp://127.0.0.1:7400] [--queue jobs] [--count 1000]
#include <roost/client/client.h>

#include "example_flags.h"

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  std::string url = "tcp://127.0.0.1:7400", queue = "jobs", count_flag = "1000";
  example::read_flags(argc, argv, {{"--url", &url}, {"--queue", &queue}, {"--count", &count_flag}});
  const int count = std::atoi(count_flag.c_str());
  auto client = example::connect_or_exit(url);
  // At most 256 sends in flight; each callback runs when the message is committed to disk.
  roost::Producer producer(*client, queue, 256);
  std::atomic<int> ok{0}, failed{0};
  for (int i = 0; i < count; ++i) {
    roost::NewMessage m;
    m.body = R"({"job":)" + std::to_string(i) + "}";
    producer.send_async(std::move(m), [&](roost::Result<std::string> id) {
      if (id)
        ok++;
      else
        failed++;
    });
  }
  producer.flush();
  std::cout << ok << " jobs enqueued to " << queue << ", " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}
