"""Upgrade tunnels (WebSocket) through flashgate to a real app (protoorigin.py).

The client side is a small RFC 6455 client written here (masked frames); 200 of them run
at once on one asyncio loop. Every wait is bounded.
"""
import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import Conn, free_port, wait_for, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtoOrigin:
    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "protoorigin.py"),
                                      str(self.port)])
        wait_port(self.port)

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def app():
    o = ProtoOrigin()
    yield o
    o.stop()


def ws_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


async def ws_read(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def ws_open(port, path="/ws", tls=None, extra=""):
    """(reader, writer, status, head text): the handshake through flashgate."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                   server_hostname="localhost" if tls else None)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                  f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status = int(head.split(" ")[1])
    if status == 101:
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert f"Sec-WebSocket-Accept: {want}" in head
        assert "Upgrade: websocket" in head and "Connection: upgrade" in head
    return reader, writer, status, head


async def ws_echo(reader, writer, msgs):
    for m in msgs:
        writer.write(ws_frame(0x1, m))
        await writer.drain()
        op, payload = await asyncio.wait_for(ws_read(reader), 10)
        assert (op, payload) == (0x1, m)


async def eof(reader, timeout=5.0):
    """True if the connection ends (after whatever frames) within timeout."""
    try:
        while True:
            d = await asyncio.wait_for(reader.read(65536), timeout)
            if not d:
                return True
    except ConnectionError:
        return True
    except asyncio.TimeoutError:
        return False


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def start(flashgate, app, routes="    route / { upstream app; }", **kw):
    return flashgate(origin_ports=[app.port], routes=routes, **kw)


def fg_with_log(flashgate, app, tmp_path, routes="    route / { upstream app; }", **kw):
    log = os.path.join(str(tmp_path), "access.log")
    extra = kw.pop("server_extra", "")
    return flashgate(origin_ports=[app.port], routes=routes,
                     server_extra=f"    access_log {log};\n{extra}", **kw), log


def log_lines(path, cond, n, timeout=5.0):
    """The access log's lines that match, once there are n of them."""
    def read():
        if not os.path.exists(path):
            return None
        with open(path) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        got = [x for x in lines if cond(x)]
        return got if len(got) >= n else None
    return wait_for(read, timeout, "access log lines")


def test_200_concurrent_websockets_echo_and_close(flashgate, app, tmp_path):
    fg, log = fg_with_log(flashgate, app, tmp_path)

    async def one(i):
        r, w, status, _ = await ws_open(fg.port)
        assert status == 101
        await ws_echo(r, w, [f"hello {i}".encode(), os.urandom(70000), b"x" * 200])
        return r, w

    async def main():
        socks = await asyncio.gather(*(one(i) for i in range(200)))
        st = fg.stats()["tunnels"]
        assert st["open"] == 200 and st["opened"] == 200
        assert app.stats()["open"] == 200
        # Half closed by the client (a Close frame: the app answers and closes, so the
        # client sees its Close then EOF), half by the app (server-close).
        for i, (r, w) in enumerate(socks):
            w.write(ws_frame(0x8, struct.pack("!H", 1000)) if i % 2 == 0
                    else ws_frame(0x1, b"server-close"))
            await w.drain()
        for r, w in socks:
            op, _ = await asyncio.wait_for(ws_read(r), 10)
            assert op == 0x8
            assert await eof(r)
            w.close()
    run(main())
    wait_for(lambda: fg.stats()["tunnels"]["open"] == 0, 10, "tunnels closed")
    st = fg.stats()["tunnels"]
    assert st["closed"]["app"] + st["closed"]["client"] == 200
    assert st["bytes_up"] > 200 * 70000 and st["bytes_down"] > 200 * 70000
    assert app.stats()["open"] == 0
    lines = log_lines(log, lambda x: x["status"] == 101, 200, 10)
    assert len(lines) == 200
    assert all(x["tunnel_bytes_up"] > 70000 and x["tunnel_bytes_down"] > 70000 for x in lines)
    assert {x["tunnel_closed_by"] for x in lines} <= {"app", "client"}


def test_client_close_closes_app_side(flashgate, app):
    fg = start(flashgate, app)

    async def main():
        r, w, status, _ = await ws_open(fg.port)
        assert status == 101
        await ws_echo(r, w, [b"one"])
        w.close()  # TCP close, no Close frame: the app must see its connection end
        await w.wait_closed()
        wait_for(lambda: app.stats()["open"] == 0, 5, "the app's side closed")
    run(main())
    wait_for(lambda: fg.stats()["tunnels"]["closed"]["client"] == 1, 5, "counted")


def test_upgrade_headers_reach_the_app_and_refusal_is_an_answer(flashgate, app):
    fg = start(flashgate, app)

    async def main():
        r, w, status, head = await ws_open(fg.port, "/ws?refuse=1")
        assert status == 403
        # An ordinary answer: the connection serves the next request.
        w.write(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        await r.readuntil(b"no socket for you")
        nxt = (await r.readuntil(b"\r\n\r\n")).decode()
        assert nxt.startswith("HTTP/1.1 200")
        w.close()
    run(main())
    s = app.stats()
    assert s["upgrade_headers"] == ["websocket"]
    assert s["connection_headers"] == ["upgrade"]


def test_upgrade_off_and_protocol_list_and_h2c(flashgate, app):
    fg = start(flashgate, app, routes="""
    route /ws { upstream app; upgrade off; }
    route /upgrade-any { upstream app; upgrade websocket; }
    route / { upstream app; }""")

    async def main():
        # upgrade off: the app sees a plain GET (no Upgrade) and says 426.
        r, w, status, _ = await ws_open(fg.port)
        assert status == 426
        w.close()
        # A protocol outside the route's list is not tunneled.
        r, w = await asyncio.open_connection("127.0.0.1", fg.port)
        w.write(b"GET /upgrade-any HTTP/1.1\r\nHost: t\r\nUpgrade: foo\r\n"
                b"Connection: upgrade\r\n\r\n")
        head = (await r.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 200")
        w.close()
    run(main())
    assert app.stats()["upgrades"] == 0
    assert app.stats()["upgrade_headers"] == []
    # h2c is never tunneled, on any route: the app never hears of it.
    c = Conn(fg.port)
    c.send("GET /upgrade-any HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, "
           "HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    status, _, _ = c.response()
    assert status == 200
    c.close()
    assert app.stats()["upgrade_headers"] == []


def test_other_protocols_tunnel_raw_bytes_both_ways(flashgate, app):
    fg = start(flashgate, app)

    async def main():
        r, w = await asyncio.open_connection("127.0.0.1", fg.port)
        # The client's first bytes ride behind its request, before the 101.
        w.write(b"GET /upgrade-any HTTP/1.1\r\nHost: t\r\nUpgrade: myproto/2\r\n"
                b"Connection: upgrade\r\n\r\nearly bytes;")
        head = (await r.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("HTTP/1.1 101") and "Upgrade: myproto/2" in head
        blob = os.urandom(3 << 20)  # more than both high watermarks: back-pressure both ways
        w.write(blob)
        got = await asyncio.wait_for(r.readexactly(len(b"early bytes;") + len(blob)), 30)
        assert got == b"early bytes;" + blob
        w.close()
    run(main())


def test_idle_tunnel_closes_at_tunnel_timeout(flashgate, app):
    fg = start(flashgate, app, routes="    route / { upstream app; tunnel_timeout 2s; }")

    async def main():
        r, w, status, _ = await ws_open(fg.port)
        assert status == 101
        # Traffic keeps it open well past the timeout...
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:
            await ws_echo(r, w, [b"ping"])
            await asyncio.sleep(0.25)
        # ...silence closes it, within generous bounds.
        t0 = time.monotonic()
        assert await eof(r, 15)
        assert 1.4 < time.monotonic() - t0 < 12
        w.close()
    run(main())
    assert fg.stats()["tunnels"]["closed"]["timeout"] == 1
    wait_for(lambda: app.stats()["open"] == 0, 5, "the app's side closed")


def test_max_tunnels_answers_503(flashgate, app):
    fg = start(flashgate, app, main_extra="max_tunnels 2;")

    async def main():
        a = await ws_open(fg.port)
        b = await ws_open(fg.port)
        assert a[2] == 101 and b[2] == 101
        c = await ws_open(fg.port)
        assert c[2] == 503
        for x in (a, b, c):
            x[1].close()
    run(main())
    assert fg.stats()["tunnels"]["refused"] == 1


def test_reload_keeps_tunnels_and_drain_closes_them_at_its_deadline(flashgate, app):
    fg = start(flashgate, app, main_extra="drain_timeout 2s;")

    async def main():
        socks = [await ws_open(fg.port) for _ in range(5)]
        assert all(s[2] == 101 for s in socks)
        with open(fg.conf) as f:
            text = f.read()
        fg.write_conf(text.replace("route / { upstream app; }",
                                   "route / { upstream app; tunnel_timeout 30m; }"))
        fg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: fg.stats()["generation"] == 2, 5, "reload")
        for r, w, _, _ in socks:
            await ws_echo(r, w, [b"after reload"])
        # Drain: tunnels stay open (and working) until the deadline, then close.
        t0 = time.monotonic()
        fg.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        for r, w, _, _ in socks:
            await ws_echo(r, w, [b"while draining"])
        for r, w, _, _ in socks:
            assert await eof(r, 10)
        assert time.monotonic() - t0 > 1.5
        fg.proc.wait(10)
    run(main())
    wait_for(lambda: app.stats()["open"] == 0, 5, "the app's side closed")


@pytest.fixture(scope="module")
def selfsigned(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl CLI")
    d = str(tmp_path_factory.mktemp("wscert"))
    key, pem = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", pem, "-days",
                    "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return pem, key


def test_websockets_over_tls(flashgate, app, selfsigned):
    tport = free_port()
    fg = start(flashgate, app, server_extra=f"    listen 127.0.0.1:{tport} ssl;\n"
               f"    certificate {selfsigned[0]};\n    certificate_key {selfsigned[1]};")
    wait_port(tport)
    ctx = ssl.create_default_context(cafile=selfsigned[0])

    async def one(i):
        r, w, status, _ = await ws_open(tport, tls=ctx)
        assert status == 101
        await ws_echo(r, w, [f"tls {i}".encode(), os.urandom(100000)])
        w.write(ws_frame(0x8, struct.pack("!H", 1000)))
        await w.drain()
        op, _ = await asyncio.wait_for(ws_read(r), 10)
        assert op == 0x8
        assert await eof(r)
        w.close()

    async def main():
        await asyncio.gather(*(one(i) for i in range(50)))
    run(main())
    wait_for(lambda: fg.stats()["tunnels"]["open"] == 0, 10, "tunnels closed")
    assert fg.stats()["tunnels"]["opened"] == 50


def test_rate_limits_count_the_upgrade_request(flashgate, app):
    fg = start(flashgate, app, main_extra="limit per_ip { rate 1r/m; }",
               routes="    route / { upstream app; limit per_ip; }")

    async def main():
        a = await ws_open(fg.port)
        assert a[2] == 101
        b = await ws_open(fg.port)
        assert b[2] == 429
        await ws_echo(a[0], a[1], [b"still open"])
        a[1].close()
        b[1].close()
    run(main())
    assert app.stats()["upgrades"] == 1
