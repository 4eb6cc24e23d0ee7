#!/bin/sh
# test_rpm.sh — the RPM that `make rpm` builds is the package the issue describes:
#   - its file list holds every expected file, and nothing outside the expected places;
#   - config files are marked %config(noreplace), docs as docs, and ownership and modes
#     are right (service user owns spool and logs; config readable by its group only);
#   - the scriptlets create the user and carry the systemd preset/disable/reload steps,
#     and parse as sh;
#   - the payload's files are the ones in the source tree, and its binary runs
#     (`-v` prints the package version, `-t` accepts the packaged config);
#   - rpmlint, when installed, reports no error (beyond packaging/rpm/flashgate.rpmlintrc).
#
# `make check-packaging` builds the RPM and runs this with FG_RPM_TOPDIR set; run by hand
# from a configured build tree it runs `make rpm` itself.
set -eu

srcdir=${srcdir:-.}
for tool in rpm rpm2cpio cpio; do
    command -v $tool >/dev/null 2>&1 || { echo "FAIL: $tool not installed (apt-get install rpm cpio)" >&2; exit 1; }
done
if [ -z "${FG_RPM_TOPDIR:-}" ]; then
    ${MAKE:-make} rpm
    FG_RPM_TOPDIR=$(pwd)/rpmbuild
fi
rpmfile=$(find "$FG_RPM_TOPDIR/RPMS" -name 'flashgate-[0-9]*.rpm' | head -n 1)
srpm=$(find "$FG_RPM_TOPDIR/SRPMS" -name 'flashgate-*.src.rpm' | head -n 1)
[ -n "$rpmfile" ] || { echo "FAIL: no binary RPM under $FG_RPM_TOPDIR/RPMS" >&2; exit 1; }
[ -n "$srpm" ] || { echo "FAIL: no source RPM under $FG_RPM_TOPDIR/SRPMS" >&2; exit 1; }
echo "checking $rpmfile"

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- file list ----------------------------------------------------------------------
rpm -qlp "$rpmfile" >"$work/files"
# Man pages may be compressed (AL2023: .gz) or not (Debian's rpm): match the stem.
for f in /usr/sbin/flashgate /usr/sbin/flashgate-agent /etc/flashgate \
    /etc/flashgate/flashgate.conf /etc/flashgate/flashgate-agent.conf \
    /usr/share/man/man8/flashgate-agent.8 /usr/share/doc/flashgate/agent-protocol.md \
    /etc/sysconfig/flashgate /etc/logrotate.d/flashgate \
    /usr/lib/systemd/system/flashgate.service /usr/lib/tmpfiles.d/flashgate.conf \
    /usr/lib/systemd/system/flashgate-agent.service /etc/sysconfig/flashgate-agent \
    /var/lib/flashgate/spool /usr/share/doc/flashgate/offload.md \
    /usr/lib/sysusers.d/flashgate.conf /usr/share/man/man8/flashgate.8 \
    /usr/share/man/man5/flashgate.conf.5 /usr/share/doc/flashgate/README.md \
    /usr/share/doc/flashgate/deployment.md /usr/share/doc/flashgate/keepalive.md \
    /usr/share/doc/flashgate/architecture.md /usr/share/doc/flashgate/operations.md \
    /usr/share/doc/flashgate/tuning.md /usr/share/doc/flashgate/caching.md \
    /usr/share/doc/flashgate/ratelimit.md /usr/share/doc/flashgate/compression.md \
    /var/lib/flashgate /var/log/flashgate; do
    grep -q "^$f\(\.gz\|\.bz2\|\.xz\)\{0,1\}$" "$work/files" || fail "file list lacks $f"
done
# Nothing outside the places a flashgate package may touch (build-id links are rpm's).
unexpected=$(grep -v \
    -e '^/usr/sbin/flashgate$' -e '^/usr/sbin/flashgate-agent$' -e '^/etc/flashgate' \
    -e '^/etc/sysconfig/flashgate$' -e '^/etc/sysconfig/flashgate-agent$' \
    -e '^/etc/logrotate.d/flashgate$' -e '^/usr/lib/systemd/system/flashgate\.service$' \
    -e '^/usr/lib/systemd/system/flashgate-agent\.service$' -e '^/var/lib/flashgate/spool$' \
    -e '^/usr/lib/tmpfiles.d/flashgate\.conf$' -e '^/usr/lib/sysusers.d/flashgate\.conf$' \
    -e '^/usr/share/man/man[58]/flashgate' -e '^/usr/share/doc/flashgate' \
    -e '^/var/lib/flashgate$' -e '^/var/log/flashgate$' -e '^/usr/lib/\.build-id' \
    "$work/files" || true)
[ -z "$unexpected" ] || fail "unexpected files in the package: $unexpected"

# --- flags, owners, modes -------------------------------------------------------------
rpm -qp --queryformat '[%{FILENAMES}|%{FILEFLAGS:fflags}|%{FILEUSERNAME}:%{FILEGROUPNAME}|%{FILEMODES:perms}\n]' \
    "$rpmfile" >"$work/attrs"
attr() {
    line=$(grep "^$1|" "$work/attrs" || true)
    [ -n "$line" ] || { fail "no attributes for $1"; return; }
    [ "$line" = "$1|$2" ] || fail "$1: got '${line#*|}', expected '$2'"
}
attr /etc/flashgate/flashgate.conf 'cn|root:flashgate|-rw-r-----'
attr /etc/flashgate/flashgate-agent.conf 'cn|root:flashgate|-rw-r-----'
attr /etc/sysconfig/flashgate 'cn|root:root|-rw-r--r--'
# It may hold AWS keys: the service's group only.
attr /etc/sysconfig/flashgate-agent 'cn|root:flashgate|-rw-r-----'
attr /var/lib/flashgate/spool '|flashgate:flashgate|drwxr-x---'
attr /usr/lib/systemd/system/flashgate-agent.service '|root:root|-rw-r--r--'
attr /etc/logrotate.d/flashgate 'cn|root:root|-rw-r--r--'
attr /etc/flashgate '|root:flashgate|drwxr-x---'
attr /var/lib/flashgate '|flashgate:flashgate|drwxr-x---'
attr /var/log/flashgate '|flashgate:flashgate|drwxr-x---'
attr /usr/sbin/flashgate '|root:root|-rwxr-xr-x'
attr /usr/sbin/flashgate-agent '|root:root|-rwxr-xr-x'
attr /usr/lib/systemd/system/flashgate.service '|root:root|-rw-r--r--'
attr /usr/share/doc/flashgate/deployment.md 'd|root:root|-rw-r--r--'
# Only the five files above are config; a unit or binary marked config would never update.
configs=$(awk -F'|' '$2 ~ /c/ { print $1 }' "$work/attrs" | sort | tr '\n' ' ')
[ "$configs" = "/etc/flashgate/flashgate-agent.conf /etc/flashgate/flashgate.conf /etc/logrotate.d/flashgate /etc/sysconfig/flashgate /etc/sysconfig/flashgate-agent " ] ||
    fail "config files are: $configs"

# --- scriptlets -------------------------------------------------------------------------
rpm -qp --scripts "$rpmfile" >"$work/scripts"
# Split into one file per scriptlet so each can be checked and parsed on its own.
awk -v dir="$work" '/^[a-z]+ scriptlet \(using / { name = $1; next } name { print > (dir "/" name ".sh") }' \
    "$work/scripts"
has() { # scriptlet, pattern, what
    grep -q -- "$2" "$work/$1.sh" 2>/dev/null || fail "$1 scriptlet does not $3"
}
has preinstall 'getent passwd flashgate' "check for the flashgate user"
has preinstall 'useradd -r -g flashgate' "create the flashgate system user"
has preinstall 'groupadd -r flashgate' "create the flashgate group"
# The distribution's macros (AL2023: systemd-update-helper) or the spec's fallbacks.
has postinstall 'preset flashgate.service\|install-system-units flashgate.service' \
    "preset flashgate.service on first install"
has preuninstall 'disable --now flashgate.service\|remove-system-units flashgate.service' \
    "disable and stop flashgate.service on removal"
has postinstall 'preset flashgate.service flashgate-agent.service\|install-system-units flashgate.service flashgate-agent.service' \
    "preset flashgate-agent.service on first install"
has preuninstall 'flashgate-agent.service' "disable and stop flashgate-agent.service on removal"
grep -q 'try-restart\|mark-restart' "$work/scripts" &&
    fail "an upgrade must not restart (drain) the proxy on its own"
for s in "$work"/*install.sh; do
    sh -n "$s" || fail "$(basename "$s" .sh) scriptlet is not valid sh"
done
rpm -qpR "$rpmfile" | grep -q '^shadow-utils' || fail "no Requires(pre) on shadow-utils"

# --- payload: the source tree's files, a binary that runs ------------------------------
mkdir "$work/root"
(cd "$work/root" && rpm2cpio "$rpmfile" | cpio -idm --quiet)
same() {
    cmp -s "$srcdir/$1" "$work/root$2" || fail "$2 in the package differs from $1"
}
same packaging/systemd/flashgate.service /usr/lib/systemd/system/flashgate.service
same packaging/systemd/flashgate-agent.service /usr/lib/systemd/system/flashgate-agent.service
same packaging/sysconfig/flashgate-agent /etc/sysconfig/flashgate-agent
same conf/flashgate-agent.conf /etc/flashgate/flashgate-agent.conf
same packaging/logrotate/flashgate /etc/logrotate.d/flashgate
same packaging/sysconfig/flashgate /etc/sysconfig/flashgate
same packaging/tmpfiles/flashgate.conf /usr/lib/tmpfiles.d/flashgate.conf
same packaging/sysusers/flashgate.conf /usr/lib/sysusers.d/flashgate.conf
same conf/flashgate.conf /etc/flashgate/flashgate.conf
version=$(rpm -qp --queryformat '%{VERSION}' "$rpmfile")
[ -z "${FG_VERSION:-}" ] || [ "$version" = "$FG_VERSION" ] ||
    fail "package version $version, configure says $FG_VERSION"
out=$("$work/root/usr/sbin/flashgate" -v 2>&1) || fail "packaged flashgate -v failed: $out"
[ "$out" = "flashgate $version" ] || fail "packaged flashgate -v says '$out', package is $version"
# Built with --sysconfdir=/etc: the compiled-in default config path is the packaged one.
"$work/root/usr/sbin/flashgate" -h 2>&1 | grep -q '/etc/flashgate/flashgate.conf' ||
    fail "the packaged binary's default config is not /etc/flashgate/flashgate.conf"
out=$("$work/root/usr/sbin/flashgate" -t -c "$work/root/etc/flashgate/flashgate.conf" 2>&1) ||
    fail "the packaged binary rejects the packaged config: $out"

# --- logrotate accepts its file ---------------------------------------------------------
if command -v logrotate >/dev/null 2>&1; then
    # -d: parse and plan only. Point it at a scratch copy so no real log is touched;
    # `su` and `create` name the service user: use root where it does not exist here.
    sed "s|/var/log/flashgate|$work/logs|" "$work/root/etc/logrotate.d/flashgate" >"$work/logrotate.conf"
    getent passwd flashgate >/dev/null || sed -i 's/ flashgate flashgate$/ root root/' "$work/logrotate.conf"
    mkdir "$work/logs" && echo line >"$work/logs/error.log"
    if ! logrotate -d -f -s "$work/logrotate.state" "$work/logrotate.conf" >"$work/logrotate.out" 2>&1 ||
        grep -q '^error:' "$work/logrotate.out"; then
        cat "$work/logrotate.out" >&2
        fail "logrotate rejects /etc/logrotate.d/flashgate"
    fi
else
    echo "note: logrotate not installed, its file is not parsed (apt-get install logrotate)"
fi

# --- rpmlint ----------------------------------------------------------------------------
if command -v rpmlint >/dev/null 2>&1; then
    rpmlint -r "$srcdir/packaging/rpm/flashgate.rpmlintrc" "$rpmfile" "$srpm" >"$work/rpmlint.out" 2>&1 || true
    cat "$work/rpmlint.out"
    if grep -q ': E: ' "$work/rpmlint.out"; then
        fail "rpmlint reports errors (see above)"
    fi
    grep -q 'packages and .* checked' "$work/rpmlint.out" || fail "rpmlint did not run to the end"
else
    echo "note: rpmlint not installed, skipped (apt-get install rpmlint)"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "rpm checks passed"
