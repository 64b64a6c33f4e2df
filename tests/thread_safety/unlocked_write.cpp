// Fixture for scripts/check-thread-safety.sh: the analysis must refuse this file (a guarded
// member written without its lock), or the check proves nothing.
#include <roost/core/thread_annotations.h>

class Counter {
 public:
  void add() { ++value_; }  // no MutexLock: must be an error
  int get() {
    roost::MutexLock lock(mu_);
    return value_;
  }

 private:
  roost::Mutex mu_;
  int value_ ROOST_GUARDED_BY(mu_) = 0;
};

int main() {
  Counter c;
  c.add();
  return c.get();
}
