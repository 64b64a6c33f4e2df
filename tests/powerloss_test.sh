#!/usr/bin/env bash
# Power-loss simulation (tests/powerloss/powerloss.cpp): a traced workload on the durable path
# (sync durability, through the write-ahead log and through LMDB's own commits), then the check at
# random cut points (bounded: 300 cuts or 120 s each). The same check must catch a store that
# acknowledges before it flushes (durability none): the test fails if it does not.
#   tests/powerloss_test.sh POWERLOSS_BINARY SHIM [SEED]
set -euo pipefail
bin=$1
shim=$2
seed=${3:-$RANDOM}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "seed $seed"
mkdir -p "$tmp/sync" "$tmp/lmdb" "$tmp/none"
echo "== sync durability through the write-ahead log"
LD_PRELOAD="$shim" POWERLOSS_DIR="$tmp/sync" POWERLOSS_TRACE="$tmp/sync.trace" "$bin" run "$tmp/sync" 2>/dev/null
"$bin" check "$tmp/sync.trace" --cuts 300 --seed "$seed" --seconds 120 2>/dev/null
echo "== sync durability through LMDB's own commits (wal = false)"
LD_PRELOAD="$shim" POWERLOSS_DIR="$tmp/lmdb" POWERLOSS_TRACE="$tmp/lmdb.trace" "$bin" run "$tmp/lmdb" --no-wal \
  2>/dev/null
"$bin" check "$tmp/lmdb.trace" --cuts 300 --seed "$seed" --seconds 120 2>/dev/null
echo "== durability none: the check must fail"
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
