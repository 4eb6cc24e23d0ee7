#!/usr/bin/env bash
# Install every Debian 12 package that building, testing, fuzzing, packaging and the
# benchmarks need. Idempotent and non-interactive; skips apt entirely when all are there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# tests/packaging/test_deps.sh checks this list against every tool the build, the tests,
# the scripts and the Makefile rules run (a table there says which runs what).
packages=(
    # build
    build-essential autoconf automake libtool pkg-config
    libevent-dev libssl-dev zlib1g-dev libbrotli-dev libhiredis-dev libcmocka-dev
    # second compiler, libFuzzer and sanitizers; make format and format-check list the
    # files with git ls-files (without git they would check nothing)
    clang libclang-rt-14-dev clang-format git
    # tests
    python3 python3-pytest python3-brotli curl procps util-linux ca-certificates openssl iproute2
    # the dashboard's test opens it in a real browser (headless)
    chromium
    # the agent's full-disk test mounts a tmpfs
    mount
    # later features' real parts: Redis (redis-server is built with TLS; redis-cli makes
    # the test clusters)
    redis-server redis-tools
    # benchmarks
    nginx-light wrk haproxy varnish
    # packaging checks; man-db: systemd-analyze verify runs man for the units'
    # Documentation= lines
    rpm rpm2cpio cpio rpmlint logrotate systemd man-db
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: run as root (apt-get needs it)" >&2
        exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # nginx's, HAProxy's and Varnish's packages start default servers (:80, :6081); the
    # benchmarks run their own.
    if command -v service >/dev/null 2>&1; then
        for s in nginx haproxy varnish; do service "$s" stop >/dev/null 2>&1 || true; done
    fi
else
    echo "deps: all packages present"
fi

# The SQS emulator for the agent's integration tests: fauxqs from npm, pinned to 1.9.x
# (2.x needs a newer node than Debian's 20), installed beside the tree in .deps/.
fauxqs_version=1.9.2
fauxqs_dir="$(cd "$(dirname "$0")/.." && pwd)/.deps/fauxqs"
if [ -x "$fauxqs_dir/node_modules/.bin/fauxqs" ] &&
    grep -q "\"version\": \"$fauxqs_version\"" "$fauxqs_dir/node_modules/fauxqs/package.json"; then
    echo "deps: fauxqs $fauxqs_version present"
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "deps: npm is missing (node 20 comes with it)" >&2
        exit 1
    fi
    echo "deps: installing fauxqs $fauxqs_version into $fauxqs_dir"
    mkdir -p "$fauxqs_dir"
    npm install --prefix "$fauxqs_dir" --no-audit --no-fund --loglevel=error \
        "fauxqs@$fauxqs_version" >/dev/null
fi
