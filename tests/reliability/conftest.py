"""The reliability suite's fixtures: those of tests/integration (real processes on
127.0.0.1, free ports, bounded waits), loaded from there, plus what the scenarios share:
RSS and fd counts from /proc, an ASan check, a restartable origin, a POST with its
Idempotency-Key, traffic threads that count every failure.
"""
import http.client
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "integration")
sys.path.insert(0, INTEGRATION)  # origin.py, test_agent.py, test_offload.py (their helpers)

_spec = importlib.util.spec_from_file_location("fg_integration_conftest",
                                               os.path.join(INTEGRATION, "conftest.py"))
_base = importlib.util.module_from_spec(_spec)
sys.modules["fg_integration_conftest"] = _base
_spec.loader.exec_module(_base)
from fg_integration_conftest import *  # noqa: E402,F401,F403  (fixtures and helpers)
from fg_integration_conftest import Origin, flashgate_bin, wait_port  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def sanitized(path=None):
    """An ASan build: RSS is the sanitizer's (shadow memory, quarantine), not ours."""
    with open(path or flashgate_bin(), "rb") as f:
        return b"__asan_init" in f.read()


needs_plain_build = pytest.mark.skipif(
    sanitized(), reason="RSS under AddressSanitizer measures its shadow memory and quarantine")


class RestartableOrigin(Origin):
    """tests/integration/origin.py that can be killed and started again on the same port:
    the app of an instance going away and coming back."""

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(INTEGRATION, "origin.py"),
                                      str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    stop = kill


@pytest.fixture
def app_origin():
    o = RestartableOrigin()
    yield o
    o.stop()


def http_get(port, path, headers="", timeout=10.0):
    """One request on its own connection: (status, headers, body, seconds)."""
    t0 = time.monotonic()
    c = _base.Conn(port, timeout)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n")
        st, h, b = c.response()
    finally:
        c.close()
    return st, h, b, time.monotonic() - t0


def post(port, key, body=b'{"item":1}', path="/api/orders"):
    """One JSON POST with its Idempotency-Key on its own connection: the status."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body,
                  headers={"Content-Type": "application/json", "Idempotency-Key": key})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class Traffic:
    """Threads sending GETs in a loop until stop(): on keep-alive connections and on a
    new connection per request. Every request that does not get an expected status (or
    no complete answer) is a failure, kept with what happened."""

    def __init__(self, port, paths, threads=4, new_conn_every=3, expect=(200,)):
        self.port, self.paths, self.expect = port, paths, expect
        self.ok = 0
        self.failures = []
        self.latencies = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i, new_conn_every), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, idx, new_conn_every):
        c = None
        n = 0
        while not self.stopping.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            fresh = new_conn_every and idx % 2 == 0 and n % new_conn_every == 0
            t0 = time.monotonic()
            try:
                if c is None or fresh:
                    if c is not None:
                        c.close()
                    c = _base.Conn(self.port, 10)
                c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
                st, h, _ = c.response()
                if h.get("connection") == ["close"]:
                    c.close()
                    c = None
                dt = time.monotonic() - t0
                with self.lock:
                    if st in self.expect:
                        self.ok += 1
                        self.latencies.append(dt)
                    else:
                        self.failures.append((path, st))
            except (OSError, EOFError, ValueError, IndexError) as e:
                with self.lock:
                    self.failures.append((path, repr(e)))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        return self


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


def free_port():
    return _base.free_port()


def raise_fd_limit(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        pytest.skip(f"needs {n} file descriptors, the limit is {soft}")


def open_idle(port, n):
    """n client connections, nothing sent."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        out.append(s)
    return out
