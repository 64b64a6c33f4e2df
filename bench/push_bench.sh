#!/usr/bin/env bash
# Push delivery next to pull + ack (bench/push_bench.cpp) against a fresh node: sync durability,
# defaults otherwise, data in a temporary folder that goes on exit.
#   bench/push_bench.sh [BUILD_DIR] [MESSAGES] [RUNS]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/roost_port.sh"
cd "$(dirname "$0")/.."
build=${1:-build}
messages=${2:-20000}
runs=${3:-3}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/bin/roost" serve --data-dir "$work/data" --http-listen 127.0.0.1:0 --endpoint off --log-level info \
  >"$work/roost.log" 2>&1 &
pid=$!
port=$(roost_port "$work/roost.log")
[ -n "$port" ] || { cat "$work/roost.log"; exit 1; }
echo "# roost $("$build/bin/roost" --version | cut -d' ' -f2), sync durability, $(nproc) cores; $messages messages per run"
"$build/bin/push_bench" --url "http://127.0.0.1:$port" --messages "$messages" --runs "$runs"
