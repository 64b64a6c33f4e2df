#!/usr/bin/env bash
# The lock rules, checked by the compiler: every source file of the modules, compiled by clang
# with -Wthread-safety -Werror (syntax only: nothing is built), with the flags CMake used for
# them in BUILD_DIR (configured and built once: the schema's header is generated there).
#   scripts/check-thread-safety.sh BUILD_DIR       (ROOST_TSA_ONLY=REGEX: only the files matching it)
# The annotations are core/include/roost/core/thread_annotations.h's ROOST_GUARDED_BY & co.
set -euo pipefail
build=${1:?usage: check-thread-safety.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
export ROOST_CLANGXX=${CLANGXX:-$(command -v clang++-16 || true)}
[ -n "$ROOST_CLANGXX" ] || {
  echo "check-thread-safety: clang++-16 not found (scripts/install-deps.sh --test installs it)"
  exit 1
}
db="$build/compile_commands.json"
[ -f "$db" ] || { echo "check-thread-safety: $db not found"; exit 1; }
export ROOST_COMPAT="$root/cmake/clang_kj_compat.h"

# First, that the analysis is on: a fixture with an unlocked write must be refused.
if "$ROOST_CLANGXX" -std=c++2b -fsyntax-only -Wthread-safety -Werror=thread-safety -I"$root/core/include" \
  "$root/tests/thread_safety/unlocked_write.cpp" 2>/dev/null; then
  echo "check-thread-safety: the fixture tests/thread_safety/unlocked_write.cpp passed: the analysis is off"
  exit 1
fi

jobs=$(mktemp -d)
trap 'rm -rf "$jobs"' EXIT
# compile_commands.json as CMake writes it: "command" then "file", each on a line of its own.
# One job file per module source, holding its (shell-quoted) command line.
awk -v root="$root" -v dir="$jobs" -v only="${ROOST_TSA_ONLY:-.}" '
  /"command":/ { sub(/^[^"]*"command": "/, ""); sub(/",?$/, ""); gsub(/\\"/, "\""); gsub(/\\\\/, "\\"); cmd = $0 }
  /"file":/ { sub(/^[^"]*"file": "/, ""); sub(/",?$/, ""); f = $0
    if (f ~ ("^" root "/(core|durable|channels|sdk|gateway|broker)/") && f ~ /\.cpp$/ && f ~ only) { n++; print cmd > (dir "/" n) } }
' "$db"
n=$(find "$jobs" -type f | wc -l)
[ "$n" -gt 0 ] || { echo "check-thread-safety: no module sources in $db"; exit 1; }

check_one() {
  local cmd
  cmd=$(cat "$1")
  eval "set -- $cmd"
  shift  # the compiler
  local args=() skip=0 a
  for a in "$@"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case "$a" in
      -o) skip=1 ;;
      -c | -Werror | -Wshadow=local | -Wno-restrict | -Wno-maybe-uninitialized) ;;
      -std=c++23) args+=(-std=c++2b) ;;
      *) args+=("$a") ;;
    esac
  done
  # libstdc++ 12 offers std::expected only when __cpp_concepts announces C++20 concepts, which
  # clang 16 implements without announcing them yet.
  "$ROOST_CLANGXX" "${args[@]}" -fsyntax-only -Wthread-safety -Wthread-safety-beta -Werror=thread-safety \
    -Werror=thread-safety-beta -Wno-unknown-warning-option -Wno-builtin-macro-redefined -Wno-macro-redefined \
    -D__cpp_concepts=202002L -include "$ROOST_COMPAT"
}
export -f check_one
if find "$jobs" -type f -print0 | xargs -0 -P "$(nproc)" -n 1 bash -c 'check_one "$0"'; then
  echo "check-thread-safety: $n files keep their lock rules"
else
  echo "check-thread-safety: FAILED"
  exit 1
fi
