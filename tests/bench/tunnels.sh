#!/usr/bin/env bash
# Upgrade tunnels (WebSocket): flashgate beside nginx (and HAProxy) in one run (not part
# of make check; numbers are reported, never asserted).
#
#   tests/bench/tunnels.sh [--rounds N] [--duration S] [--tunnels N] [--size B] [--bin PATH]
#
# An echo app (wsload.py origin: handshake, then every byte back) on CPU 1; each proxy
# pinned to CPU 0 with one worker (nginx worker_processes 1 with the usual WebSocket lines:
# proxy_http_version 1.1, Upgrade $http_upgrade, Connection "upgrade"; HAProxy nbthread 1,
# timeout tunnel; flashgate workers 1, upgrade on by default). The client (wsload.py client,
# CPU 1) opens N WebSockets (1,000 by default) through one proxy, then keeps one message of
# B bytes (64) in flight on each for S seconds (10).
#
# Per proxy and round, on a freshly started proxy: messages per second, CPU time of the
# proxy per message (utime+stime over the echo phase / messages) and RSS per open tunnel
# ((RSS with the tunnels open - RSS before) / N; nginx: its worker). Rounds alternate the order of the proxies; medians and
# ratios to nginx are printed. The client and the app are Python on the other core, so
# messages/s is bounded by them when the proxy is cheap: read CPU per message first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rounds=3
duration=10
tunnels=1000
size=64
bin="$top/build/flashgate"
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --tunnels) tunnels=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--duration S] [--tunnels N] [--size B] [--bin PATH]" >&2; exit 2 ;;
    esac
done
. "$here/lib.sh"
need_tools bench nginx taskset /usr/bin/python3
need_binary bench "$bin"
have_haproxy=0
command -v haproxy >/dev/null && have_haproxy=1
ulimit -n 20000 2>/dev/null || true

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral port range: no proxy's own connection ever holds one of these.
APP=29201 NGINX=29202 FG=29203 FGADMIN=29204 HAP=29205

cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
worker_rlimit_nofile 20000;
events { worker_connections 8000; }
http { access_log off;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream app { server 127.0.0.1:$APP; keepalive 64; }
  server { listen 127.0.0.1:$NGINX backlog=4096;
    location / { proxy_pass http://app; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 3600s; proxy_send_timeout 3600s; } } }
CONF
cat > "$work/flashgate.conf" <<CONF
workers 1;
error_log $work/flashgate.err warn;
admin { listen 127.0.0.1:$FGADMIN; }
upstream app { server 127.0.0.1:$APP; keepalive 64; }
server { listen 127.0.0.1:$FG backlog=4096;
  route / { upstream app; tunnel_timeout 1h; } }
CONF
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 75s
  timeout tunnel 1h
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HAP
  default_backend app
backend app
  server s1 127.0.0.1:$APP maxconn 8000
CONF

taskset -c 1 /usr/bin/python3 "$here/wsload.py" origin "$APP" & pids+=($!)

wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "bench: nothing listens on $1" >&2
    return 1
}

# Each measurement gets a fresh proxy process, so that RSS grows from the same start (an
# allocator keeps what an earlier round freed). start_proxy NAME sets proxy_pid, the
# process measured.
start_proxy() {
    case $1 in
    nginx)
        taskset -c 0 nginx -c "$work/nginx.conf" >/dev/null 2>&1 & pids+=($!)
        wait_port "$NGINX"
        proxy_pid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1) ;; # the worker
    flashgate)
        taskset -c 0 "$bin" -c "$work/flashgate.conf" >/dev/null 2>>"$work/flashgate.err" & pids+=($!)
        proxy_pid=$!
        wait_port "$FG" || { cat "$work/flashgate.err" >&2; exit 1; } ;;
    haproxy)
        taskset -c 0 haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>"$work/haproxy.err" & pids+=($!)
        proxy_pid=$!
        wait_port "$HAP" || { cat "$work/haproxy.err" >&2; exit 1; } ;;
    esac
}
stop_proxy() {
    case $1 in
    nginx) kill "$(cat "$work/nginx.pid")" ;;
    *) kill "$2" ;;
    esac
    sleep 0.5
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# One measurement: name port -> "msg_per_s cpu_us_per_msg rss_kb_per_tunnel" in $work/line
measure() {
    local name=$1 port=$2 out="$work/client.$1"
    local rss0 rss1 c0 c1 pid
    start_proxy "$name"
    pid=$proxy_pid
    sleep 0.5
    rss0=$(rss_kb "$pid")
    : > "$out"
    taskset -c 1 /usr/bin/python3 "$here/wsload.py" client "$port" "$tunnels" "$duration" "$size" > "$out" &
    local cl=$!
    for _ in $(seq 600); do grep -q OPEN "$out" && break; sleep 0.1; done
    grep -q OPEN "$out" || { echo "bench: $name: the tunnels did not open" >&2; kill $cl; exit 1; }
    rss1=$(rss_kb "$pid")
    c0=$(cpu_ticks "$pid")
    for _ in $(seq $(( (duration + 30) * 10 ))); do grep -q msg_per_s "$out" && break; sleep 0.1; done
    c1=$(cpu_ticks "$pid")
    wait $cl || { echo "bench: $name: the client failed" >&2; cat "$out" >&2; exit 1; }
    stop_proxy "$name" "$pid"
    /usr/bin/python3 - "$out" "$c0" "$c1" "$hz" "$rss0" "$rss1" "$tunnels" > "$work/line" <<'PY'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][0]
c0, c1, hz, rss0, rss1, n = map(float, sys.argv[2:])
msgs = max(res["messages"], 1)
print(res["msg_per_s"], round((c1 - c0) / hz * 1e6 / msgs, 2), round((rss1 - rss0) / n, 2))
PY
}

proxies=("nginx:$NGINX" "flashgate:$FG")
[ $have_haproxy -eq 0 ] || proxies+=("haproxy:$HAP")
echo "tunnels: $tunnels WebSockets, one $size-byte message in flight each, ${duration}s x $rounds rounds"
declare -A results
for r in $(seq "$rounds"); do
    order=("${proxies[@]}")
    if [ $((r % 2)) -eq 0 ]; then # alternate who goes first
        order=()
        for ((i = ${#proxies[@]} - 1; i >= 0; i--)); do order+=("${proxies[$i]}"); done
    fi
    for spec in "${order[@]}"; do
        IFS=: read -r name port <<<"$spec"
        measure "$name" "$port"
        line=$(cat "$work/line")
        echo "  round $r $name: msg/s cpu_us/msg rss_kb/tunnel = $line"
        results[$name]+="$line;"
    done
done
/usr/bin/python3 - "$(for k in "${!results[@]}"; do echo "$k=${results[$k]}"; done)" <<'PY'
import statistics, sys
rows = {}
for line in sys.argv[1].splitlines():
    name, _, vals = line.partition("=")
    runs = [list(map(float, v.split())) for v in vals.split(";") if v.strip()]
    rows[name] = [statistics.median(col) for col in zip(*runs)]
base = rows.get("nginx")
print(f"{'proxy':<10} {'msg/s':>9} {'cpu us/msg':>11} {'rss KiB/tunnel':>15}   vs nginx: msg/s  cpu/msg  rss")
for name in ("nginx", "flashgate", "haproxy"):
    if name not in rows:
        continue
    m, c, r = rows[name]
    ratio = f"   {m / base[0]:>13.2f}x {c / base[1]:>7.2f}x {r / base[2]:>5.2f}x" if base else ""
    print(f"{name:<10} {m:>9.0f} {c:>11.2f} {r:>15.2f}{ratio}")
PY
