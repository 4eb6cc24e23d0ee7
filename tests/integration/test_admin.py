"""The admin listener: the agent's numbers when the agent dies, cache warm-up lists
(refused whole on a bad line, failures logged), and purge keys as the ALB's Host makes
them."""
import json
import re
import time
import urllib.error
import urllib.request

from conftest import AgentProcess, Conn, wait_for


def admin(fg, path, data=None):
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}{path}", data=data,
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- agent.up ---------------------------------------------------------------------------


def test_agent_up_turns_false_within_a_second_of_the_agent_dying(flashgate, origin, tmp_path):
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    ag = AgentProcess(agent_dir, origin.port).start()
    port = ag.status_port
    try:
        fg = flashgate(admin_extra=f"agent_status 127.0.0.1:{port};")
        wait_for(lambda: (fg.stats()["agent"] or {}).get("up") is True, 10, "agent.up true")
        ag.proc.kill()  # SIGKILL: its listening sockets close with the process
        ag.proc.wait(5)
        t0 = time.monotonic()
        wait_for(lambda: fg.stats()["agent"]["up"] is False, 5, "agent.up false")
        took = time.monotonic() - t0
        # polled once a second: the first poll after the death is refused
        assert took <= 1.5, f"agent.up stayed true {took:.2f} s after the agent died"
        a = fg.stats()["agent"]
        assert "status" not in a and a["last_error"] != ""
        status, text = admin(fg, "/metrics")
        assert "flashgate_agent_status_up 0\n" in text
        # and true again once an agent answers on that port
        ag.logf.close()
        ag = AgentProcess(agent_dir, origin.port)
        with open(ag.conf) as f:
            conf = f.read()
        with open(ag.conf, "w") as f:
            f.write(conf.replace(f"status_listen 127.0.0.1:{ag.status_port};",
                                 f"status_listen 127.0.0.1:{port};"))
        ag.status_port = port
        ag.start()
        wait_for(lambda: fg.stats()["agent"]["up"] is True, 5, "agent.up true again")
    finally:
        ag.stop()
        ag.logf.close()


# ---- cache warm-up ---------------------------------------------------------------------------


def warm_flashgate(flashgate):
    return flashgate(main_extra="cache main { memory 8m; }",
                     routes="    route / { upstream app; cache main; }")


def test_warm_list_with_an_https_line_is_refused_whole(flashgate, origin):
    fg = warm_flashgate(flashgate)
    origin.reset()
    body = b"http://t/c/a?cc=max-age%3D60\n# a comment\nhttps://t/c/b?cc=max-age%3D60\n" \
        b"http://t/c/d?cc=max-age%3D60\n"
    status, text = admin(fg, "/cache/warm", body)
    assert status == 400, text
    assert "line 3" in text and "https://" in text, text
    time.sleep(0.5)
    assert fg.stats()["cache_warm"]["jobs"] == 0
    assert origin.stats().get("requests", 0) == 0, origin.stats()  # nothing fetched


def test_warm_failures_are_logged(flashgate, origin):
    fg = warm_flashgate(flashgate)
    body = b"http://t/status/500?w=1\nhttp://t/status/404?w=2\nhttp://t/c/ok?w=3\n"
    status, text = admin(fg, "/cache/warm", body)
    assert status == 202, text
    wait_for(lambda: fg.stats()["cache_warm"]["done"] + fg.stats()["cache_warm"]["failed"] == 3,
             10, "the warm-up")
    assert fg.stats()["cache_warm"]["failed"] == 2
    wait_for(lambda: "/status/404?w=2" in fg.errors(), 5, "the failures logged")
    log = fg.errors()
    assert re.search(r"\[warn\] cache warm-up: GET http://t/status/500\?w=1 failed: 500", log), log
    assert re.search(r"\[warn\] cache warm-up: GET http://t/status/404\?w=2 failed: 404", log), log
    assert "w=3 failed" not in log
    wait_for(lambda: "cache warm-up finished: 1 fetched, 2 failed" in fg.errors(), 5,
             "the summary")


# ---- purge keys --------------------------------------------------------------------------


def fill(fg, host, path):
    c = Conn(fg.port)
    c.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    status, headers, _ = c.response()
    c.close()
    return status, headers.get("x-cache", [""])[0]


def test_purge_key_is_the_host_field_with_its_port(flashgate, origin):
    """docs/caching.md: the key's host is the Host field as sent, port included. What
    the ALB passes on for a default port has none; curl to the instance has one."""
    fg = warm_flashgate(flashgate)
    path = "/c/products/42?cc=max-age%3D300"
    assert fill(fg, "shop.example.com", path) == (200, "MISS")  # as through the ALB
    assert fill(fg, "shop.example.com", path) == (200, "HIT")
    local = f"localhost:{fg.port}"
    assert fill(fg, local, path) == (200, "MISS")  # as `curl localhost:PORT/...`
    assert fill(fg, local, path) == (200, "HIT")
    q = "%3Fcc%3Dmax-age%253D300"  # the path's query, percent-encoded in url=
    # without the port, the curl-made entry is not the one named
    assert json.loads(admin(fg, f"/cache/purge?url=http://localhost/c/products/42{q}", b"")[1]) \
        == {"purged": 0}
    assert json.loads(admin(fg, f"/cache/purge?url=http://{local}/c/products/42{q}", b"")[1]) \
        == {"purged": 1}
    assert fill(fg, local, path)[1] == "MISS"
    assert fill(fg, "shop.example.com", path)[1] == "HIT"  # the ALB's entry is another key
    assert json.loads(admin(fg, f"/cache/purge?url=http://shop.example.com/c/products/&prefix=1",
                            b"")[1]) == {"purged": 1}
    assert fill(fg, "shop.example.com", path)[1] == "MISS"
