"""The app killed, frozen, and back: what the client sees and what the app sees.

- killed: cached routes keep answering from the cache (stale_if_error), other routes get
  a 502 at once (a refused connection, then a server marked down) -- never a hang;
- frozen (SIGSTOP: connections accepted by the kernel, never answered): one read_timeout,
  a 504, and the app receives the request once -- never retried after a timeout
  (flashgate.conf(5), retry: only what never reached the app);
- back after an outage, as the only server of its upstream (the documented topology):
  marked healthy again after fail_timeout by the same rule as with many servers, and an
  `offload { when failing; }` route stops queueing.
"""
import http.client
import signal
import time

import pytest

from conftest import AgentProcess, http_get, wait_for

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


def test_frozen_app_one_timeout_and_one_request(flashgate, app_origin):
    fg = flashgate(origin_ports=[app_origin.port],
                   upstream_extra="    read_timeout 1s;\n    retry on;")
    assert http_get(fg.port, "/echo")[0] == 200  # a pooled connection to reuse, too
    app_origin.reset()
    app_origin.freeze()
    try:
        st, _, _, took = http_get(fg.port, "/echo?frozen=1")
    finally:
        app_origin.thaw()
    # Once thawed the app reads whatever was sent to it while frozen.
    time.sleep(1.0)
    paths = app_origin.stats()["paths"]
    print(f"\nfrozen app: {st} after {took:.2f} s, the app got {paths}")
    assert st == 504
    assert 0.9 < took < 1.8, "one read_timeout (1s), not two"
    assert paths.count("/echo?frozen=1") == 1, paths
    assert fg.stats()["upstreams"]["app"]["retries"] == 0


def post(port, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/api/orders", body=b'{"item":1}',
                  headers={"Content-Type": "application/json", "Idempotency-Key": key})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


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

        app_origin.kill()
        for _ in range(4):
            assert http_get(fg.port, "/echo")[0] == 502
        assert healthy() is False
        assert post(fg.port, "down") == 202  # every server down: the write is queued
        app_origin.start()
        t0 = time.monotonic()
        # Requests go through again, and within fail_timeout (+ a generous margin) the
        # server is healthy in /stats (the mark is cleared by the next request picking the
        # server after fail_timeout) and writes go straight to the app again.
        try:
            wait_for(lambda: http_get(fg.port, "/echo")[0] == 200 and healthy(), 8,
                     "the app answering again, healthy in /stats")
            wait_for(lambda: post(fg.port, f"after-{time.monotonic()}") == 200, 8,
                     "a POST answered by the app, not queued")
        finally:
            print(f"\nsingle server back: healthy={healthy()} after {time.monotonic() - t0:.1f} s, "
                  f"offload {fg.stats()['offload']['triggered']}")
    finally:
        ag.stop()
        ag.logf.close()
