#!/usr/bin/env bash
# Every C++ file the project tracks, laid out as .clang-format says.
#   scripts/check-format.sh         exit 1 and the files that differ (with the first lines of the diff)
#   scripts/check-format.sh --fix   rewrite them in place
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fmt=${CLANG_FORMAT:-$(command -v clang-format-16 || true)}
[ -n "$fmt" ] || { echo "check-format: clang-format-16 not found (scripts/install-deps.sh --test installs it)"; exit 1; }
mapfile -t files < <(git ls-files '*.h' '*.cpp' | grep -v '^tests/layering/')
if [ "${1:-}" = "--fix" ]; then
  "$fmt" -i "${files[@]}"
  echo "check-format: ${#files[@]} files formatted"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! out=$("$fmt" "$f" | diff -u "$f" - 2>&1); then
    echo "$f is not formatted (scripts/check-format.sh --fix):"
    echo "$out" | head -20
    bad=$((bad + 1))
  fi
done
if [ "$bad" -ne 0 ]; then
  echo "check-format: $bad of ${#files[@]} files differ from .clang-format"
  exit 1
fi
echo "check-format: ${#files[@]} files formatted as .clang-format says ($("$fmt" --version | sed 's/.*version //'))"
