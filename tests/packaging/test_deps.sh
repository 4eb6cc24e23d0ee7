#!/bin/sh
# test_deps.sh — scripts/deps.sh installs every tool the build, the tests, the scripts
# and the Makefile rules run, so that scripts/test.sh passes on a fresh Debian 12 (base
# system + node 20) with nothing beside the clone:
#   - each tool of the table below (what runs it, and its Debian package) has its package
#     in deps.sh's list;
#   - where the tool is installed here, dpkg agrees that it comes from that package
#     (so the table stays true);
#   - every tool the test and script sources look up by name (`command -v X`,
#     shutil.which("X"), subprocess lists starting with "X") is in the table.
# Run by `make check` from the build tree (srcdir set by automake).
set -eu

srcdir=${srcdir:-.}
deps=$srcdir/scripts/deps.sh
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# tool | the package deps.sh lists | the package its binary comes from | what runs it
table='
autoreconf|autoconf|autoconf|scripts/build.sh (first build from a clone)
automake|automake|automake|autoreconf
libtoolize|libtool|libtool|autoreconf
pkg-config|pkg-config|pkgconf-bin|configure (pkg-config for every library)
make|build-essential|make|everything
gcc|build-essential|gcc-12|the build
clang|clang|clang-14|scripts/test.sh (second compiler, ASan/UBSan build), tests/fuzz/run.sh
clang-format|clang-format|clang-format-14|make format, make format-check
git|git|git|make format, make format-check (the file list is git ls-files)
python3|python3|python3-minimal|integration and packaging tests
pytest-3|python3-pytest|python3-pytest|tests/integration/run.sh (python3 -m pytest)
curl|curl|curl|scripts/quickstart.sh, tests/integration/test_quickstart.py
openssl|openssl|openssl|tests/unit/tls, tests/unit/config/test_files.c, test_tls.py (certificates)
ss|iproute2|iproute2|tests/integration/test_proxy.py (listen backlog)
taskset|util-linux|util-linux|tests/bench/run.sh
pgrep|procps|procps|tests/bench/run.sh, tests/bench/offload.sh
redis-server|redis-server|redis-tools|tests/integration/test_ratelimit.py, tests/bench/run.sh
redis-cli|redis-tools|redis-tools|tests/unit/redis/test_client.c, tests/integration/redisfleet.py (clusters)
node|-|-|demo/app.js (quick start, test_quickstart.py); node 20 is on the machine
npm|-|-|scripts/deps.sh installs fauxqs with it (test_sqs.py); it comes with node 20
nginx|nginx-light|nginx|tests/bench/run.sh
wrk|wrk|wrk|tests/bench/run.sh, tests/bench/soak.sh
haproxy|haproxy|haproxy|tests/bench/run.sh (a peer)
varnishd|varnish|varnish|tests/bench/run.sh (a peer)
rpmbuild|rpm|rpm|make rpm, make check-packaging
rpm2cpio|rpm2cpio|rpm2cpio|tests/packaging/test_rpm.sh
cpio|cpio|cpio|tests/packaging/test_rpm.sh
rpmlint|rpmlint|rpmlint|tests/packaging/test_rpm.sh
logrotate|logrotate|logrotate|tests/packaging/test_rpm.sh, tests/integration/test_operations.py
systemd-analyze|systemd|systemd|tests/packaging/test_systemd_unit.sh
man|man-db|man-db|systemd-analyze verify (it runs man for the units Documentation= lines)
chromium|chromium|chromium|tests/integration/test_dashboard.py (the page in a real browser)
mount|mount|mount|tests/reliability/test_agent_reliability.py (a small tmpfs for the spool)
umount|mount|mount|tests/reliability/test_agent_reliability.py
setpriv|util-linux|util-linux|tests/integration/test_agent.py (-t as an unprivileged user)
'

# The package list of deps.sh: the words of its packages=( ... ) array, comments dropped.
listed=$(sed -n '/^packages=(/,/^)/p' "$deps" | sed -e 's/#.*//' -e 's/packages=(//' -e 's/)//' |
    tr -s ' \t' '\n\n' | sed '/^$/d')
[ -n "$listed" ] || { echo "FAIL: no packages=( ... ) list in $deps" >&2; exit 1; }

# The package a tool's binary comes from, by dpkg (usrmerge: /bin is /usr/bin).
owner() {
    path=$(command -v "$1" 2>/dev/null) || return 1
    real=$(readlink -f "$path")
    for p in "$real" "$path" "$(echo "$real" | sed 's|^/usr/|/|')"; do
        pkg=$(dpkg -S "$p" 2>/dev/null | head -n 1 | cut -d: -f1) && [ -n "$pkg" ] &&
            { echo "$pkg"; return 0; }
    done
    return 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$table" | sed '/^$/d' >"$work/table"
tools=""
while IFS='|' read -r tool pkg from why; do
    tools="$tools $tool"
    if [ "$pkg" = - ]; then
        # node 20 is part of the machine (the brief: base system + node 20); deps.sh only
        # checks for it
        grep -q "command -v $tool" "$deps" || fail "scripts/deps.sh does not check for $tool ($why)"
        continue
    fi
    echo "$listed" | grep -qx "$pkg" ||
        fail "$tool ($why) comes with package $pkg, which scripts/deps.sh does not install"
    if command -v dpkg >/dev/null 2>&1 && got=$(owner "$tool"); then
        [ "$got" = "$from" ] || fail "$tool is from package $got here, the table says $from"
    fi
done <"$work/table"

# Every tool the sources look up or run by name is in the table: ours and the Essential
# packages of every Debian (coreutils, dpkg, ...) excepted. This file is not scanned.
ours=" flashgate flashgate-agent bash sh rm cp mv mkdir sed awk grep tar gzip kill dpkg "
found=$(cd "$srcdir" && {
    # (deps.sh itself is the installer: its optional lookups are not requirements)
    grep -rhoE --exclude=test_deps.sh 'command -v [A-Za-z0-9_.-]+' scripts/build.sh \
        scripts/test.sh scripts/quickstart.sh tests .ci 2>/dev/null | awk '{print $3}'
    grep -rhoE --exclude=test_deps.sh 'shutil\.which\("[A-Za-z0-9_.-]+"' tests 2>/dev/null | sed 's/.*("//; s/"//'
    grep -rhoE --exclude=test_deps.sh 'subprocess\.(run|Popen|check_output|call)\(\["[A-Za-z0-9_.-]+"' tests 2>/dev/null |
        sed 's/.*\["//; s/"//'
} | sort -u)
for t in $found; do
    case "$ours $tools " in
    *" $t "*) ;;
    *) fail "the tests or scripts run '$t', which is not in this table (add it, and its package to scripts/deps.sh)" ;;
    esac
done

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "scripts/deps.sh installs all $(echo $tools | wc -w) tools the build and the tests run"
