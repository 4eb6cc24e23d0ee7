"""Cache tags: the app labels answers (Cache-Tag, Surrogate-Key, or a field of its own),
POST /cache/purge?tag= removes every stored answer with the tag (every URL, every variant)
and nothing else, and the tag fields never reach clients unless `tag_strip off`.

The origin's /c/ resource sends Cache-Tag from ?tag= and Surrogate-Key from ?skey=, and a
body that starts with "v<N>:", N counting its answers for that URL.
"""
import json
import urllib.error
import urllib.parse
import urllib.request

from conftest import get

CC = "cc=max-age=300"


def cached(flashgate, cache_extra="", route_extra=""):
    return flashgate(main_extra=f"cache main {{ memory 64m; max_object 1m; {cache_extra} }}",
                     routes=f"    route / {{ upstream app; cache main; {route_extra} }}")


def purge_tag(fg, tag):
    q = urllib.parse.quote(tag, safe="")
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}/cache/purge?tag={q}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def version(body):
    return int(body.split(b":", 1)[0][1:])


def xcache(h):
    return h.get("x-cache", ["-"])[0]


def test_purge_by_tag_removes_every_page_that_shows_it(flashgate, origin):
    fg = cached(flashgate)
    pages = {
        "/c/product/123?" + CC + "&tag=product-123,category-7": True,
        "/c/category/7?" + CC + "&tag=category-7%20product-123%20product-124": True,
        "/c/home?" + CC + "&skey=home%20product-123": True,  # Surrogate-Key too
        "/c/product/124?" + CC + "&tag=product-124": False,
        "/c/product/1234?" + CC + "&tag=product-1234": False,  # a tag it is a prefix of
        "/c/about?" + CC: False,
    }
    for p in pages:
        s, h, b = get(fg.port, p)
        assert s == 200 and xcache(h) == "MISS" and version(b) == 1
        s, h, b = get(fg.port, p)
        assert xcache(h) == "HIT"
    assert origin.stats()["requests"] == len(pages)
    assert purge_tag(fg, "product-123") == {"purged": 3}
    for p, gone in pages.items():
        s, h, b = get(fg.port, p)
        assert s == 200
        assert (xcache(h), version(b)) == (("MISS", 2) if gone else ("HIT", 1)), p
    assert purge_tag(fg, "no-such-tag") == {"purged": 0}
    assert fg.stats()["caches"]["main"]["purged"] == 3


def test_purge_by_tag_every_variant(flashgate, origin):
    fg = flashgate(main_extra="cache main { memory 64m; max_object 1m; }",
                   routes="    route / { upstream app; cache main; compress br gzip; "
                          "compress_min_length 0; }")
    path = "/c/v?" + CC + "&ct=text/html&bytes=2000&tag=sale"
    for ae in ("gzip", "br", "identity"):
        get(fg.port, path, f"Accept-Encoding: {ae}\r\n")
        assert xcache(get(fg.port, path, f"Accept-Encoding: {ae}\r\n")[1]) == "HIT"
    assert fg.stats()["caches"]["main"]["entries"] == 3  # one per coding
    assert purge_tag(fg, "sale")["purged"] == 3
    s, h, b = get(fg.port, path, "Accept-Encoding: gzip\r\n")
    assert xcache(h) == "MISS"


def test_several_tags_in_one_purge(flashgate, origin):
    fg = cached(flashgate)
    for p in ("/c/a?" + CC + "&tag=a", "/c/b?" + CC + "&tag=b", "/c/c?" + CC + "&tag=c"):
        get(fg.port, p)
    assert purge_tag(fg, "a,b")["purged"] == 2
    assert xcache(get(fg.port, "/c/c?" + CC + "&tag=c")[1]) == "HIT"


def test_tag_fields_stripped_from_clients(flashgate, origin):
    fg = cached(flashgate)
    p = "/c/s?" + CC + "&tag=secret-sku&skey=k1"
    s, h1, _ = get(fg.port, p)  # from the fill
    s, h2, _ = get(fg.port, p)  # from the store
    for h in (h1, h2):
        assert "cache-tag" not in h and "surrogate-key" not in h
    # passed through (not storable) too
    s, h3, _ = get(fg.port, "/c/n?cc=no-store&tag=x")
    assert s == 200 and "cache-tag" not in h3 and xcache(h3) != "HIT"


def test_tag_strip_off_and_own_field(flashgate, origin):
    fg = cached(flashgate, "tag_field Cache-Tag; tag_strip off;")
    p = "/c/k?" + CC + "&tag=t1&skey=s1"
    get(fg.port, p)
    s, h, _ = get(fg.port, p)
    assert xcache(h) == "HIT" and h["cache-tag"] == ["t1"] and h["surrogate-key"] == ["s1"]
    # only Cache-Tag names tags now
    assert purge_tag(fg, "s1")["purged"] == 0
    assert purge_tag(fg, "t1")["purged"] == 1


def test_too_many_tags_not_stored(flashgate, origin):
    fg = cached(flashgate)
    tags = "%20".join("t%04d-%s" % (i, "x" * 40) for i in range(60))  # > 2 KiB
    p = "/c/many?" + CC + "&tag=" + tags
    get(fg.port, p)
    s, h, b = get(fg.port, p)
    assert s == 200 and version(b) == 2  # never stored: a purge of t0059 would miss it


def test_bad_tag_purge_refused(flashgate, origin):
    fg = cached(flashgate)
    for q in ("tag=", "tag=%20,", "tag=" + "a" * 129, "tag=a%01b"):
        req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}/cache/purge?{q}",
                                     method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("accepted " + q)
        except urllib.error.HTTPError as e:
            assert e.code == 400
