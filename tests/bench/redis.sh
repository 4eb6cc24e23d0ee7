#!/usr/bin/env bash
# Fleet-wide rate limits: what a Redis decision costs over TLS next to plain TCP (issue
# 14; not part of make check).
#
#   tests/bench/redis.sh [--rounds N] [--duration S] [--bin DIR]
#
# One flashgate (workers 1, pinned to CPU 0) with three routes to the same origin, each
# under one limit that allows everything (so every request makes exactly one decision):
#   local   the limit in this instance's table (no Redis: the baseline),
#   plain   backend redis over TCP (redis://),
#   tls     backend redis over TLS (rediss://, the certificate verified), with an ACL
#           user's password from a 0600 file — ElastiCache's usual setup.
# One redis-server serves both (a plain port and a TLS port, certificates from the openssl
# CLI); it, the origin (nginx) and wrk run on CPU 1. wrk -t1 -c50 keep-alive GETs, rounds
# interleaved; medians of decisions/s (= requests/s), p50/p99, and flashgate's CPU time per
# request. The line to read: tls / plain CPU per request (the target is at most 1.10x).
# After the runs, the limits' /stats show that every decision went to Redis.
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
need_tools bench nginx wrk taskset openssl redis-server /usr/bin/python3
need_binaries bench "$bindir" flashgate

work=$(mktemp -d "$top/build/bench-redis.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral port range (32768-60999): the clients' own ports never collide.
ORIGIN=29301 FG=29302 FGADMIN=29303 RPLAIN=29304 RTLS=29305

( cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
      -out ca.pem -days 2 -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=keyCertSign
  printf 'subjectAltName=IP:127.0.0.1\n' > server.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
      -out server.csr -subj /CN=127.0.0.1
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 2 -extfile server.ext ) >/dev/null 2>&1
printf 'bench-pw\n' > "$work/redis.pass"
chmod 600 "$work/redis.pass"

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
redis plain { url redis://app@127.0.0.1:$RPLAIN; password_file $work/redis.pass; }
redis tls { url rediss://app@127.0.0.1:$RTLS; password_file $work/redis.pass;
            ssl_ca_file $work/ca.pem; }
limit local { key client_ip; rate 1000000r/s; burst 1000000; backend local; }
limit plain { key client_ip; rate 1000000r/s; burst 1000000; backend redis plain timeout=100ms; }
limit tls { key client_ip; rate 1000000r/s; burst 1000000; backend redis tls timeout=100ms; }
server { listen 127.0.0.1:$FG; keepalive_requests 1000000; request_id off; access_log off;
  route /local { upstream app; limit local; }
  route /plain { upstream app; limit plain; }
  route /tls { upstream app; limit tls; }
  route / { upstream app; } }
CONF

taskset -c 1 nginx -c "$work/origin.conf" & pids+=($!)
taskset -c 1 redis-server --bind 127.0.0.1 --port "$RPLAIN" --tls-port "$RTLS" \
    --tls-cert-file "$work/server.pem" --tls-key-file "$work/server.key" \
    --tls-ca-cert-file "$work/ca.pem" --tls-auth-clients no --save "" --appendonly no \
    --user app on '>bench-pw' '~*' '&*' '+@all' --loglevel warning \
    --logfile "$work/redis.log" & pids+=($!)
sleep 0.5
taskset -c 0 "$bindir/flashgate" -c "$work/flashgate.conf" 2>"$work/flashgate.err" & pids+=($!)
fgpid=$!
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name path round
    local t0 t1
    t0=$(cpu_ticks "$fgpid")
    taskset -c 1 wrk -t1 -c50 -d"${duration}s" --latency "http://127.0.0.1:$FG$2" > "$work/wrk.out"
    t1=$(cpu_ticks "$fgpid")
    /usr/bin/python3 "$here/wrk_results.py" row "$1" "$3" "$((t1 - t0))" "$(getconf CLK_TCK)" \
        "$work/wrk.out" >> "$work/results.jsonl"
}

echo "redis: $rounds rounds x ${duration}s, wrk -t1 -c50; flashgate on CPU 0, wrk, origin and"
echo "       redis-server on CPU 1; every request is one limit decision"
for p in /local /plain /tls; do
    taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$FG$p" >/dev/null
done
rm -f "$work/results.jsonl"
for r in $(seq "$rounds"); do
    order=(local plain tls)
    [ $((r % 2)) -eq 0 ] && order=(tls plain local)
    for n in "${order[@]}"; do
        run "$n" "/$n" "$r"
    done
done
/usr/bin/python3 "$here/wrk_results.py" table "$work/results.jsonl" plain:local tls:local tls:plain
/usr/bin/python3 - "$FGADMIN" <<'PY'
import json, sys, urllib.request
st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stats", timeout=5).read())
for name in ("plain", "tls"):
    r = st["limits"][name]["redis"]
    print(f"limit {name}: redis ok {r['ok']}, fallbacks {r['fallbacks']}, "
          f"timeouts {r['timeouts']}, connects {r['connects']}")
print("tls handshakes:", st["redis"]["tls"]["tls_handshakes"])
PY
