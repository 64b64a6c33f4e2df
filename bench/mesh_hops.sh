#!/usr/bin/env bash
# Where a forwarded enqueue's time goes, hand-off by hand-off (issue 27): two mesh nodes on
# loopback (bench/mesh_env.sh), one enqueue at a time to node a for a queue node b owns, traced
# (Client::trace_enqueue; native_bench --hops on), next to the same to b itself (local). Every run
# printed, then the medians.
#   bench/mesh_hops.sh [BUILD_DIR] [RUNS]
#   MESH_SECRET=… bench/mesh_hops.sh …   (a secured mesh: CURVE links; bench/mesh_env.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${2:-3}
source bench/mesh_env.sh
a_http="http://127.0.0.1:$((base + 11))"
q=
for i in $(seq 0 999); do
  if acurl -sf "$a_http/v1/mesh?queue=hops$i" | grep -q '"owner":"b"'; then q="hops$i"; break; fi
done
[ -n "$q" ] || { echo "no queue owned by b found"; exit 1; }
echo "# queue $q, owned by b; forwarded = to a, local = to b"
raw="$work/hops.txt"
: >"$raw"
for r in $(seq "$runs"); do
  echo "# run $r"
  for side in forwarded local; do
    port=$((base + 21)); [ "$side" = local ] && port=$((base + 22))
    "$bin/native_bench" --roost "tcp://127.0.0.1:$port" --only latency --targets roost --hops on \
      --hops-queue "$q" ${TOKEN:+--roost-token "$TOKEN"} 2>&1 | grep '^roost_' | sed "s/^roost_/${side}_/" | tee -a "$raw"
  done
done
echo "# medians of $runs runs"
sort -k1,1 -k2,2g "$raw" | awk '
  function out() { if (n > 0) printf "median_%s %.1f %s\n", key, vals[int((n + 1) / 2)], unit }
  $1 != key { out(); key = $1; n = 0; unit = $3 }
  { vals[++n] = $2 }
  END { out() }'
