"""Deadlines: whole-head and whole-body deadlines, idle keep-alive, upstream timeouts."""
import time

from conftest import get


def test_dripping_head_is_cut_at_header_deadline(flashgate, conn):
    import select
    fg = flashgate(server_extra="    header_timeout 1s;")
    c = conn(fg.port)
    start = time.time()
    for ch in "GET /echo HTTP/1.1\r\nHost: a\r\nX-Long: " + "y" * 100:
        if select.select([c.s], [], [], 0.1)[0]:
            break  # the answer came: each read was quick, the whole head was not
        try:
            c.send(ch)
        except (BrokenPipeError, ConnectionResetError):
            break
    elapsed = time.time() - start
    status, headers, _ = c.response()
    assert status == 408 and headers["connection"] == ["close"]
    assert c.closed()
    assert 0.9 < elapsed < 2.0
    assert fg.stats()["downstream"]["timeouts"]["header"] == 1


def test_idle_keepalive_not_cut_by_header_deadline(flashgate, conn):
    fg = flashgate(server_extra="    header_timeout 1s;\n    keepalive_timeout 5s;")
    c = conn(fg.port)
    c.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 200
    time.sleep(2.0)  # idle longer than the header deadline
    c.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 200


def test_idle_timeout_closes(flashgate, conn):
    fg = flashgate(server_extra="    keepalive_timeout 1s;")
    c = conn(fg.port)
    c.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 200
    assert c.closed(timeout=3)
    assert fg.stats()["downstream"]["timeouts"]["idle"] == 1


def test_dripping_body_is_cut(flashgate, conn):
    import select
    fg = flashgate(server_extra="    body_timeout 1500ms;")
    c = conn(fg.port)
    c.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
    start = time.time()
    while time.time() - start < 4:
        if select.select([c.s], [], [], 0.1)[0]:
            break  # the answer came
        try:
            c.send("x")  # a byte every 100 ms: each read is quick, the whole is too slow
        except (BrokenPipeError, ConnectionResetError):
            break
    elapsed = time.time() - start
    status, _, _ = c.response()
    assert status == 408
    assert 1.3 < elapsed < 2.5
    assert fg.stats()["downstream"]["timeouts"]["body"] == 1


def test_upstream_read_timeout_is_504(flashgate):
    fg = flashgate(upstream_extra="    read_timeout 500ms;")
    start = time.time()
    status, _, body = get(fg.port, "/delay?ms=3000")
    assert status == 504 and b"timed out" in body
    assert time.time() - start < 2.5
    assert fg.stats()["upstreams"]["app"]["errors"]["timeout"] == 1
