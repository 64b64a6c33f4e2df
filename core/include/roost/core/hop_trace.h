// (diagnostics) The hop breakdown of one request (issue 27; `native_bench --hops`): where a traced
// enqueue spends its time between the client's call and its answer. Instants are CLOCK_MONOTONIC
// nanoseconds (std::chrono::steady_clock), comparable between the processes of one machine.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace roost::hop_trace {

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The write group whose completions run on this thread now: when it began, when its commit began
// (LMDB's, into the page cache), when its log record's write (and flush) began, and when that
// ended. The committer sets it around its completions; zero elsewhere.
struct GroupTimes {
  std::int64_t began = 0, committing = 0, logging = 0, committed = 0;
};
inline GroupTimes& completing_group() {
  thread_local GroupTimes times;
  return times;
}
// When the last write transaction committed on this thread began writing its log record (the
// durable layer sets it; the committer reads it into GroupTimes).
inline std::int64_t& log_write_began() {
  thread_local std::int64_t at = 0;
  return at;
}

// What a node stamps on a traced request, in the order the answer carries them.
struct NodeStamps {
  std::int64_t read = 0;        // the endpoint thread read it
  std::int64_t admitted = 0;    // handed to the router (and the committer)
  std::int64_t began = 0;       // its write group began
  std::int64_t committing = 0;  // the group's commit began (LMDB's, into the page cache)
  std::int64_t logging = 0;     // its log record's write and flush began
  std::int64_t committed = 0;   // … and ended
  std::int64_t completed = 0;   // its completion ran
  std::int64_t answered = 0;    // the endpoint thread sent the answer
};
inline constexpr unsigned kNodeStamps = 8;

// A traced request this node forwards to its shard's owner (the mesh): when the link took it, the
// owner's NodeStamps, when the link had the answer. Written by the link's thread before the
// request's callback runs.
struct Forward {
  std::int64_t sent = 0;
  std::vector<std::int64_t> owner;
  std::int64_t received = 0;
};
inline constexpr unsigned kForwardStamps = 2 + kNodeStamps;
// The Forward a traced request being handled on this thread fills if it is forwarded: the endpoint
// sets it around its router call, a link that sends a request from this thread takes it.
inline std::shared_ptr<Forward>& forwarding() {
  thread_local std::shared_ptr<Forward> forward;
  return forward;
}
// Sets forwarding() for the scope's life: even a call that throws leaves no trace behind for the
// next request this thread forwards.
class ForwardingScope {
 public:
  explicit ForwardingScope(std::shared_ptr<Forward> forward) { forwarding() = std::move(forward); }
  ~ForwardingScope() { forwarding() = nullptr; }
  ForwardingScope(const ForwardingScope&) = delete;
  ForwardingScope& operator=(const ForwardingScope&) = delete;
};
inline constexpr unsigned kMaxClientStamps = 8;

}  // namespace roost::hop_trace
