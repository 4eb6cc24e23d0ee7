"""Offload end to end: flashgate with an `offload` route, the real flashgate-agent (sink
local, spool in tmp) replaying into a test app that records every request it gets.

A request the app got straight from flashgate carries X-Forwarded-For; a replay from the
agent does not (only the route's `headers` travel with the record).
Everything is 127.0.0.1 or a unix socket under tmp_path; every wait is bounded.
"""
import http.client
import json
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import AgentProcess, Flashgate, flashgate_bin, free_port, wait_for




class App:
    """Records every request: (key, direct?, method, path, headers, body)."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.reqs = []
        self.delay = 0.0  # seconds before each answer (a slow app)
        self.status = 200  # what it answers (503: a failing app)
        app = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    body = b""
                    while True:
                        n = int(self.rfile.readline().split(b";")[0], 16)
                        if n == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(n)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                direct = self.headers.get("X-Forwarded-For") is not None
                with app.lock:
                    app.reqs.append((self.headers.get("Idempotency-Key"), direct, self.command,
                                     self.path, dict(self.headers), body))
                if app.delay:
                    time.sleep(app.delay)
                self.send_response(app.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_PUT = do_POST

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # bursts of new connections: no SYN dropped, no 1 s retry

        self.srv = Server(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def keys(self, direct=None):
        with self.lock:
            return [r[0] for r in self.reqs if direct is None or r[1] == direct]

    def get(self, key):
        with self.lock:
            return [r for r in self.reqs if r[0] == key]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Agent(AgentProcess):
    """The agent replaying as fast as it can, a few at a time."""

    def __init__(self, tmp, app_port, extra=""):
        super().__init__(tmp, app_port, "replay_rate 0;\nreplay_concurrency 8;\n" + extra)


def offload_route(sock, extra="", route_extra=""):
    return f"""    route /api/orders {{
        upstream app;
        methods POST;
{route_extra}
        offload {{
            agent unix:{sock};
            headers Content-Type;
            location_prefix /api/orders/status/;
            timeout 2s;
{extra}
        }}
    }}
    route / {{ upstream app; }}"""


@pytest.fixture
def app():
    a = App()
    yield a
    a.stop()


@pytest.fixture
def setup(tmp_path, app):
    """setup(agent=True, extra="") -> (flashgate, agent or None)."""
    made = []

    def make(agent=True, extra="", server_extra="", main_extra="", route_extra=""):
        ag = Agent(tmp_path, app.port)
        if agent:
            ag.start()
        fg = Flashgate(str(tmp_path), [app.port], routes=offload_route(ag.sock, extra, route_extra),
                       server_extra=server_extra, main_extra=main_extra)
        made.append((fg, ag))
        return fg, ag

    yield make
    for fg, ag in made:
        fg.stop()
        ag.stop()
        ag.logf.close()


def post(port, body=b'{"item":1}', headers=None, path="/api/orders", conn=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


# ---- tests --------------------------------------------------------------------------------


def test_post_queued_202_then_replayed(setup, app, tmp_path):
    acc = tmp_path / "access.log"
    fg, ag = setup(server_extra=f"    access_log {acc};")
    st, h, body = post(fg.port, body=b'{"item":42}')
    assert st == 202, body
    key = h["idempotency-key"]
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert h["location"] == "/api/orders/status/" + key
    assert h["content-type"] == "application/json"
    assert json.loads(body) == {"status": "queued", "id": key}
    reqs = wait_for(lambda: app.get(key), 10, "the replay")
    k, direct, method, path, headers, rbody = reqs[0]
    assert (direct, method, path, rbody) == (False, "POST", "/api/orders", b'{"item":42}')
    assert headers["Content-Type"] == "application/json"
    s = fg.stats()["offload"]
    assert s["queued"] == 1 and s["in_flight"] == 0 and s["fallback_pass"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/metrics", timeout=5) as r:
        assert "flashgate_offload_queued_total 1" in r.read().decode()
    line = wait_for(lambda: acc.exists() and acc.read_text(), 10, "the access log")
    assert json.loads(line.splitlines()[0])["offload"] == "queued"
    # A GET on the route prefix is not offloaded; keep-alive works after a 202.
    c = http.client.HTTPConnection("127.0.0.1", fg.port, timeout=10)
    assert post(fg.port, conn=c)[0] == 202
    assert post(fg.port, conn=c)[0] == 202
    c.close()


def test_client_key_kept_and_duplicate_once(setup, app):
    fg, ag = setup()
    st, h, body = post(fg.port, headers={"Idempotency-Key": "order-abc-1"})
    assert st == 202 and h["idempotency-key"] == "order-abc-1"
    assert json.loads(body) == {"status": "queued", "id": "order-abc-1"}
    st, h, body = post(fg.port, headers={"Idempotency-Key": "order-abc-1"})
    assert st == 202 and json.loads(body) == {"status": "duplicate", "id": "order-abc-1"}
    wait_for(lambda: app.get("order-abc-1"), 10, "the replay")
    time.sleep(0.5)
    assert len(app.get("order-abc-1")) == 1
    assert fg.stats()["offload"]["duplicates"] == 1
    # An unusable key is refused, not queued under another name.
    st, _, _ = post(fg.port, headers={"Idempotency-Key": "a b"})
    assert st == 400


def burst(port, n, threads, prefix=None, pause=0.0):
    """n POSTs over `threads` keep-alive connections: list of (status, key)."""
    out, lock = [], threading.Lock()

    def run(tid):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        for i in range(n // threads):
            hdr = {"Idempotency-Key": f"{prefix}-{tid}-{i}"} if prefix else {}
            st, h, _ = post(port, body=b"x" * 1024, headers=hdr, conn=c)
            with lock:
                out.append((st, h.get("idempotency-key", hdr.get("Idempotency-Key"))))
            if pause:
                time.sleep(pause)
        c.close()
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


def test_burst_2000_all_queued_and_replayed_once(setup, app):
    fg, ag = setup()
    t0 = time.monotonic()
    res = burst(fg.port, 2000, 4)
    dt = time.monotonic() - t0
    assert len(res) == 2000
    assert {s for s, _ in res} == {202}
    keys = {k for _, k in res}
    assert len(keys) == 2000
    print(f"\n2000 offloaded POSTs of 1 KiB over 4 connections: {2000 / dt:.0f} req/s")
    wait_for(lambda: len(app.keys()) >= 2000, 60, "2000 replays")
    time.sleep(0.5)
    got = app.keys()
    assert len(got) == 2000 and set(got) == keys
    assert app.keys(direct=True) == []


def test_agent_down_fallback_pass(setup, app):
    fg, ag = setup(agent=False)
    st, h, body = post(fg.port, body=b"direct", headers={"Idempotency-Key": "k-pass"})
    assert (st, body) == (200, b"ok")
    (k, direct, _, _, _, rbody), = app.get("k-pass")
    assert direct and rbody == b"direct"
    s = fg.stats()["offload"]
    assert s["fallback_pass"] == 1 and s["agent_errors"]["unreachable"] == 1
    # Keep-alive still works, and a later agent start is picked up.
    ag.start()
    wait_for(lambda: post(fg.port)[0] == 202, 10, "a 202 once the agent runs")


def test_agent_down_fallback_reject(setup, app):
    fg, ag = setup(agent=False, extra="            fallback reject;")
    c = http.client.HTTPConnection("127.0.0.1", fg.port, timeout=10)
    st, h, body = post(fg.port, conn=c)
    assert st == 503 and h["retry-after"] == "1"
    st, h, body = post(fg.port, conn=c)  # the body was consumed: keep-alive goes on
    assert st == 503
    c.close()
    assert app.keys() == []
    assert fg.stats()["offload"]["fallback_reject"] == 2


def test_body_over_max_body_413(setup, app, conn):
    fg, ag = setup(extra="            max_body 1k;")
    c = conn(fg.port)
    c.send(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"z" * 2000)
    st, h, _ = c.response()
    assert st == 413
    assert c.closed()
    assert fg.stats()["offload"]["too_big"] == 1
    assert app.keys() == []
    assert post(fg.port, body=b"y" * 1024)[0] == 202  # exactly max_body is fine


def test_chunked_body_goes_to_the_app(setup, app, conn):
    fg, ag = setup()
    c = conn(fg.port)
    c.send(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-chunked\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    st, h, body = c.response()
    assert (st, body) == (200, b"ok")
    (k, direct, _, _, _, rbody), = app.get("k-chunked")
    assert direct and rbody == b"hello"


def test_body_in_pieces_and_pipelined(setup, app, conn):
    fg, ag = setup()
    c = conn(fg.port)
    c.send(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-slow\r\n"
           b"Content-Length: 10\r\n\r\nhello")
    time.sleep(0.3)
    # the rest of the body, and a second request right behind it
    c.send(b"world" + b"POST /api/orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-next\r\n"
           b"Content-Length: 3\r\n\r\nabc")
    st1, h1, _ = c.response()
    st2, h2, _ = c.response()
    assert (st1, h1["idempotency-key"][0]) == (202, "k-slow")
    assert (st2, h2["idempotency-key"][0]) == (202, "k-next")
    wait_for(lambda: app.get("k-slow") and app.get("k-next"), 10, "the replays")
    assert app.get("k-slow")[0][5] == b"helloworld"
    assert app.get("k-next")[0][5] == b"abc"


def test_client_gone_while_waiting(setup, app, conn):
    fg, ag = setup()
    c = conn(fg.port)
    c.send(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
    time.sleep(0.2)
    c.close()
    time.sleep(0.2)
    assert post(fg.port)[0] == 202
    st = fg.stats()
    assert st["downstream"]["requests_active"] == 0
    assert st["downstream"]["client_aborts"] == 1 and st["offload"]["in_flight"] == 0


def test_when_inflight_not_reached_goes_direct(setup, app):
    fg, ag = setup(extra="            when inflight 1000;")
    st, h, body = post(fg.port, headers={"Idempotency-Key": "k-direct"})
    assert (st, body) == (200, b"ok")
    assert app.get("k-direct")[0][1] is True
    assert fg.stats()["offload"]["queued"] == 0


def parallel_posts(port, n, prefix, width=None):
    """n POSTs, width at a time (all at once by default), each on its own connection;
    their statuses."""
    out = []
    lock = threading.Lock()
    todo = list(range(n))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            st = post(port, headers={"Idempotency-Key": f"{prefix}-{i}"})[0]
            with lock:
                out.append(st)
    ths = [threading.Thread(target=worker) for _ in range(width or n)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(15)
    return out


def test_when_latency_queues_once_the_app_is_slow(setup, app):
    fg, ag = setup(extra="            when latency 150ms;")
    # A fast app: a second of answers well under 150 ms (a few at a time, so that a busy
    # machine does not queue them) keeps writes going to it.
    t0 = time.monotonic()
    assert parallel_posts(fg.port, 25, "fast", width=3) == [200] * 25
    time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
    assert post(fg.port, headers={"Idempotency-Key": "after-fast"})[0] == 200
    assert fg.stats()["offload"]["triggered"]["latency"] == 0
    time.sleep(1.1)  # the windows of the fast answers are over, with nothing after them
    # A slow app: 25 answers at 300 ms in one window put its p95 above 150 ms...
    app.delay = 0.3
    t0 = time.monotonic()
    assert parallel_posts(fg.port, 25, "slow") == [200] * 25
    assert time.monotonic() - t0 < 0.9, "the slow burst must end within its window"
    time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
    # ...so the next writes are queued, while the window that measured it is the last one.
    st, h, body = post(fg.port, headers={"Idempotency-Key": "queued-slow"})
    assert st == 202, body
    assert json.loads(body) == {"status": "queued", "id": "queued-slow"}
    s = fg.stats()["offload"]
    assert s["triggered"]["latency"] == 1 and s["queued"] == 1
    wait_for(lambda: app.get("queued-slow"), 10, "the queued write replayed")
    assert app.get("queued-slow")[0][1] is False  # it came from the agent


def test_when_failing_queues_while_the_app_fails(setup, app):
    fg, ag = setup(extra="            when failing;")
    app.status = 503
    for i in range(5):
        assert post(fg.port, headers={"Idempotency-Key": f"fail-{i}"})[0] == 503
    # Five failures and no success in this second: the app is failing, writes queue.
    st, h, body = post(fg.port, headers={"Idempotency-Key": "while-failing"})
    assert st == 202, body
    s = fg.stats()["offload"]
    assert s["triggered"]["failing"] == 1 and s["queued"] == 1
    direct = app.keys(direct=True)
    assert sorted(direct) == sorted(f"fail-{i}" for i in range(5))
    # The app is back: the agent's retries get the record through; after a quiet second
    # the trigger no longer fires and writes go to the app again.
    app.status = 200
    wait_for(lambda: app.get("while-failing"), 15, "the queued write replayed once the app is back")
    time.sleep(2.1)
    assert post(fg.port, headers={"Idempotency-Key": "recovered"})[0] == 200
    assert app.get("recovered")[0][1] is True


def test_when_limited_queues_instead_of_429(setup, app):
    fg, ag = setup(extra="            when limited;",
                   main_extra="limit orders { key route; rate 1r/m; burst 1; }",
                   route_extra="        limit orders;")
    # Within the limit: straight to the app.
    assert post(fg.port, headers={"Idempotency-Key": "l-0"})[0] == 200
    assert post(fg.port, headers={"Idempotency-Key": "l-1"})[0] == 200
    # Over it: queued (202), not refused.
    for i in range(2, 6):
        st, h, body = post(fg.port, headers={"Idempotency-Key": f"l-{i}"})
        assert st == 202, body
    s = fg.stats()
    assert s["offload"]["triggered"]["limited"] == 4 and s["offload"]["queued"] == 4
    assert s["limits"]["orders"]["limited"] == 4
    wait_for(lambda: all(app.get(f"l-{i}") for i in range(2, 6)), 10, "queued writes replayed")
    assert all(app.get(f"l-{i}")[0][1] is False for i in range(2, 6))
    # The agent gone: over the limit is the limit's 429, never the app.
    ag.stop()
    st, h, body = post(fg.port, headers={"Idempotency-Key": "l-down"})
    assert st == 429 and "retry-after" in h, (st, body)
    assert json.loads(body)["limit"] == "orders"
    assert app.get("l-down") == []


def test_methods_choose_which_writes_are_queued(tmp_path, app):
    ag = Agent(tmp_path, app.port)
    ag.start()
    routes = f"""    route /api/orders {{
        upstream app;
        offload {{ agent unix:{ag.sock}; methods POST; timeout 2s; }}
    }}"""
    fg = Flashgate(str(tmp_path), [app.port], routes=routes)
    try:
        assert post(fg.port, headers={"Idempotency-Key": "m-post"})[0] == 202
        c = http.client.HTTPConnection("127.0.0.1", fg.port, timeout=10)
        c.request("PUT", "/api/orders", body=b"{}", headers={"Idempotency-Key": "m-put"})
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok")  # straight from the app
        c.close()
        assert app.get("m-put")[0][1] is True
        assert fg.stats()["offload"]["queued"] == 1
        wait_for(lambda: app.get("m-post"), 10, "the POST replayed")
    finally:
        fg.stop()
        ag.stop()
        ag.logf.close()


def test_when_lines_are_checked(tmp_path):
    base = """workers 1;
upstream app { server 127.0.0.1:1; }
server { listen 127.0.0.1:%d;
    route /api { upstream app; %s offload { agent unix:/tmp/a.sock; %s } }
}
"""
    cases = [
        ("", "when always; when inflight 3;", "cannot be combined"),
        ("", "when latency 0ms;", "invalid duration"),
        ("", "when sometimes;", "invalid value for 'when'"),
        ("", "when limited;", "no 'limit'"),
        ("", "methods POST GET;", "never offloaded"),
        ("", "methods FETCH;", "unknown method"),
    ]
    for route_extra, when, msg in cases:
        conf = tmp_path / "bad.conf"
        conf.write_text(base % (free_port(), route_extra, when))
        p = subprocess.run([flashgate_bin(), "-t", "-c", str(conf)], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode != 0, when
        assert re.search(r"bad\.conf:\d+: .*" + re.escape(msg), p.stderr), (when, p.stderr)
    conf = tmp_path / "good.conf"
    conf.write_text(base % (free_port(), "",
                            "when inflight 100; when latency 250ms; when failing; methods PUT;"))
    p = subprocess.run([flashgate_bin(), "-T", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    for line in ("when inflight 100;", "when latency 250ms;", "when failing;", "methods PUT;"):
        assert line in p.stdout, p.stdout


def test_agent_killed_mid_burst_nothing_lost(setup, app, tmp_path):
    fg, ag = setup()
    res = []
    done = threading.Event()

    def client():
        res.extend(burst(fg.port, 1200, 3, prefix="kill", pause=0.002))
        done.set()
    th = threading.Thread(target=client)
    th.start()
    wait_for(lambda: len(app.keys()) >= 50 or done.is_set(), 20, "some replays")
    ag.kill()
    time.sleep(0.5)
    ag.start()
    th.join(120)
    assert len(res) == 1200
    statuses = {s for s, _ in res}
    assert statuses <= {200, 202}, statuses
    queued = {k for s, k in res if s == 202}
    passed = {k for s, k in res if s == 200}
    assert passed, "some requests should have been answered while the agent was down"
    assert queued
    # Every 202 reaches the app (from the spool, after the restart); every pass reached it
    # directly. Duplicates are allowed across the crash, losses are not.
    wait_for(lambda: queued <= set(app.keys()), 60, "every acknowledged write replayed")
    assert passed <= set(app.keys(direct=True))
    s = fg.stats()["offload"]
    print(f"\nkill: {len(queued)} queued, {len(passed)} passed; stats {s}")
    assert s["fallback_pass"] == len(passed)


def test_config_errors_name_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("""workers 1;
upstream app { server 127.0.0.1:1; }
server {
    listen 127.0.0.1:1;
    route /a {
        upstream app;
        offload {
            when sometimes;
            fallback maybe;
            max_body 10q;
            agent /no/prefix.sock;
            key_header "bad key";
            bogus 1;
        }
    }
    route /b {
        upstream app;
        offload { fallback pass; }
    }
    route /c {
        return 200 ok;
        offload { agent unix:/tmp/a.sock; }
    }
}
""")
    r = subprocess.run([flashgate_bin(), "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0
    err = r.stderr + r.stdout
    for line in (8, 9, 10, 11, 12, 13, 18, 20):
        assert f"bad.conf:{line}:" in err, (line, err)
    good = tmp_path / "good.conf"
    good.write_text("""workers 1;
upstream app { server 127.0.0.1:1; }
server {
    listen 127.0.0.1:1;
    route /a {
        upstream app;
        offload { agent unix:/tmp/a.sock; when inflight 10; fallback reject; max_body 1m;
                  headers Content-Type X-Tenant; key_header X-Key; timeout 250ms; }
    }
}
""")
    r = subprocess.run([flashgate_bin(), "-t", "-c", str(good)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr


def test_agent_stalled_timeout_falls_back_and_late_answer_ignored(setup, app, conn):
    fg, ag = setup()
    assert post(fg.port)[0] == 202  # connected
    ag.proc.send_signal(signal.SIGSTOP)
    try:
        # A client that goes away while its record waits: cancelled, nothing leaks.
        c = conn(fg.port)
        c.send(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-gone\r\n"
               b"Content-Length: 4\r\n\r\ngone")
        time.sleep(0.2)
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # a reset: gone for sure (a plain close could be a half-close)
        t0 = time.monotonic()
        st, h, body = post(fg.port, headers={"Idempotency-Key": "k-stalled"})
        assert (st, body) == (200, b"ok")
        assert 1.5 < time.monotonic() - t0 < 5  # after the route's 2s timeout
        assert app.get("k-stalled")[0][1] is True
    finally:
        ag.proc.send_signal(signal.SIGCONT)
    # The agent got both records and replays them: duplicates of a timed-out write are
    # possible (same key), losses are not. The late answers change nothing.
    wait_for(lambda: len(app.get("k-stalled")) == 2 and app.get("k-gone"), 10, "the replays")
    s = fg.stats()
    assert s["offload"]["agent_errors"]["timeout"] == 1  # k-gone was cancelled, not timed out
    assert s["offload"]["in_flight"] == 0
    assert s["downstream"]["client_aborts"] == 1
    assert post(fg.port)[0] == 202


def test_half_close_after_the_body_still_answered(setup, app):
    fg, ag = setup()
    s = socket.create_connection(("127.0.0.1", fg.port), timeout=5)
    s.sendall(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-half\r\n"
              b"Content-Length: 4\r\n\r\nhalf")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"HTTP/1.1 202 "), data
    assert b"Connection: close" in data
    wait_for(lambda: app.get("k-half"), 10, "the replay")


def test_agent_numbers_merged_into_stats_and_metrics(tmp_path, app):
    from test_metrics import parse_exposition
    ag = Agent(tmp_path, app.port)
    ag.start()
    fg = Flashgate(str(tmp_path), [app.port], routes=offload_route(ag.sock),
                   admin_extra=f"agent_status 127.0.0.1:{ag.status_port};")
    try:
        for i in range(3):
            assert post(fg.port, headers={"Idempotency-Key": f"m-{i}"})[0] == 202
        # Polled once a second: the agent's count of durable records shows up in ours.
        wait_for(lambda: (fg.stats()["agent"] or {}).get("status", {}).get("records", {}).get("durable") == 3, 10,
                 "the agent's numbers in /stats")
        a = fg.stats()["agent"]
        assert a["up"] is True and a["address"] == f"127.0.0.1:{ag.status_port}"
        assert 0 <= a["age_ms"] <= 2500
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/metrics", timeout=5) as r:
            text = r.read().decode()
        fams = parse_exposition(text)  # strict: every line valid
        names = set(fams)
        assert "flashgate_agent_status_up" in names
        assert any(n.startswith("flashgate_agent_") and n != "flashgate_agent_status_up"
                   and n != "flashgate_agent_status_age_seconds" for n in names), names
        assert "flashgate_agent_status_up 1\n" in text
        # The agent gone: up turns false within the staleness bound, /stats stays valid.
        ag.stop()
        wait_for(lambda: fg.stats()["agent"]["failures"] > 0, 10, "a failed poll")
        assert fg.stats()["agent"]["last_error"] != ""
    finally:
        fg.stop()
        ag.stop()
        ag.logf.close()


def test_agent_status_off_by_default(setup):
    fg, ag = setup()
    assert fg.stats()["agent"] is None
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/metrics", timeout=5) as r:
        assert "flashgate_agent_status_up" not in r.read().decode()
