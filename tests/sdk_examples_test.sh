#!/usr/bin/env bash
# The SDK as an outside project uses it: `cmake --install` the build into a temporary prefix, build
# examples/sdk against it with find_package(Roost), and run the examples against a real node.
#   tests/sdk_examples_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
pid=
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/examples/sdk" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/b" -j2 >/dev/null
url="ipc://$tmp/roost.sock"
"$tmp/prefix/bin/roost" serve --data-dir "$tmp/data" --http-listen 127.0.0.1:0 --endpoint "$url" \
  --log-level warn >"$tmp/roost.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/roost.sock" ] && break; sleep 0.05; done

out=$("$tmp/b/sdk_producer" --url "$url" --queue jobs --count 500)
echo "$out"
[ "$out" = "500 jobs enqueued to jobs, 0 failed" ]
out=$(timeout 30 "$tmp/b/sdk_worker" --url "$url" --queue jobs --window 16 --count 500)
echo "$out"
[ "$out" = "500 jobs processed from jobs" ]
stats=$("$tmp/prefix/bin/roost" queue stats jobs --url "$url")
echo "$stats" | grep -q '"messages":0' || { echo "queue not drained: $stats"; exit 1; }

timeout 30 "$tmp/b/sdk_subscriber" --url "$url" --pattern 'demo.>' --count 2 >"$tmp/sub.out" &
sub=$!
for _ in $(seq 200); do
  "$tmp/prefix/bin/roost" pub demo.probe '"probe"' --url "$url" | grep -q '"subscribers":1' && break
  sleep 0.05
done
"$tmp/prefix/bin/roost" pub demo.a.b '{"n":2}' --url "$url" >/dev/null
wait $sub
cat "$tmp/sub.out"
grep -Eq 'demo.probe #[0-9]+: "probe"' "$tmp/sub.out"
grep -q 'demo.a.b #1: {"n":2}' "$tmp/sub.out"

# An actor plugin built outside the tree against the installed package, loaded by the installed
# binary, reached with `roost object` over the native protocol and over HTTP.
kill $pid; wait $pid || true
cmake -S "$src/examples/counter" -B "$tmp/c" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/c" -j2 >/dev/null
"$tmp/prefix/bin/roost" serve --data-dir "$tmp/data" --http-listen 127.0.0.1:0 --endpoint "$url" \
  --actors "$tmp/c/libroost_counter.so" --log-level info >"$tmp/roost.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'gateway listening' "$tmp/roost.log" && [ -S "$tmp/roost.sock" ] && break; sleep 0.05; done
http=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/roost.log" | head -1)
out=$("$tmp/prefix/bin/roost" object tell counter clicks '{"add":5}' --url "$url")
echo "$out"
[ "$out" = '{"seq":1}' ]
"$tmp/prefix/bin/roost" object tell counter clicks '{"add":2}' --url "$http" >/dev/null
out=$("$tmp/prefix/bin/roost" object call counter clicks '{}' --url "$url")
echo "$out"
[ "$out" = '{"value":7}' ]
out=$("$tmp/prefix/bin/roost" object call nosuch x '{}' --url "$http" 2>&1 || true)
echo "$out" | grep -q class_not_found || { echo "expected class_not_found: $out"; exit 1; }
echo "sdk examples: ok"
