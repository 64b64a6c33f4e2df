#!/usr/bin/env bash
# build.sh DIR BUILD_TYPE [cmake args...]: configures (once) and builds the whole tree.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
type=${2:-Release}
shift $(( $# > 2 ? 2 : $# ))
jobs=$(nproc 2>/dev/null || echo 2)
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@"
fi
cmake --build "$dir" -j "$jobs"
