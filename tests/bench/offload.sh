#!/usr/bin/env bash
# Offloaded writes: what a 202-after-fsync costs, and what it spares the app (not part of
# make check).
#
#   tests/bench/offload.sh [--rounds N] [--duration S] [--bin DIR]
#
# post: wrk -t1 -c50 POSTs of 1 KiB JSON bodies, each with its own Idempotency-Key, in
#   interleaved rounds against
#     nginx           proxy_pass to the origin (the reference for a plain proxy),
#     flashgate       the same route passed through to the origin,
#     flashgate-202   an `offload { when always; }` route: every POST becomes a record
#                     that flashgate-agent appends to its spool and fdatasyncs (group
#                     commit) before flashgate answers 202.
#   flashgate, nginx and the agent are pinned to CPU 0, wrk and the origin (nginx) to CPU
#   1. CPU time per request is the proxy's, plus the agent's for flashgate-202. Medians,
#   ratios to nginx, the agent's commits per fsync.
# forward: the sqs sink against fauxqs (the SQS emulator scripts/deps.sh installs, on CPU
#   1): clients burst for the duration on a route whose agent forwards to the queue;
#   prints the 202 rate, the records/s the agent forwarded (SendMessageBatch, 10 per
#   batch), and the time to an empty spool after the burst. fauxqs is one node process:
#   what it takes is the bound here, not the agent.
# protect: the app's view of a burst. Clients POST as fast as they can for the duration
#   while the agent replays at replay_rate (500/s); prints the clients' rate, the rate at
#   which the app received requests (direct ones from flashgate's /stats, replays from the
#   agent's /status), and what is left in the spool.
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
need_tools bench nginx wrk taskset curl /usr/bin/python3
need_binaries bench "$bindir" flashgate flashgate-agent

# The spool on the same disk as a real one would be (not a tmpfs): fsync must cost.
work=$(mktemp -d "$top/build/bench-offload.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral port range (32768-60999): the clients' own ports never collide.
ORIGIN=29201 NGINX=29202 FG=29203 FGADMIN=29204 AGSTATUS=29205 FAUXQS=29206 SQSSTATUS=29207
PROTSTATUS=29208
fauxqs=${FG_FAUXQS:-$top/.deps/fauxqs/node_modules/.bin/fauxqs}
chmod 755 "$work"
cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; client_body_buffer_size 16k;
  server { listen 127.0.0.1:$ORIGIN;
    location / { default_type application/json; return 200 '{"status":"created"}'; } } }
CONF
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s; client_body_buffer_size 16k;
  upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location / { proxy_pass http://app; } } }
CONF
cat > "$work/agent.conf" <<CONF
listen $work/agent.sock;
spool_dir $work/spool;
sink local;
app 127.0.0.1:$ORIGIN;
replay_rate 500;
replay_concurrency 8;
# The post rounds queue over a million records while it replays 500/s: room for them.
spool_max_bytes 8g;
status_listen 127.0.0.1:$AGSTATUS;
error_log stderr warn;
CONF
# protect: its own agent and an empty spool, so that what the post rounds left is not in
# the way (its spool limits are the shipped ones).
cat > "$work/agent-protect.conf" <<CONF
listen $work/agent-protect.sock;
spool_dir $work/spool-protect;
sink local;
app 127.0.0.1:$ORIGIN;
replay_rate 500;
replay_concurrency 8;
status_listen 127.0.0.1:$PROTSTATUS;
error_log stderr warn;
CONF
cat > "$work/agent-sqs.conf" <<CONF
listen $work/agent-sqs.sock;
spool_dir $work/spool-sqs;
sink sqs;
sqs_queue_url http://sqs.us-east-1.localhost:$FAUXQS/000000000000/orders;
sqs_endpoint http://127.0.0.1:$FAUXQS;
sqs_region us-east-1;
status_listen 127.0.0.1:$SQSSTATUS;
error_log stderr warn;
CONF
cat > "$work/flashgate.conf" <<CONF
workers 1;
error_log stderr warn;
admin { listen 127.0.0.1:$FGADMIN; }
upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
server { listen 127.0.0.1:$FG; keepalive_requests 1000000; request_id off; access_log off;
  route /offload/ { upstream app; offload { agent unix:$work/agent.sock; when always;
                    headers Content-Type; } }
  route /sqs/ { upstream app; offload { agent unix:$work/agent-sqs.sock; when always;
                headers Content-Type; } }
  route /protect/ { upstream app; offload { agent unix:$work/agent-protect.sock; when always;
                    headers Content-Type; } }
  route / { upstream app; } }
CONF
cat > "$work/post.lua" <<'LUA'
-- POST 1 KiB JSON bodies, each with a key no other request of this run has.
local body = '{"order":"' .. string.rep("x", 1024 - 13) .. '"}'
local prefix = os.getenv("FG_KEY_PREFIX") or "k"
local n = 0
request = function()
    n = n + 1
    return wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                     ["Idempotency-Key"] = prefix .. "-" .. n}, body)
end
LUA

taskset -c 1 nginx -c "$work/origin.conf" & pids+=($!)
taskset -c 0 nginx -c "$work/nginx.conf" & pids+=($!)
taskset -c 0 "$bindir/flashgate-agent" -c "$work/agent.conf" 2>"$work/agent.err" & pids+=($!)
agpid=$!
taskset -c 0 "$bindir/flashgate-agent" -c "$work/agent-protect.conf" 2>"$work/agent-protect.err" &
pids+=($!)
have_sqs=0
if [ -x "$fauxqs" ]; then
    start_fauxqs "$fauxqs" $FAUXQS orders "$work/fauxqs.log" && have_sqs=1
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench taskset -c 0 "$bindir/flashgate-agent" \
        -c "$work/agent-sqs.conf" 2>"$work/agent-sqs.err" & pids+=($!)
else
    echo "bench: fauxqs not installed (scripts/deps.sh): the forward scenario is skipped" >&2
fi
sleep 0.5
taskset -c 0 "$bindir/flashgate" -c "$work/flashgate.conf" 2>"$work/flashgate.err" & pids+=($!)
fgpid=$!
sleep 1
ngpid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
agent_json() { # [status port]: the agent's /status
    /usr/bin/python3 -c "import json,urllib.request;print(json.dumps(json.loads(urllib.request.urlopen('http://127.0.0.1:${1:-$AGSTATUS}/status',timeout=5).read())))"
}

ticks_of() { # pid...: their CPU ticks summed
    local t=0 p
    for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done
    echo "$t"
}

run_post() { # name port path round pid [pid2]
    local t0 t1
    t0=$(ticks_of "${@:5}")
    FG_KEY_PREFIX="$1-$4-$RANDOM" taskset -c 1 wrk -t1 -c50 -d"${duration}s" --latency -s "$work/post.lua" \
        "http://127.0.0.1:$2$3" > "$work/wrk.out"
    t1=$(ticks_of "${@:5}")
    /usr/bin/python3 "$here/wrk_results.py" row "$1" "$4" "$((t1 - t0))" "$(getconf CLK_TCK)" \
        "$work/wrk.out" >> "$work/results.jsonl"
}

echo "post: $rounds rounds x ${duration}s, wrk -t1 -c50, 1 KiB JSON POSTs with unique keys;"
echo "      proxies and agent on CPU 0, wrk and origin on CPU 1; flashgate-202 CPU = proxy + agent"
rm -f "$work/results.jsonl"
for spec in "nginx:$NGINX:/api/orders" "flashgate:$FG:/api/orders"; do
    IFS=: read -r n port path <<<"$spec"
    FG_KEY_PREFIX=warm taskset -c 1 wrk -t1 -c50 -d2s -s "$work/post.lua" "http://127.0.0.1:$port$path" >/dev/null
done
a0=$(agent_json)
for r in $(seq "$rounds"); do
    order=(nginx flashgate flashgate-202)
    [ $((r % 2)) -eq 0 ] && order=(flashgate-202 flashgate nginx)
    for n in "${order[@]}"; do
        case $n in
        nginx) run_post nginx "$NGINX" /api/orders "$r" "$ngpid" ;;
        flashgate) run_post flashgate "$FG" /api/orders "$r" "$fgpid" ;;
        flashgate-202) run_post flashgate-202 "$FG" /offload/orders "$r" "$fgpid" "$agpid" ;;
        esac
    done
done
a1=$(agent_json)
/usr/bin/python3 "$here/wrk_results.py" table "$work/results.jsonl" flashgate:nginx \
    flashgate-202:nginx flashgate-202:flashgate
/usr/bin/python3 - "$a0" "$a1" <<'PY'
import json, sys
a0, a1 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
durable = a1["records"]["durable"] - a0["records"]["durable"]
commits = max(a1["spool"]["commits"] - a0["spool"]["commits"], 1)
print(f"agent: {durable} records made durable in {commits} commits "
      f"({durable / commits:.1f} records per fdatasync)")
PY

if [ $have_sqs -eq 1 ]; then
    echo
    echo "forward: clients burst for ${duration}s on a route whose agent forwards to fauxqs"
    q0=$(curl -s "http://127.0.0.1:$SQSSTATUS/status")
    t0=$(date +%s.%N)
    FG_KEY_PREFIX="sqs-$RANDOM" taskset -c 1 wrk -t1 -c50 -d"${duration}s" -s "$work/post.lua" \
        "http://127.0.0.1:$FG/sqs/orders" > "$work/wrk.out"
    t1=$(date +%s.%N)
    for _ in $(seq 1200); do # up to 10 minutes for the queue to take the rest
        [ "$(curl -s "http://127.0.0.1:$SQSSTATUS/status" | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)["spool"]["depth"])')" = 0 ] && break
        sleep 0.5
    done
    t2=$(date +%s.%N)
    q1=$(curl -s "http://127.0.0.1:$SQSSTATUS/status")
    /usr/bin/python3 - "$work/wrk.out" "$q0" "$q1" "$t0" "$t1" "$t2" <<'PY'
import json, re, sys
out, q0, q1 = open(sys.argv[1]).read(), json.loads(sys.argv[2]), json.loads(sys.argv[3])
t0, t1, t2 = map(float, sys.argv[4:7])
client = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
sent = q1["sqs"]["sent"] - q0["sqs"]["sent"]
batches = q1["sqs"]["batches"] - q0["sqs"]["batches"]
print(f"clients: {client:.0f} POST/s answered 202 for {t1 - t0:.1f}s; the agent forwarded {sent} "
      f"records in {batches} batches ({sent / max(batches, 1):.1f} per batch) at "
      f"{sent / (t2 - t0):.0f} records/s; spool empty {t2 - t1:.1f}s after the burst; "
      f"failed {q1['sqs']['failed'] - q0['sqs']['failed']}, throttled "
      f"{q1['sqs']['throttled'] - q0['sqs']['throttled']}")
PY
fi

echo
echo "protect: clients burst for ${duration}s, the agent replays at 500/s"
fg_offload() { /usr/bin/python3 -c "import json,urllib.request;print(json.dumps(json.loads(urllib.request.urlopen('http://127.0.0.1:$FGADMIN/stats',timeout=5).read())['offload']))"; }
f0=$(fg_offload)
a0=$(agent_json "$PROTSTATUS")
FG_KEY_PREFIX="burst-$RANDOM" taskset -c 1 wrk -t1 -c50 -d"${duration}s" -s "$work/post.lua" \
    "http://127.0.0.1:$FG/protect/orders" > "$work/wrk.out"
a1=$(agent_json "$PROTSTATUS")
f1=$(fg_offload)
/usr/bin/python3 - "$work/wrk.out" "$a0" "$a1" "$duration" "$f0" "$f1" <<'PY'
import json, re, sys
out, a0, a1, d = open(sys.argv[1]).read(), json.loads(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
f0, f1 = json.loads(sys.argv[5]), json.loads(sys.argv[6])
client = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
replayed = a1["replay"]["ok"] - a0["replay"]["ok"]
queued = f1["queued"] - f0["queued"]
passed = f1["fallback_pass"] - f0["fallback_pass"]
print(f"clients: {client:.0f} POST/s, {queued} answered 202, {passed} fell back to the app")
app = (replayed + passed) / d
print(f"app: {app:.0f} req/s ({replayed / d:.0f} replays, {passed / d:.0f} fallbacks); spool after "
      f"the burst: {a1['spool']['depth']} records, oldest {a1['spool']['oldest_age_ms']} ms")
print(f"the app saw {client / max(app, 1):.0f}x fewer requests per second than the clients sent")
PY
