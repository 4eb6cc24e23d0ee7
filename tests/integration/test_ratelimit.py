"""Rate limits: local GCRA per key, 429 with Retry-After and RateLimit fields, and the
fleet-wide Redis backend against a real redis-server (shared budget, outage, recovery)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import Conn, free_port, get, wait_port


def limited(flashgate, limits, route_extra="", **kw):
    return flashgate(main_extra=limits,
                     routes=f"    route /api {{ upstream app; {route_extra} }}\n"
                            "    route / { upstream app; }", **kw)


def statuses(port, n, headers="", path="/api/x"):
    return [get(port, path, headers)[0] for _ in range(n)]


def limit_stats(fg, name):
    return fg.stats()["limits"][name]


# ---- local limits ------------------------------------------------------------------------


def test_burst_then_429_with_retry_after_and_ratelimit_fields(flashgate):
    fg = limited(flashgate, "limit per_ip { rate 2r/s; burst 3; }", "limit per_ip;")
    assert statuses(fg.port, 4) == [200] * 4  # burst + 1 at once
    s, h, b = get(fg.port, "/api/x")
    assert s == 429
    doc = json.loads(b)
    assert doc["limit"] == "per_ip" and doc["retry_after"] == 1
    assert h["retry-after"] == ["1"]
    assert h["ratelimit-policy"] == ['"per_ip";q=2;w=1']
    assert h["ratelimit"][0].startswith('"per_ip";r=0;t=')
    assert h["ratelimit-remaining"] == ["0"] and h["ratelimit-limit"] == ["4"]
    assert h["content-type"] == ["application/json"]
    time.sleep(0.6)  # one emission interval (0.5 s) later, one more request fits
    assert statuses(fg.port, 2) == [200, 429]
    st = limit_stats(fg, "per_ip")
    assert st["allowed"] == 5 and st["limited"] == 2
    # other routes are not limited
    assert statuses(fg.port, 5, path="/echo") == [200] * 5


def test_client_ip_from_the_trusted_forwarded_hop(flashgate):
    fg = limited(flashgate, "limit per_ip { key client_ip; rate 1r/m; }", "limit per_ip;",
                 server_extra="    trusted_proxies 127.0.0.1;")
    # behind the ALB (trusted 127.0.0.1): the right-most untrusted hop is the client
    a = "X-Forwarded-For: 198.51.100.1\r\n"
    b = "X-Forwarded-For: 198.51.100.2\r\n"
    spoofed = "X-Forwarded-For: 203.0.113.77, 198.51.100.1\r\n"  # the left part is the client's word
    assert get(fg.port, "/api/x", a)[0] == 200
    assert get(fg.port, "/api/x", b)[0] == 200
    assert get(fg.port, "/api/x", a)[0] == 429
    assert get(fg.port, "/api/x", spoofed)[0] == 429  # still 198.51.100.1


def test_header_and_cookie_keys(flashgate):
    fg = limited(flashgate, "limit per_key { key header X-Api-Key cookie sid; rate 1r/m; }",
                 "limit per_key;")
    k1 = "X-Api-Key: k1\r\nCookie: a=1; sid=s1\r\n"
    k1_other_session = "X-Api-Key: k1\r\nCookie: sid=s2\r\n"
    assert get(fg.port, "/api/x", k1)[0] == 200
    assert get(fg.port, "/api/x", k1)[0] == 429
    assert get(fg.port, "/api/x", k1_other_session)[0] == 200


def test_limit_headers_on_allowed_responses(flashgate):
    fg = limited(flashgate, "limit per_ip { rate 10r/s; burst 4; }",
                 "limit per_ip; limit_headers on;")
    s, h, _ = get(fg.port, "/api/x")
    assert s == 200
    assert h["ratelimit-policy"] == ['"per_ip";q=10;w=1']
    assert h["ratelimit-remaining"] == ["4"]
    assert "retry-after" not in h


def test_refused_request_with_a_body_closes_the_connection(flashgate, conn):
    fg = limited(flashgate, "limit per_ip { rate 1r/m; }", "limit per_ip;")
    get(fg.port, "/api/x")
    c = conn(fg.port)
    c.send("POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    s, h, _ = c.response()
    assert s == 429 and h["connection"] == ["close"]
    assert c.closed()


def test_several_limits_all_apply(flashgate):
    fg = limited(flashgate, "limit a { key route; rate 1r/m; burst 2; }\n"
                            "limit b { rate 1r/m; burst 0; }", "limit a; limit b;")
    s1, _, _ = get(fg.port, "/api/x")
    s2, h, b = get(fg.port, "/api/x")
    assert (s1, s2) == (200, 429) and json.loads(b)["limit"] == "b"


def test_bad_limit_config_is_refused_with_its_line(tmp_path):
    from conftest import flashgate_bin
    conf = tmp_path / "bad.conf"
    conf.write_text("upstream app { server 127.0.0.1:1; }\n"
                    "limit x { rate 5/sec; }\n"
                    "limit y { rate 5r/s; backend redis fleet; }\n"
                    "server { listen 127.0.0.1:1; route / { upstream app; limit z; } }\n")
    r = subprocess.run([flashgate_bin(), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{conf}:2: invalid rate" in r.stderr
    assert f"{conf}:3: redis 'fleet' is not defined" in r.stderr
    assert f"{conf}:4: limit 'z' is not defined" in r.stderr


# ---- the Redis backend -------------------------------------------------------------------


class Redis:
    def __init__(self, port=None):
        self.port = port or free_port()
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(exe, os.X_OK):
            pytest.fail("redis-server is not installed (scripts/deps.sh installs it)")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.stop()


def fleet_conf(redis_port, extra=""):
    return (f"limit fleet {{ key route; rate 10r/m; burst 9; "
            f"backend redis redis://127.0.0.1:{redis_port} timeout=50ms {extra}; }}")


def wait_ready(fg, name, n=1, timeout=5.0):
    """Wait until the workers' Redis clients connected (n connects)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if limit_stats(fg, name)["redis"]["connects"] >= n:
            return
        time.sleep(0.05)
    raise TimeoutError("no Redis connection")


def test_two_instances_share_one_fleet_budget(flashgate, redis):
    a = limited(flashgate, fleet_conf(redis.port), "limit fleet;")
    b = limited(flashgate, fleet_conf(redis.port), "limit fleet;")
    wait_ready(a, "fleet")
    wait_ready(b, "fleet")
    got = []
    for _ in range(10):
        got += [get(a.port, "/api/x")[0], get(b.port, "/api/x")[0]]
    # 10 r/m with burst 9: ten at once for the whole fleet; a refill every 6 s is the
    # stated tolerance (at most one more during the run)
    allowed = got.count(200)
    assert 10 <= allowed <= 11 and got.count(429) == 20 - allowed
    assert limit_stats(a, "fleet")["redis"]["ok"] + limit_stats(b, "fleet")["redis"]["ok"] == 20


def test_redis_down_falls_back_at_once_and_recovers(flashgate, redis):
    fg = limited(flashgate, fleet_conf(redis.port), "limit fleet;")
    wait_ready(fg, "fleet")
    assert get(fg.port, "/api/x")[0] == 200
    port = redis.port
    redis.stop()
    # no request waits longer than the Redis timeout (50 ms) plus the round trip here
    worst = 0.0
    for _ in range(5):
        t0 = time.time()
        s, _, _ = get(fg.port, "/api/x")
        worst = max(worst, time.time() - t0)
        assert s in (200, 429)  # decided by the local table (fail open)
    assert worst < 1.0
    assert limit_stats(fg, "fleet")["redis"]["fallbacks"] >= 5
    # Redis comes back on the same port: the client reconnects by itself
    back = Redis(port)
    try:
        deadline = time.time() + 10
        before = limit_stats(fg, "fleet")["redis"]["ok"]
        while time.time() < deadline and limit_stats(fg, "fleet")["redis"]["ok"] == before:
            get(fg.port, "/api/x")
            time.sleep(0.2)
        assert limit_stats(fg, "fleet")["redis"]["ok"] > before
    finally:
        back.stop()


def test_fail_closed_refuses_while_redis_is_down(flashgate, redis):
    fg = limited(flashgate, fleet_conf(redis.port, "fail=closed"), "limit fleet;")
    wait_ready(fg, "fleet")
    redis.stop()
    s, h, _ = get(fg.port, "/api/x")
    assert s == 429 and h["retry-after"] == ["1"]
    assert limit_stats(fg, "fleet")["failed_closed"] >= 1
