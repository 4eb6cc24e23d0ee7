"""What an idle keep-alive connection costs (issue 19): the ALB keeps many connections open
to each target, so whatever a connection needed while it relayed an answer (buffers,
transaction state) must be given back when the answer ends. Goal: under 4 KiB per idle
connection whatever it did before (a proxied answer, a cache hit, a refusal).

A memory assertion on flashgate's own RSS (/proc/PID/status), not a timing one. Skipped
under AddressSanitizer, whose RSS is its shadow memory and quarantine.
"""
import socket
import time

import pytest

from conftest import Flashgate, flashgate_bin, get

N = 2000
BATCH = 1000
LIMIT = 4096  # bytes per idle connection


def sanitized():
    with open(flashgate_bin(), "rb") as f:
        return b"__asan_init" in f.read()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_answer(s):
    """One answer with a Content-Length body (what the routes below send)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, "closed"
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        d = s.recv(65536)
        assert d, "closed mid-body"
        body += d
    return int(head.split(b" ")[1])


def burst(fg, path, status, headers, n):
    """n connections, BATCH requests in flight at once (as in a burst), left open."""
    conns = []
    for _ in range(n // BATCH):
        batch = []
        for _ in range(BATCH):
            s = socket.create_connection(("127.0.0.1", fg.port), timeout=30)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
            batch.append(s)
        conns += batch
        for c in batch:
            assert read_answer(c) == status
    return conns


def idle_cost(fg, path, status, headers=""):
    """Bytes of RSS per connection: N connections, one request each, then left idle.
    A first burst, closed, fills what is kept for reuse (spare transactions, pooled
    connections to the app): that is not the cost of an idle connection."""
    for _ in range(3):
        get(fg.port, path, headers)
    time.sleep(0.2)
    before = rss_kib(fg.proc.pid)
    conns = burst(fg, path, status, headers, N)
    try:
        assert fg.stats()["downstream"]["connections_idle"] >= N
        # What the burst needed goes back within a moment: the worker gives back spare
        # transactions and free heap pages once quiet (a bounded wait, not a timing).
        time.sleep(1.6)
        end = time.time() + 5
        while True:
            per_conn = (rss_kib(fg.proc.pid) - before) * 1024 / N
            if per_conn < LIMIT or time.time() > end:
                return per_conn
            time.sleep(0.25)
    finally:
        for c in conns:
            c.close()


@pytest.fixture
def fg(tmp_path, origin):
    if sanitized():
        pytest.skip("RSS under AddressSanitizer measures its shadow memory and quarantine")
    f = Flashgate(str(tmp_path), [origin.port],
                  server_extra="    keepalive_timeout 60s;",
                  upstream_extra="    connect_timeout 10s;",
                  main_extra="cache main { memory 8m; }\nlimit none { key client_ip; "
                             "rate 1r/m; burst 1; }",
                  routes="    route /c/ { upstream app; cache main; }\n"
                         "    route /limited { upstream app; limit none; }\n"
                         "    route / { upstream app; }")
    yield f
    f.stop()


@pytest.mark.parametrize("kind", ["proxied", "proxied_large", "cached", "refused"])
def test_idle_connection_after_an_answer_costs_under_4k(fg, kind):
    path, status = {
        "proxied": ("/echo", 200),
        "proxied_large": ("/size?bytes=100000", 200),
        "cached": ("/c/page?cc=max-age%3D60&bytes=2000", 200),
        "refused": ("/limited", 429),
    }[kind]
    per_conn = idle_cost(fg, path, status)
    print(f"{kind}: {per_conn:.0f} bytes of RSS per idle connection")
    assert per_conn < LIMIT, f"{kind}: {per_conn:.0f} bytes per idle connection"
