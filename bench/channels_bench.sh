#!/usr/bin/env bash
# Broadcast fan-out over WebSockets: Roost and nats-server (websocket listener, no TLS) driven by
# the same client (bench/ws_bench.cpp), each scenario on fresh servers, in one run so that the
# ratio means something on a noisy machine. Prints `name value unit` lines and ratios.
#   bench/channels_bench.sh [BUILD_DIR] [quick]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
quick=${2:-}
bin="$build/bin"
command -v nats-server >/dev/null || { echo "nats-server not installed (scripts/install-deps.sh --test)"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

start_servers() {
  rport=$((20000 + RANDOM % 10000)); nport=$((10000 + RANDOM % 9000))  # below the ephemeral range
  rm -rf "$work/data"
  "$bin/roost" serve --data-dir "$work/data" --http-listen "127.0.0.1:$rport" --log-level warn \
    --max-connections 100000 --max-connections-per-ip 100000 >"$work/roost.log" 2>&1 &
  rpid=$!
  printf 'listen: 127.0.0.1:%d\nwebsocket { listen: "127.0.0.1:%d", no_tls: true }\nmax_connections: 100000\nmax_payload: 1048576\n' \
    $((nport + 1)) "$nport" >"$work/nats.conf"
  nats-server -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
  npid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$rport/healthz" >/dev/null && break; sleep 0.05; done
  sleep 0.3
}
stop_servers() { kill "$rpid" "$npid" 2>/dev/null || true; wait "$rpid" "$npid" 2>/dev/null || true; }

# scenario NAME ws_bench-args...: runs Roost then NATS, prints both and the ratio of deliveries/s.
scenario() {
  local args=("$@")
  start_servers
  local r n
  r=$("$bin/ws_bench" --target roost --port "$rport" "${args[@]}")
  sleep 1
  n=$("$bin/ws_bench" --target nats --port "$nport" "${args[@]}")
  stop_servers
  echo "$r"; echo "$n"
  local rv nv
  rv=$(echo "$r" | awk '/deliveries_per_s/ {print $2}')
  nv=$(echo "$n" | awk '/deliveries_per_s/ {print $2}')
  [ -n "$rv" ] && [ -n "$nv" ] && awk -v a="$rv" -v b="$nv" -v t="$(echo "$r" | awk '/deliveries_per_s/ {sub(/_deliveries_per_s/,"",$1); sub(/ws_roost_/,"",$1); print $1}')" \
    'BEGIN { printf "ratio_roost_over_nats_%s %.2f x\n", t, a / b }'
}

echo "# channels_bench: 1 publisher, ~100-byte payloads, window 64 (16 at 10k subs); same client for both"
if [ -n "$quick" ]; then
  scenario --subs 100 --messages 2000
  exit 0
fi
scenario --subs 1 --messages 50000
scenario --subs 100 --messages 2000
scenario --subs 10000 --messages 200 --window 16
# Latency at a steady 500,000 deliveries/s (50 publishes/s to 10,000 subscribers), not saturated.
scenario --subs 10000 --messages 250 --window 16 --rate 50
# The floor: one publish a second to 10,000 subscribers (the machine otherwise idle) — how long
# one fan-out of 10,000 WebSocket frames takes to reach its last subscriber.
scenario --subs 10000 --messages 8 --window 16 --rate 1
scenario --subs 100 --channels 100 --messages 20000
scenario --subs 10000 --channels 10000 --messages 20000
scenario --subs 100 --messages 2000 --stalled 1

# As many as the file-descriptor limit lets one server process hold (it needs ~25 of its own):
# 20,000, or as close as a 20,000 hard limit allows.
idle=$(( $(ulimit -n) - 50 ))
[ "$idle" -gt 20000 ] && idle=20000
start_servers
"$bin/ws_bench" --target roost --port "$rport" --idle "$idle" --server-pid "$rpid" 2>/dev/null
"$bin/ws_bench" --target nats --port "$nport" --idle "$idle" --server-pid "$npid" 2>/dev/null
stop_servers
