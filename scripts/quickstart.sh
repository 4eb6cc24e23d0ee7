#!/usr/bin/env bash
# Quick start: install what is missing, build, and run flashgate with the shipped config
# in front of the bundled demo shop. Ctrl-C drains and stops both.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/deps.sh
bash scripts/build.sh "$top/build" --enable-werror
mkdir -p /var/log/flashgate

PORT=3000 node demo/app.js &
app=$!
trap 'kill $app 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -fs -o /dev/null http://127.0.0.1:3000/healthz && break
    sleep 0.1
done

cat <<MSG

flashgate is starting on :8080 in front of the demo shop on 127.0.0.1:3000.
Try, from another terminal:
    curl -i http://localhost:8080/
    curl -s http://localhost:8080/api/products
    curl -s http://localhost:9901/stats
Ctrl-C drains and stops.

MSG
./build/flashgate -t -c conf/flashgate.conf
# SIGINT drains without the production shutdown_delay.
./build/flashgate -c conf/flashgate.conf
