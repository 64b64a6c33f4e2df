#!/usr/bin/env bash
# Installs the Debian 12 packages Roost needs to build and run; with --test also what the test
# suite and benchmarks need (Chromium, nats-server, Node and sdk/js's npm packages, clang 16 for the
# thread-safety analysis and clang-format 16 for the layout check).
# Idempotent: installs only what is missing. Runs apt-get as root, or through sudo.
set -euo pipefail
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

packages=(
  build-essential cmake ccache pkg-config
  liblmdb-dev lmdb-utils
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libspdlog-dev libfmt-dev catch2 libtoml11-dev libssl-dev
  capnproto libcapnp-dev libzmq3-dev cppzmq-dev
  curl procps
)
if [ "$with_tests" = 1 ]; then
  # etcd (the mesh's coordination, issue 15): its tests start their own members on loopback.
  # python3: the sidecar's Python worker example (docs/sidecar.md) runs in the tests.
  packages+=(wrk chromium nats-server redis-server libhiredis-dev libnats-dev clang-16 clang-format-16 git
    etcd-server etcd-client python3)
  # Node.js: the machine image usually has it; Debian's nodejs otherwise.
  if ! command -v node >/dev/null 2>&1; then packages+=(nodejs npm); fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
else
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser client's test dependencies (playwright-core drives Debian's Chromium; ws for
# Node versions without a global WebSocket), pinned by sdk/js/package-lock.json.
if [ "$with_tests" = 1 ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  if [ ! -d "$here/sdk/js/node_modules/playwright-core" ] || [ ! -d "$here/sdk/js/node_modules/ws" ]; then
    (cd "$here/sdk/js" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
