#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install what is missing, build
# with gcc and clang (warnings are errors), run unit, fuzz-replay and integration tests,
# make distcheck, the packaging checks, a short fuzz run, the suite again under
# AddressSanitizer and UBSan, the unit tests under ThreadSanitizer, and check the code
# style. Ends with "N passed, N failed" (stages).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
passed=0
failed=0
failures=()

stage() {
    local name=$1
    shift
    echo "=== $name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: ok ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

show_failed_logs() { # dir: print the tail of every test log that failed under it
    find "$1" -name '*.log' -exec grep -l -E '^(FAIL|ERROR)' {} + 2>/dev/null | head -20 |
        while read -r f; do
            echo "--- $f"
            tail -n 60 "$f"
        done
}

check_in() { # dir: run make check, show the failing logs
    make -C "$1" -j2 check || { show_failed_logs "$1"; return 1; }
}

# The SQS emulator scripts/deps.sh installs (tests/integration/test_sqs.py runs it).
if [ -z "${FG_FAUXQS:-}" ]; then
    export FG_FAUXQS="$top/.deps/fauxqs/node_modules/.bin/fauxqs"
fi
if ! bash scripts/deps.sh; then
    echo "dependencies could not be installed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
stage "build (gcc, -Werror)" bash scripts/build.sh "$top/build" --enable-werror CC=gcc
stage "format (clang-format, .clang-format)" make -C "$top/build" format-check
stage "make check (gcc)" check_in "$top/build"
distcheck() {
    make -C "$top/build" distcheck DISTCHECK_CONFIGURE_FLAGS=--enable-werror ||
        { show_failed_logs "$top/build/flashgate-0.1.0"; return 1; }
}
stage "make distcheck" distcheck
stage "packaging (rpm, systemd unit)" make -C "$top/build" check-packaging
stage "build (clang, -Werror)" bash scripts/build.sh "$top/build-clang" --enable-werror CC=clang
stage "fuzz the codec (20 s)" bash tests/fuzz/run.sh 20
stage "build (clang, ASan+UBSan)" bash scripts/build.sh "$top/build-asan" --enable-werror \
    --enable-sanitizers CC=clang
# The daemon is stopped with signals mid-flight in the integration tests: leak reports at
# exit would be noise there. Memory errors still abort.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
stage "make check (ASan+UBSan)" check_in "$top/build-asan"
# Data races: the unit tests again under ThreadSanitizer. The store, its notifiers and the
# rate-limit table are shared by worker threads; their tests drive them from several
# threads at once (tests/unit/cache/test_threads.c, test_reader.c, test_store.c,
# tests/unit/ratelimit/test_table.c). Any report fails the stage.
tsan_unit() {
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 make -C "$top/build-tsan" -j2 check-unit ||
        { show_failed_logs "$top/build-tsan"; return 1; }
}
stage "build (clang, ThreadSanitizer)" bash scripts/build.sh "$top/build-tsan" --enable-werror \
    --enable-tsan CC=clang
stage "unit tests (ThreadSanitizer)" tsan_unit

echo
if [ "$failed" -gt 0 ]; then
    echo "failed stages: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
