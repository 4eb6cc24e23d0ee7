"""The admin listener's endpoints as an operator (or a script) meets them: what each one
answers, to which methods, with which errors. /stats and /metrics documents are checked
in depth by test_metrics.py, the token by test_operations.py, purge and warm-up effects by
test_cache.py; here, the surface of every endpoint."""
import json

from conftest import Conn


def admin(fg, raw):
    """One request on its own connection (the admin listener closes after each)."""
    c = Conn(fg.admin)
    try:
        c.send(raw)
        status, headers, body = c.response(head=raw.startswith(b"HEAD "))
        closed = c.closed()
        return status, headers, body, closed
    finally:
        c.close()


def request(method, target, body=b"", extra=""):
    head = f"{method} {target} HTTP/1.1\r\nHost: admin\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_healthz(flashgate):
    fg = flashgate()
    status, h, body, closed = admin(fg, request("GET", "/healthz"))
    assert (status, body) == (200, b"ok\n") and closed
    assert h["cache-control"] == ["no-store"] and h["connection"] == ["close"]
    status, h, body, _ = admin(fg, request("HEAD", "/healthz"))
    assert status == 200 and body == b"" and h["content-length"] == ["3"]
    assert admin(fg, request("POST", "/healthz"))[0] == 405


def test_unknown_path_and_bad_requests(flashgate):
    fg = flashgate()
    status, _, body, _ = admin(fg, request("GET", "/nope"))
    assert status == 404 and b"/healthz" in body and b"/cache/warm" in body
    status, _, _, closed = admin(fg, b"GET /stats HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert status == 400 and closed


def test_stats_and_metrics_methods(flashgate):
    fg = flashgate()
    status, h, body, _ = admin(fg, request("GET", "/stats"))
    doc = json.loads(body)
    assert status == 200 and h["content-type"] == ["application/json"]
    assert "downstream" in doc and "upstreams" in doc and doc["upstreams"]["app"]["requests"] == 0
    status, _, body, _ = admin(fg, request("HEAD", "/stats"))
    assert status == 200 and body == b""
    assert admin(fg, request("POST", "/stats"))[0] == 405
    status, h, body, _ = admin(fg, request("GET", "/metrics"))
    assert status == 200 and h["content-type"] == ["text/plain; version=0.0.4; charset=utf-8"]
    assert b"\nflashgate_downstream_requests_total " in body
    assert admin(fg, request("POST", "/metrics"))[0] >= 400


def test_config_shows_the_running_config(flashgate):
    fg = flashgate(upstream_extra="    keepalive 7;")
    status, h, body, _ = admin(fg, request("GET", "/config"))
    text = body.decode()
    assert status == 200 and h["content-type"] == ["text/plain; charset=utf-8"]
    assert "upstream app" in text and "keepalive 7;" in text
    assert f"listen 127.0.0.1:{fg.port}" in text
    status, _, body, _ = admin(fg, request("HEAD", "/config"))
    assert status == 200 and body == b""
    assert admin(fg, request("POST", "/config"))[0] >= 400


def test_purge_surface(flashgate):
    fg = flashgate(main_extra="cache main { memory 1m; max_object 64k; }",
                   routes="    route / { upstream app; cache main; }")
    assert admin(fg, request("GET", "/cache/purge?url=http://h/p"))[0] == 405
    status, _, body, _ = admin(fg, request("POST", "/cache/purge"))
    assert status == 400 and b"?url=" in body
    status, _, body, _ = admin(fg, request("POST", "/cache/purge?url=http://h"))
    assert status == 400 and b"host and a path" in body
    assert admin(fg, request("POST", "/cache/purge?url=%zz"))[0] == 400  # bad percent-encoding
    status, h, body, _ = admin(fg, request("POST", "/cache/purge?url=http%3A%2F%2FH%2Fp&prefix=1"))
    assert status == 200 and h["content-type"] == ["application/json"]
    assert json.loads(body) == {"purged": 0}


def test_warm_surface(flashgate):
    fg = flashgate(main_extra="cache main { memory 1m; max_object 64k; }",
                   routes="    route / { upstream app; cache main; }")
    assert admin(fg, request("GET", "/cache/warm"))[0] == 405
    for q in ("0", "257", "x"):
        status, _, body, _ = admin(fg, request("POST", f"/cache/warm?concurrency={q}", b"http://h/a\n"))
        assert status == 400 and b"concurrency" in body, q
    status, _, body, _ = admin(fg, b"POST /cache/warm HTTP/1.1\r\nHost: a\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status == 411
    too_big = b"POST /cache/warm HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n\r\n"
    assert admin(fg, too_big)[0] == 413
    status, _, body, _ = admin(fg, request("POST", "/cache/warm", b"http://h/a\nnot a url\n"))
    assert status == 400 and b"line 2" in body
    status, _, body, _ = admin(fg, request("POST", "/cache/warm", b"# nothing but a comment\n"))
    assert status == 202 and json.loads(body) == {"accepted": 0}
