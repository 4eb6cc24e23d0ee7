"""Why was this slow: Server-Timing on answers (server_timing on; off by default) and the
access log's fields for it — time to the app's response head, whether the connection to
the app was new (and its connect time) or reused, retries, time in the cache stage
(waiting on another request's fill included, this request's own app wait not), time
waiting for the agent."""
import json
import threading
import time

from conftest import AgentProcess, Conn, Flashgate, get, wait_for


def timing(headers):
    """Server-Timing as {name: (dur_ms, desc)}."""
    out = {}
    for v in headers.get("server-timing", []):
        for item in v.split(","):
            parts = [p.strip() for p in item.split(";")]
            params = dict(p.split("=", 1) for p in parts[1:])
            out[parts[0]] = (float(params["dur"]), params.get("desc", "").strip('"'))
    return out


def log_lines(path, n, timeout=5):
    wait_for(lambda: path.exists() and path.read_text().count("\n") >= n, timeout,
             f"{n} access log lines")
    return [json.loads(l) for l in path.read_text().splitlines()]


def timed_flashgate(flashgate, tmp_path, timing_on=True):
    log = tmp_path / "access.log"
    fg = flashgate(main_extra="cache main { memory 8m; }",
                   server_extra=f"    access_log {log};"
                                + ("\n    server_timing on;" if timing_on else ""),
                   routes="    route /c { upstream app; cache main; }\n"
                          "    route / { upstream app; }")
    return fg, log


def test_server_timing_is_off_by_default(flashgate, tmp_path):
    fg, _ = timed_flashgate(flashgate, tmp_path, timing_on=False)
    status, h, _ = get(fg.port, "/c/x?cc=max-age%3D60")
    assert status == 200 and "server-timing" not in h


def test_miss_hit_pass_and_proxied(flashgate, origin, tmp_path):
    fg, log = timed_flashgate(flashgate, tmp_path)
    # a miss: this request's fill waited for the app (50 ms), the cache stage itself little
    _, h, _ = get(fg.port, "/c/a?cc=max-age%3D60&delay=50")
    st = timing(h)
    assert st["cache"][1] == "MISS" and st["app"][0] >= 50, st
    assert st["cache"][0] < 50, st  # the app's wait is not the cache's
    # a hit: no app at all
    _, h, _ = get(fg.port, "/c/a?cc=max-age%3D60&delay=50")
    st = timing(h)
    assert st["cache"][1] == "HIT" and "app" not in st and st["cache"][0] < 50, st
    # no cache on the route: the app's time only
    _, h, _ = get(fg.port, "/delay?ms=30")
    st = timing(h)
    assert "cache" not in st and st["app"][0] >= 30, st
    # uncacheable on a cached route
    _, h, _ = get(fg.port, "/c/b?cc=no-store")
    st = timing(h)
    assert st["cache"][1] == "PASS" and "app" in st, st

    lines = log_lines(log, 4)
    miss, hit, proxied, passed = lines
    assert miss["cache"] == "MISS" and miss["upstream_ttfb_ms"] >= 50
    assert miss["upstream_connect"] == "new" and miss["upstream_attempts"] == 1
    assert miss["upstream_connect_ms"] > 0
    assert hit["cache"] == "HIT" and hit["upstream_connect"] == "" and hit["upstream_attempts"] == 0
    assert hit["upstream_ttfb_ms"] == 0 and hit["cache_ms"] < 50
    assert proxied["upstream_connect"] == "reused" and proxied["upstream_connect_ms"] == 0
    assert proxied["upstream_ttfb_ms"] >= 30 and proxied["cache_ms"] == 0
    assert passed["cache"] == "PASS" and passed["upstream_attempts"] == 1
    for l in lines:
        for k in ("limit_ms", "offload_ms"):
            assert l[k] == 0


def test_waiting_on_another_requests_fill_is_cache_time(flashgate, origin, tmp_path):
    fg, log = timed_flashgate(flashgate, tmp_path)
    got = {}

    def one(name, pause):
        time.sleep(pause)
        got[name] = get(fg.port, "/c/slow?cc=max-age%3D60&delay=300")

    a = threading.Thread(target=one, args=("first", 0))
    b = threading.Thread(target=one, args=("second", 0.1))
    a.start(), b.start()
    a.join(10), b.join(10)
    first, second = timing(got["first"][1]), timing(got["second"][1])
    assert first["cache"][1] == "MISS" and first["app"][0] >= 300, first
    # the second waited some 200 ms on the first one's fill: cache time, no app of its own
    assert second["cache"][1] == "HIT" and "app" not in second, second
    assert second["cache"][0] >= 150, second
    lines = {l["cache"]: l for l in log_lines(log, 2)}
    assert lines["HIT"]["cache_ms"] >= 150 and lines["HIT"]["upstream_attempts"] == 0


def test_retry_on_a_fresh_connection_is_logged(flashgate, origin, tmp_path):
    fg, log = timed_flashgate(flashgate, tmp_path)
    get(fg.port, "/x")  # a pooled connection
    origin.get("/__drop_next")  # the origin closes it as the next request arrives
    status, h, _ = get(fg.port, "/y")
    assert status == 200
    lines = log_lines(log, 2)
    y = lines[1]
    assert y["upstream_attempts"] == 2 and y["upstream_connect"] == "new", y


def test_waiting_for_the_agent_is_offload_time(tmp_path, origin):
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    ag = AgentProcess(agent_dir, origin.port).start()
    log = tmp_path / "access.log"
    fg = Flashgate(str(tmp_path), [origin.port],
                   server_extra=f"    access_log {log};\n    server_timing on;",
                   routes=f"    route /orders {{ upstream app; offload {{ agent unix:{ag.sock}; }} }}")
    try:
        c = Conn(fg.port)
        c.send("POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        status, h, _ = c.response()
        assert status == 202
        st = timing(h)
        assert "offload" in st and st["offload"][0] > 0 and "app" not in st, st
        line = log_lines(log, 1)[0]
        assert line["offload"] == "queued" and line["offload_ms"] > 0
    finally:
        fg.stop()
        ag.stop()
        ag.logf.close()
