#!/usr/bin/env bash
# Configure and build out of tree: scripts/build.sh BUILD_DIR [configure args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
shift
cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
    autoreconf -fi >/dev/null
fi
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$top/configure" -nt config.status ]; then
    "$top/configure" "$@" >/dev/null
fi
make -j"$(nproc)" >/dev/null
