#!/usr/bin/env bash
# HTTP enqueue throughput and latency with wrk (Debian's wrk, keep-alive connections), against a
# real `roost serve` in sync durability. Prints `name value unit` lines.
#   bench/http_bench.sh [BUILD_DIR] [SECONDS]
#   ROOST_ARGS="--wal false" bench/http_bench.sh …   (extra flags for roost serve)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seconds=${2:-5}
bin="$build/bin/roost"
command -v wrk >/dev/null || { echo "wrk not installed (scripts/install-deps.sh installs it)"; exit 1; }
data=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
"$bin" serve --data-dir "$data/data" --http-listen "127.0.0.1:$port" --log-level warn ${ROOST_ARGS:-} &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port"
echo "# http_bench: durability=sync ${ROOST_ARGS:-}, 100-byte bodies, wrk -t2, ${seconds}s per point"
for c in 1 16 64 256; do
  curl -sf -XPUT "$url/v1/queues/bench$c" -d '{}' >/dev/null
  threads=$(( c < 2 ? 1 : 2 ))
  out=$(wrk -t"$threads" -c"$c" -d"${seconds}s" --latency -s bench/http_enqueue.lua "$url/v1/queues/bench$c/messages")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/wrk_non_2xx/ {print $2}')
  echo "http_enqueue_c${c} ${rps} req/s"
  echo "http_enqueue_c${c}_p50 ${p50} latency"
  echo "http_enqueue_c${c}_p99 ${p99} latency"
  echo "http_enqueue_c${c}_non_2xx ${non2xx:-0} responses"
done
depth=$(curl -sf "$url/v1/queues/bench64" | sed -E 's/.*"messages":([0-9]+).*/\1/')
echo "http_enqueue_c64_stored ${depth} msgs"
for f in VmRSS RssAnon RssFile; do
  kb=$(awk -v f="$f:" '$1==f {print $2}' /proc/$pid/status)
  echo "http_server_${f}_after $((kb / 1024)) MiB"
done
