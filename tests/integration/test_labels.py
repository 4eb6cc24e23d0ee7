"""Labels that say what happened: X-Cache and the access log's "cache" for a stale entry
served because the app failed (STALE, not REVALIDATED), the standard Cache-Status field
(RFC 9211) for every way a cached route answers, and log lines that name the request and
the server whatever the access-log setting."""
import json
import time

from conftest import free_port, get, wait_for


def cached(flashgate, route_extra="", **kw):
    return flashgate(main_extra="cache main { memory 16m; max_object 1m; }",
                     routes=f"    route / {{ upstream app; cache main; {route_extra} }}", **kw)


def field(headers, name):
    v = headers.get(name, [])
    assert len(v) <= 1, headers
    return v[0] if v else None


def log_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_stale_if_error_is_labelled_stale(flashgate, origin, tmp_path):
    acc = tmp_path / "access.log"
    fg = cached(flashgate, "stale_if_error 60s;", server_extra=f"    access_log {acc};")
    url = "/c/sie-label?cc=max-age=1&etag=v1"
    assert get(fg.port, url)[0] == 200
    time.sleep(1.5)
    origin.get("/__fail?status=503")
    s, h, b = get(fg.port, url)
    assert s == 200 and b.startswith(b"v1:")  # the stale entry stood in
    assert field(h, "x-cache") == "STALE"
    cs = field(h, "cache-status")
    assert cs.startswith("flashgate; fwd=stale") and "detail=stale-if-error" in cs, cs
    assert "; ttl=-" in cs  # stale: negative freshness
    lines = wait_for(lambda: len(log_lines(acc)) >= 2 and log_lines(acc), 5, "the access log")
    assert lines[-1]["path"] == url and lines[-1]["cache"] == "STALE"


def test_cache_status_for_each_way_of_answering(flashgate, origin):
    fg = cached(flashgate, "stale_while_revalidate 30s;")
    s, h, _ = get(fg.port, "/c/cs?cc=max-age=60")
    assert field(h, "cache-status") == "flashgate; fwd=uri-miss; stored; ttl=60"
    s, h, _ = get(fg.port, "/c/cs?cc=max-age=60")
    cs = field(h, "cache-status")
    assert cs.startswith("flashgate; hit; ttl=") and int(cs.rsplit("=", 1)[1]) in (59, 60), cs
    _, h, _ = get(fg.port, "/c/cs-ns?cc=no-store")
    assert field(h, "cache-status") == "flashgate; fwd=uri-miss; detail=not-stored"
    _, h, _ = get(fg.port, "/c/cs-ns?cc=no-store")
    assert field(h, "cache-status") == "flashgate; fwd=uri-miss; detail=hit-for-miss"
    _, h, _ = get(fg.port, "/c/cs?cc=max-age=60", "Authorization: Bearer x\r\n")
    assert field(h, "cache-status") == "flashgate; fwd=bypass"
    # stale-while-revalidate, then a 304 refresh of a stale entry
    get(fg.port, "/c/cs-swr?cc=max-age=1")
    get(fg.port, "/c/cs-rv?cc=max-age=1,must-revalidate&etag=e")
    time.sleep(1.5)
    _, h, _ = get(fg.port, "/c/cs-swr?cc=max-age=1")
    cs = field(h, "cache-status")
    assert cs.startswith("flashgate; hit; ttl=-") and cs.endswith("detail=stale-while-revalidate")
    _, h, _ = get(fg.port, "/c/cs-rv?cc=max-age=1,must-revalidate&etag=e")
    assert field(h, "x-cache") == "REVALIDATED"
    assert field(h, "cache-status") == "flashgate; fwd=stale; fwd-status=304; stored; ttl=1"


def test_cache_status_collapsed(flashgate, origin):
    import threading
    fg = cached(flashgate)
    out = []

    def one():
        out.append(get(fg.port, "/c/cs-col?cc=max-age=60&delay=400"))

    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    statuses = sorted(field(h, "cache-status").split("; ttl=")[0] for _, h, _ in out)
    assert statuses == ["flashgate; fwd=uri-miss; collapsed"] * 3 + ["flashgate; fwd=uri-miss; stored"]
    assert origin.stats()["requests"] == 1


def test_cache_status_field_off(flashgate, origin):
    fg = cached(flashgate, "cache_status_field off;")
    get(fg.port, "/c/off?cc=max-age=60")
    _, h, _ = get(fg.port, "/c/off?cc=max-age=60")
    assert field(h, "x-cache") == "HIT" and field(h, "cache-status") is None
    _, h, _ = get(fg.port, "/c/off2?cc=no-store")
    assert field(h, "x-cache") == "PASS" and field(h, "cache-status") is None


def test_upstream_failure_names_the_request_without_access_log(flashgate):
    dead = free_port()
    fg = flashgate(origin_ports=[dead])
    assert get(fg.port, "/orders/42?x=1")[0] == 502
    line = wait_for(lambda: [l for l in fg.errors().splitlines() if "refused the connection" in l],
                    5, "the error log line")[0]
    assert "(client 127.0.0.1, GET /orders/42?x=1)" in line, line


def test_failed_fill_logs_cache_and_upstream(flashgate, tmp_path):
    dead = free_port()
    acc = tmp_path / "access.log"
    fg = cached(flashgate, origin_ports=[dead], server_extra=f"    access_log {acc};")
    assert get(fg.port, "/c/down?cc=max-age=60")[0] == 502
    entry = wait_for(lambda: log_lines(acc), 5, "the access log")[0]
    assert entry["status"] == 502
    assert entry["cache"] == "MISS"
    assert entry["upstream"] == f"127.0.0.1:{dead}"
    line = [l for l in fg.errors().splitlines() if "cache fill" in l][0]
    assert "t/c/down?cc=max-age=60" in line, line  # which object could not be filled
