#!/usr/bin/env bash
# flashgate vs nginx, side by side in one run (not part of make check).
#
#   tests/bench/run.sh [--rounds N] [--duration S] [--bin PATH] [--base PATH] [SCENARIO...]
#
# --base PATH: another flashgate binary (an older build) run beside the first with the same
#   config on its own ports, as "flashgate-base" in passthrough, hit1k, hit64k and newconn:
#   before and after in one run.
# HAProxy (2.6, `haproxy`) and Varnish (7.1, `varnishd`) join where they do the same job
#   when installed (scripts/deps.sh installs both): HAProxy in passthrough, newconn and
#   hit1k/hit64k (its `cache` section), Varnish in hit1k/hit64k (and pass in passthrough),
#   each pinned to CPU 0 with one thread (Varnish: one pool; it cannot go lower). And nginx
#   answering `return 200` from memory (nginx-return200) as the floor of what a hit can cost.
#
# newconn: passthrough with a new client connection per request (wrk -H "Connection: close").
# passthrough: one nginx origin answering 1 KiB; nginx (proxy_pass, upstream keepalive)
#   and flashgate, 1 worker each, pinned to CPU 0; wrk -t1 -c50 and the origin on CPU 1.
#   Rounds alternate between the two proxies; medians of req/s, p99 and CPU time per
#   request (utime+stime of the proxy over the run / requests) are printed with ratios.
# hit1k, hit64k: cache hits of a 1 KiB / 64 KiB static file (nginx proxy_cache against
#   flashgate's cache), same setup.
# nostore: Cache-Control: no-store answers on a cached route (nginx with proxy_cache_lock),
#   and flashgate's plain pass-through of the same URL beside it.
# cold: 200 concurrent requests for one cold URL whose origin answers in 50 ms (a Python
#   origin that counts requests): origin requests and p99 for each proxy.
# idle: 10,000 idle keep-alive client connections; RSS growth per connection.
# limit: a local rate limit that never triggers (1e6 r/s, burst 1e6, one client key) on a
#   route answering the same 1 KiB as passthrough: flashgate with and without it, and nginx
#   with and without a limit_req that never triggers either.
# limit-redis: the same limit with backend redis, against a redis-server this script starts
#   on CPU 1; flashgate with and without it, then the limit's Redis counters from /stats.
# https-hit1k, https-pass: the hit1k and passthrough loads over HTTPS (keep-alive: the
#   handshake is paid once per wrk connection), nginx and flashgate on the same ECDSA P-256
#   certificate, TLS 1.3.
# handshakes: full TLS handshakes per second (openssl s_time -new, one GET of 1 KiB per
#   connection, pinned to CPU 1) against each proxy; CPU time per handshake.
# dashboard: the passthrough load on flashgate with no dashboard viewer, then with 100
#   following /stats/stream (viewers.py, on CPU 1), rounds alternating; CPU time per
#   request of the worker thread alone (threads are named fg-worker-N), req/s and p99,
#   and the admin thread's CPU (fg-admin) per second, which serves the viewers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rounds=5
duration=10
bin="$top/build/flashgate"
base=""
scenarios=()
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    *) scenarios+=("$1"); shift ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(passthrough newconn hit1k hit64k zhit nostore limit limit-redis cold idle https-hit1k https-pass handshakes dashboard)
want_redis=0
for s in "${scenarios[@]}"; do [ "$s" != limit-redis ] || want_redis=1; done
tools=(nginx wrk taskset /usr/bin/python3)
[ $want_redis -eq 0 ] || tools+=(/usr/bin/redis-server)
. "$here/lib.sh"
need_tools bench "${tools[@]}"
need_binary bench "$bin"
[ -z "$base" ] || [ -x "$base" ] || { echo "bench: no flashgate binary at $base" >&2; exit 1; }
have_haproxy=0 have_varnish=0
command -v haproxy >/dev/null && have_haproxy=1
command -v varnishd >/dev/null && have_varnish=1

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral port range (32768-60999): wrk's and the proxies' own connections
# never hold one of these as their local port.
ORIGIN=29101 NGINX=29102 FG=29103 FGADMIN=29104 SLOW=29105 REDIS=29106 NGINXS=29107 FGS=29108
FGB=29109 FGBADMIN=29110 FGBS=29111 HAP=29112 VARN=29113
scheme=http
# One certificate for both proxies' HTTPS listeners.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/tls.key" \
    -out "$work/tls.pem" -days 2 -subj /CN=bench.test -addext subjectAltName=IP:127.0.0.1 \
    >/dev/null 2>&1
body=$(head -c 1024 /dev/zero | tr '\0' 'x')
mkdir -p "$work/www/static" "$work/ngcache"
chmod 755 "$work" "$work/www" "$work/www/static"  # nginx workers run as www-data
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/static/1k"
head -c 65536 /dev/zero | tr '\0' 'b' > "$work/www/static/64k"
head -c 4096 /dev/zero | tr '\0' 'c' > "$work/www/static/4k"
chmod 644 "$work/www/static/1k" "$work/www/static/64k" "$work/www/static/4k"
# A 20 KiB product-list page that compresses like a real one (about 4-5x), not a run of one
# byte: markup repeats, names, prices and stock levels do not.
mkdir -p "$work/www/page" && chmod 755 "$work/www/page"
/usr/bin/python3 - "$work/www/page/20k.html" <<'PY'
import random, sys
random.seed(7)
words = "deal flash sale shoes jacket lamp kettle phone case cable desk chair mug bag".split()
out = ['<!doctype html><html><head><title>Flash sale</title></head><body><ul class="grid">']
while sum(map(len, out)) < 20480:
    n = random.randint(1000, 99999)
    name = " ".join(random.choice(words) for _ in range(3))
    out.append(f'<li class="item" data-id="{n}"><a href="/products/{n}">{name}</a>'
               f'<span class="price">${random.randint(1, 500)}.{random.randint(0, 99):02d}</span>'
               f'<span class="stock">{random.randint(0, 300)} left</span></li>')
out.append("</ul></body></html>")
open(sys.argv[1], "w").write("".join(out)[:20480])
PY
chmod 644 "$work/www/page/20k.html"
cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN;
    location / { default_type text/plain; return 200 "$body"; }
    location /static/ { root $work/www; default_type text/html; add_header Cache-Control "max-age=3600"; }
    location /page/ { root $work/www; default_type text/html; add_header Cache-Control "max-age=3600"; }
    location = /nostore { default_type text/plain; add_header Cache-Control "no-store"; return 200 "$body"; }
    location = /__status { stub_status; } } }
CONF
# nginx as its users run it in front of an app: a cache zone, a cache lock against stampedes.
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  proxy_cache_path $work/ngcache levels=1:2 keys_zone=z:16m max_size=1g inactive=60m use_temp_path=off;
  upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
  upstream slow { server 127.0.0.1:$SLOW; keepalive 64; }
  limit_req_zone \$binary_remote_addr zone=never:10m rate=1000000r/s;
  server { listen 127.0.0.1:$NGINX; listen 127.0.0.1:$NGINXS ssl;
    ssl_certificate $work/tls.pem; ssl_certificate_key $work/tls.key;
    # Debian's nginx 1.22 offers TLS 1.0-1.2 unless told: the same protocols as flashgate.
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_timeout 1h;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location / { proxy_pass http://app; }
    location = /direct { default_type text/plain; return 200 "$body"; }
    location /limited { proxy_pass http://app; limit_req zone=never burst=1000000 nodelay; }
    location /static/ { proxy_pass http://app; proxy_cache z; proxy_cache_lock on; }
    # nginx caches the identity page and gzips it again on every hit (no brotli module here)
    location /page/ { proxy_pass http://app; proxy_cache z; proxy_cache_lock on;
                      gzip on; gzip_comp_level 5; gzip_vary on; }
    location = /nostore { proxy_pass http://app; proxy_cache z; proxy_cache_lock on; }
    location /c/ { proxy_pass http://slow; proxy_cache z; proxy_cache_lock on;
                   proxy_cache_lock_timeout 5s; } } }
CONF
# Limits that never trigger: one client (127.0.0.1) makes well under 1e6 requests a second.
# The Redis one only when limit-redis runs, so that other runs do not need a redis-server.
redis_limit="" redis_route=""
if [ $want_redis -eq 1 ]; then
    redis_limit="limit never_redis { key client_ip; rate 1000000r/s; burst 1000000;
  backend redis redis://127.0.0.1:$REDIS timeout=20ms; }"
    redis_route="route /limited-redis { upstream app; limit never_redis; }"
fi
cat > "$work/flashgate.conf" <<CONF
workers 1;
error_log stderr warn;
admin { listen 127.0.0.1:$FGADMIN; }
# keepalive_timeout 60s as nginx's upstream default (the origin keeps idle connections 75 s);
# flashgate's own default, 1s, would reconnect after the other proxies' rounds.
upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_timeout 60s; keepalive_requests 1000000; }
upstream slow { server 127.0.0.1:$SLOW; keepalive 64; }
cache main { memory 256m; max_object 8m; }
limit never { key client_ip; rate 1000000r/s; burst 1000000; backend local; }
$redis_limit
server { listen 127.0.0.1:$FG; keepalive_requests 1000000; request_id off; access_log off;
  listen 127.0.0.1:$FGS ssl; certificate $work/tls.pem; certificate_key $work/tls.key;
  route /limited { upstream app; limit never; }
  $redis_route
  route /static/ { upstream app; cache main; cache_status_header off; cache_status_field off; }
  route /page/ { upstream app; cache main; cache_status_header off; cache_status_field off; compress br gzip; }
  route /nostore { upstream app; cache main; cache_status_header off; cache_status_field off; }
  route /plain/nostore { upstream app; }
  route /c/ { upstream slow; cache main; }
  route / { upstream app; } }
CONF

# HAProxy as a sidecar proxy: one thread, keep-alive both ways (http-reuse always), its
# small object cache for /static/ (HAProxy's cache is in memory, like ours).
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
  tune.bufsize 65536
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 75s
  timeout http-keep-alive 75s
  option http-keep-alive
  http-reuse always
cache c
  total-max-size 256
  max-object-size 1048576
  max-age 3600
frontend fe
  bind 127.0.0.1:$HAP
  default_backend app
backend app
  http-request cache-use c if { path_beg /static/ }
  http-response cache-store c if { path_beg /static/ }
  server s1 127.0.0.1:$ORIGIN maxconn 1000
CONF
# Varnish caching /static/ and passing the rest (its default for a plain backend).
cat > "$work/varnish.vcl" <<CONF
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$ORIGIN"; }
sub vcl_recv { if (req.url !~ "^/static/") { return (pass); } }
CONF

taskset -c 1 nginx -c "$work/origin.conf" & pids+=($!)
if [ $want_redis -eq 1 ]; then
    taskset -c 1 /usr/bin/redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$work" --logfile "$work/redis.log" & pids+=($!)
    redispid=$!
    for _ in $(seq 50); do # up before flashgate, so that its first decisions do not fall back
        (exec 3<>"/dev/tcp/127.0.0.1/$REDIS") 2>/dev/null && break
        sleep 0.1
    done
fi
taskset -c 1 /usr/bin/python3 "$here/../integration/origin.py" "$SLOW" >/dev/null 2>&1 & pids+=($!)
taskset -c 0 nginx -c "$work/nginx.conf" & pids+=($!)
taskset -c 0 "$bin" -c "$work/flashgate.conf" 2>"$work/flashgate.err" & pids+=($!)
fgpid=$!
fgbpid=""
if [ -n "$base" ]; then
    # (an older build may not know directives added since: cache_status_field came with 0.2)
    sed -e "s/:$FG;/:$FGB;/; s/:$FGADMIN;/:$FGBADMIN;/; s/:$FGS ssl;/:$FGBS ssl;/" \
        -e "s/ cache_status_field off;//" \
        "$work/flashgate.conf" > "$work/flashgate-base.conf"
    taskset -c 0 "$base" -c "$work/flashgate-base.conf" 2>"$work/flashgate-base.err" & pids+=($!)
    fgbpid=$!
fi
hapid="" vpid=""
if [ $have_haproxy -eq 1 ]; then
    taskset -c 0 haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.err" & pids+=($!)
    hapid=$!
fi
if [ $have_varnish -eq 1 ]; then
    mkdir -p "$work/varnish"
    taskset -c 0 varnishd -F -n "$work/varnish" -a "127.0.0.1:$VARN" -f "$work/varnish.vcl" \
        -s malloc,256m -p thread_pools=1 -p thread_pool_min=10 >"$work/varnish.err" 2>&1 & pids+=($!)
    vmgr=$!
fi
sleep 1
kill -0 "$fgpid" 2>/dev/null || { echo "bench: flashgate did not start:" >&2; cat "$work/flashgate.err" >&2; exit 1; }
[ -z "$fgbpid" ] || kill -0 "$fgbpid" 2>/dev/null || { echo "bench: the base flashgate did not start:" >&2; cat "$work/flashgate-base.err" >&2; exit 1; }
[ -z "$hapid" ] || kill -0 "$hapid" 2>/dev/null || { echo "bench: haproxy did not start:" >&2; cat "$work/haproxy.err" >&2; exit 1; }
if [ $have_varnish -eq 1 ]; then
    for _ in $(seq 50); do vpid=$(pgrep -P "$vmgr" | head -1); [ -n "$vpid" ] && break; sleep 0.1; done
    [ -n "$vpid" ] || { echo "bench: varnishd did not start its child:" >&2; cat "$work/varnish.err" >&2; exit 1; }
fi
ngpid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)   # the nginx worker, not its master

# The peers that do a scenario's job, as compare() specs: peers_for PATH [haproxy] [varnish]
peers_for() {
    local path=$1 out=()
    shift
    [ -z "$fgbpid" ] || out+=("flashgate-base:$FGB:$fgbpid:$path")
    for p in "$@"; do
        case $p in
        haproxy) [ -z "$hapid" ] || out+=("haproxy:$HAP:$hapid:$path") ;;
        varnish) [ -z "$vpid" ] || out+=("varnish:$VARN:$vpid:$path") ;;
        esac
    done
    echo "${out[@]}"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
conn_close=""

# utime+stime of the threads of process $1 whose name starts with $2 (fg-worker-, fg-admin)
thread_ticks() {
    local t=0 d name
    for d in /proc/"$1"/task/*; do
        read -r name <"$d/comm" || continue
        case $name in "$2"*) t=$((t + $(awk '{print $14 + $15}' "$d/stat"))) ;; esac
    done
    echo "$t"
}

# Connections the origin accepted so far (its stub_status): one proxy runs at a time, so
# the difference over a run is the upstream connections that proxy opened (a warm pool: 0).
origin_accepts() {
    /usr/bin/python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$ORIGIN/__status', timeout=5).read().split()[7].decode())"
}

run_wrk() { # name port pid round [path] [accept-encoding]
    local t0 t1 a0 a1 hdr=()
    [ -n "${6:-}" ] && hdr=(-H "Accept-Encoding: $6")
    [ -n "$conn_close" ] && hdr+=(-H "Connection: close")
    a0=$(origin_accepts)
    t0=$(cpu_ticks "$3")
    taskset -c 1 wrk -t1 -c50 -d"${duration}s" --latency "${hdr[@]}" "$scheme://127.0.0.1:$2${5:-/}" > "$work/wrk.out"
    t1=$(cpu_ticks "$3")
    a1=$(origin_accepts)
    /usr/bin/python3 "$here/wrk_results.py" row "$1" "$4" "$((t1 - t0))" "$(getconf CLK_TCK)" \
        "$work/wrk.out" "$((a1 - a0 - 1))" >> "$work/results.jsonl"
}

# Interleaved rounds of wrk against each "name:port:pid:path[:accept-encoding]" given;
# medians and ratios to the first one.
compare() {
    rm -f "$work/results.jsonl"
    local spec r
    for spec in "$@"; do # warm-up, and fills the caches
        IFS=: read -r n port pid path ae <<<"$spec"
        local hdr=()
        [ -n "$ae" ] && hdr=(-H "Accept-Encoding: $ae")
        [ -n "$conn_close" ] && hdr+=(-H "Connection: close")
        taskset -c 1 wrk -t1 -c50 -d2s "${hdr[@]}" "$scheme://127.0.0.1:$port$path" >/dev/null
    done
    for r in $(seq "$rounds"); do
        local order=("$@")
        if [ $((r % 2)) -eq 0 ]; then order=(); for spec in "$@"; do order=("$spec" "${order[@]}"); done; fi
        for spec in "${order[@]}"; do
            IFS=: read -r n port pid path ae <<<"$spec"
            run_wrk "$n" "$port" "$pid" "$r" "$path" "$ae"
        done
    done
    /usr/bin/python3 "$here/wrk_results.py" table "$work/results.jsonl"
}

# Ratios of the medians of the last compare between two of its names: ratio NAME BASE.
ratio() {
    /usr/bin/python3 "$here/wrk_results.py" ratio "$work/results.jsonl" "$1" "$2"
}

limit_stats() { # NAME: the limit's counters from the admin /stats, as JSON
    /usr/bin/python3 - "$FGADMIN" "$1" <<'PY'
import json, sys, urllib.request
st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stats", timeout=5).read())
print(json.dumps(st["limits"][sys.argv[2]]))
PY
}

for s in "${scenarios[@]}"; do
case $s in
passthrough)
    echo "passthrough: $rounds rounds x ${duration}s, wrk -t1 -c50, 1 KiB responses; proxies on CPU 0"
    # shellcheck disable=SC2046 # one spec per word
    compare "nginx:$NGINX:$ngpid:/" "flashgate:$FG:$fgpid:/" $(peers_for / haproxy varnish)
    ;;
newconn)
    echo "newconn: passthrough with a new client connection per request (Connection: close), $rounds rounds x ${duration}s"
    conn_close=1
    # shellcheck disable=SC2046
    compare "nginx:$NGINX:$ngpid:/" "flashgate:$FG:$fgpid:/" $(peers_for / haproxy)
    conn_close=""
    ;;
hit1k | hit64k)
    size=${s#hit}
    echo "$s: cache hits of a $size static file, $rounds rounds x ${duration}s, wrk -t1 -c50"
    echo "  (nginx-return200: nginx answering the same 1 KiB from memory, no cache: the floor)"
    # shellcheck disable=SC2046
    compare "nginx:$NGINX:$ngpid:/static/$size" "flashgate:$FG:$fgpid:/static/$size" \
        $(peers_for "/static/$size" haproxy varnish) "nginx-return200:$NGINX:$ngpid:/direct"
    ;;
nostore)
    echo "nostore: 1 KiB no-store answers on a cached route; flashgate pass-through beside it"
    compare "nginx:$NGINX:$ngpid:/nostore" "flashgate:$FG:$fgpid:/nostore" \
        "flashgate-pass:$FG:$fgpid:/plain/nostore"
    ;;
limit)
    echo "limit: a local limit that never triggers, 1 KiB responses, $rounds rounds x ${duration}s, wrk -t1 -c50"
    compare "flashgate:$FG:$fgpid:/" "flashgate-limit:$FG:$fgpid:/limited" \
        "nginx:$NGINX:$ngpid:/" "nginx-limit:$NGINX:$ngpid:/limited"
    ratio nginx-limit nginx
    /usr/bin/python3 - "$(limit_stats never)" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
print(f"flashgate limit never: allowed {s['allowed']}, limited {s['limited']}")
PY
    ;;
limit-redis)
    echo "limit-redis: the same limit with backend redis (redis-server on CPU 1), $rounds rounds x ${duration}s"
    before=$(limit_stats never_redis) rt0=$(cpu_ticks "$redispid")
    compare "flashgate:$FG:$fgpid:/" "flashgate-redis:$FG:$fgpid:/limited-redis"
    after=$(limit_stats never_redis) rt1=$(cpu_ticks "$redispid")
    /usr/bin/python3 - "$before" "$after" "$((rt1 - rt0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
b, a, ticks, hz = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = {k: a[k] - b[k] for k in ("allowed", "limited", "failed_closed")}
rb, ra = b["redis"], a["redis"]
r = {k: ra[k] - rb[k] for k in ("ok", "errors", "timeouts", "fallbacks", "connects", "disconnects", "noscript")}
decisions = d["allowed"] + d["limited"]
print(f"flashgate limit never_redis over the warm-up and rounds: {decisions} decisions, "
      f"allowed {d['allowed']}, limited {d['limited']}, failed_closed {d['failed_closed']}")
print(f"  redis: ok {r['ok']}, fallbacks {r['fallbacks']} ({r['fallbacks'] / max(decisions, 1):.4%}), "
      f"timeouts {r['timeouts']}, errors {r['errors']}, connects {r['connects']}, "
      f"disconnects {r['disconnects']}, noscript {r['noscript']}")
print(f"  redis round trip since start (histogram bucket bounds): p50 <= {ra['latency_us']['p50']} us, "
      f"p99 <= {ra['latency_us']['p99']} us; "
      f"redis-server CPU {ticks / hz * 1e6 / max(r['ok'], 1):.1f} us per decision")
PY
    ;;
zhit)
    echo "zhit: cache hits of a 20 KiB HTML page, encoded; $rounds rounds x ${duration}s"
    compare "nginx-gzip:$NGINX:$ngpid:/page/20k.html:gzip" \
        "flashgate-gzip:$FG:$fgpid:/page/20k.html:gzip" \
        "flashgate-br:$FG:$fgpid:/page/20k.html:br" \
        "flashgate-identity:$FG:$fgpid:/page/20k.html" \
        "flashgate-4k-identity:$FG:$fgpid:/static/4k"
    for ae in gzip br; do
        n=$(curl -s -H "Accept-Encoding: $ae" "http://127.0.0.1:$FG/page/20k.html" | wc -c)
        ref=$(/usr/bin/python3 -c "
import sys, zlib
d = open('$work/www/page/20k.html', 'rb').read()
if '$ae' == 'gzip':
    c = zlib.compressobj(5, zlib.DEFLATED, 31); print(len(c.compress(d) + c.flush()))
else:
    import brotli; print(len(brotli.compress(d, quality=4, lgwin=18)))")
        ng=$([ "$ae" = gzip ] && curl -s -H "Accept-Encoding: gzip" "http://127.0.0.1:$NGINX/page/20k.html" | wc -c || echo -)
        echo "$ae: flashgate $n bytes, the library alone at the same level $ref bytes, nginx $ng bytes (of 20480)"
    done
    ;;
cold)
    echo "cold: 200 concurrent requests for one cold URL, origin answers in 50 ms ($rounds rounds)"
    /usr/bin/python3 - "$rounds" "$SLOW" "nginx:$NGINX" "flashgate:$FG" <<'PY'
import json, socket, statistics, sys, threading, time, urllib.request
rounds, slow = int(sys.argv[1]), int(sys.argv[2])
targets = [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[3:]]
def origin_requests():
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{slow}/__stats", timeout=5).read())["requests"]
def one(port, path, lat, i, barrier):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    barrier.wait(10)
    t0 = time.perf_counter()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    lat[i] = (time.perf_counter() - t0) * 1000 if got.startswith(b"HTTP/1.1 200") else None
    s.close()
res = {n: {"p99": [], "p50": [], "origin": [], "fail": 0} for n, _ in targets}
for r in range(rounds):
    for name, port in (targets if r % 2 == 0 else targets[::-1]):
        path = f"/c/cold-{name}-{r}?cc=max-age=600&delay=50&bytes=1024"
        before = origin_requests()
        lat = [None] * 200
        barrier = threading.Barrier(200)
        ts = [threading.Thread(target=one, args=(port, path, lat, i, barrier)) for i in range(200)]
        for t in ts: t.start()
        for t in ts: t.join(30)
        ok = sorted(x for x in lat if x is not None)
        res[name]["fail"] += 200 - len(ok)
        res[name]["origin"].append(origin_requests() - before)
        res[name]["p99"].append(ok[int(len(ok) * 0.99) - 1] if ok else float("nan"))
        res[name]["p50"].append(ok[len(ok) // 2] if ok else float("nan"))
print(f"{'proxy':<10} {'origin requests':>16} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
for n, v in res.items():
    print(f"{n:<10} {'/'.join(map(str, v['origin'])):>16} {statistics.median(v['p50']):>8.1f} {statistics.median(v['p99']):>8.1f} {v['fail']:>7}")
a, b = res[targets[0][0]], res[targets[1][0]]
print(f"ratio      p99 {statistics.median(b['p99']) / statistics.median(a['p99']):.2f}x ({targets[1][0]} / {targets[0][0]})")
PY
    ;;
idle)
    echo "idle: 10000 keep-alive connections that made one request each, then wait"
    /usr/bin/python3 - "$FG" "$fgpid" "$NGINX" "$ngpid" <<'PY'
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
N = min(10000, hard - 200)
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])
res = {}
for name, port, pid in (("flashgate", int(sys.argv[1]), sys.argv[2]), ("nginx", int(sys.argv[3]), sys.argv[4])):
    before = rss(pid)
    socks = []
    for i in range(N):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        socks.append(s)
    for s in socks:
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        head, _, rest = got.partition(b"\r\n\r\n")
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        while len(rest) < length:
            rest += s.recv(65536)
    time.sleep(1)
    after = rss(pid)
    res[name] = (after - before) * 1024 / N
    print(f"{name:<10} {N} idle connections: RSS +{(after - before) / 1024:.1f} MiB, {res[name]:.0f} bytes/connection")
    for s in socks:
        s.close()
    time.sleep(1)
print(f"ratio      {res['flashgate'] / res['nginx']:.2f}x bytes/connection (flashgate / nginx)")
PY
    ;;
https-hit1k | https-pass)
    path=/static/1k
    [ "$s" = https-pass ] && path=/
    echo "$s: $path over HTTPS (TLS 1.3, keep-alive), $rounds rounds x ${duration}s, wrk -t1 -c50"
    scheme=https
    compare "nginx:$NGINXS:$ngpid:$path" "flashgate:$FGS:$fgpid:$path"
    scheme=http
    ;;
handshakes)
    echo "handshakes: full TLS 1.3 handshakes + one 1 KiB GET each (openssl s_time -new), $rounds rounds x ${duration}s"
    /usr/bin/python3 - "$rounds" "$duration" "$(getconf CLK_TCK)" "nginx:$NGINXS:$ngpid" "flashgate:$FGS:$fgpid" <<'PY'
import re, statistics, subprocess, sys
rounds, dur, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
targets = [t.split(":") for t in sys.argv[4:]]
def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
res = {n: {"hs": [], "cpu": []} for n, _, _ in targets}
for r in range(rounds):
    for name, port, pid in (targets if r % 2 == 0 else targets[::-1]):
        t0 = ticks(pid)
        out = subprocess.run(["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
                              "-new", "-time", str(dur), "-www", "/static/1k"],
                             capture_output=True, text=True, timeout=dur + 30).stdout
        t1 = ticks(pid)
        m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
        if not m:
            sys.exit(f"bench: s_time against {name} failed:\n{out}")
        n, secs = int(m.group(1)), float(m.group(2))
        res[name]["hs"].append(n / secs)
        res[name]["cpu"].append((t1 - t0) / hz * 1e6 / max(n, 1))
print(f"{'proxy':<10} {'handshakes/s':>13} {'CPU us/handshake':>17}")
for n, v in res.items():
    print(f"{n:<10} {statistics.median(v['hs']):>13.0f} {statistics.median(v['cpu']):>17.1f}")
a, b = res[targets[0][0]], res[targets[1][0]]
print(f"ratio      {statistics.median(b['hs']) / statistics.median(a['hs']):>12.2f}x "
      f"{statistics.median(b['cpu']) / statistics.median(a['cpu']):>16.2f}x ({targets[1][0]} / {targets[0][0]})")
PY
    ;;
dashboard)
    echo "dashboard: passthrough, $rounds rounds x ${duration}s, wrk -t1 -c50, with 0 and 100 viewers of /stats/stream"
    echo "  (cpu_us_per_req: the worker thread alone; the admin thread serves the viewers)"
    rm -f "$work/results.jsonl" "$work/admin.txt"
    taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$FG/" >/dev/null
    for r in $(seq "$rounds"); do
        modes=(none viewers)
        [ $((r % 2)) -eq 0 ] && modes=(viewers none)
        for mode in "${modes[@]}"; do
            vpid=""
            if [ "$mode" = viewers ]; then
                taskset -c 1 /usr/bin/python3 "$here/viewers.py" "$FGADMIN" 100 >"$work/viewers.out" &
                vpid=$!
                for _ in $(seq 100); do grep -q ready "$work/viewers.out" && break; sleep 0.1; done
                grep -q ready "$work/viewers.out" || { echo "bench: the 100 viewers did not connect" >&2; exit 1; }
            fi
            w0=$(thread_ticks "$fgpid" fg-worker-) a0=$(thread_ticks "$fgpid" fg-admin)
            taskset -c 1 wrk -t1 -c50 -d"${duration}s" --latency "http://127.0.0.1:$FG/" >"$work/wrk.out"
            w1=$(thread_ticks "$fgpid" fg-worker-) a1=$(thread_ticks "$fgpid" fg-admin)
            /usr/bin/python3 "$here/wrk_results.py" row "flashgate-$mode" "$r" "$((w1 - w0))" \
                "$(getconf CLK_TCK)" "$work/wrk.out" >>"$work/results.jsonl"
            echo "$mode $((a1 - a0))" >>"$work/admin.txt"
            if [ -n "$vpid" ]; then kill "$vpid"; wait "$vpid" 2>/dev/null || true; fi
        done
    done
    /usr/bin/python3 "$here/wrk_results.py" table "$work/results.jsonl"
    /usr/bin/python3 - "$work/admin.txt" "$(getconf CLK_TCK)" "$duration" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
hz, dur = int(sys.argv[2]), float(sys.argv[3])
for mode in ("none", "viewers"):
    ms = [int(t) / hz * 1000 / dur for m, t in rows if m == mode]
    print(f"admin thread, {mode:<8}: {statistics.median(ms):.1f} ms CPU per second (median)")
PY
    ;;
*) echo "bench: unknown scenario $s" >&2; exit 2 ;;
esac
done
