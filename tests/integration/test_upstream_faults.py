"""Hostile and malformed answers from the app (issue 19, "Responses from the app").

A raw-socket origin (raworigin.py) sends each case's bytes, on a keep-alive connection it
keeps open afterwards (so a reused connection would show any leftover bytes). For each
case the client must see what the table says:

  502     a 502 from flashgate (nothing had reached the client: a 502 was possible)
  cut     the head, then a close before the body looks complete (no last chunk, fewer
          bytes than Content-Length): a truncated answer never passes for a whole one
  ok      a complete answer with this status and body (odd but valid, or repaired)
  504     the head never completed within read_timeout

and then check requests must catch desync and poisoning: on the same client connection
when it stayed open, then on new connections (the pool's connections to the app), and
for cached cases the same URL again (no truncated or hostile object kept in the cache).
Every request the origin received must be a well-formed request line of ours.
"""
import socket
import ssl
import time

import pytest

from conftest import Flashgate, free_port, wait_port
from raworigin import RawOrigin, path_of

GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: no-store\r\n\r\ngood"
CC = b"Cache-Control: max-age=60\r\n"


def r(status_line, fields=b"", body=b""):
    return status_line + b"\r\n" + fields + b"\r\n" + body


def chunked(body, fields=b""):
    return r(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked\r\n" + fields, body)


EVIL = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"

# name: (raw answer, expectation, method); expectation: "502", "cut", "504",
# ("ok", status, body) or ("502|cut"): either is honest.
CASES = {
    # framing conflicts
    "cl_and_te": (r(b"HTTP/1.1 200 OK", b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                    b"5\r\nhello\r\n0\r\n\r\n"), "502"),
    "two_cl_differ": (r(b"HTTP/1.1 200 OK", b"Content-Length: 5\r\nContent-Length: 6\r\n",
                        b"hello!"), "502"),
    "cl_list": (r(b"HTTP/1.1 200 OK", b"Content-Length: 5, 6\r\n", b"hello!"), "502"),
    "cl_negative": (r(b"HTTP/1.1 200 OK", b"Content-Length: -1\r\n", b"x"), "502"),
    "cl_plus": (r(b"HTTP/1.1 200 OK", b"Content-Length: +5\r\n", b"hello"), "502"),
    "cl_overflow": (r(b"HTTP/1.1 200 OK", b"Content-Length: 184467440737095516160\r\n", b"x"),
                    "502"),
    "cl_hex": (r(b"HTTP/1.1 200 OK", b"Content-Length: 0x5\r\n", b"hello"), "502"),
    "te_chunked_twice": (r(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, chunked\r\n",
                           b"5\r\nhello\r\n0\r\n\r\n"), "502"),
    "te_gzip_after_chunked": (r(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, gzip\r\n",
                                b"5\r\nhello\r\n0\r\n\r\n"), "502"),
    "te_unknown": (r(b"HTTP/1.1 200 OK", b"Transfer-Encoding: identity\r\n", b"hello"), "502"),
    "cl_short_then_close": (r(b"HTTP/1.1 200 OK", b"Content-Length: 100\r\n", b"hello"),
                            "502|cut", False),
    # bad chunking: nothing has reached the client, a 502 is possible
    "chunk_negative": (chunked(b"-5\r\nhello\r\n0\r\n\r\n"), "502"),
    "chunk_overflow": (chunked(b"1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), "502"),
    "chunk_missing_crlf": (chunked(b"5\r\nhelloXX0\r\n\r\n"), "502"),
    "chunk_bare_lf": (chunked(b"5\nhello\n0\n\n"), "502"),
    "chunk_size_trailing_space": (chunked(b"5 \r\nhello\r\n0\r\n\r\n"), "502"),
    "chunk_ext_64k": (chunked(b"5;" + b"e" * 65536 + b"\r\nhello\r\n0\r\n\r\n"), "502"),
    "chunk_trailers_200k": (chunked(b"0\r\nX-T: " + b"t" * 200000 + b"\r\n\r\n"), "502"),
    "chunk_not_hex": (chunked(b"zz\r\nhello\r\n0\r\n\r\n"), "502"),
    "chunk_0x_prefix": (chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), "502"),
    "chunk_bad_after_data": (chunked(b"5\r\nhello\r\nzz\r\n"), "502"),
    "chunk_trailer_no_colon": (chunked(b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"), "502"),
    "chunk_negative_later": ([chunked(b""), 0.3, b"-5\r\nhello\r\n0\r\n\r\n"], "502"),
    "chunk_bad_after_data_later": ([chunked(b"5\r\nhello\r\n"), 0.3, b"zz\r\n"], "cut"),
    "chunk_truncated_close": (chunked(b"10\r\nhello"), "502|cut", False),
    "chunk_no_last_close": (chunked(b"5\r\nhello\r\n"), "502|cut", False),
    # extra bytes after a complete response: the answer is fine, the rest must go
    "extra_after_cl": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\n", b"ok" + EVIL),
                       ("ok", 200, b"ok")),
    "extra_after_chunked": (chunked(b"2\r\nok\r\n0\r\n\r\n" + EVIL), ("ok", 200, b"ok")),
    "extra_after_204": (r(b"HTTP/1.1 204 No Content", b"", EVIL), ("ok", 204, b"")),
    "body_on_204_cl": (r(b"HTTP/1.1 204 No Content", b"Content-Length: 4\r\n", b"evil"),
                       ("ok", 204, b"")),
    "body_on_204_chunked": (r(b"HTTP/1.1 204 No Content", b"Transfer-Encoding: chunked\r\n",
                              b"4\r\nevil\r\n0\r\n\r\n"), ("ok", 204, b"")),
    "body_on_304": (r(b"HTTP/1.1 304 Not Modified", b"Content-Length: 4\r\n", b"evil"),
                    ("ok", 304, b"")),
    "body_on_304_chunked": (r(b"HTTP/1.1 304 Not Modified", b"Transfer-Encoding: chunked\r\n",
                              b"4\r\nevil\r\n0\r\n\r\n"), ("ok", 304, b"")),
    "body_on_head": (r(b"HTTP/1.1 200 OK", b"Content-Length: 4\r\n", b"evil"),
                     ("ok", 200, b""), True, "HEAD"),
    "body_on_head_chunked": (r(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked\r\n",
                               b"4\r\nevil\r\n0\r\n\r\n"), ("ok", 200, b""), True, "HEAD"),
    "response_then_response": (GOOD + GOOD, ("ok", 200, b"good")),
    # bad status lines
    "status_4_digits": (r(b"HTTP/1.1 2000 OK", b"Content-Length: 2\r\n", b"ok"), "502"),
    "status_2_digits": (r(b"HTTP/1.1 20 OK", b"Content-Length: 2\r\n", b"ok"), "502"),
    "status_letters": (r(b"HTTP/1.1 abc OK", b"Content-Length: 2\r\n", b"ok"), "502"),
    "status_http2": (r(b"HTTP/2.0 200 OK", b"Content-Length: 2\r\n", b"ok"), "502"),
    "status_icy": (r(b"ICY 200 OK", b"Content-Length: 2\r\n", b"ok"), "502"),
    "status_no_space": (r(b"HTTP/1.1200 OK", b"Content-Length: 2\r\n", b"ok"), "502"),
    "status_bare_lf": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "502"),
    "garbage": (b"hello there\r\n\r\n", "502", False),
    "http09_body": (b"<html>no head at all</html>", "502", False),
    "empty_then_close": (b"", "502", False),
    # bad fields
    "space_before_colon": (r(b"HTTP/1.1 200 OK", b"Content-Length : 2\r\n", b"ok"), "502"),
    "obs_fold": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\nX-A: a\r\n b\r\n", b"ok"), "502"),
    "nul_in_value": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\nX-A: a\x00b\r\n", b"ok"),
                     "502"),
    "bare_cr_in_value": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\nX-A: a\rb\r\n", b"ok"),
                         "502"),
    "no_colon": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\nNoColonHere\r\n", b"ok"), "502"),
    "bad_name_char": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\nX(A): 1\r\n", b"ok"), "502"),
    "head_70k": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\nX-Big: " + b"b" * 70000 + b"\r\n",
                   b"ok"), "502"),
    "fields_500": (r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\n" +
                     b"".join(b"X-%d: v\r\n" % i for i in range(500)), b"ok"), "502"),
    # 1xx misuse
    "unasked_101": (r(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket\r\n"
                      b"Connection: upgrade\r\n", b"\x81\x05hello"), "502"),
    "continue_then_200": (r(b"HTTP/1.1 100 Continue") + r(b"HTTP/1.1 200 OK",
                          b"Content-Length: 2\r\n", b"ok"), ("ok", 200, b"ok")),
    "early_hints_then_200": (r(b"HTTP/1.1 103 Early Hints", b"Link: </a.css>; rel=preload\r\n")
                             + r(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\n", b"ok"),
                             ("ok", 200, b"ok")),
    "continue_only_close": (r(b"HTTP/1.1 100 Continue"), "502", False),
    "interim_forever": (r(b"HTTP/1.1 103 Early Hints", b"Link: </a>\r\n") * 3, "504"),
    # the same hostility on a cached route: nothing of it may be stored
    "c_chunk_negative": (chunked(b"-5\r\nhello\r\n0\r\n\r\n", CC), "502"),
    "c_chunk_overflow": (chunked(b"1ffffffffffffffff\r\nhello\r\n0\r\n\r\n", CC), "502"),
    "c_chunk_bare_lf": (chunked(b"5\nhello\n0\n\n", CC), "502"),
    "c_chunk_bad_after_data": (chunked(b"5\r\nhello\r\nzz\r\n", CC), "502"),
    "c_chunk_trailers_200k": (chunked(b"0\r\nX-T: " + b"t" * 200000 + b"\r\n\r\n", CC), "502"),
    "c_chunk_no_last_close": (chunked(b"5\r\nhello\r\n", CC), "502|cut", False),
    "c_cl_short_then_close": (r(b"HTTP/1.1 200 OK", CC + b"Content-Length: 100\r\n", b"hello"),
                              "502|cut", False),
    "c_two_cl": (r(b"HTTP/1.1 200 OK", CC + b"Content-Length: 5\r\nContent-Length: 6\r\n",
                   b"hello!"), "502"),
    "c_cl_and_te": (r(b"HTTP/1.1 200 OK", CC + b"Content-Length: 3\r\n"
                      b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), "502"),
    "c_extra_after_cl": (r(b"HTTP/1.1 200 OK", CC + b"Content-Length: 2\r\n", b"ok" + EVIL),
                         ("ok", 200, b"ok")),
    "c_body_on_head": (r(b"HTTP/1.1 200 OK", CC + b"Content-Length: 4\r\n", b"evil"),
                       ("ok", 200, b""), True, "HEAD"),
    "c_obs_fold": (r(b"HTTP/1.1 200 OK", CC + b"Content-Length: 2\r\nX-A: a\r\n b\r\n", b"ok"),
                   "502"),
}


def case(name):
    spec = CASES[name]
    raw, expect = spec[0], spec[1]
    keep = spec[2] if len(spec) > 2 else True
    method = spec[3] if len(spec) > 3 else "GET"
    return raw, expect, keep, method


def answer(sock, head, origin):
    p = path_of(head)
    if p.startswith("/ok"):
        sock.sendall(GOOD)
        return True
    raw, _, keep, _ = case(p.rsplit("/", 1)[1])
    for piece in raw if isinstance(raw, list) else [raw]:  # [bytes, pause, bytes...]
        if isinstance(piece, float):
            time.sleep(piece)
        elif piece:
            sock.sendall(piece)
    return keep


class Client:
    """A keep-alive client connection that reads an answer and says how it ended."""

    def __init__(self, port, tls=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=8)
        if tls is not None:  # an ssl.SSLContext: the client side of a TLS listener
            self.s = tls.wrap_socket(self.s, server_hostname="a.test")
        self.buf = b""
        self.eof = False
        self.interims = []

    def send(self, method, path):
        self.s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())

    def fill(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(65536)
        except (ConnectionResetError, socket.timeout, ssl.SSLError):
            d = b""  # a TLS connection cut without close_notify: EOF all the same
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def need(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return False
        return True

    def line(self):
        while b"\r\n" not in self.buf:
            if not self.fill():
                return None
        ln, _, self.buf = self.buf.partition(b"\r\n")
        return ln

    def answer(self, method):
        """(how, status, body): how is "complete", "cut" (EOF before the body's end) or
        "closed" (EOF before any byte)."""
        while True:
            st = self.line()
            if st is None:
                return ("closed", None, b"")
            status = int(st.split(b" ")[1])
            fields = {}
            while True:
                ln = self.line()
                if ln is None:
                    return ("cut", status, b"")
                if not ln:
                    break
                k, _, v = ln.partition(b":")
                fields.setdefault(k.strip().lower(), []).append(v.strip())
            if status >= 200 or status == 101:
                break
            self.interims.append(status)  # 103 Early Hints are passed on (test_interim.py)
        if method == "HEAD" or status in (204, 304):
            assert b"transfer-encoding" not in fields, (status, fields)
            if status == 204:
                assert b"content-length" not in fields, fields
            return ("complete", status, b"")
        if b"chunked" in b",".join(fields.get(b"transfer-encoding", [])):
            body = b""
            while True:
                ln = self.line()
                if ln is None:
                    return ("cut", status, body)
                size = int(ln.split(b";")[0], 16)
                if not self.need(size + 2):
                    return ("cut", status, body)
                body += self.buf[:size]
                assert self.buf[size:size + 2] == b"\r\n"
                self.buf = self.buf[size + 2:]
                if size == 0:
                    return ("complete", status, body)
        n = int(fields[b"content-length"][0])
        if not self.need(n):
            return ("cut", status, self.buf)
        body, self.buf = self.buf[:n], self.buf[n:]
        return ("complete", status, body)

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    origin = RawOrigin(answer)
    tmp = str(tmp_path_factory.mktemp("faults"))
    fg = Flashgate(tmp, [origin.port], upstream_extra="    read_timeout 1s;",
                   main_extra="cache main { memory 16m; }",
                   routes="    route /c/ { upstream app; cache main; }\n"
                          "    route / { upstream app; }")
    yield fg, origin
    fg.stop()
    origin.stop()


def good(fg_port, c=None):
    own = c is None
    c = c or Client(fg_port)
    c.send("GET", "/ok")
    got = c.answer("GET")
    if own:
        c.close()
    assert got == ("complete", 200, b"good"), got


def check_expectation(expect, got, name):
    how, status, body = got
    if expect == "502":
        assert (how, status) == ("complete", 502), (name, got)
    elif expect == "504":
        assert (how, status) == ("complete", 504), (name, got)
    elif expect == "cut":
        assert how == "cut", (name, got)
    elif expect == "502|cut":
        assert (how, status) == ("complete", 502) or how == "cut", (name, got)
    else:
        _, st, b = expect
        assert got == ("complete", st, b), (name, got)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_answer(rig, name):
    fg, origin = rig
    raw, expect, keep, method = case(name)
    path = ("/c/case/" if name.startswith("c_") else "/case/") + name
    before = origin.count(path)
    c = Client(fg.port)
    c.send(method, path)
    got = c.answer(method)
    check_expectation(expect, got, name)
    # The same client connection, when it stayed open: the next answer is ours, whole.
    if got[0] == "complete":
        c.send("GET", "/ok")
        nxt = c.answer("GET")
        assert nxt in (("complete", 200, b"good"), ("closed", None, b"")), (name, "desync", nxt)
    c.close()
    # New connections: pooled connections to the app carry nothing left over.
    for _ in range(3):
        good(fg.port)
    # A cached case again: nothing hostile or truncated was stored.
    if name.startswith("c_"):
        c = Client(fg.port)
        c.send(method, path)
        again = c.answer(method)
        c.close()
        check_expectation(expect, again, name)
        if not isinstance(expect, tuple):  # an error: nothing stored, the app asked again
            assert origin.count(path) == before + 2, (name, "served from the cache", again)
    # Everything the app got was a request of ours, whole.
    with origin.lock:
        heads = [h for _, h in origin.requests]
    for h in heads:
        assert h.split(b"\r\n", 1)[0].split(b" ")[0] in (b"GET", b"HEAD"), h[:80]
        assert h.endswith(b"HTTP/1.1") or b"\r\n" in h, h[:80]
    assert fg.proc.poll() is None


# The same malformed bodies on a TLS listener: the app's head is held until the body's
# first bytes are checked there too (no SSL_write of it before), so a 502 is still
# possible; one that already reached the client ends as a cut.
TLS_CASES = ["chunk_negative", "chunk_missing_crlf", "chunk_bare_lf", "chunk_ext_64k",
             "chunk_negative_later", "chunk_bad_after_data_later", "cl_and_te"]


@pytest.fixture(scope="module")
def tls_rig(tmp_path_factory):
    from test_tls import _ca, _leaf, certs, OPENSSL
    if OPENSSL is None:
        pytest.skip("needs the openssl CLI")
    d = str(tmp_path_factory.mktemp("faults-pki"))
    ca = _ca(d, "testca")
    leaf = _leaf(d, "a.test", ca, "DNS:a.test")
    origin = RawOrigin(answer)
    tport = free_port()
    fg = Flashgate(str(tmp_path_factory.mktemp("faults-tls")), [origin.port],
                   server_extra=f"    listen 127.0.0.1:{tport} ssl;\n{certs(leaf)}",
                   upstream_extra="    read_timeout 1s;")
    wait_port(tport)
    ctx = ssl.create_default_context(cafile=ca[0])
    yield fg, tport, ctx, origin
    fg.stop()
    origin.stop()


@pytest.mark.parametrize("name", TLS_CASES)
def test_hostile_answer_on_a_tls_listener(tls_rig, name):
    fg, tport, ctx, origin = tls_rig
    for first in (True, False):  # the connection's first answer, and one after a good one
        c = Client(tport, ctx)
        if not first:
            c.send("GET", "/ok")
            assert c.answer("GET") == ("complete", 200, b"good"), name
        c.send("GET", "/case/" + name)
        got = c.answer("GET")
        check_expectation(CASES[name][1], got, name)
        if got[0] == "complete":
            c.send("GET", "/ok")
            nxt = c.answer("GET")
            assert nxt in (("complete", 200, b"good"), ("closed", None, b"")), (name, nxt)
        c.close()
    good(fg.port)
    c = Client(tport, ctx)
    good(tport, c)
    c.close()
    assert fg.proc.poll() is None
