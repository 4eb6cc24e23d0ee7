#!/usr/bin/env bash
# Instructions per request, flashgate and nginx side by side, under callgrind: repeatable
# to a fraction of a percent on a noisy machine, where CPU time is not (not part of make
# check). User-space instructions only: the kernel's share is the syscalls, counted with
# `strace -c -f -p PID` over the same loads.
#
#   tests/bench/instructions.sh [--bin PATH] [--no-nginx]
#
# Loads (a Python client, after a warm-up; the counters are zeroed and dumped around it):
#   passthrough       4000 keep-alive GETs of 1 KiB over 10 connections, to the app
#   hit1k             4000 keep-alive GETs of a cached 1 KiB static file
#   conn-per-request  1000 connections of one GET each (Connection: close)
# The origin is nginx answering 1 KiB (as in run.sh); the proxies have one worker each,
# nginx runs with master_process off under valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin="$top/build/flashgate"
with_nginx=1
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --no-nginx) with_nginx=0; shift ;;
    *) echo "usage: $0 [--bin PATH] [--no-nginx]" >&2; exit 2 ;;
    esac
done
for tool in valgrind callgrind_control nginx /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "instructions: $tool is missing" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT
ORIGIN=29111 FG=29112 NG=29113 FGADMIN=29114
body=$(head -c 1024 /dev/zero | tr '\0' 'x')
mkdir -p "$work/www/static" "$work/ngcache"
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/static/1k"
chmod -R a+rX "$work"
cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN;
    location / { default_type text/plain; return 200 "$body"; }
    location /static/ { root $work/www; add_header Cache-Control "max-age=3600"; } } }
CONF
cat > "$work/flashgate.conf" <<CONF
workers 1;
error_log stderr warn;
admin { listen 127.0.0.1:$FGADMIN; }
upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
cache main { memory 64m; max_object 8m; }
server { listen 127.0.0.1:$FG; keepalive_requests 1000000; request_id off; access_log off;
  route /static/ { upstream app; cache main; cache_status_header off; cache_status_field off; }
  route / { upstream app; } }
CONF
cat > "$work/nginx.conf" <<CONF
master_process off; worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  proxy_cache_path $work/ngcache levels=1:2 keys_zone=z:16m max_size=1g inactive=60m use_temp_path=off;
  upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG; proxy_http_version 1.1; proxy_set_header Connection "";
    location / { proxy_pass http://app; }
    location /static/ { proxy_pass http://app; proxy_cache z; proxy_cache_lock on; } } }
CONF
cat > "$work/load.py" <<'PY'
import socket, sys, threading
port, path, conns, reqs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
close = "--close" in sys.argv
done, lock = [0], threading.Lock()
req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode()
def response(s, buf):
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")[1:] if l.lower().startswith(b"content-length:"))
    while len(rest) < n:
        rest += s.recv(65536)
    return rest[n:]
def run():
    s, buf = None, b""
    for _ in range(reqs):
        if s is None:
            s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        buf = response(s, buf)
        if close:
            s.close()
            s, buf = None, b""
        with lock:
            done[0] += 1
    if s is not None:
        s.close()
ts = [threading.Thread(target=run) for _ in range(conns)]
[t.start() for t in ts]
[t.join() for t in ts]
print(done[0])
PY
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done; }

nginx -c "$work/origin.conf" 2>/dev/null & pids+=($!)
wait_port $ORIGIN

measure() { # who port pid outdir
    local who=$1 port=$2 pid=$3 out=$4 name path conns reqs extra n ir
    while read -r name path conns reqs extra; do
        /usr/bin/python3 "$work/load.py" "$port" "$path" "$conns" 20 $extra >/dev/null # warm-up
        callgrind_control -z "$pid" >/dev/null 2>&1
        n=$(/usr/bin/python3 "$work/load.py" "$port" "$path" "$conns" "$reqs" $extra)
        callgrind_control -d "$pid" >/dev/null 2>&1
        ir=$(grep -h -E "^(summary|totals):" $(ls -t "$out"/cg.* | head -1) | head -1 | awk '{print $2}')
        rm -f "$out"/cg.*.[0-9]*
        printf "%-10s %-17s %6d requests %14d Ir %9d Ir/request\n" "$who" "$name" "$n" "$ir" $((ir / n))
    done <<LOADS
passthrough / 10 400
hit1k /static/1k 10 400
conn-per-request / 10 100 --close
LOADS
}

mkdir -p "$work/fg"
valgrind --tool=callgrind --callgrind-out-file="$work/fg/cg.%p" "$bin" -c "$work/flashgate.conf" \
    2>"$work/fg/vg.err" & fgpid=$! pids+=($!)
wait_port $FG
measure flashgate $FG $fgpid "$work/fg"
if [ $with_nginx -eq 1 ]; then
    mkdir -p "$work/ng"
    valgrind --tool=callgrind --callgrind-out-file="$work/ng/cg.%p" nginx -c "$work/nginx.conf" \
        2>"$work/ng/vg.err" & ngpid=$! pids+=($!)
    wait_port $NG
    measure nginx $NG $ngpid "$work/ng"
fi
