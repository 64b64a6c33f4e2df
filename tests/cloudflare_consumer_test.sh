#!/usr/bin/env bash
# A pull consumer in the style of Cloudflare's documentation (examples/cloudflare/pull-consumer.mjs)
# against a real node: only its base URL and token differ from what it would use at Cloudflare.
#   tests/cloudflare_consumer_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/roost_port.sh"
build=$1
src=$2
tmp=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$build/bin/roost" serve --data-dir "$tmp/data" --http-listen 127.0.0.1:0 --endpoint off \
  --cf-tokens "cf-test-token-123:jobs" >"$tmp/roost.log" 2>&1 &
pid=$!
port=$(roost_port "$tmp/roost.log")
[ -n "$port" ] || { cat "$tmp/roost.log"; exit 1; }
out=$(CF_API="http://127.0.0.1:$port/client/v4" QUEUES_API_TOKEN=cf-test-token-123 \
  CF_ACCOUNT_ID=023e105f4ecef8ad9ca31a8372d0c353 QUEUE_ID=jobs timeout 90 node "$src/examples/cloudflare/pull-consumer.mjs" 300)
echo "$out"
[ "$out" = '{"published":300,"processed":300,"retried":30,"duplicates":0}' ]
stats=$(curl -sf "http://127.0.0.1:$port/v1/queues/jobs")
echo "$stats" | grep -q '"messages":0' || { echo "queue not drained: $stats"; exit 1; }
echo "$stats" | grep -q '"retried":30' || { echo "retries not counted: $stats"; exit 1; }
# The token is checked: another one is refused in Cloudflare's envelope.
code=$(curl -s -o "$tmp/denied.json" -w '%{http_code}' -X POST -H 'Authorization: Bearer wrong' \
  "http://127.0.0.1:$port/client/v4/accounts/x/queues/jobs/messages/pull" -d '{}')
[ "$code" = 403 ] && grep -q '"code":10000' "$tmp/denied.json"
