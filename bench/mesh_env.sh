# Sourced by the mesh benchmarks: etcd and two mesh nodes "a" and "b" on loopback (sync durability,
# the counter example loaded), with data in a temporary folder that goes on exit.
#   build=BUILD_DIR; source bench/mesh_env.sh
# Sets: bin, work, base (ports: HTTP base+11/12, native base+21/22, mesh base+31/32), eport, pids
# (killed on exit), apid, bpid, ttl; defines node NAME INDEX (starts that node again); needs
# `set -euo pipefail` in the caller.
# The nodes run with mesh_insecure (plain links, no secret: the earlier figures' setup), or, with
# MESH_SECRET=…, secured: auth_secret set, so their links speak CURVE with short-lived credentials
# (issue 26 §1) and every driver needs a token — `acurl` (curl with it), `bench_auth` (mesh_bench's
# flags) and TOKEN carry an operator token minted from the secret.
bin="$build/bin"
command -v etcd >/dev/null || { echo "etcd not installed (scripts/install-deps.sh --test)"; exit 1; }
[ -x "$bin/mesh_bench" ] || { echo "$bin/mesh_bench not built"; exit 1; }
work=$(mktemp -d)
pids=()
trap 'exec 2>/dev/null; kill -9 "${pids[@]}" ${bpid:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
base=$((20000 + RANDOM % 9000))
eport=$base; epeer=$((base + 1))
ttl=${TTL_MS:-3000}
etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$eport" \
  --advertise-client-urls "http://127.0.0.1:$eport" --listen-peer-urls "http://127.0.0.1:$epeer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$epeer" --initial-cluster "default=http://127.0.0.1:$epeer" \
  >"$work/etcd.log" 2>&1 &
pids+=($!)
node() {  # name index
  local n=$1 i=$2
  "$bin/roost" serve --data-dir "$work/$n" --http-listen "127.0.0.1:$((base + 10 + i))" \
    --endpoint "tcp://127.0.0.1:$((base + 20 + i))" --mesh-listen "tcp://127.0.0.1:$((base + 30 + i))" \
    --mesh-etcd "http://127.0.0.1:$eport" --node-name "$n" --mesh-lease-ttl-ms "$ttl" --log-level warn \
    "${mesh_security[@]}" \
    --actors "$build/examples/counter/libroost_counter.so" >>"$work/$n.log" 2>&1 &
}
if [ -n "${MESH_SECRET:-}" ]; then
  mesh_security=(--auth-secret "$MESH_SECRET")
  bench_auth=(--secret "$MESH_SECRET")
  TOKEN=$("$bin/mesh_bench" --secret "$MESH_SECRET" --print-token on)
  acurl() { curl -H "Authorization: Bearer $TOKEN" "$@"; }
else
  mesh_security=(--mesh-insecure true)
  bench_auth=()
  TOKEN=
  acurl() { curl "$@"; }
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$eport/health" >/dev/null && break; sleep 0.1; done
node a 1; apid=$!; pids+=($apid)
node b 2; bpid=$!
for _ in $(seq 100); do
  [ "$(acurl -sf "http://127.0.0.1:$((base + 11))/v1/mesh" | grep -o '"name"' | wc -l)" = 2 ] && break
  sleep 0.1
done
