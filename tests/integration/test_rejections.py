"""Every refusal: the right status, a closed connection, nothing at the origin, a counter."""
import pytest

H = "Host: a\r\n"
CASES = [
    ("cl_te", f"POST /echo HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("cl_invalid", f"POST /echo HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello", 400),
    ("cl_invalid", f"POST /echo HTTP/1.1\r\n{H}Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl_invalid", f"POST /echo HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl_duplicate", f"POST /echo HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("te_unsupported", f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\n", 400),
    ("te_unsupported", f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("te_unsupported", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs_fold", f"GET /echo HTTP/1.1\r\n{H}X: a\r\n folded\r\n\r\n", 400),
    ("bare_cr", f"GET /echo HTTP/1.1\r\n{H}X: a\rY: b\r\n\r\n", 400),
    ("bare_lf", f"GET /echo HTTP/1.1\r\n{H}X: a\nY: b\r\n\r\n", 400),
    ("bad_header_value", f"GET /echo HTTP/1.1\r\n{H}X: a\x00b\r\n\r\n", 400),
    ("bad_header_value", f"GET /echo HTTP/1.1\r\n{H}X: a\x01b\r\n\r\n", 400),
    ("space_before_colon", f"GET /echo HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n\r\n", 400),
    ("host_missing", "GET /echo HTTP/1.1\r\n\r\n", 400),
    ("host_duplicate", f"GET /echo HTTP/1.1\r\n{H}Host: b\r\n\r\n", 400),
    ("uri_too_long", "GET /" + "a" * 9000 + f" HTTP/1.1\r\n{H}\r\n", 414),
    ("headers_too_large", f"GET /echo HTTP/1.1\r\n{H}X: " + "b" * 40000 + "\r\n\r\n", 431),
    ("headers_too_large", f"GET /echo HTTP/1.1\r\n{H}" + "".join(f"X{i}: v\r\n" for i in range(120)) + "\r\n", 431),
    ("version_unsupported", f"GET /echo HTTP/2.0\r\n{H}\r\n", 505),
    ("bad_chunk_size", f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("other", f"PUT /echo HTTP/1.1\r\n{H}Expect: something\r\nContent-Length: 1\r\n\r\nx", 417),
    ("other", f"POST /echo HTTP/1.1\r\n{H}Content-Length: 2000000\r\n\r\n", 413),
]


@pytest.mark.parametrize("reason,raw,status", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_refused(flashgate, conn, origin, reason, raw, status):
    fg = flashgate()
    origin.reset()
    c = conn(fg.port)
    try:
        c.send(raw.encode("latin-1"))
    except (BrokenPipeError, ConnectionResetError):
        pass
    got, headers, body = c.response()
    assert got == status
    assert headers.get("connection") == ["close"]
    assert c.closed()
    stats = origin.stats()
    # the chunked-size case reaches the app before its body turns out bad; no other does
    if reason != "bad_chunk_size":
        assert stats["requests"] == 0
    assert fg.stats()["downstream"]["rejected"][reason] >= 1


def test_chunked_body_over_limit_is_413(flashgate, conn):
    fg = flashgate(server_extra="    client_max_body_size 1k;")
    c = conn(fg.port)
    c.send("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    c.send(("400\r\n" + "x" * 1024 + "\r\n") * 3)
    status, headers, _ = c.response()
    assert status == 413
    assert c.closed()


def test_smuggled_request_never_reaches_origin(flashgate, conn, origin):
    """The classic CL.TE desync: the hidden second request must not reach the app."""
    fg = flashgate()
    origin.reset()
    c = conn(fg.port)
    c.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[0] == 400
    assert c.closed()
    assert "/admin" not in origin.stats()["paths"]
