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
source bench/mesh_env.sh
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system, in clock ticks
hz=$(getconf CLK_TCK)
for r in $(seq "$runs"); do
  a0=$(ticks $apid); b0=$(ticks $bpid); t0=$(date +%s%N)
  "$bin/mesh_bench" --a "tcp://127.0.0.1:$((base + 21))" --b "tcp://127.0.0.1:$((base + 22))" \
    --http-a "http://127.0.0.1:$((base + 11))" --seconds "$seconds" --runs 1 --only enqueue | grep -E '^enqueue_w64_(local|forwarded) '
  wall=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "run $r: ${wall} ms wall for both; CPU node a $(( ($(ticks $apid) - a0) * 1000 / hz )) ms, node b $(( ($(ticks $bpid) - b0) * 1000 / hz )) ms ($(nproc) cores)"
done
