// Names the calling thread (as `top -H`, `perf` and gdb show it). Linux keeps at most 15
// characters; longer names are cut.
#pragma once

#include <pthread.h>

#include <string>

namespace roost {

inline void name_this_thread(std::string name) {
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace roost
