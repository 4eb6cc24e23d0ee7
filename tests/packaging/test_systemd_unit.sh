#!/bin/sh
# test_systemd_unit.sh — packaging/systemd/flashgate.service (and flashgate-agent.service)
# are what the issue asks for
# and what the rest of the package agrees with:
#   - the directives that matter (Type=notify, the -t check before start and reload,
#     SIGTERM drain, restart policy, user, hardening, LimitNOFILE) are set;
#   - TimeoutStopSec covers shutdown_delay + drain_timeout of the shipped config with a
#     margin and stays below the ALB's default deregistration delay (300 s);
#   - ReadWritePaths, tmpfiles.d, sysusers.d and the spec name the same user and dirs;
#   - the shipped config passes the ExecStartPre check with the built binary;
#   - `systemd-analyze verify` is clean with the binary path pointed at the built one
#     (skipped, exit 77, when systemd-analyze is not installed).
# Run by `make check` from the build tree; FLASHGATE=/path overrides ./flashgate.
set -eu

srcdir=${srcdir:-.}
unit=$srcdir/packaging/systemd/flashgate.service
conf=$srcdir/conf/flashgate.conf
tmpfiles=$srcdir/packaging/tmpfiles/flashgate.conf
sysusers=$srcdir/packaging/sysusers/flashgate.conf
spec=$srcdir/packaging/rpm/flashgate.spec
bin=${FLASHGATE:-./flashgate}
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# The value of a [Service] directive (last assignment wins, as in systemd).
directive() {
    sed -n "s/^$1=//p" "$unit" | tail -n 1
}

expect() {
    got=$(directive "$1")
    [ "$got" = "$2" ] || fail "$1 is '$got', expected '$2'"
}

# Seconds in a flashgate duration ("60s", "2m", "500ms", "1h", bare = seconds), rounded up.
seconds() {
    case $1 in
    *ms) echo $(((${1%ms} + 999) / 1000)) ;;
    *s) echo "${1%s}" ;;
    *m) echo $((${1%m} * 60)) ;;
    *h) echo $((${1%h} * 3600)) ;;
    *) echo "$1" ;;
    esac
}

# The value of a top-level directive in the shipped config (first uncommented one).
conf_value() {
    sed -n "s/^$1[[:space:]]\{1,\}\([^;[:space:]]*\);.*/\1/p" "$conf" | head -n 1
}

[ -f "$unit" ] || { echo "FAIL: $unit missing" >&2; exit 1; }

# --- the directives the issue names ---------------------------------------------------
expect Type notify
expect NotifyAccess main
expect Environment FLASHGATE_CONF=/etc/flashgate/flashgate.conf
expect EnvironmentFile -/etc/sysconfig/flashgate
expect ExecStartPre '/usr/sbin/flashgate -t -c ${FLASHGATE_CONF}'
expect ExecStart '/usr/sbin/flashgate -c ${FLASHGATE_CONF}'
reload=$(sed -n 's/^ExecReload=//p' "$unit")
want_reload=$(printf '%s\n%s' '/usr/sbin/flashgate -t -c ${FLASHGATE_CONF}' '/bin/kill -HUP $MAINPID')
[ "$reload" = "$want_reload" ] || fail "ExecReload must be the -t check, then kill -HUP: got '$reload'"
expect KillSignal SIGTERM
expect Restart on-failure
expect User flashgate
expect Group flashgate
expect LimitNOFILE 1048576
expect NoNewPrivileges yes
expect ProtectSystem strict
expect ProtectHome yes
expect PrivateTmp yes
expect CapabilityBoundingSet CAP_NET_BIND_SERVICE
expect RestrictAddressFamilies 'AF_INET AF_INET6 AF_UNIX'
expect ReadWritePaths '/var/lib/flashgate /var/log/flashgate'
expect WantedBy multi-user.target

# --- stop timeout against the shipped drain settings ----------------------------------
delay=$(conf_value shutdown_delay)
drain=$(conf_value drain_timeout)
[ -n "$delay" ] || delay=0        # the defaults, when the shipped config omits them
[ -n "$drain" ] || drain=30s
need=$(($(seconds "$delay") + $(seconds "$drain")))
stop=$(directive TimeoutStopSec)
stop_s=$(seconds "$stop")
echo "shutdown_delay $delay + drain_timeout $drain = ${need}s; TimeoutStopSec=$stop"
[ "$stop_s" -ge $((need + 10)) ] ||
    fail "TimeoutStopSec=$stop leaves under 10 s over shutdown_delay + drain_timeout" \
        "(${need}s): systemd would SIGKILL a drain"
[ "$stop_s" -lt 300 ] ||
    fail "TimeoutStopSec=$stop is not below the ALB's default deregistration delay (300 s)"

# --- the package agrees with itself ---------------------------------------------------
for d in /var/lib/flashgate /var/log/flashgate; do
    grep -q "^d $d 0750 flashgate flashgate" "$tmpfiles" ||
        fail "tmpfiles.d does not create $d for flashgate"
    grep -q "%dir %attr(0750,flashgate,flashgate) %{_localstatedir}${d#/var}$" "$spec" ||
        fail "the spec does not own $d as flashgate"
done
grep -q '^u flashgate ' "$sysusers" || fail "sysusers.d does not declare the flashgate user"
# (joining the %pre's backslash-continued lines first)
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$spec" | grep -q 'useradd -r .* flashgate$' ||
    fail "the spec's %pre does not create the flashgate user"

# --- the ExecStartPre check passes on the shipped config --------------------------------
if [ ! -x "$bin" ]; then
    fail "flashgate binary not found at $bin (build it, or set FLASHGATE=)"
else
    out=$("$bin" -t -c "$conf" 2>&1) || fail "flashgate -t rejects the shipped config: $out"
    case $out in *"is ok"*) ;; *) fail "flashgate -t said: $out" ;; esac
fi

# --- flashgate-agent.service ------------------------------------------------------------
proxy_unit=$unit
unit=$srcdir/packaging/systemd/flashgate-agent.service
agent_bin=${FLASHGATE_AGENT:-$(dirname "$bin")/flashgate-agent}
if [ ! -f "$unit" ]; then
    fail "$unit missing"
else
    expect Type notify
    expect NotifyAccess main
    expect Environment FLASHGATE_AGENT_CONF=/etc/flashgate/flashgate-agent.conf
    expect EnvironmentFile -/etc/sysconfig/flashgate-agent
    expect ExecStartPre '/usr/sbin/flashgate-agent -t -c ${FLASHGATE_AGENT_CONF}'
    expect ExecStart '/usr/sbin/flashgate-agent -c ${FLASHGATE_AGENT_CONF}'
    expect ExecReload '/bin/kill -HUP $MAINPID'
    expect KillSignal SIGTERM
    expect Restart always
    expect User flashgate
    expect Group flashgate
    expect UMask 0007
    expect NoNewPrivileges yes
    expect ProtectSystem strict
    expect ProtectHome yes
    expect PrivateTmp yes
    expect CapabilityBoundingSet ''
    expect RestrictAddressFamilies 'AF_INET AF_INET6 AF_UNIX'
    expect ReadWritePaths '/var/lib/flashgate /var/log/flashgate'
    expect WantedBy multi-user.target
    # Both units share /run/flashgate (the agent's socket): neither may remove it.
    expect RuntimeDirectory flashgate
    expect RuntimeDirectoryPreserve yes
    grep -q '^RuntimeDirectoryPreserve=yes' "$proxy_unit" ||
        fail "flashgate.service must preserve /run/flashgate (the agent's socket is there)"
    grep -q '^After=.*flashgate-agent.service' "$proxy_unit" ||
        fail "flashgate.service does not start after flashgate-agent.service"
    # The socket and spool the shipped agent config names are the ones the units provide.
    aconf=$srcdir/conf/flashgate-agent.conf
    grep -q '^listen /run/flashgate/' "$aconf" || fail "the agent's socket is not under /run/flashgate"
    grep -q '^spool_dir /var/lib/flashgate/' "$aconf" ||
        fail "the agent's spool is not under /var/lib/flashgate (ReadWritePaths)"
    grep -q '^d /var/lib/flashgate/spool 0750 flashgate flashgate' "$tmpfiles" ||
        fail "tmpfiles.d does not create the spool directory"
    if [ -x "$agent_bin" ]; then
        out=$("$agent_bin" -t -c "$aconf" 2>&1) ||
            fail "flashgate-agent -t rejects the shipped config: $out"
    else
        fail "flashgate-agent binary not found at $agent_bin"
    fi
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
unit=$proxy_unit

# --- systemd-analyze verify -------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze not installed (apt-get install systemd); static checks passed"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
abs_bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
# Same file name (systemd derives the unit name from it), binary path swapped.
sed "s|/usr/sbin/flashgate|$abs_bin|g" "$unit" >"$work/flashgate.service"
# verify checks that the Documentation= man pages exist: give man our pages.
mkdir -p "$work/man/man8" "$work/man/man5"
cp "$srcdir/docs/flashgate.8" "$work/man/man8/"
cp "$srcdir/docs/flashgate.conf.5" "$work/man/man5/"
cp "$srcdir/docs/flashgate-agent.8" "$work/man/man8/"
abs_agent=$(cd "$(dirname "$agent_bin")" && pwd)/$(basename "$agent_bin")
sed "s|/usr/sbin/flashgate-agent|$abs_agent|g" "$srcdir/packaging/systemd/flashgate-agent.service" \
    >"$work/flashgate-agent.service"
if ! MANPATH=$work/man systemd-analyze verify "$work/flashgate.service" \
    "$work/flashgate-agent.service" >"$work/verify.out" 2>&1; then
    cat "$work/verify.out" >&2
    echo "FAIL: systemd-analyze verify" >&2
    exit 1
fi
# Clean means no output at all: unknown keys and bad values are only warnings.
if [ -s "$work/verify.out" ]; then
    cat "$work/verify.out" >&2
    echo "FAIL: systemd-analyze verify printed warnings" >&2
    exit 1
fi
echo "systemd-analyze verify: clean"

# The hardening, as systemd scores it (lower is better; 10 = no sandbox at all).
if systemd-analyze security --offline=true "$work/flashgate.service" >"$work/security.out" 2>&1; then
    score=$(sed -n 's/.*Overall exposure level for flashgate.service: \([0-9.]*\).*/\1/p' "$work/security.out")
    echo "systemd-analyze security: exposure $score"
    # awk does the decimal comparison; 3.0 is systemd's upper bound for "OK".
    if [ -z "$score" ] || ! awk -v s="$score" 'BEGIN { exit !(s < 3.0) }'; then
        cat "$work/security.out" >&2
        echo "FAIL: exposure '$score' is not below 3.0" >&2
        exit 1
    fi
fi
if systemd-analyze security --offline=true "$work/flashgate-agent.service" >"$work/security.out" 2>&1; then
    score=$(sed -n 's/.*Overall exposure level for flashgate-agent.service: \([0-9.]*\).*/\1/p' "$work/security.out")
    echo "systemd-analyze security (agent): exposure $score"
    if [ -z "$score" ] || ! awk -v s="$score" 'BEGIN { exit !(s < 3.0) }'; then
        cat "$work/security.out" >&2
        echo "FAIL: the agent's exposure '$score' is not below 3.0" >&2
        exit 1
    fi
fi
exit 0
