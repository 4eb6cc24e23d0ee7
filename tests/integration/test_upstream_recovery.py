"""The app fails and comes back, freezes, or drips its answer (issue 19):

- one server (the documented topology) marked down by an outage is tried again after
  fail_timeout, as with many: /stats says healthy again and `offload when failing` stops
  queueing writes;
- a frozen app gets each request once, and the client its 504 after one read_timeout;
- read_timeout bounds the whole response head: a head that drips in a byte at a time is
  cut at read_timeout.
Real flashgate processes; the frozen and dripping apps are raw sockets (raworigin.py).
"""
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import HERE, AgentProcess, Conn, Flashgate, get, wait_for, wait_port
from raworigin import RawOrigin, drip


def start_origin(port):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "origin.py"), str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def post(port, path, key):
    c = Conn(port)
    c.send(f"POST {path} HTTP/1.1\r\nHost: t\r\nIdempotency-Key: {key}\r\n"
           "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    r = c.response()
    c.close()
    return r[0]


def healthy(fg):
    return fg.stats()["upstreams"]["app"]["servers"][0]["healthy"]


def test_single_server_recovers_after_an_outage(tmp_path, origin):
    """max_fails=2 fail_timeout=5s (conftest). Before the fix the lone server stayed down
    for good: healthy false forever and every POST queued (202)."""
    port = origin.port
    ag = AgentProcess(tmp_path, port, "replay_rate 0;").start()
    routes = f"""    route /api/orders {{
        upstream app;
        methods POST;
        offload {{ agent unix:{ag.sock}; timeout 2s; when failing; }}
    }}
    route / {{ upstream app; }}"""
    fg = Flashgate(str(tmp_path), [port], routes=routes)
    revived = None
    try:
        assert get(fg.port, "/echo")[0] == 200
        assert post(fg.port, "/api/orders", "before") == 200
        origin.stop()
        for _ in range(2):
            assert get(fg.port, "/echo")[0] == 502
        assert healthy(fg) is False
        assert post(fg.port, "/api/orders", "down") == 202  # every server down: queued
        revived = start_origin(port)
        back = time.time()
        # Writes only (no read goes to the app): the down mark ends with fail_timeout.
        wait_for(lambda: post(fg.port, "/api/orders", "probe") == 200, 12,
                 "a write to reach the app again after fail_timeout")
        assert time.time() - back < 10
        assert healthy(fg) is True
        assert get(fg.port, "/echo")[0] == 200
        assert healthy(fg) is True
        # Another outage, and this time reads bring it back (they reach the lone server
        # while it is marked down, but only fail_timeout clears the mark).
        revived.kill()
        revived.wait(5)
        for _ in range(2):
            assert get(fg.port, "/echo")[0] == 502
        assert healthy(fg) is False
        revived = start_origin(port)
        wait_for(lambda: get(fg.port, "/echo")[0] == 200 and healthy(fg), 12,
                 "healthy again after the second outage")
        assert post(fg.port, "/api/orders", "after") == 200
    finally:
        fg.stop()
        ag.stop()
        if revived is not None and revived.poll() is None:
            revived.kill()
            revived.wait(5)


@pytest.fixture
def frozen():
    def answer(sock, head, origin):
        if head.startswith(b"GET /ok "):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        return None  # reads the request, never answers

    o = RawOrigin(answer)
    yield o
    o.stop()


@pytest.mark.parametrize("route", ["plain", "cached"])
def test_frozen_app_gets_one_request_and_the_client_one_timeout(tmp_path, frozen, route):
    """read_timeout 1s: the 504 comes after about 1 s (never 2: no retry after a timeout)
    and the app saw the request once, on the proxy path and on a cache fill."""
    extra = " cache main;" if route == "cached" else ""
    fg = Flashgate(str(tmp_path), [frozen.port], upstream_extra="    read_timeout 1s;",
                   main_extra="cache main { memory 8m; }",
                   routes=f"    route / {{ upstream app;{extra} }}")
    try:
        for i, path in enumerate(["/a", "/b"]):
            start = time.time()
            status, _, body = get(fg.port, path)
            took = time.time() - start
            assert status == 504, body
            assert 0.9 < took < 1.9, took
            time.sleep(0.3)  # a late retry would show in the count
            assert frozen.count(path) == 1, frozen.requests
        # A reused connection that times out is not retried either: the app answered /ok
        # on it, then froze.
        c = Conn(fg.port)
        c.send("GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response()[0] == 200
        c.send("GET /c HTTP/1.1\r\nHost: t\r\n\r\n")
        start = time.time()
        assert c.response()[0] == 504
        assert time.time() - start < 1.9
        time.sleep(0.3)
        assert frozen.count("/c") == 1
        assert frozen.connections == 3  # /a, /b, then /ok and /c on one connection
        c.close()
        assert fg.stats()["upstreams"]["app"]["errors"]["timeout"] == 3
    finally:
        fg.stop()


def test_post_to_a_frozen_app_is_sent_once(tmp_path, frozen):
    fg = Flashgate(str(tmp_path), [frozen.port], upstream_extra="    read_timeout 1s;")
    try:
        start = time.time()
        assert post(fg.port, "/w", "k") == 504
        assert time.time() - start < 1.9
        time.sleep(0.3)
        assert frozen.count("/w") == 1
    finally:
        fg.stop()
def test_dripping_response_head_is_cut_at_read_timeout(tmp_path):
    """A head that arrives a byte every 0.2 s never lets a per-read timeout of 1 s fire;
    read_timeout bounds the whole head (the client's head has its deadline too)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"z" * 40 + b"\r\n\r\nok"

    def answer(sock, h, origin):
        drip(sock, head, 0.2)  # about 14 s in all
        return False

    o = RawOrigin(answer)
    fg = Flashgate(str(tmp_path), [o.port], upstream_extra="    read_timeout 1s;")
    try:
        start = time.time()
        status, _, body = get(fg.port, "/drip")
        took = time.time() - start
        assert status == 504, body
        assert took < 2.5, took
        assert o.count("/drip") == 1
        assert fg.stats()["upstreams"]["app"]["errors"]["timeout"] == 1
    finally:
        fg.stop()
        o.stop()


def test_slow_body_keeps_per_read_timeout(tmp_path, origin):
    """The body keeps the per-read rule (docs/keepalive.md): 5 chunks 0.4 s apart take 2 s,
    longer than read_timeout 1s, and arrive whole."""
    fg = Flashgate(str(tmp_path), [origin.port], upstream_extra="    read_timeout 1s;")
    try:
        status, _, body = get(fg.port, "/c/slow?chunked=1&bytes=4995&drip=400")
        assert status == 200 and len(body) == len("v1:") + 4995
    finally:
        fg.stop()
