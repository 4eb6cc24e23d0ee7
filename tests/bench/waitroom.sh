#!/usr/bin/env bash
# The waiting room (issue 18): requests/s the room answers, waiting pages and admitted
# traffic, against the same route without a room; Redis operations per visitor (not part
# of make check).
#
#   tests/bench/waitroom.sh [--rounds N] [--duration S] [--bin DIR]
#
# One flashgate (workers 1, CPU 0); the origin (nginx, "ok"), redis-server and wrk on
# CPU 1; wrk -t1 -c50 keep-alive GETs, rounds interleaved, medians. Rows:
#   plain           the route without a room (the baseline)
#   admitted-local  a room on this instance: an admitted visitor's request (the session
#                   cookie verified, then the app)
#   waiting-local   a visitor with a ticket far back: the waiting page (2.6 KB, no app)
#   admitted-redis, waiting-redis   the same with the room in Redis (no Redis operation
#                   on either path: the state is read by the room's thread)
#   status-redis    the page's poll (X-Waitroom: status): the JSON
#   arrival-redis   a new visitor each request (no cookie): one ticket script in Redis
# Then redis-server's command counts: operations per new visitor, and per admitted one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rounds=5
duration=10
bindir="$top/build"
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --bin) bindir=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--duration S] [--bin DIR]" >&2; exit 2 ;;
    esac
done
. "$here/lib.sh"
need_tools bench nginx wrk taskset curl redis-server redis-cli openssl /usr/bin/python3
need_binaries bench "$bindir" flashgate

work=$(mktemp -d "$top/build/bench-waitroom.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral port range (32768-60999): the clients' own ports never collide.
ORIGIN=29401 FG=29402 FGADMIN=29403 REDIS=29404
openssl rand -hex 32 > "$work/keys"
chmod 600 "$work/keys"

cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; location / { return 200 "ok\n"; } } }
CONF
cat > "$work/flashgate.conf" <<CONF
workers 1;
error_log stderr warn;
admin { listen 127.0.0.1:$FGADMIN; }
upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
redis fleet { url redis://127.0.0.1:$REDIS; }
waiting_room openl { key_file $work/keys; admit 1000000/s; session_ttl 1h; }
waiting_room closedl { key_file $work/keys; admit 1/s; }
waiting_room openr { key_file $work/keys; admit 1000000/s; session_ttl 1h; redis fleet; }
waiting_room closedr { key_file $work/keys; admit 1/s; redis fleet; }
server { listen 127.0.0.1:$FG; keepalive_requests 1000000; request_id off; access_log off;
  route /openl { upstream app; waiting_room openl; }
  route /closedl { upstream app; waiting_room closedl; }
  route /openr { upstream app; waiting_room openr; }
  route /closedr { upstream app; waiting_room closedr; }
  route / { upstream app; } }
CONF

taskset -c 1 nginx -c "$work/origin.conf" & pids+=($!)
taskset -c 1 redis-server --bind 127.0.0.1 --port "$REDIS" --save "" --appendonly no \
    --loglevel warning --logfile "$work/redis.log" & pids+=($!)
sleep 0.5
taskset -c 0 "$bindir/flashgate" -c "$work/flashgate.conf" 2>"$work/flashgate.err" & pids+=($!)
fgpid=$!
sleep 1.5

# The closed rooms admit nobody during the bench; the cookies: a ticket in each closed
# room (behind the first one), a session in each open room.
for room in closedl closedr; do
    curl -s -o /dev/null -X POST "http://127.0.0.1:$FGADMIN/waitroom/pause?room=$room"
    curl -s -o /dev/null "http://127.0.0.1:$FG/$room/"
done
cookie() { # room path -> the cookie line for a visitor of room
    local jar="$work/jar.$1"
    curl -s -o /dev/null -c "$jar" -b "$jar" -H 'X-Waitroom: status' "http://127.0.0.1:$FG$2"
    sleep 0.3
    curl -s -o /dev/null -c "$jar" -b "$jar" -H 'X-Waitroom: status' "http://127.0.0.1:$FG$2"
    awk -v n="$3" '$6 == n { print $6 "=" $7 }' "$jar"
}
A_L=$(cookie openl /openl/ fgwa_openl)
A_R=$(cookie openr /openr/ fgwa_openr)
W_L=$(cookie closedl /closedl/ fgwr_closedl)
W_R=$(cookie closedr /closedr/ fgwr_closedr)
for c in A_L A_R W_L W_R; do
    [ -n "${!c}" ] || { echo "bench: no cookie for $c" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name path round [header...]
    local name=$1 path=$2 rnd=$3 t0 t1
    shift 3
    local hdr=()
    for h in "$@"; do hdr+=(-H "$h"); done
    t0=$(cpu_ticks "$fgpid")
    taskset -c 1 wrk -t1 -c50 -d"${duration}s" --latency "${hdr[@]}" \
        "http://127.0.0.1:$FG$path" > "$work/wrk.out"
    t1=$(cpu_ticks "$fgpid")
    /usr/bin/python3 "$here/wrk_results.py" row "$name" "$rnd" "$((t1 - t0))" \
        "$(getconf CLK_TCK)" "$work/wrk.out" >> "$work/results.jsonl"
}
scenario() { # name round
    case $1 in
    plain) run plain /plain/ "$2" ;;
    admitted-local) run "$1" /openl/ "$2" "Cookie: $A_L" ;;
    waiting-local) run "$1" /closedl/ "$2" "Cookie: $W_L" "Accept: text/html" ;;
    admitted-redis) run "$1" /openr/ "$2" "Cookie: $A_R" ;;
    waiting-redis) run "$1" /closedr/ "$2" "Cookie: $W_R" "Accept: text/html" ;;
    status-redis) run "$1" /closedr/ "$2" "Cookie: $W_R" "X-Waitroom: status" ;;
    arrival-redis) run "$1" /closedr/ "$2" "Accept: text/html" ;;
    esac
}
names=(plain admitted-local waiting-local admitted-redis waiting-redis status-redis arrival-redis)

echo "waitroom: $rounds rounds x ${duration}s, wrk -t1 -c50; flashgate on CPU 0, wrk, origin and"
echo "          redis-server on CPU 1 (waiting pages and polls are 200s the room answers)"
for n in "${names[@]}"; do duration_save=$duration; duration=2; scenario "$n" 0; duration=$duration_save; done
rm -f "$work/results.jsonl"
redis-cli -p "$REDIS" config resetstat >/dev/null
arrivals0=$(curl -s "http://127.0.0.1:$FGADMIN/stats" | /usr/bin/python3 -c \
    'import json,sys; print(json.load(sys.stdin)["waiting_rooms"]["closedr"]["tickets"])')
for r in $(seq "$rounds"); do
    order=("${names[@]}")
    if [ $((r % 2)) -eq 0 ]; then
        order=()
        for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[$i]}"); done
    fi
    for n in "${order[@]}"; do
        scenario "$n" "$r"
    done
done
/usr/bin/python3 "$here/wrk_results.py" table "$work/results.jsonl" admitted-local:plain \
    waiting-local:plain admitted-redis:plain waiting-redis:plain status-redis:plain \
    arrival-redis:plain
/usr/bin/python3 - "$FGADMIN" "$REDIS" "$arrivals0" "$rounds" "$duration" <<'PY'
import json, subprocess, sys, urllib.request
admin, redis, arrivals0, rounds, duration = sys.argv[1:]
st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5).read())
rooms = st["waiting_rooms"]
info = subprocess.run(["redis-cli", "-p", redis, "info", "commandstats"], capture_output=True,
                      text=True).stdout
calls = {}
for line in info.splitlines():
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        calls[name] = int(rest.split("calls=")[1].split(",")[0])
arrivals = rooms["closedr"]["tickets"] - int(arrivals0)
steps = rooms["closedr"]["steps"] + rooms["openr"]["steps"]
ticket_calls = calls.get("evalsha", 0) + calls.get("eval", 0)
print(f"redis: {arrivals} new visitors in the runs; redis-server commands: "
      + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())))
steps = calls.get("pexpire", 0) + calls.get("set", 0)  # one lease renewal (or take) per step
print(f"redis: per new visitor {(ticket_calls - steps) / max(arrivals, 1):.3f} script calls "
      f"(the ticket), besides {steps} steps of the rooms' thread (10 a second per room and "
      f"instance, whatever the traffic); an admission adds one ZADD, a renewal one per "
      f"session_ttl/2 of activity; polls and admitted requests none")
for name in ("openl", "closedl", "openr", "closedr"):
    r = rooms[name]
    print(f"room {name}: tickets {r['tickets']}, admitted {r['admitted']}, pages {r['pages']}, "
          f"polls {r['status_polls']}, redis ops {r['redis_ops']}, redis errors {r['redis_errors']}, "
          f"fallback waiting {r['fallback_waiting']}")
PY
