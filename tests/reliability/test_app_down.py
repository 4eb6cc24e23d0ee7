"""The app killed, frozen, dripping, and back: what the client sees and what the app sees.

- killed: cached routes keep answering from the cache (stale_if_error), other routes get
  a 502 at once (a refused connection, then a server marked down) -- never a hang;
- frozen (connections accepted, requests read, never answered): one read_timeout, a 504,
  and the app receives the request once -- never retried after a timeout, even with
  `retry on` (flashgate.conf(5), retry: only what never reached the app), on the proxy
  path, on a cache fill, on a reused pooled connection and for a POST;
- dripping: read_timeout bounds the whole response head (a head that drips in a byte at
  a time is cut at read_timeout), while a body keeps the per-read rule;
- back after an outage, as the only server of its upstream (the documented topology):
  marked healthy again after fail_timeout by the same rule as with many servers, whether
  writes or reads come first, and an `offload { when failing; }` route stops queueing.
Real flashgate processes; the frozen and dripping apps are raw sockets (raworigin.py).
"""
import signal
import time

import pytest

from conftest import AgentProcess, Conn, get, http_get, post, wait_for
from raworigin import RawOrigin, drip

CACHED = "/c/page?cc=max-age=1"


def with_server_line(fg, line):
    """Reload fg with its upstream's server line replaced (the fixture's is fixed)."""
    text = "\n".join(line if l.strip().startswith("server 127.0.0.1:") else l
                     for l in fg.text.split("\n"))
    fg.text = text
    fg.write_conf(text)
    fg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: fg.stats()["generation"] == 2, 10, "the reload")


def test_app_killed_stale_on_cached_routes_fast_502_elsewhere(flashgate, app_origin):
    routes = ("    route /c/ { upstream app; cache main; stale_if_error 60s; }\n"
              "    route / { upstream app; }")
    fg = flashgate(origin_ports=[app_origin.port], routes=routes,
                   main_extra="cache main { memory 16m; max_object 1m; }",
                   upstream_extra="    connect_timeout 1s;\n    read_timeout 5s;")
    st, _, body, _ = http_get(fg.port, CACHED)
    assert st == 200 and body.startswith(b"v1:")
    assert http_get(fg.port, "/echo")[0] == 200
    time.sleep(1.2)  # the page is stale now
    app_origin.kill()
    stale, errors = [], []
    for _ in range(10):
        st, h, body, took = http_get(fg.port, CACHED)
        stale.append((st, body[:3], round(took, 2)))
        st, _, _, took = http_get(fg.port, "/echo")
        errors.append((st, round(took, 2)))
    print(f"\napp killed: cached route {stale[:3]}..., uncached {errors[:3]}...")
    assert all(st == 200 and b == b"v1:" for st, b, _ in stale), stale
    assert all(st == 502 for st, _ in errors), errors
    # Fast: no waiting on a connect_timeout or read_timeout (generous: a loaded machine).
    assert max(t for _, _, t in stale) < 1.0, stale
    assert max(t for _, t in errors) < 1.0, errors
    assert fg.stats()["caches"]["main"]["stale_served"] >= 10


@pytest.fixture
def frozen_app():
    """Reads each request and never answers it (but /ok): an app that hangs."""
    def answer(sock, head, origin):
        if head.startswith(b"GET /ok "):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        return None

    o = RawOrigin(answer)
    yield o
    o.stop()


@pytest.mark.parametrize("route", ["uncached", "cached"])
def test_frozen_app_one_timeout_and_one_request(flashgate, frozen_app, route):
    """read_timeout 1s with `retry on`: the 504 comes after about 1 s (never 2) and the
    app saw each request once, on new connections and on a reused one."""
    extra = " cache main;" if route == "cached" else ""
    fg = flashgate(origin_ports=[frozen_app.port],
                   upstream_extra="    read_timeout 1s;\n    retry on;",
                   main_extra="cache main { memory 8m; }",
                   routes=f"    route / {{ upstream app;{extra} }}")
    for path in ["/a", "/b"]:
        st, _, body, took = http_get(fg.port, path)
        assert st == 504, body
        assert 0.9 < took < 1.9, f"one read_timeout (1s), not two: {took:.2f} s"
        time.sleep(0.3)  # a late retry would show in the count
        assert frozen_app.count(path) == 1, frozen_app.requests
    # A pooled connection that times out is not retried either: the app answered /ok on
    # it, then froze.
    c = Conn(fg.port)
    try:
        c.send("GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response()[0] == 200
        c.send("GET /c HTTP/1.1\r\nHost: t\r\n\r\n")
        t0 = time.monotonic()
        assert c.response()[0] == 504
        assert time.monotonic() - t0 < 1.9
    finally:
        c.close()
    time.sleep(0.3)
    assert frozen_app.count("/c") == 1
    assert frozen_app.connections == 3  # /a, /b, then /ok and /c on one connection
    up = fg.stats()["upstreams"]["app"]
    assert up["errors"]["timeout"] == 3
    assert up["retries"] == 0


def test_post_to_a_frozen_app_is_sent_once(flashgate, frozen_app):
    fg = flashgate(origin_ports=[frozen_app.port],
                   upstream_extra="    read_timeout 1s;\n    retry on;")
    t0 = time.monotonic()
    assert post(fg.port, "k", path="/w") == 504
    assert time.monotonic() - t0 < 1.9
    time.sleep(0.3)
    assert frozen_app.count("/w") == 1


def test_dripping_response_head_is_cut_at_read_timeout(flashgate):
    """A head that arrives a byte every 0.2 s never lets a per-read timeout of 1 s fire;
    read_timeout bounds the whole head (the client's head has its deadline too)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"z" * 40 + b"\r\n\r\nok"

    def answer(sock, h, origin):
        drip(sock, head, 0.2)  # about 14 s in all
        return False

    o = RawOrigin(answer)
    try:
        fg = flashgate(origin_ports=[o.port], upstream_extra="    read_timeout 1s;")
        st, _, body, took = http_get(fg.port, "/drip")
        assert st == 504, body
        assert took < 2.5, took
        assert o.count("/drip") == 1
        assert fg.stats()["upstreams"]["app"]["errors"]["timeout"] == 1
    finally:
        o.stop()


def test_slow_body_keeps_per_read_timeout(flashgate):
    """The body keeps the per-read rule (docs/keepalive.md): 5 chunks 0.4 s apart take 2 s,
    longer than read_timeout 1s, and arrive whole."""
    fg = flashgate(upstream_extra="    read_timeout 1s;")
    status, _, body = get(fg.port, "/c/slow?chunked=1&bytes=4995&drip=400")
    assert status == 200 and len(body) == len("v1:") + 4995


def test_single_server_health_recovers_and_offload_stops(flashgate, app_origin, tmp_path):
    ag = AgentProcess(tmp_path, app_origin.port, "replay_rate 0;\nreplay_concurrency 4;").start()
    routes = f"""    route /api/orders {{
        upstream app;
        methods POST;
        offload {{ agent unix:{ag.sock}; when failing; timeout 2s; }}
    }}
    route / {{ upstream app; }}"""
    try:
        fg = flashgate(origin_ports=[app_origin.port], routes=routes)
        with_server_line(fg, f"    server 127.0.0.1:{app_origin.port} max_fails=2 fail_timeout=1s;")
        assert post(fg.port, "before") == 200

        def healthy():
            return fg.stats()["upstreams"]["app"]["servers"][0]["healthy"]

        def outage():
            app_origin.kill()
            for _ in range(2):
                assert http_get(fg.port, "/echo")[0] == 502
            assert healthy() is False
            assert post(fg.port, f"down-{time.monotonic()}") == 202  # every server down: queued
            app_origin.start()
            return time.monotonic()

        # Writes first, no read reaching the app: the down mark ends with fail_timeout and
        # writes go straight to the app again.
        t0 = outage()
        try:
            wait_for(lambda: post(fg.port, f"probe-{time.monotonic()}") == 200, 8,
                     "a POST answered by the app, not queued")
            assert healthy() is True
            assert http_get(fg.port, "/echo")[0] == 200
        finally:
            print(f"\nsingle server back (writes): healthy={healthy()} after "
                  f"{time.monotonic() - t0:.1f} s, offload {fg.stats()['offload']['triggered']}")
        # Another outage, and this time reads bring it back (they reach the lone server
        # while it is marked down, but only fail_timeout clears the mark).
        t0 = outage()
        try:
            wait_for(lambda: http_get(fg.port, "/echo")[0] == 200 and healthy(), 8,
                     "the app answering again, healthy in /stats")
            wait_for(lambda: post(fg.port, f"after-{time.monotonic()}") == 200, 8,
                     "a POST answered by the app, not queued")
        finally:
            print(f"single server back (reads): healthy={healthy()} after "
                  f"{time.monotonic() - t0:.1f} s")
    finally:
        ag.stop()
        ag.logf.close()
