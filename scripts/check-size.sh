#!/usr/bin/env bash
# No source file over 800 lines (issue 27): a file that grows past it is split by job, not in
# halves. Counts what git tracks — C++, JavaScript — outside tests, test fixtures and node_modules.
#   scripts/check-size.sh [ROOT]    exit 1 and one line per file over the limit
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
limit=800
bad=0
checked=0
while IFS= read -r f; do
  [ -f "$f" ] || continue
  checked=$((checked + 1))
  n=$(wc -l <"$f")
  if [ "$n" -gt "$limit" ]; then
    echo "$f: $n lines (over $limit: split it by job)"
    bad=1
  fi
done < <(git ls-files '*.cpp' '*.h' '*.js' '*.mjs' | grep -v -E '(^|/)tests?/|node_modules|fixtures')
if [ "$bad" -ne 0 ]; then
  echo "check-size: FAILED"
  exit 1
fi
echo "check-size: $checked files within $limit lines"
