#!/usr/bin/env bash
# The mesh next to a single node's path, in one invocation: starts etcd and two nodes ("a", "b";
# sync durability, the counter example loaded) on loopback with data in a temporary folder, runs
# bench/mesh_bench.cpp (local = talking to the owner b, forwarded = talking to a), then measures
# failover: kill -9 of b → first 503 owner_unavailable on a (detection) → b restarted → first
# success (claim and recovery); and a shard move: a queue of 100 MB (100,000 bodies of ~1 KiB)
# moved from a to b and back with `roost mesh move` (total time, and how long the shard was closed),
# its message count checked after each move. Every run is printed, then the medians.
#   bench/mesh_bench.sh [BUILD_DIR] [SECONDS] [RUNS]
#   MESH_SECRET=s3cret bench/mesh_bench.sh …   (a secured mesh: CURVE links, tokens; bench/mesh_env.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seconds=${2:-3}
runs=${3:-3}
source bench/mesh_env.sh
echo "# roost $("$bin/roost" --version | cut -d' ' -f2), etcd $(etcd --version | head -1 | cut -d' ' -f3); $(nproc) cores; lease TTL ${ttl} ms"
"$bin/mesh_bench" "${bench_auth[@]}" --a "tcp://127.0.0.1:$((base + 21))" --b "tcp://127.0.0.1:$((base + 22))" \
  --http-a "http://127.0.0.1:$((base + 11))" --seconds "$seconds" --runs "$runs"

# Where channel messages were dropped for lagging, if anywhere (by design: never blocks a publisher).
for i in 1 2; do
  acurl -sf "http://127.0.0.1:$((base + 10 + i))/metrics" |
    grep -E '^roost_(endpoint_channel_dropped|mesh_channel_lagged|mesh_channel_relayed|mesh_channel_duplicates)_total' |
    sed "s/^/# node $i: /"
done

# Failover, through a: a queue owned by b.
a_http="http://127.0.0.1:$((base + 11))"
q=$(for i in $(seq 0 999); do
  acurl -sf "$a_http/v1/mesh?queue=fo$i" | grep -q '"home":"b"' && { echo "fo$i"; break; }
done)
acurl -sf -X PUT "$a_http/v1/queues/$q" -d '{}' >/dev/null
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
status() { acurl -s -o /dev/null -w '%{http_code}' -m 5 -X POST "$a_http/v1/queues/$q/messages" -d '{"body":1}'; }
detect=(); recover=()
for r in $(seq "$runs"); do
  until [ "$(status)" = 201 ]; do sleep 0.05; done
  kill -9 $bpid; wait $bpid 2>/dev/null || true
  t0=$(now_ms)
  until [ "$(status)" = 503 ]; do sleep 0.02; done
  t1=$(now_ms)
  node b 2; bpid=$!
  until [ "$(status)" = 201 ]; do sleep 0.02; done
  t2=$(now_ms)
  echo "failover_detection_run$r $((t1 - t0)) ms"
  echo "failover_recovery_after_restart_run$r $((t2 - t1)) ms"
  detect+=($((t1 - t0))); recover+=($((t2 - t1)))
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "failover_detection_median $(med "${detect[@]}") ms"
echo "failover_recovery_after_restart_median $(med "${recover[@]}") ms"

# Shard moves: 100 MB in one queue, homed on a, moved a → b → a … (each move a run).
mq=$(for i in $(seq 0 999); do
  acurl -sf "$a_http/v1/mesh?queue=mv$i" | grep -q '"home":"a"' && { echo "mv$i"; break; }
done)
until [ "$(acurl -s -o /dev/null -w '%{http_code}' -X PUT "$a_http/v1/queues/$mq" -d '{}')" = 200 ]; do sleep 0.1; done
python3 -c 'import json; print(json.dumps({"messages": [{"body": "x" * 1000} for _ in range(1000)]}))' >"$work/batch.json"
for _ in $(seq 100); do
  acurl -sf -o /dev/null -X POST "$a_http/v1/queues/$mq/messages" -H 'content-type: application/json' \
    --data-binary @"$work/batch.json" || { echo "filling $mq failed"; exit 1; }
done
shard=$(acurl -sf "$a_http/v1/mesh?queue=$mq" | grep -o '"shard":[0-9]*' | cut -d: -f2)
bytes=$(du -sm "$work/a" | cut -f1)
echo "# shard $shard: queue $mq with 100000 messages of 1000 bytes (node a's data: ${bytes} MiB)"
total=(); closed=()
to=b
for r in $(seq "$runs"); do
  out=$("$bin/roost" mesh move "$shard" --to "$to" --url "$a_http" ${TOKEN:+--token "$TOKEN"} 2>/dev/null) || { echo "move failed: $out"; exit 1; }
  d=$(echo "$out" | grep -o '"duration_ms":[0-9]*' | cut -d: -f2)
  c=$(echo "$out" | grep -o '"closed_ms":[0-9]*' | cut -d: -f2)
  n=$(acurl -sf "$a_http/v1/queues/$mq" | grep -o '"messages":[0-9]*' | head -1 | cut -d: -f2)
  [ "$n" = 100000 ] || { echo "after the move to $to the queue holds $n messages, not 100000"; exit 1; }
  echo "shard_move_100MB_run$r to $to: ${d} ms total, ${c} ms closed ($n messages)"
  total+=("$d"); closed+=("$c")
  if [ "$to" = b ]; then to=a; else to=b; fi
done
echo "shard_move_100MB_median $(med "${total[@]}") ms total, $(med "${closed[@]}") ms closed"
