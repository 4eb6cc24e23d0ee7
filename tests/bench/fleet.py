#!/usr/bin/env python3
"""The fleet (issue 15): what the shared tier costs and what it saves (not part of make check).

    tests/bench/fleet.py [--requests N] [--rounds R] [--bin DIR]

1. Latency and CPU of one request, three ways, on one flashgate (workers 1, CPU 0):
     local   a hit in its own memory,
     l2      a local miss served from the shared tier (records another instance wrote),
     app     a request proxied to the app (the test origin, tests/integration/origin.py).
   One keep-alive client on CPU 1 sends N requests one after the other (1 KiB bodies);
   medians and p99 of the latency it sees, and flashgate's CPU time (utime + stime from
   /proc) per request. R rounds, interleaved; medians of the rounds.
2. A cold-key storm: 300 clients at once on one new key (the app answers in 300 ms),
   spread over 1, 2 and 3 instances, with and without the shared tier: the app requests
   it took (median of R keys).

redis-server and the origin run on CPU 1 with the client. Numbers are reported, never
asserted; the machine is shared and noisy (docs: tests/bench/README.md).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
ORIGIN = os.path.join(TOP, "tests", "integration", "origin.py")
CC = "cc=max-age=600&bytes=1024"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: port {port} did not open")


def taskset(cpu, args):
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") else []) + args


class Proc:
    def __init__(self, args, port, log):
        self.log = open(log, "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(port)

    def cpu_s(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def flashgate(binary, work, name, origin_port, redis_port, shared):
    port, admin = free_port(), free_port()
    conf = os.path.join(work, name + ".conf")
    with open(conf, "w") as f:
        f.write(f"""workers 1;
error_log stderr warn;
admin {{ listen 127.0.0.1:{admin}; }}
redis shared {{ url redis://127.0.0.1:{redis_port}; }}
fleet {{ redis shared; channel bench; }}
cache main {{ memory 256m; {"shared on; shared_timeout 20ms;" if shared else ""} }}
upstream app {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
server {{
    listen 127.0.0.1:{port};
    access_log off;
    request_id off;
    route /app/ {{ upstream app; }}
    route / {{ upstream app; cache main; }}
}}
""")
    p = Proc(taskset(0, [binary, "-c", conf]), port, os.path.join(work, name + ".log"))
    p.port, p.admin = port, admin
    wait_port(admin)
    return p


def stats(fg):
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/stats", timeout=5) as r:
        return json.loads(r.read())


def wait_for(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


def timed_gets(port, paths):
    """One keep-alive connection, requests one after the other: latencies in µs."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for p in paths:
        t0 = time.perf_counter()
        c.request("GET", p, headers={"Host": "bench"})
        r = c.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1e6)
        if r.status != 200:
            raise SystemExit(f"bench: {p} answered {r.status}")
    c.close()
    return out


def p99(xs):
    return sorted(xs)[int(len(xs) * 0.99) - 1]


def latency_part(binary, work, n, rounds, origin_port, redis_port):
    a = flashgate(binary, work, "a", origin_port, redis_port, True)
    b = flashgate(binary, work, "b", origin_port, redis_port, True)
    rows = {"local": [], "l2": [], "app": []}
    try:
        timed_gets(b.port, ["/c/local?" + CC])  # stored on b
        for rnd in range(rounds):
            keys = [f"/c/r{rnd}/k{i}?{CC}" for i in range(n)]
            timed_gets(a.port, keys)  # a fills them from the app and writes them back
            wait_for(lambda: stats(a)["fleet"]["l2"]["writes"] >= (rnd + 1) * n, 30,
                     "the write backs")
            modes = [("local", ["/c/local?" + CC] * n), ("l2", keys),
                     ("app", [f"/app/r{rnd}/{i}" for i in range(n)])]
            if rnd % 2:
                modes.reverse()
            for mode, paths in modes:
                hits0 = stats(b)["fleet"]["l2"]["hits"]
                cpu0 = b.cpu_s()
                lat = timed_gets(b.port, paths)
                cpu = (b.cpu_s() - cpu0) / n * 1e6
                hits = stats(b)["fleet"]["l2"]["hits"] - hits0
                if mode == "l2" and hits != n:
                    print(f"  (round {rnd}: {hits} of {n} l2 requests were shared-tier hits)")
                rows[mode].append((statistics.median(lat), p99(lat), cpu))
    finally:
        a.stop()
        b.stop()
    print(f"\n1. one request, {n} per mode, {rounds} round(s), medians of the rounds")
    print(f"{'mode':8} {'p50 µs':>9} {'p99 µs':>9} {'CPU µs/req':>11}")
    med = {}
    for mode, rs in rows.items():
        med[mode] = [statistics.median(x[i] for x in rs) for i in range(3)]
        print(f"{mode:8} {med[mode][0]:9.0f} {med[mode][1]:9.0f} {med[mode][2]:11.1f}")
    print(f"l2/local p50 {med['l2'][0] / med['local'][0]:.2f}x, CPU {med['l2'][2] / med['local'][2]:.2f}x;"
          f" l2/app p50 {med['l2'][0] / med['app'][0]:.2f}x, CPU {med['l2'][2] / med['app'][2]:.2f}x")


def storm_once(fgs, path, n=300):
    out = [None] * n
    start = threading.Barrier(n)

    def run(i):
        start.wait(30)
        try:
            c = http.client.HTTPConnection("127.0.0.1", fgs[i % len(fgs)].port, timeout=30)
            c.request("GET", path, headers={"Host": "bench"})
            r = c.getresponse()
            out[i] = (r.status, r.read())
            c.close()
        except Exception as e:
            out[i] = (0, repr(e).encode())

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def origin_requests(origin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{origin_port}/__stats", timeout=5) as r:
        return json.loads(r.read())["requests"]


def storm_part(binary, work, rounds, origin_port, redis_port):
    print("\n2. cold-key storm: 300 clients at once, app requests per key (median of"
          f" {rounds} keys)")
    print(f"{'instances':>9} {'without L2':>11} {'with L2':>8}")
    for n_inst in (1, 2, 3):
        row = []
        for shared in (False, True):
            fgs = [flashgate(binary, work, f"s{n_inst}{int(shared)}{i}", origin_port, redis_port,
                             shared) for i in range(n_inst)]
            counts = []
            try:
                time.sleep(0.3)  # subscribed
                for rnd in range(rounds):
                    before = origin_requests(origin_port)
                    res = storm_once(fgs, f"/c/storm/{n_inst}/{int(shared)}/{rnd}?"
                                          f"cc=max-age=600&delay=300")
                    bad = [s for s, _ in res if s != 200]
                    if bad:
                        print(f"  ({len(bad)} answers were not 200)")
                    counts.append(origin_requests(origin_port) - before)
            finally:
                for fg in fgs:
                    fg.stop()
            row.append(statistics.median(counts))
        print(f"{n_inst:9} {row[0]:11.0f} {row[1]:8.0f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(TOP, "build"))
    a = ap.parse_args()
    binary = os.path.join(a.bin, "flashgate")
    redis = shutil.which("redis-server")
    if not os.access(binary, os.X_OK) or redis is None:
        raise SystemExit("bench: needs a built flashgate (--bin) and redis-server")
    work = tempfile.mkdtemp(prefix="bench-fleet.", dir=os.path.join(TOP, "build"))
    procs = []
    try:
        rport, oport = free_port(), free_port()
        procs.append(Proc(taskset(1, [redis, "--port", str(rport), "--save", "",
                                      "--appendonly", "no"]), rport,
                          os.path.join(work, "redis.log")))
        procs.append(Proc(taskset(1, [sys.executable, ORIGIN, str(oport)]), oport,
                          os.path.join(work, "origin.log")))
        os.sched_setaffinity(0, {1}) if hasattr(os, "sched_setaffinity") else None
        latency_part(binary, work, a.requests, a.rounds, oport, rport)
        storm_part(binary, work, a.rounds, oport, rport)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
