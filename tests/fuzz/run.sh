#!/usr/bin/env bash
# Build the codec fuzzer with clang (libFuzzer + ASan + UBSan) and run it for SECONDS
# (default 30). New crashers are copied to tests/fuzz/regressions/http/ and the run fails.
set -euo pipefail
secs=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=${FUZZ_WORK:-$(mktemp -d)}
mkdir -p "$work/corpus" "$work/crashes"
cp "$here"/corpus/http/* "$work/corpus/" 2>/dev/null || true
clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$top/proxy" "$here/fuzz_http.c" "$top"/proxy/http/*.c -o "$work/fuzz_http"
set +e
"$work/fuzz_http" -max_total_time="$secs" -max_len=4096 -artifact_prefix="$work/crashes/" \
    "$work/corpus" 2>"$work/log"
rc=$?
set -e
tail -n 3 "$work/log"
if ls "$work"/crashes/* >/dev/null 2>&1; then
    cp "$work"/crashes/* "$here/regressions/http/"
    echo "fuzz: crash found; kept in tests/fuzz/regressions/http/" >&2
    exit 1
fi
exit $rc
