// Leader/follower hand-off, for threads that take requests in rounds (the native endpoint, an
// HTTP session's handler). While a LeadScope is open on a thread, a worker that would wake its
// own thread for what this thread submitted (the durable Committer) registers itself instead;
// when the outermost scope closes, each registered worker runs on this thread — it commits the
// round's writes here when it is idle, and otherwise hands them to its own thread. A small
// request then costs no hand-off there and back. A scope says whether its thread may block on the
// disk while it leads (the native endpoint's thread may; an I/O thread serving many sessions may
// not): the worker decides what it runs there by that.
#pragma once

#include <algorithm>
#include <vector>

namespace roost {

class Leader {
 public:
  virtual ~Leader() = default;
  // Runs, on the scope's thread, what was deferred to it; blocks on the disk only if `may_block`.
  virtual void lead(bool may_block) = 0;
};

class LeadScope {
 public:
  enum Blocking { kMayNotBlock, kMayBlock };
  explicit LeadScope(Blocking blocking = kMayNotBlock) {
    auto& s = state();
    if (s.depth++ == 0) s.may_block = blocking == kMayBlock;  // the outermost scope's say
  }
  ~LeadScope() {
    auto& s = state();
    if (--s.depth > 0) return;
    // lead() may complete work whose callbacks submit more: that goes to the workers' threads.
    auto leaders = std::move(s.leaders);
    s.leaders.clear();
    for (Leader* l : leaders) l->lead(s.may_block);
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
    bool may_block = false;
    std::vector<Leader*> leaders;
  };
  static State& state() {
    thread_local State s;
    return s;
  }
};

}  // namespace roost
