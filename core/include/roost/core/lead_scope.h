// Leader/follower hand-off, for threads that take requests in rounds (the native endpoint, an
// HTTP session's handler). While a LeadScope is open on a thread, a worker that would wake its
// own thread for what this thread submitted (the durable Committer) registers itself instead;
// when the outermost scope closes, each registered worker runs on this thread — it commits the
// round's writes here when it is idle, and otherwise hands them to its own thread. A small
// request then costs no hand-off there and back.
#pragma once

#include <algorithm>
#include <vector>

namespace roost {

class Leader {
 public:
  virtual ~Leader() = default;
  // Runs, on the scope's thread, what was deferred to it; must not block on the scope's thread.
  virtual void lead() = 0;
};

class LeadScope {
 public:
  LeadScope() { ++state().depth; }
  ~LeadScope() {
    auto& s = state();
    if (--s.depth > 0) return;
    // lead() may complete work whose callbacks submit more: that goes to the workers' threads.
    auto leaders = std::move(s.leaders);
    s.leaders.clear();
    for (Leader* l : leaders) l->lead();
  }
  LeadScope(const LeadScope&) = delete;
  LeadScope& operator=(const LeadScope&) = delete;

  // True (and `l` registered to lead at the scope's end) when a scope is open on this thread.
  static bool defer_to(Leader* l) {
    auto& s = state();
    if (s.depth == 0) return false;
    if (std::find(s.leaders.begin(), s.leaders.end(), l) == s.leaders.end()) s.leaders.push_back(l);
    return true;
  }

 private:
  struct State {
    int depth = 0;
    std::vector<Leader*> leaders;
  };
  static State& state() {
    thread_local State s;
    return s;
  }
};

}  // namespace roost
