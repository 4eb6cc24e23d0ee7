"""Interim answers from the app (103 Early Hints, 102) reach HTTP/1.1 clients before the
final answer, in order, and leave both connections usable; 100-continue keeps working."""
import socket

import pytest

from conftest import Conn
from test_tunnels import ProtoOrigin


@pytest.fixture
def app():
    o = ProtoOrigin()
    yield o
    o.stop()


def heads_until_final(c):
    """Status lines and fields of every head up to the final one; the final's body read."""
    seen = []
    while True:
        line = c._line().decode("latin-1")
        status = int(line.split(" ")[1])
        fields = []
        while True:
            h = c._line()
            if not h:
                break
            fields.append(h.decode("latin-1"))
        seen.append((status, fields))
        if status >= 200:
            break
    n = int([f for f in seen[-1][1] if f.lower().startswith("content-length:")][0].split(":")[1])
    while len(c.buf) < n:
        c._fill()
    body, c.buf = c.buf[:n], c.buf[n:]
    return seen, body


def test_early_hints_then_200_and_the_next_request(flashgate, app):
    fg = flashgate(origin_ports=[app.port])
    before = app.stats()["connections"]  # (each stats request is a connection too)
    c = Conn(fg.port)
    for _ in range(2):  # the second on the same client and upstream connections
        c.send("GET /hints?n=2 HTTP/1.1\r\nHost: t\r\n\r\n")
        seen, body = heads_until_final(c)
        assert [s for s, _ in seen] == [102, 103, 103, 200]
        assert "Link: </style0.css>; rel=preload; as=style" in seen[1][1]
        assert "Link: </style1.css>; rel=preload; as=style" in seen[2][1]
        # Interim heads carry the app's fields only: no framing, no Connection.
        assert not any(f.lower().startswith(("content-length", "connection", "transfer-encoding"))
                       for s, fl in seen[:3] for f in fl)
        assert body == b"hinted"
    c.send("GET /other HTTP/1.1\r\nHost: t\r\n\r\n")
    assert c.response()[0] == 200
    c.close()
    # One pooled connection served all three (and one more for this stats request).
    assert app.stats()["connections"] - before == 2
    assert app.stats()["requests"] == 3


def test_http10_client_gets_no_interim_answers(flashgate, app):
    fg = flashgate(origin_ports=[app.port])
    c = Conn(fg.port)
    c.send("GET /hints HTTP/1.0\r\nHost: t\r\n\r\n")
    seen, body = heads_until_final(c)
    assert [s for s, _ in seen] == [200] and body == b"hinted"
    c.close()


def test_100_continue_and_early_hints_together(flashgate, app):
    fg = flashgate(origin_ports=[app.port])
    c = Conn(fg.port)
    c.send("POST /hints HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    line = c._line()
    assert line.startswith(b"HTTP/1.1 100")  # ours, before the body is sent
    assert c._line() == b""
    c.send("hello")
    seen, body = heads_until_final(c)
    # The app's own 100 is not passed on a second time.
    assert [s for s, _ in seen] == [103, 200] and body == b"hinted"
    c.send("GET /hints HTTP/1.1\r\nHost: t\r\n\r\n")
    seen, body = heads_until_final(c)
    assert [s for s, _ in seen] == [103, 200]
    c.close()


def test_early_hints_on_a_cached_route_are_not_stored(flashgate, app):
    fg = flashgate(origin_ports=[app.port],
                   main_extra="cache main { memory 16m; }",
                   routes="    route / { upstream app; cache main; cache_default_ttl 1m; }")
    c = Conn(fg.port)
    for _ in range(2):
        c.send("GET /hints HTTP/1.1\r\nHost: t\r\n\r\n")
        seen, body = heads_until_final(c)
        assert seen[-1][0] == 200 and body == b"hinted"
        # A fill has no client to hint: no 103 from a miss, and none stored for a hit.
        assert [s for s, _ in seen] == [200]
    c.close()
    assert app.stats()["requests"] == 1
