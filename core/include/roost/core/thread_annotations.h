// Lock rules the compiler checks. Under clang (-Wthread-safety, the `scripts/test.sh` analysis
// build) these expand to its thread-safety attributes; under other compilers to nothing.
//
//   class Queue {
//     roost::Mutex mu_;
//     std::deque<Item> items_ ROOST_GUARDED_BY(mu_);
//     void push_locked(Item item) ROOST_REQUIRES(mu_);
//   };
//   void Queue::push(Item item) { roost::MutexLock lock(mu_); push_locked(std::move(item)); }
//
// std::mutex carries no annotation in libstdc++, so guarded data is guarded by roost::Mutex or
// roost::SharedMutex and locked through MutexLock / ReaderLock / WriterLock. A condition
// variable waits on MutexLock::native(), in a loop that tests the condition in the locked scope
// (a predicate lambda is a function of its own to the analysis).
#pragma once

#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define ROOST_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define ROOST_THREAD_ANNOTATION(x)
#endif

#define ROOST_CAPABILITY(x) ROOST_THREAD_ANNOTATION(capability(x))
#define ROOST_SCOPED_CAPABILITY ROOST_THREAD_ANNOTATION(scoped_lockable)
#define ROOST_GUARDED_BY(x) ROOST_THREAD_ANNOTATION(guarded_by(x))
#define ROOST_PT_GUARDED_BY(x) ROOST_THREAD_ANNOTATION(pt_guarded_by(x))
#define ROOST_REQUIRES(...) ROOST_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ROOST_REQUIRES_SHARED(...) ROOST_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ROOST_EXCLUDES(...) ROOST_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ROOST_ACQUIRE(...) ROOST_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ROOST_ACQUIRE_SHARED(...) ROOST_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define ROOST_RELEASE(...) ROOST_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define ROOST_RELEASE_SHARED(...) ROOST_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define ROOST_RELEASE_GENERIC(...) ROOST_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define ROOST_TRY_ACQUIRE(...) ROOST_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define ROOST_ASSERT_CAPABILITY(x) ROOST_THREAD_ANNOTATION(assert_capability(x))
#define ROOST_RETURN_CAPABILITY(x) ROOST_THREAD_ANNOTATION(lock_returned(x))
// For the few functions whose locking the analysis cannot follow; say why next to it.
#define ROOST_NO_THREAD_SAFETY_ANALYSIS ROOST_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace roost {

// std::mutex, as a capability the analysis knows.
class ROOST_CAPABILITY("mutex") Mutex {
 public:
  void lock() ROOST_ACQUIRE() { mu_.lock(); }
  void unlock() ROOST_RELEASE() { mu_.unlock(); }
  bool try_lock() ROOST_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  std::mutex& native() ROOST_RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

// std::shared_mutex, as a capability the analysis knows.
class ROOST_CAPABILITY("shared mutex") SharedMutex {
 public:
  void lock() ROOST_ACQUIRE() { mu_.lock(); }
  void unlock() ROOST_RELEASE() { mu_.unlock(); }
  void lock_shared() ROOST_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() ROOST_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a Mutex for its scope (like std::unique_lock: it may be unlocked and locked again).
class ROOST_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ROOST_ACQUIRE(mu) : lock_(mu.native()) {}
  // Takes over a Mutex that a function returned locked: to the analysis, which does not follow a
  // lock across a return, this is where it is acquired.
  MutexLock(Mutex& mu, std::adopt_lock_t) ROOST_ACQUIRE(mu) : lock_(mu.native(), std::adopt_lock) {}
  ~MutexLock() ROOST_RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void lock() ROOST_ACQUIRE() { lock_.lock(); }
  void unlock() ROOST_RELEASE() { lock_.unlock(); }
  // For std::condition_variable::wait / wait_until.
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

// Holds a SharedMutex shared for its scope.
class ROOST_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ROOST_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() ROOST_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

// Holds a SharedMutex exclusively for its scope.
class ROOST_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) ROOST_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() ROOST_RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace roost
