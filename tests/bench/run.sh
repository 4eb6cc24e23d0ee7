#!/usr/bin/env bash
# flashgate vs nginx, side by side in one run (not part of make check).
#
#   tests/bench/run.sh [--rounds N] [--duration S] [--bin PATH] [passthrough] [idle]
#
# passthrough: one nginx origin answering 1 KiB; nginx (proxy_pass, upstream keepalive)
#   and flashgate, 1 worker each, pinned to CPU 0; wrk -t1 -c50 and the origin on CPU 1.
#   Rounds alternate between the two proxies; medians of req/s, p99 and CPU time per
#   request (utime+stime of the proxy over the run / requests) are printed with ratios.
# idle: 10,000 idle keep-alive client connections; RSS growth per connection.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rounds=5
duration=10
bin="$top/build/flashgate"
scenarios=()
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) scenarios+=("$1"); shift ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(passthrough idle)
for tool in nginx wrk taskset /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "bench: no flashgate binary at $bin (build first)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT

ORIGIN=39101 NGINX=39102 FG=39103 FGADMIN=39104
body=$(head -c 1024 /dev/zero | tr '\0' 'x')
cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; location / { default_type text/plain; return 200 "$body"; } } }
CONF
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$work/flashgate.conf" <<CONF
workers 1;
error_log stderr warn;
admin { listen 127.0.0.1:$FGADMIN; }
upstream app { server 127.0.0.1:$ORIGIN; keepalive 64; keepalive_requests 1000000; }
server { listen 127.0.0.1:$FG; keepalive_requests 1000000; request_id off; access_log off;
  route / { upstream app; } }
CONF

taskset -c 1 nginx -c "$work/origin.conf" & pids+=($!)
taskset -c 0 nginx -c "$work/nginx.conf" & pids+=($!)
taskset -c 0 "$bin" -c "$work/flashgate.conf" 2>"$work/flashgate.err" & pids+=($!)
fgpid=$!
sleep 1
ngpid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)   # the nginx worker, not its master

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_wrk() { # name port pid round
    local t0 t1
    t0=$(cpu_ticks "$3")
    taskset -c 1 wrk -t1 -c50 -d"${duration}s" --latency "http://127.0.0.1:$2/" > "$work/wrk.out"
    t1=$(cpu_ticks "$3")
    /usr/bin/python3 - "$1" "$4" "$((t1 - t0))" "$(getconf CLK_TCK)" "$work/wrk.out" >> "$work/results.jsonl" <<'PY'
import json, re, sys
name, rnd, ticks, hz, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
out = open(path).read()
if "Requests/sec" not in out or "99%" not in out:
    sys.exit(f"bench: wrk against {name} failed:\n{out}")
def lat(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = lat(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
p50 = lat(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(json.dumps({"proxy": name, "round": rnd, "rps": rps, "p50_ms": p50, "p99_ms": p99,
                  "cpu_us_per_req": ticks / hz * 1e6 / max(reqs, 1), "requests": reqs,
                  "non_2xx": int(errs.group(1)) if errs else 0}))
PY
}

for s in "${scenarios[@]}"; do
case $s in
passthrough)
    echo "passthrough: $rounds rounds x ${duration}s, wrk -t1 -c50, 1 KiB responses; proxies on CPU 0"
    taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$NGINX/" >/dev/null   # warm-up
    taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$FG/" >/dev/null
    for r in $(seq "$rounds"); do
        if [ $((r % 2)) -eq 1 ]; then order="nginx flashgate"; else order="flashgate nginx"; fi
        for p in $order; do
            if [ "$p" = nginx ]; then run_wrk nginx "$NGINX" "$ngpid" "$r"; else run_wrk flashgate "$FG" "$fgpid" "$r"; fi
        done
    done
    /usr/bin/python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for p in ("nginx", "flashgate"):
    rs = [r for r in rows if r["proxy"] == p]
    med[p] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}
    med[p]["non_2xx"] = sum(r["non_2xx"] for r in rs)
print(f"{'proxy':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'non-2xx':>8}")
for p, m in med.items():
    print(f"{p:<10} {m['rps']:>10.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['cpu_us_per_req']:>11.1f} {m['non_2xx']:>8}")
f, n = med["flashgate"], med["nginx"]
print(f"{'ratio':<10} {f['rps']/n['rps']:>10.2f}x {'':>8} {f['p99_ms']/n['p99_ms']:>7.2f}x {f['cpu_us_per_req']/n['cpu_us_per_req']:>10.2f}x   (flashgate / nginx)")
print("rounds:", " ".join(f"{r['proxy'][0]}{r['round']}={r['rps']:.0f}" for r in rows))
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
*) echo "bench: unknown scenario $s" >&2; exit 2 ;;
esac
done
