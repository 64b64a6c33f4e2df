#!/usr/bin/env bash
# The sidecar's example workers (examples/sidecar: Python, standard library only; Node.js, no
# packages) against the real binary: Roost pushes jobs to each, they enqueue results, publish and
# tell an object back over HTTP; a flaky job is retried once. docs/sidecar.md shows these files.
#   tests/sidecar_workers_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/roost_port.sh"
build=$1
src=$2
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$build/bin/roost" serve --data-dir "$tmp/data" --http-listen 127.0.0.1:0 --endpoint off \
  --actors "$build/examples/counter/libroost_counter.so" >"$tmp/roost.log" 2>&1 &
pids+=($!)
port=$(roost_port "$tmp/roost.log")
[ -n "$port" ] || { cat "$tmp/roost.log"; exit 1; }
roost="http://127.0.0.1:$port"
py_port=$(free_port)
node_port=$(free_port)
PORT=$py_port ROOST_URL=$roost python3 "$src/examples/sidecar/worker.py" >"$tmp/py.log" 2>&1 &
pids+=($!)
PORT=$node_port ROOST_URL=$roost node "$src/examples/sidecar/worker.mjs" >"$tmp/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q listening "$tmp/py.log" && grep -q listening "$tmp/node.log" && break
  sleep 0.05
done
# Two queues, one per worker, configured with the CLI.
"$build/bin/roost" queue create py-jobs --push-url "http://127.0.0.1:$py_port/jobs" --push-concurrency 4 --url "$roost" >/dev/null
"$build/bin/roost" queue create node-jobs --push-url "http://127.0.0.1:$node_port/jobs" --push-concurrency 4 --url "$roost" >/dev/null
for q in py-jobs node-jobs; do
  for n in $(seq 1 20); do
    flaky=false; [ $((n % 10)) = 0 ] && flaky=true
    curl -sf -X POST "$roost/v1/queues/$q/messages" -d "{\"body\":{\"n\":$n,\"flaky\":$flaky}}" >/dev/null
  done
done
count() { curl -sf "$roost/v1/queues/results" | grep -o '"messages":[0-9]*' | head -1 | cut -d: -f2; }
for _ in $(seq 300); do [ "$(count 2>/dev/null || echo 0)" = 40 ] && break; sleep 0.1; done
[ "$(count)" = 40 ] || { echo "results: $(count)"; cat "$tmp/py.log" "$tmp/node.log"; exit 1; }
for q in py-jobs node-jobs; do
  stats=$(curl -sf "$roost/v1/queues/$q")
  echo "$stats" | grep -q '"messages":0' || { echo "$q not drained: $stats"; exit 1; }
  echo "$stats" | grep -q '"acked":20' || { echo "$q: $stats"; exit 1; }
  echo "$stats" | grep -q '"retried":2' || { echo "$q: flaky jobs not retried once each: $stats"; exit 1; }
done
pulled=$(curl -sf -X POST "$roost/v1/queues/results/messages/pull" -d '{"batch_size":100}')
[ "$(echo "$pulled" | grep -o '"by":"python"' | wc -l)" = 20 ] || { echo "$pulled"; exit 1; }
[ "$(echo "$pulled" | grep -o '"by":"node"' | wc -l)" = 20 ] || { echo "$pulled"; exit 1; }
echo "$pulled" | grep -q '"n":7,"square":49' || { echo "$pulled"; exit 1; }
value=$(curl -sf -X POST "$roost/v1/objects/counter/jobs-done/call" -d '{}')
echo "counter: $value"
echo "$value" | grep -q '"value":40' || exit 1
echo "sidecar workers: ok"
