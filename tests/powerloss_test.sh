#!/usr/bin/env bash
# Power-loss simulation (tests/powerloss/powerloss.cpp): a traced workload on the durable path
# (sync durability), then the check at random cut points (bounded: 300 cuts or 120 s). The same
# check must catch a store that acknowledges before it flushes (durability none): the test fails
# if it does not.
#   tests/powerloss_test.sh POWERLOSS_BINARY SHIM [SEED]
set -euo pipefail
bin=$1
shim=$2
seed=${3:-$RANDOM}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "seed $seed"
mkdir -p "$tmp/sync" "$tmp/none"
LD_PRELOAD="$shim" POWERLOSS_DIR="$tmp/sync" POWERLOSS_TRACE="$tmp/sync.trace" "$bin" run "$tmp/sync" 2>/dev/null
"$bin" check "$tmp/sync.trace" --cuts 300 --seed "$seed" --seconds 120 2>/dev/null
LD_PRELOAD="$shim" POWERLOSS_DIR="$tmp/none" POWERLOSS_TRACE="$tmp/none.trace" "$bin" run "$tmp/none" \
  --durability none 2>/dev/null
if "$bin" check "$tmp/none.trace" --cuts 300 --seed "$seed" --seconds 120 >"$tmp/none.out" 2>&1; then
  cat "$tmp/none.out"
  echo "FAILED: the check passed a store that never flushes (it cannot catch a loss)"
  exit 1
fi
cat "$tmp/none.out"
grep -q "FAILED at cut" "$tmp/none.out" || { echo "FAILED: not caught by a cut"; exit 1; }
echo "powerloss: a store that acknowledges before flushing is caught"
