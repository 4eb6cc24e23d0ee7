#!/usr/bin/env bash
# S3-FIFO vs LRU hit ratios on Zipf traces (tests/bench/zipf.c); not part of make check.
#
#   tests/bench/zipf.sh [--build DIR] [zipf options: -n requests -k keys -s seed -f size]
#
# Builds the program in DIR (default: build/, configured by scripts/build.sh) and runs it
# pinned to CPU 1, so that the ns/request columns are not spread over both cores.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build="$top/build"
if [ "${1:-}" = "--build" ]; then
    build=$2
    shift 2
fi
[ -f "$build/Makefile" ] || { echo "zipf.sh: $build is not configured (scripts/build.sh $build)" >&2; exit 1; }
make -C "$build" tests/bench/zipf >/dev/null
if command -v taskset >/dev/null; then
    exec taskset -c 1 "$build/tests/bench/zipf" "$@"
fi
exec "$build/tests/bench/zipf" "$@"
