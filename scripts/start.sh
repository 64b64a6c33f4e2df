#!/usr/bin/env bash
# One command for a newcomer: install what is missing, build, and start `roost serve` with its
# embedded defaults (data in ./roost-data, HTTP on 127.0.0.1:8080). Extra arguments go to
# `roost serve` (e.g. ./scripts/start.sh --http-listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build Release
exec ./build/bin/roost serve "$@"
