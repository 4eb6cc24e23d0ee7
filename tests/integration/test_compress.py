"""Compression: negotiation, what is never compressed, header edits, streamed bodies, and
cached variants served without compressing again. Bodies are decoded with Python's zlib
and Debian's brotli module (python3-brotli), not with our own decoder."""
import gzip
import json
import zlib

import brotli

from conftest import Conn, get

PAGE = "/c/page?cc=max-age=60&bytes=20000&ct=text/html&etag=e1"


def compressing(flashgate, extra="", cache=False, **kw):
    main = "cache main { memory 64m; max_object 4m; }" if cache else ""
    c = "cache main;" if cache else ""
    return flashgate(main_extra=main,
                     routes=f"    route / {{ upstream app; compress br gzip; {c} {extra} }}", **kw)


def fetch(fg, path, ae):
    return get(fg.port, path, f"Accept-Encoding: {ae}\r\n" if ae is not None else "")


def decode(headers, body):
    enc = headers.get("content-encoding", ["identity"])[0]
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "br":
        return brotli.decompress(body)
    assert enc == "identity"
    return body


def zstats(fg):
    return fg.stats()["compression"]


def test_negotiation_picks_br_then_gzip_by_q(flashgate, origin):
    fg = compressing(flashgate)
    cases = {"gzip, deflate, br": "br", "gzip": "gzip", "br;q=0.5, gzip;q=0.9": "gzip",
             "GZIP": "gzip", "*": "br", "br;q=0, *": "gzip", "identity": None,
             "deflate": None, "": None, None: None, "gzip;q=0, br;q=0": None,
             "x-gzip": "gzip", "gzip;q=1.001, br": "br"}
    for ae, want in cases.items():
        s, h, b = fetch(fg, "/c/n?bytes=3000&ct=application/json", ae)
        assert s == 200
        assert h.get("content-encoding", [None])[0] == want, ae
        assert decode(h, b).split(b":", 1)[1] == b"x" * 3000, ae
        assert h["vary"] == ["Accept-Encoding"], ae  # compressible: varies on it either way


def test_header_edits(flashgate, origin):
    fg = compressing(flashgate)
    s, h, b = fetch(fg, "/c/e?bytes=5000&ct=text/html;%20charset=utf-8&etag=strong&vary=Origin",
                    "gzip")
    assert h["content-encoding"] == ["gzip"]
    assert h["etag"] == ['W/"strong"']  # the encoded bytes are another representation
    assert h["vary"] == ["Origin, Accept-Encoding"]
    assert "content-length" not in h and h["transfer-encoding"] == ["chunked"]
    assert len(b) < 200 and len(decode(h, b)) == 5003


def test_never_compressed(flashgate, origin, conn):
    fg = compressing(flashgate)
    plain = {
        "already encoded": "/c/a?bytes=5000&ct=text/html&ce=gzip",
        "not a text type": "/c/b?bytes=5000&ct=image/png",
        "no type": "/c/c?bytes=5000",
        "below min_length": "/c/d?bytes=100&ct=text/html",
        "no-transform": "/c/f?bytes=5000&ct=text/html&cc=no-transform",
        "partial content": "/c/g?bytes=5000&ct=text/html&status=206",
    }
    for why, path in plain.items():
        s, h, b = fetch(fg, path, "gzip, br")
        # untouched: the origin's own Content-Encoding (if any) and its bytes as they were
        assert h.get("content-encoding") == (["gzip"] if "ce=" in path else None), why
        assert b.startswith(b"v"), why
    # the client asks for no transformation
    s, h, b = get(fg.port, "/c/h?bytes=5000&ct=text/html",
                  "Accept-Encoding: gzip\r\nCache-Control: no-transform\r\n")
    assert "content-encoding" not in h
    # HEAD: no body to compress, and a 304 neither
    c = conn(fg.port)
    c.send("HEAD /c/i?bytes=5000&ct=text/html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
    s, h, _ = c.response(head=True)
    assert s == 200 and "content-encoding" not in h
    s, h, _ = fetch(fg, "/status/304", "gzip")
    assert s == 304 and "content-encoding" not in h
    skipped = zstats(fg)["skipped"]
    for reason in ("encoded", "type", "small", "no_transform", "partial"):
        assert skipped[reason] >= 1, reason


def test_streamed_chunked_and_http10_bodies(flashgate, origin, conn):
    fg = compressing(flashgate)
    s, h, b = fetch(fg, "/c/s?bytes=300000&chunked=1&ct=application/json", "br")
    assert h["content-encoding"] == ["br"] and decode(h, b) == b"v1:" + b"x" * 300000
    c = conn(fg.port)
    c.send("GET /c/t?bytes=9000&ct=text/plain HTTP/1.0\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
    s, h, b = c.response()  # read to the close: an HTTP/1.0 client gets no chunked framing
    assert s == 200 and h["content-encoding"] == ["gzip"] and "transfer-encoding" not in h
    assert decode(h, b) == b"v1:" + b"x" * 9000


def test_size_is_close_to_the_library_at_the_same_level(flashgate, origin):
    fg = compressing(flashgate, "gzip_level 6; brotli_level 5;")
    s, h, b = fetch(fg, "/c/big?bytes=200000&ct=text/html", "gzip")
    plain = decode(h, b)
    ref = zlib.compressobj(6, zlib.DEFLATED, 31)
    ref_len = len(ref.compress(plain) + ref.flush())
    assert abs(len(b) - ref_len) <= 0.02 * ref_len + 32
    s, h, b = fetch(fg, "/c/big?bytes=200000&ct=text/html", "br")
    assert len(b) <= 1.02 * len(brotli.compress(plain, quality=5)) + 32


def test_cached_variants_are_served_without_compressing_again(flashgate, origin):
    fg = compressing(flashgate, cache=True)
    got = {}
    for ae in ("br", "gzip", "gzip, br", "identity", "br;q=0, gzip", "br"):
        s, h, b = fetch(fg, PAGE, ae)
        got.setdefault(h.get("content-encoding", ["identity"])[0], []).append(h["x-cache"][0])
        assert decode(h, b).split(b":", 1)[1] == b"x" * 20000
    # one fill per coding, every later request a hit
    assert got == {"br": ["MISS", "HIT", "HIT"], "gzip": ["MISS", "HIT"], "identity": ["MISS"]}
    before = zstats(fg)
    for _ in range(20):
        s, h, b = fetch(fg, PAGE, "gzip, br")
        assert h["x-cache"] == ["HIT"] and h["content-encoding"] == ["br"]
        assert "content-length" in h  # the stored variant's length is known
    after = zstats(fg)
    assert after["br"]["responses"] == before["br"]["responses"]  # no compression on hits
    assert after["br"]["responses"] >= 1 and after["gzip"]["responses"] >= 1
    assert after["br"]["bytes_out"] < after["br"]["bytes_in"]


def test_cache_fill_asks_the_app_for_identity(flashgate, origin):
    fg = compressing(flashgate, cache=True)
    # The first request is a fill: the app is asked for identity (flashgate encodes).
    s, h, b = fetch(fg, "/echo", "gzip")
    doc = json.loads(decode(h, b))
    assert h["content-encoding"] == ["gzip"]  # the answer was uncacheable, encoded on the way
    assert "accept-encoding" not in {k.lower() for k, _ in doc["headers"]}
    # Now hit-for-miss: passed through as a plain proxy, the client's field goes along.
    s, h, b = fetch(fg, "/echo", "gzip")
    doc = json.loads(decode(h, b))
    assert ["Accept-Encoding", "gzip"] in doc["headers"]


def test_app_that_always_gzips_is_decoded_for_the_cache(flashgate, origin):
    """Identity clients get identity even when the app sent only gzip; other codings are
    our own variants made from the decoded body."""
    fg = compressing(flashgate, cache=True)
    url = "/c/appgz?cc=max-age=60&bytes=8000&ct=text/html&enc=gzip"
    s, h, b = fetch(fg, url, None)
    assert s == 200 and "content-encoding" not in h
    assert b.split(b":", 1)[1] == b"x" * 8000
    for ae in ("br", "gzip"):
        s, h, b = fetch(fg, url, ae)
        assert h["content-encoding"] == [ae]
        assert decode(h, b).split(b":", 1)[1] == b"x" * 8000
    s, h, b = fetch(fg, url, None)
    assert h["x-cache"] == ["HIT"] and b.split(b":", 1)[1] == b"x" * 8000
