"""Range requests answered from the cache (RFC 9110 §14): every range form against stored
objects of several sizes, checked byte for byte; If-Range; a ranged miss fills the whole
object once; objects the cache will not hold pass the Range to the app; ranges on gzip and
br variants apply to the encoded bytes."""
import threading

import pytest

from conftest import Conn


def pattern(n):
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def cached(flashgate, extra_route="", cache="memory 16m;"):
    return flashgate(main_extra=f"cache main {{ {cache} }}",
                     routes=f"    route / {{ upstream app; cache main; {extra_route} }}")


def req(port, path, headers="", method="GET"):
    c = Conn(port)
    c.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n")
    r = c.response(head=method == "HEAD")
    c.close()
    return r


def multipart(headers, body):
    ct = headers["content-type"][0]
    assert ct.startswith("multipart/byteranges; boundary=")
    boundary = ct.split("boundary=")[1].encode()
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = []
    for chunk in body.split(b"\r\n--" + boundary)[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n") if b": " in line)
        parts.append((fields[b"Content-Range"].decode(), fields.get(b"Content-Type"), data))
    return parts


SIZES = [1, 100, 4101, 100000, 300000]


@pytest.mark.parametrize("size", SIZES)
def test_every_range_form_byte_for_byte(flashgate, origin, size):
    fg = cached(flashgate)
    path = f"/c/r{size}?cc=max-age=60&pat=1&bytes={size}&ct=application/octet-stream"
    whole = pattern(size)
    st, h, body = req(fg.port, path)
    assert st == 200 and body == whole
    L = size

    def single(spec, first, last):
        st, h, body = req(fg.port, path, f"Range: {spec}\r\n")
        assert st == 206, spec
        assert h["content-range"] == [f"bytes {first}-{last}/{L}"], spec
        assert int(h["content-length"][0]) == last - first + 1
        assert body == whole[first:last + 1], spec
        assert h["x-cache"] == ["HIT"]

    single("bytes=0-0", 0, 0)
    single(f"bytes=0-{L - 1}", 0, L - 1)
    single("bytes=0-", 0, L - 1)
    single(f"bytes=0-{L + 1000}", 0, L - 1)          # last beyond the end: clamped
    single(f"bytes=-{L + 5}", 0, L - 1)              # suffix longer than the body
    single(f"bytes=-1", L - 1, L - 1)
    single(f" bytes=-1".strip(), L - 1, L - 1)
    if L > 10:
        single("bytes=3-9", 3, 9)
        single(f"bytes={L - 10}-", L - 10, L - 1)
        single("bytes=-10", L - 10, L - 1)
        single("bytes=5-5, 700000000-", 5, 5)         # the unsatisfiable one is dropped
        # Several ranges: multipart/byteranges, in the order asked.
        spec = f"bytes=0-1,{L // 2}-{L // 2 + 2},-3"
        st, h, body = req(fg.port, path, f"Range: {spec}\r\n")
        assert st == 206 and int(h["content-length"][0]) == len(body)
        parts = multipart(h, body)
        want = [(0, 1), (L // 2, L // 2 + 2), (L - 3, L - 1)]
        assert [p[0] for p in parts] == [f"bytes {a}-{b}/{L}" for a, b in want]
        assert [p[2] for p in parts] == [whole[a:b + 1] for a, b in want]
        assert all(p[1] == b"application/octet-stream" for p in parts)
        assert "content-range" not in h
        # Overlapping ranges: the whole 200 (allowed by §14.2).
        st, h, body = req(fg.port, path, "Range: bytes=0-5,3-8\r\n")
        assert st == 200 and body == whole
    # Unsatisfiable: 416 with the length.
    st, h, body = req(fg.port, path, f"Range: bytes={L}-\r\n")
    assert st == 416 and h["content-range"] == [f"bytes */{L}"]
    st, h, body = req(fg.port, path, "Range: bytes=-0\r\n")
    assert st == 416
    # What is not a usable range set is ignored: the whole 200.
    for spec in ("bytes=9-3", "items=0-1", "bytes=a-b", "bytes=0-1;", "bytes=" + ",".join(
            f"{i}-{i}" for i in range(0, 40, 2))):
        st, h, body = req(fg.port, path, f"Range: {spec}\r\n")
        assert st == 200 and body == whole, spec
    # HEAD with a Range: no range (§14.2 applies it to GET).
    st, h, _ = req(fg.port, path, "Range: bytes=0-0\r\n", method="HEAD")
    assert st == 200 and h["content-length"] == [str(L)]
    s = fg.stats()["caches"]["main"]
    assert s["ranges_served"] > 0
    assert origin.stats()["requests"] == 1


def test_ranged_miss_fills_the_whole_object_once(flashgate, origin):
    fg = cached(flashgate)
    path = "/c/miss?cc=max-age=60&pat=1&bytes=50000&delay=300"
    whole = pattern(50000)
    results = [None] * 6

    def one(i):
        results[i] = req(fg.port, path, f"Range: bytes={i * 1000}-{i * 1000 + 99}\r\n")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for i, (st, h, body) in enumerate(results):
        assert st == 206
        assert body == whole[i * 1000:i * 1000 + 100]
        assert "x-seen-range" not in h  # the fill asked for the whole object
    st, h, body = req(fg.port, path)
    assert st == 200 and h["x-cache"] == ["HIT"] and body == whole
    assert origin.stats()["requests"] == 1


def test_if_range(flashgate, origin):
    fg = cached(flashgate)
    path = "/c/ifr?cc=max-age=60&pat=1&bytes=1000&etag=v1&lm=1700000000"
    whole = pattern(1000)
    assert req(fg.port, path)[0] == 200
    cases = [('"v1"', 206), ('"v2"', 200), ('W/"v1"', 200),
             ("Tue, 14 Nov 2023 22:13:20 GMT", 206),   # = Last-Modified
             ("Tue, 14 Nov 2023 22:13:21 GMT", 200),
             ("not a date", 200)]
    for value, want in cases:
        st, h, body = req(fg.port, path, f"Range: bytes=10-19\r\nIf-Range: {value}\r\n")
        assert st == want, value
        assert body == (whole[10:20] if want == 206 else whole), value


def test_objects_the_cache_will_not_hold_pass_the_range_to_the_app(flashgate, origin):
    fg = cached(flashgate, cache="memory 16m; max_object 1k;")
    st, h, body = req(fg.port, "/c/big?cc=max-age=60&pat=1&bytes=5000",
                      "Range: bytes=0-9\r\n")
    # origin.py answers the whole body whatever the Range: what matters is that the app
    # was asked with the client's Range, not the fill's whole request.
    assert h["x-seen-range"] == ["bytes=0-9"]
    assert st == 200 and body == pattern(5000)
    # Uncacheable (private): the same.
    st, h, body = req(fg.port, "/c/priv?cc=private&pat=1&bytes=100", "Range: bytes=5-\r\n")
    assert h["x-seen-range"] == ["bytes=5-"]
    # A later request for the hit-for-miss key goes with its Range too.
    st, h, body = req(fg.port, "/c/priv?cc=private&pat=1&bytes=100", "Range: bytes=6-\r\n")
    assert h["x-seen-range"] == ["bytes=6-"]


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_ranges_on_encoded_variants(flashgate, origin, coding):
    fg = flashgate(main_extra="cache main { memory 16m; }",
                   routes="    route / { upstream app; cache main; compress br gzip; }")
    path = "/c/z?cc=max-age=60&pat=1&bytes=20000&ct=text/plain&etag=z1"
    ae = f"Accept-Encoding: {coding}\r\n"
    st, h, whole = req(fg.port, path, ae)
    assert st == 200 and h["content-encoding"] == [coding]
    L = len(whole)
    # The range applies to the encoded representation (RFC 9110 §14.1.1).
    st, h, body = req(fg.port, path, ae + "Range: bytes=2-41\r\n")
    assert st == 206 and h["content-encoding"] == [coding]
    assert h["content-range"] == [f"bytes 2-41/{L}"] and body == whole[2:42]
    st, h, body = req(fg.port, path, ae + "Range: bytes=-5\r\n")
    assert st == 206 and body == whole[-5:]
    # The identity variant has its own bytes and length.
    st, h, ident = req(fg.port, path)
    st, h, body = req(fg.port, path, "Range: bytes=2-41\r\n")
    assert st == 206 and h["content-range"] == [f"bytes 2-41/{len(ident)}"]
    assert body == ident[2:42] and "content-encoding" not in h
    # An encoded variant's ETag is weak: If-Range never matches it, so the whole answer.
    etag = req(fg.port, path, ae)[1]["etag"][0]
    assert etag.startswith("W/")
    st, h, body = req(fg.port, path, ae + f"Range: bytes=0-1\r\nIf-Range: {etag}\r\n")
    assert st == 200 and body == whole
    # The identity variant keeps the app's strong ETag: If-Range matches it.
    st, h, body = req(fg.port, path, 'Range: bytes=0-1\r\nIf-Range: "z1"\r\n')
    assert st == 206 and body == ident[:2]
    assert origin.stats()["requests"] <= 2  # one fill per variant at most


def test_ranged_miss_of_a_body_of_unknown_length(flashgate, origin):
    """A chunked answer still arriving: the range is cut once the body is complete."""
    fg = cached(flashgate)
    path = "/c/drip?cc=max-age=60&pat=1&bytes=5000&chunked=1&drip=20"
    st, h, body = req(fg.port, path, "Range: bytes=1500-2599\r\n")
    assert st == 206 and h["content-range"] == ["bytes 1500-2599/5000"]
    assert body == pattern(5000)[1500:2600]
    st, h, body = req(fg.port, path, "Range: bytes=4990-\r\n")
    assert st == 206 and body == pattern(5000)[4990:] and h["x-cache"] == ["HIT"]
