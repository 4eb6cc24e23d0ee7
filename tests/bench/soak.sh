#!/usr/bin/env bash
# The long form of the reliability suite (tests/reliability/): a soak of mixed traffic
# with a reload storm in the middle, flashgate's and flashgate-agent's RSS and open fds
# sampled every 10 s, and a table at the end. Not part of make check.
#
#   tests/bench/soak.sh [SECONDS] [--bin DIR]      (default 600 s: 10 minutes)
#
# Traffic (wrk -t2 -c32, its Lua script below), by request number:
#   64%  cached pages, 3,000 keys of 4 KiB HTML, asked identity, br or gzip (a compressed
#        variant per coding in the cache), max-age=20: hits, refreshes, stale-while-revalidate
#   12%  cached chunked answers (length unknown at fill), 1,000 keys
#   12%  proxied, uncached (/echo, a 20 KB answer)
#   10%  a limited route (limit 300r/s, key route): 200 or 429
#    2%  POSTs to an offload route (`when always`): 202 once the agent has the record on
#        disk; the agent forwards to an SQS queue in fauxqs (scripts/deps.sh installs it),
#        every message kept there to be counted at the end (2%: fauxqs holds them in memory)
# The reload storm: in the middle, 30 SIGHUPs over min(60 s, SECONDS/5), valid and
# invalid configs alternating (the valid ones change the limit's rate).
# The table: RSS and fds of both processes at 1 min and at the end (and their maxima),
# requests and errors (wrk's socket errors and every status other than 200/202/429),
# reloads applied and refused, writes answered 202 against messages in the queue.
# flashgate and the agent are pinned to CPU 0; wrk, the origin and fauxqs to CPU 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
duration=600
bindir="$top/build"
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bindir=$2; shift 2 ;;
    [0-9]*) duration=$1; shift ;;
    *) echo "usage: $0 [SECONDS] [--bin DIR]" >&2; exit 2 ;;
    esac
done
[ "$duration" -ge 30 ] || { echo "soak: at least 30 seconds" >&2; exit 2; }
. "$here/lib.sh"
need_tools soak wrk taskset curl /usr/bin/python3
need_binaries soak "$bindir" flashgate flashgate-agent
fauxqs=${FG_FAUXQS:-$top/.deps/fauxqs/node_modules/.bin/fauxqs}
[ -x "$fauxqs" ] || { echo "soak: fauxqs not installed (scripts/deps.sh) and FG_FAUXQS not set" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    [ -n "${SOAK_KEEP:-}" ] && echo "soak: files kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral port range (32768-60999): the clients' own ports never collide.
ORIGIN=29301 FG=29302 FGADMIN=29303 AGSTATUS=29304 FAUXQS=29305
QUEUE=http://sqs.us-east-1.localhost:$FAUXQS/000000000000/soak

cat > "$work/agent.conf" <<CONF
listen $work/agent.sock;
spool_dir $work/spool;
sink sqs;
sqs_queue_url $QUEUE;
sqs_endpoint http://127.0.0.1:$FAUXQS;
sqs_region us-east-1;
status_listen 127.0.0.1:$AGSTATUS;
error_log stderr warn;
CONF
flashgate_conf() { # rate [extra line]: the config, the limit at that rate
    cat <<CONF
workers 1;
error_log stderr notice;
admin { listen 127.0.0.1:$FGADMIN; }
cache main { memory 64m; max_object 1m; }
limit soak { key route; rate ${1}r/s; burst 100; }
upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; read_timeout 10s; }
server {
    listen 127.0.0.1:$FG;
    access_log off;
    route /api/orders {
        upstream app;
        methods POST;
        offload { agent unix:$work/agent.sock; when always; headers Content-Type; }
    }
    route /limited { upstream app; limit soak; }
    route /c/ {
        upstream app;
        cache main;
        compress br gzip;
        stale_while_revalidate 30s;
        stale_if_error 300s;
    }
    route / { upstream app; }
}
${2:-}
CONF
}
flashgate_conf 300 > "$work/flashgate.conf"
cat > "$work/soak.lua" <<'LUA'
-- The mix of tests/bench/soak.sh, chosen by request number; statuses counted per thread.
local threads = {}
function setup(thread) table.insert(threads, thread) end
local n = 0
counts = {} -- global: done() reads it from each thread
local codings = {"identity", "br", "gzip"}
local body = '{"order":"' .. string.rep("x", 500) .. '"}'
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request()
    n = n + 1
    local r = n % 50
    if r == 0 then
        return wrk.format("POST", "/api/orders", {["Content-Type"] = "application/json"}, body)
    elseif r <= 5 then
        return wrk.format("GET", "/limited")
    elseif r <= 11 then
        return wrk.format("GET", (r % 2 == 0) and "/echo" or "/size?bytes=20000")
    elseif r <= 17 then
        return wrk.format("GET", "/c/k/" .. math.random(1000) .. "?cc=max-age=20&chunked=1&bytes=6000")
    end
    return wrk.format("GET", "/c/p/" .. math.random(3000) .. "?cc=max-age=20&ct=text/html&bytes=4000",
        {["Accept-Encoding"] = codings[n % 3 + 1]})
end
function response(status, headers, b)
    counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        local c = t:get("counts")
        for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
    end
    local out = {}
    for k, v in pairs(total) do table.insert(out, k .. "=" .. v) end
    table.sort(out)
    io.write("STATUS " .. table.concat(out, " ") .. "\n")
    local e = summary.errors
    io.write(string.format("SOCKET connect=%d read=%d write=%d timeout=%d status=%d\n",
        e.connect, e.read, e.write, e.timeout, e.status))
    io.write(string.format("REQUESTS %d %.3f\n", summary.requests, summary.duration / 1e6))
    io.write(string.format("LATENCY p50=%.1fms p99=%.1fms max=%.1fms\n",
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

taskset -c 1 /usr/bin/python3 "$top/tests/integration/origin.py" $ORIGIN >"$work/origin.log" 2>&1 &
pids+=($!)
start_fauxqs "$fauxqs" $FAUXQS soak "$work/fauxqs.log" || { echo "soak: fauxqs did not start" >&2; exit 1; }
AWS_ACCESS_KEY_ID=soak AWS_SECRET_ACCESS_KEY=soak taskset -c 0 "$bindir/flashgate-agent" \
    -c "$work/agent.conf" 2>"$work/agent.err" &
agpid=$!
pids+=($agpid)
sleep 0.5
taskset -c 0 "$bindir/flashgate" -c "$work/flashgate.conf" 2>"$work/flashgate.err" &
fgpid=$!
pids+=($fgpid)
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$FG/echo" && break
    sleep 0.1
done

json() { # url python-expression-on-d
    curl -s --max-time 5 "$1" | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($2)"
}
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
queue_count() {
    json "http://127.0.0.1:$FAUXQS/_fauxqs/queues" \
        "sum(q['approximateMessageCount'] + q['approximateInflightCount'] for q in d if q['url'].endswith('/soak'))"
}

echo "soak: ${duration}s of mixed traffic (wrk -t2 -c32), a reload storm in the middle; files in $work"
taskset -c 1 wrk -t2 -c32 -d"${duration}s" --timeout 10s -s "$work/soak.lua" \
    "http://127.0.0.1:$FG" >"$work/wrk.out" 2>&1 &
wrkpid=$!
pids+=($wrkpid)

# Every 10 s: seconds, flashgate RSS KiB, fds, agent RSS KiB, fds, cache bytes, spool depth.
sampler() {
    local t=0
    echo "t fg_rss_kib fg_fds agent_rss_kib agent_fds cache_bytes spool_depth" >"$work/samples"
    while kill -0 "$wrkpid" 2>/dev/null; do
        echo "$t $(rss $fgpid) $(fds $fgpid) $(rss $agpid) $(fds $agpid)" \
            "$(json "http://127.0.0.1:$FGADMIN/stats" "d['caches']['main']['bytes']" 2>/dev/null || echo -)" \
            "$(json "http://127.0.0.1:$AGSTATUS/status" "d['spool']['depth']" 2>/dev/null || echo -)" \
            >>"$work/samples"
        sleep 10
        t=$((t + 10))
    done
}
sampler &
sampler_pid=$!
pids+=($sampler_pid)

storm=$((duration / 5 < 60 ? duration / 5 : 60))
sleep $(((duration - storm) / 2))
valid=0 refused=0
for i in $(seq 30); do
    if [ $((i % 2)) = 1 ]; then
        flashgate_conf $((300 + i)) > "$work/flashgate.conf"
        valid=$((valid + 1))
    else
        flashgate_conf 300 "bogus_directive $i;" > "$work/flashgate.conf"
        refused=$((refused + 1))
    fi
    kill -HUP $fgpid
    sleep "$(awk "BEGIN {print $storm / 30}")"
done
flashgate_conf 300 > "$work/flashgate.conf"
kill -HUP $fgpid
valid=$((valid + 1))

wait $wrkpid || true
wait $sampler_pid 2>/dev/null || true
# The agent forwards what is left; then the queue is counted.
for _ in $(seq 120); do
    [ "$(json "http://127.0.0.1:$AGSTATUS/status" "d['spool']['depth']")" = 0 ] && break
    sleep 1
done
end_rss_fg=$(rss $fgpid) end_fds_fg=$(fds $fgpid) end_rss_ag=$(rss $agpid) end_fds_ag=$(fds $agpid)
gen=$(json "http://127.0.0.1:$FGADMIN/stats" "d['generation']")
queued=$(json "http://127.0.0.1:$FGADMIN/stats" "d['offload']['queued']")
cache=$(json "http://127.0.0.1:$FGADMIN/stats" \
    "'%.1f MiB counted, %d entries, %d evictions' % (d['caches']['main']['bytes'] / 1048576, d['caches']['main']['entries'], d['caches']['main']['evictions'])")
depth=$(json "http://127.0.0.1:$AGSTATUS/status" "d['spool']['depth']")
inqueue=$(queue_count)
refused_log=$(grep -c "reload refused" "$work/flashgate.err" || true)
alive_fg=yes alive_ag=yes
kill -0 $fgpid 2>/dev/null || alive_fg=no
kill -0 $agpid 2>/dev/null || alive_ag=no
kill -TERM $fgpid
fg_exit=0
wait $fgpid || fg_exit=$?

/usr/bin/python3 - "$work" "$duration" <<PY
import re, sys
work, duration = sys.argv[1], int(sys.argv[2])
rows = [l.split() for l in open(work + "/samples").read().splitlines()[1:] if l.strip()]
rows = [[int(x) if x.lstrip("-").isdigit() else None for x in r] for r in rows]
def at(t, i):
    best = min(rows, key=lambda r: abs(r[0] - t))
    return best[i]
def mx(i):
    return max(r[i] for r in rows if r[i] is not None)
out = open(work + "/wrk.out").read()
status = dict(kv.split("=") for kv in re.search(r"STATUS (.*)", out).group(1).split())
sock = re.search(r"SOCKET (.*)", out).group(1)
reqs, secs = re.search(r"REQUESTS (\d+) ([\d.]+)", out).groups()
lat = re.search(r"LATENCY (.*)", out).group(1)
n = {k: int(v) for k, v in status.items()}
other = sum(v for k, v in n.items() if k not in ("200", "202", "429"))
sockerr = sum(int(x.split("=")[1]) for x in sock.split() if not x.startswith("status="))
mib = lambda k: "%.1f MiB" % (k / 1024)
answered_202 = n.get("202", 0)
inqueue = int("$inqueue")
lost = max(0, answered_202 - inqueue)
print()
print(f"soak: {duration} s, {int(reqs):,} requests ({int(reqs) / float(secs):,.0f}/s), latency {lat}")
print(f"statuses: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(n.items())))
print(f"wrk socket errors: {sock}")
print()
print("|                  | flashgate | flashgate-agent |")
print("|------------------|-----------|-----------------|")
print(f"| RSS at 1 min     | {mib(at(60, 1))} | {mib(at(60, 3))} |")
print(f"| RSS at the end   | {mib(rows[-1][1])} | {mib(rows[-1][3])} |")
print(f"| RSS max (10 s)   | {mib(mx(1))} | {mib(mx(3))} |")
print(f"| fds at 1 min     | {at(60, 2)} | {at(60, 4)} |")
print(f"| fds at the end   | {rows[-1][2]} | {rows[-1][4]} |")
print(f"| fds max (10 s)   | {mx(2)} | {mx(4)} |")
print(f"| after the traffic | {mib($end_rss_fg)}, {$end_fds_fg} fds | {mib($end_rss_ag)}, {$end_fds_ag} fds |")
print(f"| alive at the end | $alive_fg (exit $fg_exit on SIGTERM) | $alive_ag |")
print()
print(f"errors: {other} answers other than 200/202/429, {sockerr} socket errors")
print(f"reloads: $valid valid sent, generation $gen at the end; $refused invalid sent, $refused_log refused in the log")
print(f"writes: {answered_202:,} answered 202 (flashgate counted $queued queued); "
      f"{inqueue:,} messages in the queue, spool depth $depth; lost: {lost}")
print(f"cache: $cache")
print()
print("samples (every 10 s): t fg_rss_kib fg_fds agent_rss_kib agent_fds cache_bytes spool_depth")
for r in rows:
    print("  " + " ".join("-" if x is None else str(x) for x in r))
PY
