"""/stats/stream, the dashboard's server-sent events, and the page's files: a viewer gets
the history, then one summary a second; Last-Event-ID resumes; the number of viewers is
bounded; a viewer that reads nothing is dropped instead of buffered; the token works as
a bearer token and as Basic credentials (what a browser sends); the files carry their
types, a strict Content-Security-Policy and an ETag."""
import base64
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import get, wait_for


class Viewer:
    """A raw /stats/stream client: the head, then events as (id, summary)."""

    def __init__(self, port, headers="", rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf is not None:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(5)
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(f"GET /stats/stream HTTP/1.1\r\nHost: a\r\n{headers}\r\n".encode())
        self.buf = b""

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("closed before the head")
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            fields[k.strip().lower()] = v.strip()
        return status, fields

    def event(self, timeout=5):
        """The next event with data: (id, parsed summary)."""
        self.s.settimeout(timeout)
        while True:
            while b"\n\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise EOFError("stream closed")
                self.buf += d
            block, _, self.buf = self.buf.partition(b"\n\n")
            ev = {}
            for line in block.decode().split("\n"):
                k, _, v = line.partition(": ")
                ev[k] = v
            if "data" in ev:
                return int(ev["id"]), json.loads(ev["data"])

    def close(self):
        self.s.close()


def dash(flashgate, **kw):
    return flashgate(**kw)


def test_history_then_live_events(flashgate):
    fg = dash(flashgate)
    for _ in range(5):
        get(fg.port, "/")
    time.sleep(3.3)  # three summaries at least
    v = Viewer(fg.admin)
    t_connect = time.time() * 1000
    status, fields = v.head()
    assert status == 200
    assert fields["content-type"] == "text/event-stream"
    assert fields["cache-control"] == "no-store"
    # the history comes at once: summaries made before we connected, oldest first
    past = [v.event(timeout=1) for _ in range(3)]
    ids = [i for i, _ in past]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(i < t_connect for i in ids), (ids, t_connect)
    for i, s in past:
        assert s["v"] == 1 and s["t"] == i and s["generation"] == 1
    # then one a second, live
    while True:
        i, s = v.event(timeout=3)
        if i > t_connect:
            break
    i2, s2 = v.event(timeout=3)
    assert 700 <= i2 - i <= 1600, i2 - i
    assert s2["interval_ms"] >= 700
    assert s2["total"]["requests"] >= 5
    st = fg.stats()["dashboard"]
    assert st["viewers"] == 1 and st["accepted"] == 1
    v.close()
    wait_for(lambda: fg.stats()["dashboard"]["viewers"] == 0, 5, "the viewer gone")


def test_last_event_id_resumes_after_it(flashgate):
    fg = dash(flashgate)
    time.sleep(3.3)
    v = Viewer(fg.admin)
    v.head()
    first = [v.event(timeout=1)[0] for _ in range(3)]
    v.close()
    v = Viewer(fg.admin, headers=f"Last-Event-ID: {first[1]}\r\n")
    v.head()
    again = v.event(timeout=2)[0]
    assert again == first[2], (first, again)  # not the history before it
    v.close()


def test_viewer_cap(flashgate):
    fg = dash(flashgate, admin_extra="stream_viewers 2;")
    a, b = Viewer(fg.admin), Viewer(fg.admin)
    assert a.head()[0] == 200 and b.head()[0] == 200
    c = Viewer(fg.admin)
    status, fields = c.head()
    assert status == 503 and fields["retry-after"] == "5"
    assert b"stream_viewers" in c.buf or b"stream_viewers" in c.s.recv(4096)
    c.close()
    st = fg.stats()["dashboard"]
    assert st["refused"] == 1 and st["viewers"] == 2
    a.close()
    wait_for(lambda: fg.stats()["dashboard"]["viewers"] == 1, 5, "a viewer gone")
    d = Viewer(fg.admin)
    assert d.head()[0] == 200  # room again
    d.close()
    b.close()


def test_slow_viewer_is_dropped_not_buffered(flashgate, tmp_path):
    # big summaries (four upstreams of 64 servers each: some 20 kB a second) and a small
    # stream_buffer, so that a viewer that reads nothing fills its share in seconds
    ports = [40000 + i for i in range(64)]
    extra = "\n".join(
        f"upstream u{u} {{ {' '.join(f'server 127.0.0.{u + 2}:{p};' for p in ports)} }}"
        for u in range(4))
    fg = dash(flashgate, main_extra=extra, admin_extra="stream_buffer 16k;")
    slow = Viewer(fg.admin, rcvbuf=4096)
    assert slow.head()[0] == 200
    reader = Viewer(fg.admin)
    reader.head()
    size = len(json.dumps(reader.event(timeout=3)[1]))
    assert size > 15000, size
    # the slow one reads nothing from here on
    wait_for(lambda: fg.stats()["dashboard"]["dropped_slow"] >= 1, 30, "the slow viewer dropped")
    assert fg.stats()["dashboard"]["viewers"] == 1
    # the other one still gets every second
    t0 = reader.event(timeout=3)[0]
    t1 = reader.event(timeout=3)[0]
    assert t1 > t0
    # and the slow one's connection is closed: what was queued, then the end
    slow.s.settimeout(5)
    got = 0
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            d = slow.s.recv(1 << 16)
            if not d:
                raise EOFError
            got += len(d)
    reader.close()
    slow.close()


def admin_get(fg, path, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_page_files_types_csp_and_etag(flashgate):
    fg = dash(flashgate)
    want = {"/": "text/html; charset=utf-8",
            "/dashboard/app.js": "text/javascript; charset=utf-8",
            "/dashboard/style.css": "text/css; charset=utf-8",
            "/dashboard/icon.svg": "image/svg+xml"}
    for path, ctype in want.items():
        status, h, body = admin_get(fg, path)
        assert status == 200 and h["Content-Type"] == ctype, (path, status, h)
        csp = h["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "connect-src 'self'" in csp and "unsafe" not in csp
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Cache-Control"] == "no-cache"
        assert int(h["Content-Length"]) == len(body) > 0
        etag = h["ETag"]
        assert etag.startswith('"') and etag.endswith('"')
        status, h2, body2 = admin_get(fg, path, {"If-None-Match": etag})
        assert status == 304 and body2 == b"" and h2["ETag"] == etag
        status, _, _ = admin_get(fg, path, {"If-None-Match": '"other"'})
        assert status == 200
    _, _, html = admin_get(fg, "/")
    # nothing from elsewhere: the page names only its own files
    assert b"http://" not in html and b"https://" not in html
    assert b"<script src=\"/dashboard/app.js\"" in html and b"<style" not in html


def test_dashboard_off(flashgate):
    fg = dash(flashgate, admin_extra="dashboard off;")
    for path in ("/", "/dashboard/app.js", "/stats/stream"):
        assert admin_get(fg, path)[0] == 404, path
    assert admin_get(fg, "/stats")[0] == 200


def test_token_as_bearer_or_basic_password(flashgate):
    fg = dash(flashgate, admin_extra='token "s3cret";')
    status, h, _ = admin_get(fg, "/")
    assert status == 401 and h["WWW-Authenticate"].startswith("Basic realm=")
    basic = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    wrong = "Basic " + base64.b64encode(b"ops:nope").decode()
    assert admin_get(fg, "/", {"Authorization": basic})[0] == 200
    assert admin_get(fg, "/stats", {"Authorization": basic})[0] == 200
    assert admin_get(fg, "/stats", {"Authorization": "Bearer s3cret"})[0] == 200
    assert admin_get(fg, "/", {"Authorization": wrong})[0] == 401
    assert admin_get(fg, "/", {"Authorization": "Basic !!!!"})[0] == 401
    assert admin_get(fg, "/healthz")[0] == 200  # health checkers carry nothing
    v = Viewer(fg.admin, headers=f"Authorization: {basic}\r\n")
    assert v.head()[0] == 200
    v.close()
    v = Viewer(fg.admin)
    assert v.head()[0] == 401
    v.close()


def test_dashboard_turned_off_by_a_reload_closes_the_stream(flashgate):
    fg = dash(flashgate)
    v = Viewer(fg.admin)
    assert v.head()[0] == 200
    fg.write_conf(fg.text.replace(f"listen 127.0.0.1:{fg.admin}; ",
                                  f"listen 127.0.0.1:{fg.admin}; dashboard off; "))
    fg.proc.send_signal(1)  # SIGHUP
    wait_for(lambda: fg.stats()["generation"] == 2, 5, "the reload")
    with pytest.raises(EOFError):
        for _ in range(5):
            v.event(timeout=3)
    assert admin_get(fg, "/")[0] == 404
    v.close()
