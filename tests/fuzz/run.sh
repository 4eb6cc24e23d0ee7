#!/usr/bin/env bash
# Build each codec fuzz target with clang (libFuzzer + ASan + UBSan) straight from the
# sources (proxy/http needs nothing else) and run it for SECONDS (default 30) each.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      TARGET: request response chunked
#
# Each target starts from a scratch copy of tests/fuzz/corpus/<target>/ (so the repo is
# not flooded with generated inputs). A crasher is copied to tests/fuzz/regressions/
# <target>/, where `make check` replays it from then on, and the script exits non-zero.
# FUZZ_WORK=dir keeps the build and the grown corpora there; FUZZ_JOBS=n runs n workers.
set -euo pipefail
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request response chunked)
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=${FUZZ_WORK:-$(mktemp -d)}
jobs=${FUZZ_JOBS:-1}
cc=${CC_FUZZ:-clang}
status=0
for t in "${targets[@]}"; do
    src="$here/fuzz_$t.c"
    [ -f "$src" ] || { echo "fuzz: no target $t" >&2; exit 2; }
    mkdir -p "$work/$t/corpus" "$work/$t/crashes"
    cp "$here/corpus/$t/"* "$work/$t/corpus/" 2>/dev/null || true
    cp "$here/regressions/$t/"* "$work/$t/corpus/" 2>/dev/null || true
    "$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$top/proxy" -I"$here" "$src" "$top"/proxy/http/*.c -o "$work/$t/fuzz_$t"
    set +e
    par=()
    [ "$jobs" -le 1 ] || par=(-fork="$jobs" -ignore_crashes=0)
    "$work/$t/fuzz_$t" -max_total_time="$secs" -max_len=8192 -timeout=10 \
        -dict="$here/http.dict" "${par[@]}" -print_final_stats=1 \
        -artifact_prefix="$work/$t/crashes/" "$work/$t/corpus" >"$work/$t/log" 2>&1
    rc=$?
    set -e
    execs=$({ grep -h 'stat::number_of_executed_units' "$work/$t/log" || true; } |
        awk '{s += $2} END {print s + 0}')
    echo "fuzz $t: exit $rc, $execs executions in ${secs}s, corpus $(ls "$work/$t/corpus" | wc -l) inputs"
    if ls "$work/$t/crashes/"* >/dev/null 2>&1; then
        mkdir -p "$here/regressions/$t"
        cp "$work/$t/crashes/"* "$here/regressions/$t/"
        echo "fuzz $t: crash found, kept in tests/fuzz/regressions/$t/:" >&2
        ls "$work/$t/crashes/" >&2
        { grep -h -A12 'ERROR: \|runtime error' "$work/$t/log" || true; } | head -40 >&2
        status=1
    elif [ $rc -ne 0 ]; then
        tail -n 20 "$work/$t/log" >&2
        status=1
    fi
done
[ -n "${FUZZ_WORK:-}" ] || rm -rf "$work"
exit $status
