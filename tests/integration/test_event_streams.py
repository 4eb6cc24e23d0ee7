"""Event streams (text/event-stream) and other long responses: each piece reaches the
client as the app sends it, through a plain route, a cached one and a compressed one.

The app stamps each event with the time it wrote it; the client notes when it could read
it. Bounds are generous (the machine is shared): every event within 50 ms, while the
whole stream lasts seconds, so buffering to a size or to the end would show at once."""
import socket
import time
import zlib

import pytest

from test_tunnels import ProtoOrigin

N, MS = 30, 100  # 3 s of events; the 10 s adds nothing but time


@pytest.fixture
def app():
    o = ProtoOrigin()
    yield o
    o.stop()


def read_events(port, path, headers="", coding=None, timeout=20.0):
    """[(seq, sent, received)] for every event of the stream."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    head = head.decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert "transfer-encoding: chunked" in head
    if coding:
        assert f"content-encoding: {coding}" in head
    z = zlib.decompressobj(16 + zlib.MAX_WBITS) if coding == "gzip" else None
    text, events, done = b"", [], False
    while not done:
        # de-chunk what is buffered
        while True:
            if b"\r\n" not in buf:
                break
            line, _, rest = buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            if len(rest) < size + 2:
                break
            piece, buf = rest[:size], rest[size + 2:]
            if size == 0:
                done = True
                break
            text += z.decompress(piece) if z else piece
        now = time.time()
        while b"\n\n" in text:
            ev, _, text = text.partition(b"\n\n")
            _, seq, sent = ev.decode().split(" ")
            events.append((int(seq), float(sent), now))
        if done:
            break
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    return events


def check(events, n=N):
    assert [e[0] for e in events] == list(range(n))
    late = [(seq, round((got - sent) * 1000, 1)) for seq, sent, got in events if got - sent > 0.05]
    assert not late, f"events later than 50 ms: {late}"


def test_event_stream_plain_route(flashgate, app):
    fg = flashgate(origin_ports=[app.port])
    check(read_events(fg.port, f"/sse?n={N}&ms={MS}"))


def test_event_stream_compressed_route(flashgate, app):
    fg = flashgate(origin_ports=[app.port], routes="    route / { upstream app; compress gzip; }")
    check(read_events(fg.port, f"/sse?n={N}&ms={MS}", "Accept-Encoding: gzip\r\n", "gzip"))


@pytest.mark.parametrize("cc", ["no-store", "max-age=60"])
def test_event_stream_cached_route(flashgate, app, cc):
    """no-store: passed through; max-age: stored while it streams, readers fed as it grows."""
    fg = flashgate(origin_ports=[app.port], main_extra="cache main { memory 16m; }",
                   routes="    route / { upstream app; cache main; compress gzip; }")
    check(read_events(fg.port, f"/sse?n={N}&ms={MS}&cc={cc}"))
    check(read_events(fg.port, f"/sse?n={N}&ms={MS}&cc={cc}&z=1", "Accept-Encoding: gzip\r\n",
                      "gzip"))


def test_stream_longer_than_read_timeout_while_data_flows(flashgate, app):
    """read_timeout is between reads: a stream that keeps sending outlives it."""
    fg = flashgate(origin_ports=[app.port], upstream_extra="    read_timeout 1s;")
    check(read_events(fg.port, "/sse?n=25&ms=100"), 25)


def test_second_reader_joins_a_stored_stream_in_progress(flashgate, app):
    """A cacheable stream: a request that arrives while it fills is fed from the object as
    it grows (one request to the app), the new events as promptly as the first reader's."""
    import threading
    fg = flashgate(origin_ports=[app.port], main_extra="cache main { memory 16m; }",
                   routes="    route / { upstream app; cache main; }")
    path = f"/sse?n={N}&ms={MS}&cc=max-age=60"
    first = {}
    t = threading.Thread(target=lambda: first.update(ev=read_events(fg.port, path)))
    t.start()
    time.sleep(1.0)
    joined = time.time()
    second = read_events(fg.port, path)
    t.join(30)
    check(first["ev"])
    assert [e[0] for e in second] == list(range(N))
    early = [e for e in second if e[1] < joined]
    assert early, "the second reader joined after the stream had started"
    late = [(seq, round((got - sent) * 1000, 1)) for seq, sent, got in second
            if sent >= joined and got - sent > 0.05]
    assert not late, f"events later than 50 ms: {late}"
    assert app.stats()["requests"] == 1
