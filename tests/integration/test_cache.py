"""The response cache: RFC 9111 behaviour, coalescing, stale serving, purge, memory bound.

The origin's /c/ resource answers with the caching headers the query asks for and a body
that starts with "v<N>:", N counting the origin's answers for that URL, so each test sees
whether a response came from the cache or from the app.
"""
import json
import threading
import time
import urllib.error
import urllib.request

from conftest import Conn, get

CACHE = "cache main { memory 64m; max_object 1m; }"


def cached(flashgate, route_extra="", memory="64m", max_object="1m", **kw):
    routes = f"    route / {{ upstream app; cache main; {route_extra} }}"
    return flashgate(main_extra=f"cache main {{ memory {memory}; max_object {max_object}; }}",
                     routes=routes, **kw)


def version(body):
    return int(body.split(b":", 1)[0][1:])


def xcache(headers):
    return headers.get("x-cache", ["-"])[0]


def cache_stats(fg):
    return fg.stats()["caches"]["main"]


def purge(fg, url, prefix=False):
    q = urllib.request.quote(url, safe="")
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}/cache/purge?url={q}"
                                 + ("&prefix=1" if prefix else ""), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["purged"]


def parallel(n, fn):
    """Run fn(i) in n threads at once; return the results in order."""
    out = [None] * n
    start = threading.Barrier(n)

    def run(i):
        start.wait(10)
        try:
            out[i] = fn(i)
        except Exception as e:  # the assertion below shows it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


# ---- storing and serving -------------------------------------------------------------


def test_hit_after_miss_with_age_and_status_header(flashgate, origin):
    fg = cached(flashgate)
    s1, h1, b1 = get(fg.port, "/c/a?cc=max-age=60")
    s2, h2, b2 = get(fg.port, "/c/a?cc=max-age=60")
    assert (s1, xcache(h1), s2, xcache(h2)) == (200, "MISS", 200, "HIT")
    assert b1 == b2 and version(b2) == 1
    assert h2["age"] == ["0"] and h2["content-length"] == [str(len(b2))]
    assert origin.stats()["requests"] == 1
    st = cache_stats(fg)
    assert st["hits"] == 1 and st["misses"] == 1 and st["entries"] == 1 and st["bytes"] > 0


def test_age_grows_and_expired_entry_is_fetched_again(flashgate, origin):
    """RFC 9111 §4.2.3 Age; §4.2 a stale response is not served without revalidation."""
    fg = cached(flashgate)
    get(fg.port, "/c/age?cc=max-age=2")
    time.sleep(1.2)
    _, h, b = get(fg.port, "/c/age?cc=max-age=2")
    assert xcache(h) == "HIT" and int(h["age"][0]) >= 1
    time.sleep(1.5)
    _, h, b = get(fg.port, "/c/age?cc=max-age=2")
    assert xcache(h) == "MISS" and version(b) == 2


def test_no_store_private_and_set_cookie_are_not_stored(flashgate, origin):
    """RFC 9111 §3: no-store and private forbid a shared cache to store; Set-Cookie too (policy)."""
    fg = cached(flashgate)
    for q in ("cc=no-store", "cc=private,max-age=60", "cc=max-age=60&cookie=1"):
        _, h1, b1 = get(fg.port, f"/c/n?{q}")
        _, h2, b2 = get(fg.port, f"/c/n?{q}")
        assert (version(b1), version(b2)) == (1, 2), q
        assert xcache(h2) == "PASS"
    assert cache_stats(fg)["entries"] <= 3  # hit-for-miss markers only


def test_authorization_bypasses_the_cache(flashgate, origin):
    fg = cached(flashgate)
    get(fg.port, "/c/auth?cc=max-age=60")
    _, h, b = get(fg.port, "/c/auth?cc=max-age=60", "Authorization: Bearer x\r\n")
    assert version(b) == 2  # not served another user's copy


def test_heuristic_freshness_from_last_modified(flashgate, origin):
    """RFC 9111 §4.2.2: no explicit freshness, Last-Modified a day ago: 10% of that."""
    fg = cached(flashgate)
    lm = int(time.time()) - 86400
    get(fg.port, f"/c/lm?lm={lm}")
    _, h, b = get(fg.port, f"/c/lm?lm={lm}")
    assert xcache(h) == "HIT" and version(b) == 1


def test_nothing_to_go_on_is_not_cached_unless_the_operator_says(flashgate, origin):
    fg = cached(flashgate)
    get(fg.port, "/c/plain")
    _, h, b = get(fg.port, "/c/plain")
    assert version(b) == 2
    fg.stop()
    origin.reset()
    fg = cached(flashgate, "cache_default_ttl 60s;")
    get(fg.port, "/c/plain")
    _, h, b = get(fg.port, "/c/plain")
    assert xcache(h) == "HIT" and version(b) == 1


def test_cdn_cache_control_overrides_cache_control(flashgate, origin):
    """RFC 9213: the targeted field wins; Cache-Control stays for browsers."""
    fg = cached(flashgate)
    url = "/c/cdn?cc=no-store&cdn=max-age=60"
    get(fg.port, url)
    _, h, b = get(fg.port, url)
    assert xcache(h) == "HIT" and version(b) == 1
    assert h["cache-control"] == ["no-store"]  # passed on untouched


def test_head_is_served_from_the_get_entry(flashgate, origin, conn):
    fg = cached(flashgate)
    c = conn(fg.port)
    c.send("HEAD /c/head?cc=max-age=60 HTTP/1.1\r\nHost: t\r\n\r\n")
    s, h, _ = c.response(head=True)
    assert s == 200 and h["content-length"] == ["19"]
    c.send("GET /c/head?cc=max-age=60 HTTP/1.1\r\nHost: t\r\n\r\n")
    s, h, b = c.response()
    assert xcache(h) == "HIT" and len(b) == 19
    assert origin.stats()["paths"] == ["/c/head?cc=max-age=60"]  # one GET, no HEAD


def test_client_conditional_answered_from_cache(flashgate, origin):
    fg = cached(flashgate)
    get(fg.port, "/c/inm?cc=max-age=60&etag=v1")
    s, h, b = get(fg.port, "/c/inm?cc=max-age=60&etag=v1", 'If-None-Match: "v1"\r\n')
    assert s == 304 and b == b"" and h["etag"] == ['"v1"']
    s, h, b = get(fg.port, "/c/inm?cc=max-age=60&etag=v1", 'If-None-Match: "other"\r\n')
    assert s == 200 and version(b) == 1
    assert origin.stats()["requests"] == 1
    assert cache_stats(fg)["not_modified_served"] == 1


def test_vary_keeps_one_variant_per_header_value(flashgate, origin):
    """RFC 9111 §4.1: a stored response is used only for requests whose Vary fields match."""
    fg = cached(flashgate)
    url = "/c/vary?cc=max-age=60&vary=Accept-Language"
    bodies = {}
    for lang in ("en", "fr", "en", "fr", "de"):
        _, h, b = get(fg.port, url, f"Accept-Language: {lang}\r\n")
        assert h["x-echo-accept-language"] == [lang]
        bodies.setdefault(lang, set()).add(version(b))
    assert bodies == {"en": {1}, "fr": {2}, "de": {3}}
    assert origin.stats()["requests"] == 3


def test_vary_star_is_never_stored(flashgate, origin):
    fg = cached(flashgate)
    get(fg.port, "/c/vs?cc=max-age=60&vary=*")
    _, _, b = get(fg.port, "/c/vs?cc=max-age=60&vary=*")
    assert version(b) == 2


def test_ignored_query_params_share_one_entry(flashgate, origin):
    fg = cached(flashgate, "cache_key_ignore_params utm_* gclid; cache_key_sort_params on;")
    get(fg.port, "/c/q?cc=max-age=60&a=1&b=2")
    for q in ("b=2&a=1&utm_source=x", "gclid=9&a=1&b=2&utm_medium=y"):
        _, h, b = get(fg.port, f"/c/q?cc=max-age=60&{q}")
        assert xcache(h) == "HIT", q
    assert origin.stats()["requests"] == 1


def test_chunked_response_is_stored_and_served_with_length(flashgate, origin):
    fg = cached(flashgate)
    url = "/c/chunk?cc=max-age=60&chunked=1&bytes=5000"
    _, h1, b1 = get(fg.port, url)
    _, h2, b2 = get(fg.port, url)
    assert b1 == b2 and len(b1) == 5003
    # the first answer streams (chunked) unless the fill finished before it was written
    assert h1.get("transfer-encoding") == ["chunked"] or h1["content-length"] == ["5003"]
    assert h2["content-length"] == ["5003"] and xcache(h2) == "HIT"


def test_unsafe_method_invalidates(flashgate, origin, conn):
    """RFC 9111 §4.4: a POST to a URL invalidates what is stored for it."""
    fg = cached(flashgate)
    get(fg.port, "/c/inv?cc=max-age=60")
    c = conn(fg.port)
    c.send("POST /c/inv?cc=max-age=60 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
    c.response()
    _, h, b = get(fg.port, "/c/inv?cc=max-age=60")
    assert xcache(h) == "MISS" and version(b) == 3
    assert cache_stats(fg)["invalidations"] == 1


def test_unsafe_method_invalidates_location_of_the_same_host_not_on_error(flashgate, origin, conn):
    fg = cached(flashgate)
    for p in ("/c/t1?cc=max-age=60", "/c/t2?cc=max-age=60", "/c/t3?cc=max-age=60"):
        get(fg.port, p)
    c = conn(fg.port)
    q = urllib.request.quote
    # Location (absolute, same host) and Content-Location (a path): both invalidated
    c.send(f"POST /c/post?loc={q('http://t/c/t1?cc=max-age=60', safe='')}&cloc="
           f"{q('/c/t2?cc=max-age=60', safe='')} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    c.response()
    # another host's URL is not ours; an error answer invalidates nothing
    c.send(f"POST /c/post?loc={q('http://other/c/t3?cc=max-age=60', safe='')} HTTP/1.1\r\n"
           "Host: t\r\nContent-Length: 0\r\n\r\n")
    c.response()
    c.send("POST /c/t3?cc=max-age=60&status=500 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    c.response()
    got = {p: xcache(get(fg.port, p)[1]) for p in ("/c/t1?cc=max-age=60", "/c/t2?cc=max-age=60",
                                                   "/c/t3?cc=max-age=60")}
    assert got == {"/c/t1?cc=max-age=60": "MISS", "/c/t2?cc=max-age=60": "MISS",
                   "/c/t3?cc=max-age=60": "HIT"}


def test_large_object_passes_through(flashgate, origin):
    fg = cached(flashgate, max_object="1m")
    url = "/c/big?cc=max-age=60&bytes=2000000"
    _, _, b1 = get(fg.port, url)
    _, _, b2 = get(fg.port, url)
    assert len(b2) == 2000003 and version(b2) == 2
    assert cache_stats(fg)["too_big"] >= 1


def test_chunked_body_growing_past_max_object_is_delivered_not_stored(flashgate, origin):
    fg = cached(flashgate, max_object="1m")
    url = "/c/bigchunk?cc=max-age=60&chunked=1&bytes=1500000"
    _, _, b1 = get(fg.port, url)
    _, h2, b2 = get(fg.port, url)
    assert len(b1) == len(b2) == 1500003
    assert (version(b1), version(b2)) == (1, 2) and xcache(h2) == "MISS"
    assert cache_stats(fg)["too_big"] >= 1


# ---- coalescing ----------------------------------------------------------------------


def test_500_concurrent_misses_make_one_origin_request(flashgate, origin):
    fg = cached(flashgate)
    url = "/c/cold?cc=max-age=60&delay=300&bytes=1000"

    def one(i):
        s, h, b = get(fg.port, url)
        return s, b

    results = parallel(500, one)
    assert all(isinstance(r, tuple) for r in results), [r for r in results if not isinstance(r, tuple)][:3]
    assert {r[0] for r in results} == {200}
    assert {r[1] for r in results} == {results[0][1]} and version(results[0][1]) == 1
    assert origin.stats()["requests"] == 1
    st = cache_stats(fg)
    assert st["misses"] == 1 and st["coalesced"] + st["hits"] == 499


def test_waiters_are_fed_while_the_response_streams(flashgate, origin):
    """A waiter gets its first bytes long before the origin has finished."""
    fg = cached(flashgate)
    url = "/c/drip?cc=max-age=60&chunked=1&bytes=10000&drip=100"  # about 1 s in all
    t0 = time.time()
    first = Conn(fg.port)
    first.send(f"GET {url} HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.15)
    w = Conn(fg.port)
    w.send(f"GET {url} HTTP/1.1\r\nHost: t\r\n\r\n")
    w.s.settimeout(5)
    w._line()  # the status line
    first_byte = time.time() - t0
    rest = w.buf
    while b"0\r\n\r\n" not in rest:
        rest += w.s.recv(65536)
    done = time.time() - t0
    assert first_byte < 0.6 < done
    assert origin.stats()["requests"] == 1
    first.close()
    w.close()


def test_initiator_leaving_does_not_hurt_the_waiters(flashgate, origin):
    fg = cached(flashgate)
    url = "/c/leave?cc=max-age=60&delay=300"
    quitter = Conn(fg.port)
    quitter.send(f"GET {url} HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.05)
    results = parallel(20, lambda i: get(fg.port, url))
    quitter.close()
    assert all(r[0] == 200 and version(r[2]) == 1 for r in results)
    assert origin.stats()["requests"] == 1


def test_uncacheable_answer_does_not_serialize_waiters(flashgate, origin):
    """After a no-store answer the key is hit-for-miss: everybody goes in parallel."""
    fg = cached(flashgate)
    url = "/c/ns?cc=no-store&delay=400"
    t0 = time.time()
    results = parallel(40, lambda i: get(fg.port, url))
    took = time.time() - t0
    assert all(r[0] == 200 for r in results)
    st = origin.stats()
    assert st["requests"] == 40
    assert st["max_concurrent"] >= 20  # in parallel, not one after another
    assert took < 40 * 0.4 / 4  # serialized would take 16 s
    # later requests pass at once too (hit-for-miss), no waiting on a lock
    origin.reset()
    results = parallel(20, lambda i: get(fg.port, url))
    assert origin.stats()["max_concurrent"] >= 10
    assert cache_stats(fg)["hit_for_miss"] >= 1


def test_waiter_past_lock_timeout_goes_to_the_origin(flashgate, origin):
    fg = cached(flashgate, "cache_lock_timeout 200ms;")
    url = "/c/slow?cc=max-age=60&delay=1500"
    first = threading.Thread(target=lambda: get(fg.port, url))
    first.start()
    time.sleep(0.1)
    t0 = time.time()
    s, h, b = get(fg.port, url)
    first.join(10)
    assert s == 200
    assert origin.stats()["requests"] == 2
    assert cache_stats(fg)["lock_timeouts"] == 1
    assert time.time() - t0 < 3.0


# ---- stale serving and revalidation ----------------------------------------------------


def test_stale_while_revalidate_serves_stale_and_refreshes_once(flashgate, origin):
    fg = cached(flashgate)
    url = "/c/swr?cc=max-age=3,stale-while-revalidate=30&delay=300"
    get(fg.port, url)
    time.sleep(3.5)
    results = parallel(10, lambda i: get(fg.port, url))
    assert all(version(r[2]) == 1 for r in results)  # stale, at once
    assert {xcache(r[1]) for r in results} == {"STALE"}
    time.sleep(0.8)  # the background refresh lands
    _, h, b = get(fg.port, url)
    assert xcache(h) == "HIT" and version(b) == 2
    assert origin.stats()["requests"] == 2  # one refresh for ten stale hits


def test_route_default_stale_while_revalidate(flashgate, origin):
    fg = cached(flashgate, "stale_while_revalidate 30s;")
    url = "/c/swr2?cc=max-age=1"
    get(fg.port, url)
    time.sleep(1.5)
    _, h, b = get(fg.port, url)
    assert xcache(h) == "STALE" and version(b) == 1


def test_stale_if_error_on_5xx_and_with_the_origin_stopped(flashgate, origin):
    fg = cached(flashgate, "stale_if_error 60s;")
    url = "/c/sie?cc=max-age=1"
    get(fg.port, url)
    time.sleep(1.5)
    origin.get("/__fail?status=503")
    s, h, b = get(fg.port, url)
    assert s == 200 and version(b) == 1 and xcache(h) in ("STALE", "REVALIDATED", "MISS")
    origin.stop()
    s, h, b = get(fg.port, url)
    assert s == 200 and version(b) == 1
    assert cache_stats(fg)["stale_served"] >= 2


def test_must_revalidate_forbids_stale_on_error(flashgate, origin):
    fg = cached(flashgate, "stale_if_error 60s;")
    url = "/c/mr?cc=max-age=1,must-revalidate"
    get(fg.port, url)
    time.sleep(1.5)
    origin.stop()
    s, h, b = get(fg.port, url)
    assert s == 502


def test_stale_entry_revalidated_with_304_keeps_its_body(flashgate, origin):
    """RFC 9111 §4.3: conditional request with the stored validator; 304 refreshes it."""
    fg = cached(flashgate)
    url = "/c/reval?cc=max-age=1&etag=e1"
    get(fg.port, url)
    time.sleep(1.5)
    s, h, b = get(fg.port, url)
    assert s == 200 and version(b) == 1 and xcache(h) == "REVALIDATED"
    _, h, b = get(fg.port, url)
    assert xcache(h) == "HIT" and version(b) == 1
    assert origin.stats()["requests"] == 2
    assert cache_stats(fg)["revalidated_304"] == 1


# ---- admin and memory ------------------------------------------------------------------


def test_purge_by_url_and_by_prefix(flashgate, origin):
    fg = cached(flashgate)
    for p in ("/c/p/1?cc=max-age=60", "/c/p/2?cc=max-age=60", "/c/other?cc=max-age=60"):
        get(fg.port, p)
    assert purge(fg, "http://t/c/p/1?cc=max-age=60") == 1
    _, h, _ = get(fg.port, "/c/p/1?cc=max-age=60")
    assert xcache(h) == "MISS"
    assert purge(fg, "http://t/c/p/", prefix=True) == 2
    _, h, _ = get(fg.port, "/c/p/2?cc=max-age=60")
    assert xcache(h) == "MISS"
    _, h, _ = get(fg.port, "/c/other?cc=max-age=60")
    assert xcache(h) == "HIT"


def test_memory_bound_holds_under_a_flood_of_keys(flashgate, origin):
    fg = cached(flashgate, memory="1m", max_object="64k")
    c = Conn(fg.port)
    for i in range(800):
        c.send(f"GET /c/flood/{i}?cc=max-age=60&bytes=4000 HTTP/1.1\r\nHost: t\r\n\r\n")
        s, _, _ = c.response()
        assert s == 200
    st = cache_stats(fg)
    assert st["bytes"] <= 1 << 20
    assert st["evictions"] > 0 and st["entries"] < 800
    assert st["stores"] == 800


def warm(fg, lines, concurrency=None):
    q = f"?concurrency={concurrency}" if concurrency else ""
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}/cache/warm{q}",
                                 data="\n".join(lines).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_warm_fills_the_cache_at_bounded_concurrency(flashgate, origin):
    fg = cached(flashgate)
    urls = [f"http://shop.test/c/warm/{i}?cc=max-age=60&delay=100" for i in range(30)]
    status, body = warm(fg, ["# sale at 9:00"] + urls + [""], concurrency=5)
    assert status == 202 and json.loads(body) == {"accepted": 30}
    deadline = time.time() + 10
    while time.time() < deadline and fg.stats()["cache_warm"]["done"] < 30:
        time.sleep(0.1)
    w = fg.stats()["cache_warm"]
    assert w == {"jobs": 1, "queued": 0, "in_flight": 0, "done": 30, "failed": 0}
    st = origin.stats()
    assert st["requests"] == 30 and st["max_concurrent"] <= 5
    c = Conn(fg.port)
    for i in range(30):
        c.send(f"GET /c/warm/{i}?cc=max-age=60&delay=100 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        _, h, b = c.response()
        assert xcache(h) == "HIT" and version(b) == 1
    assert origin.stats()["requests"] == 30


def test_warm_refuses_a_bad_list_whole(flashgate, origin):
    fg = cached(flashgate)
    status, body = warm(fg, ["http://shop.test/c/ok?cc=max-age=60", "not a url"])
    assert status == 400 and b"line 2" in body
    time.sleep(0.3)
    assert fg.stats()["cache_warm"]["jobs"] == 0
    assert origin.stats()["requests"] == 0


def test_access_log_says_what_the_cache_did(flashgate, origin, tmp_path):
    log = tmp_path / "access.log"
    fg = cached(flashgate, server_extra=f"    access_log {log} sample=1 slow=10s;")
    get(fg.port, "/c/log?cc=max-age=60")
    get(fg.port, "/c/log?cc=max-age=60")
    get(fg.port, "/c/log2?cc=no-store")
    deadline = time.time() + 3
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 3):
        time.sleep(0.05)
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert [e["cache"] for e in lines] == ["MISS", "HIT", "PASS"]


def test_hit_for_miss_markers_count_against_memory(flashgate, origin):
    """A flood of distinct uncacheable URLs must not grow the table without bound."""
    fg = cached(flashgate, memory="1m", max_object="64k")
    c = Conn(fg.port)
    for i in range(4000):
        c.send(f"GET /c/nsflood/{i}?cc=no-store HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response()[0] == 200
    st = cache_stats(fg)
    assert st["hit_for_miss"] == 4000
    assert st["bytes"] <= 1 << 20 and st["evictions"] > 0 and st["entries"] < 4000


def reload(fg, text):
    import signal
    gen = fg.stats()["generation"]
    fg.write_conf(text)
    fg.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while fg.stats()["generation"] == gen and time.time() < deadline:
        time.sleep(0.05)
    assert fg.stats()["generation"] == gen + 1


def test_reload_keeps_the_cache_and_applies_new_limits(flashgate, origin):
    fg = cached(flashgate)
    get(fg.port, "/c/keep?cc=max-age=60")
    # a new generation with other limits: the store of the same name keeps its objects
    reload(fg, fg.text.replace("memory 64m", "memory 32m"))
    _, h, b = get(fg.port, "/c/keep?cc=max-age=60")
    assert xcache(h) == "HIT" and version(b) == 1
    # the route stops caching: requests go to the app
    reload(fg, fg.text.replace("cache main;", ""))
    _, h, b = get(fg.port, "/c/keep?cc=max-age=60")
    assert "x-cache" not in h and version(b) == 2
    assert "cache main" in open(fg.conf).read()  # the block itself may stay unused
