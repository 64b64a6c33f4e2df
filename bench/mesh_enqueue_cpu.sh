#!/usr/bin/env bash
# Forwarded vs local enqueue (64 in flight) alone, with the CPU each node used during the runs: is
# the forwarding path CPU-bound or latency-bound on this machine? Starts etcd and two nodes like
# bench/mesh_bench.sh (sync durability, lease TTL 3 s), then runs `mesh_bench --only enqueue`
# RUNS times, each followed by the CPU seconds nodes a (the forwarder) and b (the owner) used.
#   bench/mesh_enqueue_cpu.sh [BUILD_DIR] [SECONDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seconds=${2:-3}
runs=${3:-3}
bin="$build/bin"
command -v etcd >/dev/null || { echo "etcd not installed (scripts/install-deps.sh --test)"; exit 1; }
work=$(mktemp -d)
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
base=$((20000 + RANDOM % 9000))
eport=$base; epeer=$((base + 1))
etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$eport" \
  --advertise-client-urls "http://127.0.0.1:$eport" --listen-peer-urls "http://127.0.0.1:$epeer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$epeer" --initial-cluster "default=http://127.0.0.1:$epeer" \
  >"$work/etcd.log" 2>&1 &
pids+=($!)
node() {  # name index
  "$bin/roost" serve --data-dir "$work/$1" --http-listen "127.0.0.1:$((base + 10 + $2))" \
    --endpoint "tcp://127.0.0.1:$((base + 20 + $2))" --mesh-listen "tcp://127.0.0.1:$((base + 30 + $2))" \
    --mesh-etcd "http://127.0.0.1:$eport" --node-name "$1" --log-level warn >>"$work/$1.log" 2>&1 &
}
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$eport/health" >/dev/null && break; sleep 0.1; done
node a 1; apid=$!; pids+=($apid)
node b 2; bpid=$!; pids+=($bpid)
for _ in $(seq 100); do
  [ "$(curl -sf "http://127.0.0.1:$((base + 11))/v1/mesh" | grep -o '"name"' | wc -l)" = 2 ] && break
  sleep 0.1
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system, in clock ticks
hz=$(getconf CLK_TCK)
for r in $(seq "$runs"); do
  a0=$(ticks $apid); b0=$(ticks $bpid); t0=$(date +%s%N)
  "$bin/mesh_bench" --a "tcp://127.0.0.1:$((base + 21))" --b "tcp://127.0.0.1:$((base + 22))" \
    --http-a "http://127.0.0.1:$((base + 11))" --seconds "$seconds" --runs 1 --only enqueue | grep -E '^enqueue_w64_(local|forwarded) '
  wall=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "run $r: ${wall} ms wall for both; CPU node a $(( ($(ticks $apid) - a0) * 1000 / hz )) ms, node b $(( ($(ticks $bpid) - b0) * 1000 / hz )) ms ($(nproc) cores)"
done
