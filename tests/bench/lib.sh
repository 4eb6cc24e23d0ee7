# tests/bench/lib.sh: what the bench scripts share; sourced by them, never run. Expects
# `set -euo pipefail` and a `pids` array the script kills on exit.

# need_tools WHO TOOL...: stop (exit 1) at the first tool not on PATH.
need_tools() {
    local who=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            { echo "$who: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
    done
}

# need_binaries WHO DIR NAME...: stop (exit 1) unless each NAME is built in DIR.
need_binaries() {
    local who=$1 dir=$2 b
    shift 2
    for b in "$@"; do
        [ -x "$dir/$b" ] || { echo "$who: no $b in $dir (build first)" >&2; exit 1; }
    done
}

# need_binary WHO PATH: stop (exit 1) unless PATH (a script's --bin PATH) is executable.
need_binary() {
    [ -x "$2" ] || { echo "$1: no $(basename "$2") binary at $2 (build first)" >&2; exit 1; }
}

# start_fauxqs BIN PORT QUEUE LOG: the SQS emulator on CPU 1 (its pid added to pids),
# then QUEUE created in it. Returns 1 when it did not answer within 20 s.
start_fauxqs() {
    local bin=$1 port=$2 queue=$3 log=$4
    FAUXQS_PORT=$port FAUXQS_LOGGER=false taskset -c 1 "$bin" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        curl -s -o /dev/null -X POST -H 'Content-Type: application/x-amz-json-1.0' \
            -H 'X-Amz-Target: AmazonSQS.CreateQueue' -d "{\"QueueName\":\"$queue\"}" \
            "http://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    return 1
}
