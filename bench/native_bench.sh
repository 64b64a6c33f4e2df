#!/usr/bin/env bash
# The native protocol next to Redis and NATS (bench/native_bench.cpp). Each scenario of each run
# gets a fresh server of the one target it measures, with nothing else running: roost (sync
# durability), redis-server (appendonly yes, appendfsync always) or nats-server -js (file storage,
# which does not fsync each message: its rows say nofsync), on loopback with data in a temporary
# folder. The targets' order rotates from run to run. Every run's figures are printed, then the
# medians, then Roost / peer ratios of the medians (> 1 = Roost ahead; latencies: peer / Roost).
#   bench/native_bench.sh [BUILD_DIR] [SECONDS] [--runs N] [--only enqueue|latency|consume|pubsub|objects]
#                         [other native_bench flags, e.g. --windows 64 --fanouts 1,10]
#   ROOST_ARGS="--commit-gather-us 0" bench/native_bench.sh …   (extra flags for roost serve)
#   ROOST_OLD=/tmp/old/roost bench/native_bench.sh …   (another roost binary as a fourth target,
#       "roost_old", in the same rotation: an old/new comparison; its figures are named roost_old_…)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seconds=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
runs=3
scenarios=(enqueue latency consume pubsub objects)
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --only) scenarios=("$2"); shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
bin="$build/bin"
for p in redis-server nats-server; do
  command -v "$p" >/dev/null || { echo "$p not installed (scripts/install-deps.sh --test)"; exit 1; }
done
[ -x "$bin/native_bench" ] || { echo "$bin/native_bench not built (needs libhiredis-dev, libnats-dev)"; exit 1; }
work=$(mktemp -d)
spid=
trap 'kill $spid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
base=$((20000 + RANDOM % 9000))
rport=$base; dport=$((base + 1)); nport=$((base + 2)); hport=$((base + 3))

start() {  # target: a fresh server with empty data
  rm -rf "$work/data"; mkdir -p "$work/data"
  local exe="$bin/roost"
  [ "$1" = roost_old ] && exe=$ROOST_OLD
  case "$1" in
    roost | roost_old)
      "$exe" serve --data-dir "$work/data" --http-listen "127.0.0.1:$hport" \
        --endpoint "tcp://127.0.0.1:$rport" --log-level warn \
        --actors "$build/examples/counter/libroost_counter.so" ${ROOST_ARGS:-} >"$work/server.log" 2>&1 &
      spid=$!
      for _ in $(seq 200); do curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null && break; sleep 0.05; done ;;
    redis)
      redis-server --port "$dport" --bind 127.0.0.1 --dir "$work/data" --appendonly yes \
        --appendfsync always --save "" --daemonize no >"$work/server.log" 2>&1 &
      spid=$!
      for _ in $(seq 200); do redis-cli -p "$dport" ping >/dev/null 2>&1 && break; sleep 0.05; done ;;
    nats)
      nats-server -js -sd "$work/data" -a 127.0.0.1 -p "$nport" >"$work/server.log" 2>&1 &
      spid=$!
      for _ in $(seq 200); do grep -q "Server is ready" "$work/server.log" && break; sleep 0.05; done ;;
  esac
  sleep 0.3
}
stop() {
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  spid=
}

echo "# $(date -u +%F), $(nproc) cores; roost $("$bin/roost" --version | cut -d' ' -f2), redis $(redis-server --version | cut -d' ' -f3 | cut -d= -f2), nats-server $(nats-server --version | cut -d' ' -f2)"
echo "# bench/native_bench.sh $build $seconds --runs $runs ${extra[*]:-} (scenarios: ${scenarios[*]})"
targets=(roost redis nats)
[ -n "${ROOST_OLD:-}" ] && targets+=(roost_old)
n=${#targets[@]}
raw="$work/raw"
: >"$raw"
failed=0
for r in $(seq "$runs"); do
  echo "# run $r"
  for s in "${scenarios[@]}"; do
    # Rotate the order: run 1 roost redis nats, run 2 redis nats roost, …
    for k in $(seq 0 $((n - 1))); do
      t=${targets[$(( (k + r - 1) % n ))]}
      [ "$s" = objects ] && [[ $t != roost* ]] && continue  # no peer has object mailboxes
      start "$t"
      out=$("$bin/native_bench" --roost "tcp://127.0.0.1:$rport" --redis "127.0.0.1:$dport" \
        --nats "nats://127.0.0.1:$nport" --seconds "$seconds" --only "$s" --targets "${t%_old}" "${extra[@]}" 2>&1) || failed=1
      [ "$t" = roost_old ] && out=$(echo "$out" | sed 's/^roost_/roost_old_/')
      stop
      echo "$out" | grep -v '^#' | grep -v '^ratio_'
      echo "$out" | grep -v '^#' | grep -v '^ratio_' | grep -v '^FAILED' >>"$raw" || true
    done
  done
done

# Medians of every figure, then the ratios of the medians.
echo "# medians of $runs runs"
medians=$(python3 - "$raw" <<'PY'
import sys
values, units = {}, {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 2:
        continue
    try:
        values.setdefault(parts[0], []).append(float(parts[1]))
    except ValueError:
        continue
    units[parts[0]] = parts[2] if len(parts) > 2 else ""
for k in sorted(values):
    v = sorted(values[k])
    print(f"{k} {v[(len(v) - 1) // 2]:.1f} {units[k]}")
PY
)
echo "$medians" | sed 's/^/median_/'
val() { echo "$medians" | awk -v k="$1" '$1 == k { print $2 }'; }
ratio() {  # name ours theirs [lower]
  local o t; o=$(val "$2"); t=$(val "$3")
  [ -n "$o" ] && [ -n "$t" ] || return 0
  if [ "${4:-}" = lower ]; then awk -v o="$o" -v t="$t" -v n="$1" 'BEGIN { if (o > 0) printf "%s %.2f x\n", n, t / o }'
  else awk -v o="$o" -v t="$t" -v n="$1" 'BEGIN { if (t > 0) printf "%s %.2f x\n", n, o / t }'; fi
}
for w in $(echo "$medians" | grep -o '^roost_enqueue_c*[0-9]*w[0-9]*' | sed 's/roost_enqueue_//' | sort -n); do
  ratio "ratio_enqueue_${w}_roost_vs_redis" "roost_enqueue_$w" "redis_stream_enqueue_$w"
  ratio "ratio_enqueue_${w}_roost_vs_nats_js_nofsync" "roost_enqueue_$w" "nats_js_nofsync_enqueue_$w"
done
if [ -n "${ROOST_OLD:-}" ]; then  # new / old, for every roost figure both have (> 1 = new ahead)
  for k in $(echo "$medians" | awk '$1 ~ /^roost_old_/ { sub(/^roost_old_/, "", $1); print $1 }'); do
    case "$k" in *_p50 | *_p90 | *_p99) ratio "ratio_${k}_new_vs_old" "roost_$k" "roost_old_$k" lower ;;
      *) ratio "ratio_${k}_new_vs_old" "roost_$k" "roost_old_$k" ;; esac
  done
fi
ratio ratio_enqueue_p50_roost_vs_redis roost_enqueue_p50 redis_stream_enqueue_p50 lower
ratio ratio_enqueue_p99_roost_vs_redis roost_enqueue_p99 redis_stream_enqueue_p99 lower
ratio ratio_consume_roost_vs_redis roost_consume_ack_b100 redis_stream_consume_ack_b100
ratio ratio_consume_roost_vs_nats_js_nofsync roost_consume_ack_b100 nats_js_nofsync_consume_ack_b100
for f in $(echo "$medians" | grep -o '^roost_pubsub_1to[0-9]* ' | sed 's/roost_pubsub_1to//'); do
  ratio "ratio_pubsub_1to${f}_roost_vs_nats" "roost_pubsub_1to$f" "nats_pubsub_1to$f"
  ratio "ratio_pubsub_1to${f}_roost_vs_redis" "roost_pubsub_1to$f" "redis_pubsub_1to$f"
  ratio "ratio_pubsub_1to${f}_roost_io_thread_vs_nats" "roost_pubsub_1to${f}_io_thread" "nats_pubsub_1to$f"
done
if [ "$failed" != 0 ]; then
  echo "FAILED: a scenario did not deliver every message (see FAILED lines above)"
  exit 1
fi
