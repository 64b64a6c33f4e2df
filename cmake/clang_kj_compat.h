// Included first by the clang thread-safety analysis (scripts/check-thread-safety.sh) only.
// Cap'n Proto 0.9's capnp/blob.h compares `const char*` with kj::StringPtr and relies, under C++20,
// on a rewritten operator== that clang 16 does not find (GCC does); kj/string.h leaves out the
// free operator== under C++20, so the analysis build supplies it.
#pragma once
#include <kj/string.h>

namespace kj {
inline bool operator==(const char* a, const StringPtr& b) { return b == StringPtr(a); }
}  // namespace kj
