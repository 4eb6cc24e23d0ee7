"""RFC 9111 corners of the shared cache: Authorization (§3.5), Vary matching that
normalises what the fields' syntax allows (§4.1), dates in the obsolete forms (RFC 9110
§5.6.7), Age with a list or junk (§5.1), invalidation by any unsafe method (§4.4)."""
import email.utils
import time
from urllib.parse import quote

from conftest import Conn


def cached(flashgate):
    return flashgate(main_extra="cache main { memory 16m; }",
                     routes="    route / { upstream app; cache main; }")


def req(port, path, headers="", method="GET"):
    c = Conn(port)
    c.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n")
    r = c.response()
    c.close()
    return r


def xcache(r):
    return r[1].get("x-cache", [""])[0]


AUTH = "Authorization: Bearer alice\r\n"


def test_authorization_stores_only_what_a_shared_cache_may(flashgate, origin):
    fg = cached(flashgate)
    for cc in ("public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"):
        path = "/c/auth?cc=" + quote(cc)
        assert xcache(req(fg.port, path, AUTH)) == "MISS"
        assert xcache(req(fg.port, path, AUTH)) == "HIT", cc      # stored (§3.5)
        assert xcache(req(fg.port, path)) == "HIT", cc            # for everyone
    # max-age alone: the answer to alice's credentials is not stored...
    path = "/c/auth-private?cc=max-age=60"
    before = origin.stats()["requests"]
    assert xcache(req(fg.port, path, AUTH)) == "PASS"
    assert xcache(req(fg.port, path, AUTH)) == "PASS"
    assert origin.stats()["requests"] - before == 2
    # ...and does not make the key hit-for-miss for requests without credentials.
    assert xcache(req(fg.port, path)) == "MISS"
    assert xcache(req(fg.port, path)) == "HIT"
    # A response stored for a request without credentials, not marked shared, does not
    # answer one with them: the app does.
    before = origin.stats()["requests"]
    r = req(fg.port, path, AUTH)
    assert xcache(r) == "PASS" and r[0] == 200
    assert origin.stats()["requests"] - before == 1


def test_vary_matches_normalised_negotiation_fields(flashgate, origin):
    fg = cached(flashgate)
    path = "/c/vary?cc=max-age=60&vary=Accept-Language,Accept-Encoding"
    assert xcache(req(fg.port, path, "Accept-Language: en-US, de;q=0.5\r\n"
                      "Accept-Encoding: gzip, br\r\n")) == "MISS"
    for al, ae in (("en-us,de ; q=0.5", "GZIP,BR"), ("EN-US , DE;Q=0.5", "gzip ,br"),
                   ("en-US,de;q=0.5", "Gzip, Br")):
        r = req(fg.port, path, f"Accept-Language: {al}\r\nAccept-Encoding: {ae}\r\n")
        assert xcache(r) == "HIT", (al, ae)
    # A different set is another variant.
    assert xcache(req(fg.port, path, "Accept-Language: de\r\nAccept-Encoding: gzip, br\r\n")) \
        == "MISS"


def test_expires_in_obsolete_date_forms(flashgate, origin):
    fg = cached(flashgate)
    now = time.time()
    t = time.gmtime(now + 120)
    forms = {
        "imf": email.utils.formatdate(now + 120, usegmt=True),
        "rfc850": time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t),
        "asctime": time.strftime("%a %b ", t) + f"{t.tm_mday:2d}" + time.strftime(" %H:%M:%S %Y", t),
    }
    for name, exp in forms.items():
        path = f"/c/exp-{name}?exp={quote(exp)}"
        assert xcache(req(fg.port, path)) == "MISS", name
        r = req(fg.port, path)
        assert xcache(r) == "HIT", (name, exp)
        ttl = int(r[1]["cache-status"][0].split("ttl=")[1].split(";")[0])
        assert 100 <= ttl <= 120, (name, ttl)
    # An Expires in the past (asctime) or invalid is stale at once: not a hit.
    past = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(now - 3600))
    for exp in (past, "0", "soon"):
        path = f"/c/exp-past-{quote(exp)}?exp={quote(exp)}"
        req(fg.port, path)
        assert xcache(req(fg.port, path)) != "HIT", exp


def test_age_list_and_junk(flashgate, origin):
    fg = cached(flashgate)
    req(fg.port, "/c/age1?cc=max-age=600&age=" + quote("30, 400"))
    r = req(fg.port, "/c/age1?cc=max-age=600&age=" + quote("30, 400"))
    assert xcache(r) == "HIT"
    age = int(r[1]["age"][0])
    assert 30 <= age < 60  # the first member counts, not 400, not ignored
    req(fg.port, "/c/age2?cc=max-age=600&age=50abc")
    r = req(fg.port, "/c/age2?cc=max-age=600&age=50abc")
    assert xcache(r) == "HIT" and int(r[1]["age"][0]) < 10  # invalid: ignored (§5.1)


def test_any_unsafe_method_invalidates(flashgate, origin):
    fg = cached(flashgate)
    for method in ("POST", "PURGEX", "PROPPATCH", "LOCK"):
        path = f"/c/inval-{method}?cc=max-age=600"
        assert xcache(req(fg.port, path)) == "MISS"
        assert xcache(req(fg.port, path)) == "HIT"
        st, _, _ = req(fg.port, path, "Content-Length: 0\r\n", method=method)
        assert st == 200
        assert xcache(req(fg.port, path)) == "MISS", method
    # Safe methods do not.
    path = "/c/inval-safe?cc=max-age=600"
    req(fg.port, path)
    for method in ("OPTIONS", "TRACE"):
        req(fg.port, path, method=method)
    assert xcache(req(fg.port, path)) == "HIT"
