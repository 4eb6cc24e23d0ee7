"""The dashboard in a real browser: Debian's chromium (headless, driven over the DevTools
protocol, browser.py) opens GET / on the admin listener of a flashgate under traffic —
cache hits and misses, uncacheable answers, a rate limit refusing, 5xx from the app,
writes offloaded to a real flashgate-agent — and the test reads the DOM the page's
script built:

  - the numbers it shows are those of /stats, within the second the summary may lag;
  - every chart has points, and the page follows the stream ("live");
  - no JavaScript error: uncaught exceptions, console errors and failed loads (all seen
    over the protocol) and the page's own error list (window.onerror) must be empty;
  - on a phone's viewport (390x844) nothing is wider than the screen.

With FG_SCREENSHOTS=DIR the two viewports are also saved as DIR/dashboard-1280x800.png and
DIR/dashboard-390x844.png, and the whole page as DIR/dashboard-full.png (docs/ holds the
ones docs/operations.md shows); FG_SCREENSHOTS_SECONDS=N runs the traffic N seconds
before (a longer history than the test needs).
"""
import http.client
import math
import os
import threading
import time
import urllib.request
from html.parser import HTMLParser

import pytest

from browser import Browser
from conftest import AgentProcess, Flashgate, wait_for


class Dom(HTMLParser):
    """The elements with an id (their attributes and text), the charts' polylines and the
    upstream server rows."""

    def __init__(self, html):
        super().__init__()
        self.by_id, self.polylines, self.rows, self.limits, self.routes = {}, [], [], {}, {}
        self._open = []  # ids whose text is being collected
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.by_id[a["id"]] = {"attrs": a, "text": ""}
            self._open.append((tag, a["id"]))
        if tag == "polyline":
            self.polylines.append(a)
        if tag == "tr" and "data-address" in a:
            self.rows.append(a)
        if tag == "tr" and "data-limit" in a:
            self.limits[a["data-limit"]] = a
        if tag == "tr" and "data-route" in a:
            self.routes[a["data-route"]] = a

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data):
        for _, i in self._open:
            self.by_id[i]["text"] += data

    def value(self, id_):
        v = self.by_id[id_]["attrs"].get("data-value", "")
        return None if v == "" else float(v)


class Traffic:
    """A mix of requests from a few threads until stop(): cache hits and misses, no-store
    answers (pass), a limited path (429 past 20 r/s), 500s from the app and POSTs
    offloaded (202). The pace swells and ebbs over a minute, as a sale's traffic does."""

    def __init__(self, port, threads=3):
        self.port = port
        self.stop_ev = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, i):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n, t0 = 0, time.monotonic()
        while not self.stop_ev.is_set():
            n += 1
            k = n % 7
            try:
                if k in (0, 1, 2):
                    c.request("GET", f"/c/item{(n * 7 + i) % 40}?cc=max-age%3D3")
                elif k == 3:
                    c.request("GET", "/c/live?cc=no-store")
                elif k == 4:
                    c.request("GET", "/api/cart")
                elif k == 5:
                    c.request("GET", "/status/500")
                else:
                    c.request("POST", "/api/orders", body=b'{"sku":1}',
                              headers={"Content-Type": "application/json",
                                       "Idempotency-Key": f"t{i}-{n}"})
                r = c.getresponse()
                r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.sent += 1
            # some 100 to 300 requests a second in all: the machine is shared
            time.sleep(0.01 * (1.5 + math.sin((time.monotonic() - t0) / 10)))
        c.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)


@pytest.fixture
def busy(tmp_path, origin):
    """flashgate with a cache, a limit, an offload route and the agent's numbers, under
    traffic for a few seconds before the test starts (so the history has points)."""
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    ag = AgentProcess(agent_dir, origin.port).start()
    fg = Flashgate(str(tmp_path), [origin.port],
                   main_extra="cache main { memory 16m; }\n"
                              "limit api { key client_ip; rate 20r/s; burst 5; }",
                   admin_extra=f"agent_status 127.0.0.1:{ag.status_port};",
                   routes=f"""    route /c {{ upstream app; cache main; }}
    route /api/orders {{ upstream app; offload {{ agent unix:{ag.sock}; timeout 2s; }} }}
    route /api {{ upstream app; limit api; }}
    route / {{ upstream app; }}""")
    traffic = Traffic(fg.port)
    warm = "".join(f"http://t/c/warm{i}?cc=max-age%3D600\n" for i in range(60)).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}/cache/warm?concurrency=2",
                                 data=warm, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202
    wait_for(lambda: fg.stats()["downstream"]["requests_total"] > 300, 15, "traffic flowing")
    time.sleep(float(os.environ.get("FG_SCREENSHOTS_SECONDS", "3")))
    yield fg
    traffic.stop()
    fg.stop()
    ag.stop()
    ag.logf.close()


def no_errors(b, dom):
    assert b.exceptions == [], b.exceptions
    assert b.console_errors == [], b.console_errors
    assert dom.by_id["js-errors"]["attrs"]["data-count"] == "0", dom.by_id["js-errors"]["text"]


def save(b, name, full_page=False):
    out = os.environ.get("FG_SCREENSHOTS")
    if out:
        b.screenshot(os.path.join(out, name), full_page=full_page)


def test_dashboard_shows_what_stats_says(busy):
    fg = busy
    b = Browser(1280, 800)
    try:
        b.open(f"http://127.0.0.1:{fg.admin}/")
        b.pump(3)
        s0 = fg.stats()
        # the page shows the last summary, made at most a second before we read it: after s0
        b.pump(2.2)
        dom = Dom(b.dom())
        s1 = fg.stats()
        save(b, "dashboard-1280x800.png")
        save(b, "dashboard-full.png", full_page=True)
    finally:
        b.close()
    no_errors(b, dom)
    assert dom.by_id["status"]["attrs"]["data-state"] == "live"

    def between(id_, get):
        v = dom.value(id_)
        lo, hi = get(s0), get(s1)
        assert v is not None and lo <= v <= hi, f"{id_}: page {v}, /stats {lo}..{hi}"
        assert v > 0, f"{id_} is 0: the traffic did not reach it"

    cache = lambda s: s["caches"]["main"]
    between("total-requests", lambda s: s["downstream"]["requests_total"])
    between("total-hit", lambda s: cache(s)["hits"] + cache(s)["coalesced"])
    between("total-miss", lambda s: cache(s)["misses"])
    between("total-pass", lambda s: cache(s)["passes"])
    between("total-limited", lambda s: s["limits"]["api"]["limited"])
    between("total-offloaded", lambda s: s["offload"]["queued"] + s["offload"]["duplicates"])
    between("total-5xx", lambda s: s["downstream"]["responses"]["5xx"])
    warm = dom.value("warm-text")  # the URLs fetched
    assert s0["cache_warm"]["done"] <= warm <= s1["cache_warm"]["done"] and warm > 0
    ratio = dom.value("total-hit-ratio")
    assert abs(ratio - cache(s1)["hit_ratio"]) < 0.05, (ratio, cache(s1)["hit_ratio"])
    assert dom.value("generation") == s1["generation"]
    # upstream servers and their health, as /stats has them
    servers = {r["data-address"]: r["data-healthy"] for r in dom.rows}
    assert servers == {sv["address"]: "true" if sv["healthy"] else "false"
                       for sv in s1["upstreams"]["app"]["servers"]}
    # the limit that refuses, with its total
    assert "api" in dom.limits, "the api limit is not in the limits table"
    refused = int(dom.limits["api"]["data-limited-total"])
    assert s0["limits"]["api"]["limited"] <= refused <= s1["limits"]["api"]["limited"]
    # the routes, with their totals as /stats counts them
    for route in ("/c", "/api/orders", "/api", "/"):
        assert route in dom.routes, (route, list(dom.routes))
        n = int(dom.routes[route]["data-requests"])
        assert s0["routes"][route]["requests"] <= n <= s1["routes"][route]["requests"], route
    # the agent's spool is shown (a number, and the agent is up)
    assert s1["agent"]["up"] is True
    assert dom.value("kpi-spool") is not None
    # rates: this second's requests, and the charts have their points
    assert dom.value("kpi-rps") > 0
    outcomes = [p for p in dom.polylines if p.get("data-series") in
                ("all", "hit", "miss", "stale", "pass", "429", "202", "5xx")]
    pts = {p["data-series"]: int(p["data-points"]) for p in outcomes}
    assert len(pts) == 8 and min(pts.values()) >= 5, pts
    latency = {p["data-series"]: int(p["data-points"]) for p in dom.polylines
               if p.get("data-series") in ("p50", "p90", "p99", "app p99")}
    assert len(latency) == 4
    assert min(latency.values()) >= 5, latency
    spool = [int(p["data-points"]) for p in dom.polylines if p.get("data-series") == "spool depth"]
    assert spool and spool[0] >= 3, spool


def test_dashboard_on_a_phone(busy):
    fg = busy
    b = Browser(390, 844, scale=2, mobile=True)
    try:
        b.open(f"http://127.0.0.1:{fg.admin}/")
        b.pump(4)
        dom = Dom(b.dom())
        width = b.eval("document.documentElement.scrollWidth")
        chart_w = b.eval("document.getElementById('chart-outcomes').getBoundingClientRect().width")
        save(b, "dashboard-390x844.png")
    finally:
        b.close()
    no_errors(b, dom)
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    assert 300 <= chart_w <= 390, chart_w
    pts = [int(p["data-points"]) for p in dom.polylines if p.get("data-series") == "all"]
    assert pts and pts[0] >= 5, pts
    assert dom.value("total-requests") > 0
