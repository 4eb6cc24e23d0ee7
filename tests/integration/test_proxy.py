"""Proxying: bodies both ways, keep-alive reuse, retry, framing, forwarding headers."""
import hashlib
import json
import subprocess
import threading

from conftest import Conn, free_port, get


def echo(c, extra="", method="GET", body=b"", path="/echo"):
    head = f"{method} {path} HTTP/1.1\r\nHost: shop.test\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    c.send(head.encode() + b"\r\n" + body)
    status, headers, data = c.response()
    assert status == 200
    return json.loads(data), headers


def test_get_reaches_origin_with_forwarding_headers(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    doc, headers = echo(c, "X-Forwarded-For: 203.0.113.9\r\nX-Amzn-Trace-Id: Root=1-abc\r\n")
    h = {k.lower(): v for k, v in doc["headers"]}
    assert h["host"] == "shop.test"
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-port"] == str(fg.port)
    assert h["x-amzn-trace-id"] == "Root=1-abc"
    assert len(h["x-request-id"]) == 32
    assert headers["x-request-id"] == [h["x-request-id"]]  # echoed to the client


def test_request_id_kept_when_present(flashgate, conn):
    fg = flashgate()
    doc, headers = echo(conn(fg.port), "X-Request-Id: abc-123\r\n")
    h = {k.lower(): v for k, v in doc["headers"]}
    assert h["x-request-id"] == "abc-123"


def test_hop_by_hop_removed_both_ways(flashgate, conn):
    fg = flashgate()
    doc, headers = echo(conn(fg.port), "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                        "Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\n"
                        "Proxy-Connection: keep-alive\r\n")
    names = {k.lower() for k, _ in doc["headers"]}
    for n in ("connection", "x-secret", "keep-alive", "te", "upgrade", "proxy-connection"):
        assert n not in names
    # the origin sent "Connection: X-Hop", "X-Hop: 1" and "Keep-Alive": none reach the client
    assert "x-hop" not in headers and "keep-alive" not in headers
    assert "connection" not in headers


def test_keepalive_reuses_one_upstream_connection(flashgate, conn, origin):
    fg = flashgate()
    c = conn(fg.port)
    conns = {echo(c)[0]["conn"] for _ in range(20)}
    assert len(conns) == 1
    st = fg.stats()["upstreams"]["app"]
    assert st["connects"] == 1 and st["reused"] == 19


def test_pool_bounded_by_keepalive(flashgate, origin):
    fg = flashgate(upstream_extra="    keepalive 4;")
    def worker():
        for _ in range(10):
            get(fg.port, "/delay?ms=20")
    ts = [threading.Thread(target=worker) for _ in range(12)]
    [t.start() for t in ts]
    [t.join(30) for t in ts]
    assert fg.stats()["upstreams"]["app"]["connections_idle"] <= 4


def test_upstream_keepalive_requests(flashgate, conn):
    fg = flashgate(upstream_extra="    keepalive_requests 3;")
    c = conn(fg.port)
    ids = [echo(c)[0]["conn"] for _ in range(7)]
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] == ids[5] and ids[6] != ids[5]
    assert ids[3] != ids[2]


def test_retry_idempotent_on_reused_connection(flashgate, conn, origin):
    fg = flashgate()
    c = conn(fg.port)
    echo(c)  # opens the pooled connection
    c.send("GET /__drop_next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 200
    doc, _ = echo(c)  # the app closes the reused connection: retried on a fresh one
    assert fg.stats()["upstreams"]["app"]["retries"] == 1


def test_post_is_not_retried(flashgate, conn, origin):
    fg = flashgate()
    c = conn(fg.port)
    echo(c)
    c.send("GET /__drop_next HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response()
    c.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    status, _, body = c.response()
    assert status == 502
    assert fg.stats()["upstreams"]["app"]["retries"] == 0


def test_large_bodies_both_ways(flashgate, conn):
    fg = flashgate(server_extra="    client_max_body_size 8m;")
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB
    c = conn(fg.port, timeout=20)
    doc, _ = echo(c, method="POST", body=body)
    assert doc["body_len"] == len(body)
    assert doc["body_md5"] == hashlib.md5(body).hexdigest()
    c.send("GET /size?bytes=20000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    status, _, data = c.response()
    assert status == 200 and len(data) == 20000000


def test_chunked_request_reencoded(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    c.send("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    status, _, data = c.response()
    doc = json.loads(data)
    assert status == 200 and doc["body_len"] == 11
    assert doc["body_md5"] == hashlib.md5(b"hello world").hexdigest()
    names = {k.lower() for k, _ in doc["headers"]}
    assert "transfer-encoding" in names and "content-length" not in names


def test_chunked_and_close_delimited_responses(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    c.send("GET /chunked?n=5&size=1000 HTTP/1.1\r\nHost: a\r\n\r\n")
    status, headers, data = c.response()
    assert status == 200 and len(data) == 5000
    c.send("GET /close HTTP/1.1\r\nHost: a\r\n\r\n")
    status, headers, data = c.response()
    assert data == b"until the end"
    assert headers["transfer-encoding"] == ["chunked"]  # framed for the 1.1 client
    c.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")  # and the connection lives on
    assert c.response()[0] == 200


def test_http10_client_gets_close_delimited(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    c.send("GET /chunked?n=2&size=10 HTTP/1.0\r\n\r\n")
    status, headers, data = c.response()
    assert data == b"a" * 10 + b"b" * 10
    assert "transfer-encoding" not in headers
    assert c.closed()


def test_http10_without_host_gets_the_upstream_name_and_a_pooled_connection(flashgate, conn):
    fg = flashgate()
    conns = set()
    for _ in range(3):
        c = conn(fg.port)
        c.send("GET /echo HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit Host; we send 1.1 upstream
        status, headers, data = c.response()
        assert status == 200, data
        echo = json.loads(data)
        hosts = [v for k, v in echo["headers"] if k.lower() == "host"]
        assert hosts == ["app"], echo["headers"]
        conns.add(echo["conn"])
        assert c.closed()
    up = fg.stats()["upstreams"]["app"]
    assert up["reused"] >= 2 and len(conns) == 1, (up, conns)


def test_listen_backlog_is_the_configured_one(flashgate):
    """The accept queue is what `backlog=` says (a burst of new connections at a sale
    start must not find 128): ss reports a listener's backlog as its Send-Q."""
    port = free_port()
    fg = flashgate(server_extra=f"    listen 127.0.0.1:{port} backlog=3000;")
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert out[0] == "LISTEN" and out[2] == "3000", out
    out = subprocess.run(["ss", "-ltnH", f"sport = :{fg.port}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert out[2] == "4096", out  # the default


def test_pipelined_requests_in_order(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    c.send("".join(f"GET /echo?i={i} HTTP/1.1\r\nHost: a\r\n\r\n" for i in range(5)))
    for i in range(5):
        status, _, data = c.response()
        assert json.loads(data)["target"] == f"/echo?i={i}"


def test_head_204_304_framing(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    c.send("HEAD /size?bytes=100 HTTP/1.1\r\nHost: a\r\n\r\n")
    status, headers, _ = c.response(head=True)
    assert status == 200 and headers["content-length"] == ["100"]
    c.send("GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 204
    c.send("GET /status/304 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 304
    c.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 200


def test_expect_100_continue(flashgate, conn):
    fg = flashgate()
    c = conn(fg.port)
    c.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    line = c._line()
    assert line == b"HTTP/1.1 100 Continue"
    assert c._line() == b""
    c.send("body")
    status, _, data = c.response()
    assert status == 200 and json.loads(data)["body_len"] == 4


def test_round_robin_and_passive_health(flashgate, origin, tmp_path):
    from conftest import Origin, free_port
    other = Origin()
    try:
        fg = flashgate(origin_ports=[origin.port, other.port])
        for _ in range(10):
            assert get(fg.port, "/echo")[0] == 200
        assert origin.stats()["requests"] >= 4 and other.stats()["requests"] >= 4
        other.stop()
        for _ in range(10):
            assert get(fg.port, "/echo")[0] == 200  # connect failures go to the live server
        servers = fg.stats()["upstreams"]["app"]["servers"]
        assert servers[1]["healthy"] is False
    finally:
        if other.proc.poll() is None:
            other.stop()


def test_connect_refused_is_502(flashgate):
    from conftest import free_port
    fg = flashgate(origin_ports=[free_port()])
    status, _, body = get(fg.port, "/")
    assert status == 502 and b"upstream app" in body


def test_routes_and_normalisation(flashgate):
    fg = flashgate(routes="""    route /api { upstream app; }
    route /maintenance { return 503 "down\\n"; }
    route /only-post { methods POST; upstream app; }""")
    assert get(fg.port, "/api/echo")[0] == 200
    status, _, body = get(fg.port, "/maintenance")
    assert status == 503 and body == b"down\n"
    assert get(fg.port, "/x/../api/echo")[0] == 200  # normalised before matching
    assert get(fg.port, "/nothing")[0] == 404
    assert get(fg.port, "/only-post")[0] == 404
    assert get(fg.port, "/../api")[0] == 400


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])


def test_slow_client_does_not_make_us_buffer_the_response(flashgate, conn):
    """Back-pressure: a client that does not read holds the app's connection, not our memory."""
    import time
    fg = flashgate()
    before = rss_kib(fg.proc.pid)
    c = conn(fg.port, timeout=30)
    c.s.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
    c.send("GET /size?bytes=30000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(1.5)  # not reading: the socket buffers fill, then flashgate must stop reading
    grown = rss_kib(fg.proc.pid) - before
    # Holding the response would cost at least its 30 MB. What the kernel buffers let
    # through costs a few MB at most, more under ASan (freed memory stays in quarantine).
    assert grown < 12 * 1024, f"RSS grew by {grown} KiB for one stalled 30 MB response"
    status, _, body = c.response()  # now read it all: nothing lost
    assert status == 200 and len(body) == 30000000


def test_client_ip_from_trusted_hops(flashgate, tmp_path):
    import json as _json
    import time
    log = tmp_path / "a.log"
    fg = flashgate(server_extra=f"    trusted_proxies 127.0.0.1 10.0.0.0/8;\n    access_log {log};")
    get(fg.port, "/echo", "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3:4567\r\n")
    deadline = time.time() + 3
    while (not log.exists() or not log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    entry = _json.loads(log.read_text().splitlines()[0])
    # 10.1.2.3 is trusted (the ALB), so the client is the next hop to the left; the
    # left-most hop was written by the client itself and is never believed
    assert entry["client"] == "203.0.113.7"
