#!/usr/bin/env bash
# The native protocol next to Redis and NATS: starts roost (sync durability), redis-server
# (appendonly yes, appendfsync always) and nats-server -js (file storage) on loopback with data in
# a temporary folder, then runs bench/native_bench.cpp against all three in one invocation.
#   bench/native_bench.sh [BUILD_DIR] [SECONDS] [--only enqueue|latency|consume|pubsub|objects]
#   ROOST_ARGS="--commit-gather-us 0" bench/native_bench.sh …   (extra flags for roost serve)
# Prints `name value unit` lines, then `ratio_* X x` lines (Roost / peer; > 1 = Roost ahead).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seconds=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
bin="$build/bin"
for p in redis-server nats-server; do
  command -v "$p" >/dev/null || { echo "$p not installed (scripts/install-deps.sh --test)"; exit 1; }
done
[ -x "$bin/native_bench" ] || { echo "$bin/native_bench not built (needs libhiredis-dev, libnats-dev)"; exit 1; }
work=$(mktemp -d)
trap 'kill $rpid $dpid $npid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

base=$((20000 + RANDOM % 9000))
rport=$base; dport=$((base + 1)); nport=$((base + 2)); hport=$((base + 3))
mkdir -p "$work/roost" "$work/redis" "$work/nats"
"$bin/roost" serve --data-dir "$work/roost" --http-listen "127.0.0.1:$hport" \
  --endpoint "tcp://127.0.0.1:$rport" --log-level warn \
  --actors "$build/examples/counter/libroost_counter.so" ${ROOST_ARGS:-} >"$work/roost.log" 2>&1 &
rpid=$!
redis-server --port "$dport" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes \
  --appendfsync always --save "" --daemonize no >"$work/redis.log" 2>&1 &
dpid=$!
nats-server -js -sd "$work/nats" -a 127.0.0.1 -p "$nport" >"$work/nats.log" 2>&1 &
npid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null && redis-cli -p "$dport" ping >/dev/null 2>&1 && break
  sleep 0.05
done
sleep 0.5
echo "# roost $("$bin/roost" --version | cut -d' ' -f2), $(redis-server --version | cut -d' ' -f3), nats-server $(nats-server --version | cut -d' ' -f2); $(nproc) cores"
"$bin/native_bench" --roost "tcp://127.0.0.1:$rport" --redis "127.0.0.1:$dport" \
  --nats "nats://127.0.0.1:$nport" --seconds "$seconds" "$@"
