"""Every kind of answer carries what every answer must carry (one head writer,
proxy/server/respond.c): with `request_id on` (the default) an X-Request-Id on proxied
answers, cache hits, 304s from the cache, 429s, 202s, refusals, 502/504, health and
`return` routes; the client's own X-Request-Id echoed instead of ours; none when off."""
import http.client
import re

from conftest import AgentProcess, Conn, Flashgate, free_port, get

ID = re.compile(r"[0-9a-f]{32}")


def request_id(headers):
    ids = headers.get("x-request-id", [])
    assert len(ids) == 1, headers
    return ids[0]


def ours(headers):
    rid = request_id(headers)
    assert ID.fullmatch(rid), rid
    return rid


def everything(flashgate, **kw):
    """Routes for every kind of answer on one flashgate."""
    dead = free_port()
    return flashgate(
        main_extra=f"""cache main {{ memory 16m; max_object 1m; }}
limit one {{ rate 1r/m; burst 1; }}
upstream dead {{ server 127.0.0.1:{dead}; }}
upstream slow {{ server 127.0.0.1:{kw.pop('slow_port')}; read_timeout 300ms; }}""",
        routes="""    route /c/ { upstream app; cache main; }
    route /limited { upstream app; limit one; }
    route /dead { upstream dead; }
    route /delay { upstream slow; }
    route /maintenance { return 503 "down\\n"; }
    route /echo { upstream app; }""", **kw)


def over_the_limit(port, headers=""):
    """The first answer that is not a 200 (burst 1: the third request at most)."""
    for _ in range(3):
        r = get(port, "/limited", headers)
        if r[0] != 200:
            return r
    return r


def test_request_id_on_proxied_cached_and_304(flashgate, origin):
    fg = everything(flashgate, slow_port=origin.port)
    c = Conn(fg.port)
    c.send("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    status, h, body = c.response()
    assert status == 200
    assert f'"X-Request-Id", "{ours(h)}"' in body.decode()  # the app saw the same id
    url = "/c/rid?cc=max-age=60&etag=v1"
    s1, h1, _ = get(fg.port, url)
    s2, h2, _ = get(fg.port, url)
    assert (s1, h1["x-cache"], s2, h2["x-cache"]) == (200, ["MISS"], 200, ["HIT"])
    assert ours(h1) != ours(h2)  # one per request, hits included
    s3, h3, _ = get(fg.port, url, 'If-None-Match: "v1"\r\n')
    assert s3 == 304 and h3["x-cache"] == ["HIT"]
    ours(h3)


def test_request_id_on_refusals_and_failures(flashgate, origin):
    fg = everything(flashgate, slow_port=origin.port)
    for path, want in (("/nothing-here", 404), ("/../x", 400), ("/maintenance", 503),
                       ("/flashgate/healthz", 200), ("/dead", 502)):
        status, h, _ = get(fg.port, path)
        assert status == want, path
        ours(h)
    status, h, _ = get(fg.port, "/delay?ms=2000")  # read_timeout 300ms
    assert status == 504
    ours(h)
    status, h, _ = over_the_limit(fg.port)
    assert status == 429 and h["retry-after"]
    ours(h)
    for raw, want in (("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # refused head
                      ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501),
                      ("POST /echo HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n"
                       "Content-Length: 1\r\n\r\nx", 417)):
        c = Conn(fg.port)
        c.send(raw)
        status, h, _ = c.response()
        assert status == want, raw
        ours(h)
        c.close()


def test_client_request_id_is_echoed_everywhere(flashgate, origin):
    fg = everything(flashgate, slow_port=origin.port)
    mine = "X-Request-Id: trace-42\r\n"
    get(fg.port, "/c/mine?cc=max-age=60")
    for path in ("/c/mine?cc=max-age=60", "/nothing-here", "/dead", "/echo"):
        assert request_id(get(fg.port, path, mine)[1]) == "trace-42", path
    status, h, _ = over_the_limit(fg.port, mine)
    assert status == 429 and request_id(h) == "trace-42"


def test_request_id_off_adds_none(flashgate, origin):
    fg = everything(flashgate, slow_port=origin.port, server_extra="    request_id off;")
    get(fg.port, "/c/off?cc=max-age=60")
    for path in ("/c/off?cc=max-age=60", "/nothing-here", "/echo", "/flashgate/healthz"):
        assert "x-request-id" not in get(fg.port, path)[1], path


def test_request_id_on_202(tmp_path, origin):
    agent = AgentProcess(tmp_path, origin.port).start()
    fg = Flashgate(str(tmp_path), [origin.port], routes=f"""    route /orders {{
        upstream app;
        offload {{ agent unix:{agent.sock}; timeout 2s; }}
    }}""")
    try:
        c = http.client.HTTPConnection("127.0.0.1", fg.port, timeout=10)
        c.request("POST", "/orders", body=b"{}", headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 202
        assert ID.fullmatch(r.getheader("X-Request-Id") or ""), r.getheaders()
        c.close()
    finally:
        fg.stop()
        agent.stop()
