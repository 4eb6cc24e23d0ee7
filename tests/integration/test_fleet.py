"""The fleet (proxy/fleet): three flashgate processes and one redis-server.

- A purge by tag on instance 1 is gone on all three within a second, and the answer says
  how many instances received it.
- An instance cut off from Redis (a TCP relay the test cuts) while a purge goes out does
  not serve the purged page once it is back: it reads the purge log.
- When the log was trimmed past what the instance saw, it drops its caches whole.
- A bad fleet block is refused with its line.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import redisfleet as rf
from conftest import Flashgate, flashgate_bin, free_port, get, wait_for

CC = "cc=max-age=300"


class Relay:
    """A TCP relay to Redis that the test can cut: cut() closes every relayed connection
    and refuses new ones (accepted then closed at once) until restore()."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.lock = threading.Lock()
        self.socks = []
        self.is_cut = False
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                if self.is_cut:
                    c.close()
                    continue
                try:
                    u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                except OSError:
                    c.close()
                    continue
                self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.is_cut = True
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.socks = []

    def restore(self):
        with self.lock:
            self.is_cut = False

    def stop(self):
        self.stopping = True
        self.cut()
        self.ls.close()
        self.thread.join(5)


def fleet_conf(redis_port, extra="", cache_extra=""):
    return (f"redis shared {{ url redis://127.0.0.1:{redis_port}; }}\n"
            f"fleet {{ redis shared; channel shop; {extra} }}\n"
            f"cache main {{ memory 64m; max_object 1m; {cache_extra} }}")


def start(tmp_path, name, origin, redis_port, extra="", cache_extra="", route_extra=""):
    d = tmp_path / name
    d.mkdir()
    return Flashgate(str(d), [origin.port], main_extra=fleet_conf(redis_port, extra, cache_extra),
                     routes=f"    route / {{ upstream app; cache main; {route_extra} }}",
                     server_extra=f"    access_log {d}/access.log;")


def fleet_stats(fg):
    return fg.stats()["fleet"]


def purge_tag(fg, tag):
    req = urllib.request.Request(
        f"http://127.0.0.1:{fg.admin}/cache/purge?tag={urllib.parse.quote(tag)}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def xcache(fg, path):
    s, h, _ = get(fg.port, path)
    assert s == 200
    return h.get("x-cache", ["-"])[0]


def cache_on(fg, path):
    xcache(fg, path)
    assert xcache(fg, path) == "HIT"


@pytest.fixture
def fleet(tmp_path, origin):
    made = {"fgs": [], "relays": [], "redis": []}

    def make(n, relay_for=(), extra="", cache_extra="", route_extra="", redis=None):
        r = redis or rf.RedisServer(tmp_path, "redis")
        if redis is None:
            made["redis"].append(r)
        fgs = []
        for i in range(n):
            port = r.port
            if i in relay_for:
                rel = Relay(r.port)
                made["relays"].append(rel)
                port = rel.port
            fg = start(tmp_path, f"fg{len(made['fgs']) + 1}", origin, port, extra, cache_extra,
                       route_extra)
            made["fgs"].append(fg)
            fgs.append(fg)
        for fg in fgs:
            wait_for(lambda fg=fg: fleet_stats(fg)["subscribed"], 10, "subscribed")
        return r, fgs, made["relays"]

    yield make
    for fg in made["fgs"]:
        fg.stop()
    for rel in made["relays"]:
        rel.stop()
    for r in made["redis"]:
        r.kill()


def test_purge_by_tag_reaches_every_instance_within_a_second(fleet, origin):
    r, fgs, _ = fleet(3)
    page = "/c/product/1?" + CC + "&tag=product-1"
    other = "/c/product/2?" + CC + "&tag=product-2"
    for fg in fgs:
        cache_on(fg, page)
        cache_on(fg, other)
    t0 = time.monotonic()
    ans = purge_tag(fgs[0], "product-1")
    assert ans == {"purged": 1, "fleet": {"published": True, "receivers": 3}}
    for fg in fgs[1:]:
        while fleet_stats(fg)["purges_received"] < 1:
            assert time.monotonic() - t0 < 1.0, "the purge took more than a second"
            time.sleep(0.01)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0
    for fg in fgs:
        assert xcache(fg, page) == "MISS"
        assert xcache(fg, other) == "HIT"
    assert [fleet_stats(fg)["objects_purged"] for fg in fgs] == [0, 1, 1]
    assert fleet_stats(fgs[0])["purges_sent"] == 1
    # the publisher did not apply its own message twice
    assert fleet_stats(fgs[0])["purges_received"] == 0
    m = urllib.request.urlopen(f"http://127.0.0.1:{fgs[1].admin}/metrics", timeout=5).read()
    assert b"flashgate_fleet_purges_received_total 1\n" in m
    assert b"flashgate_fleet_subscribed 1\n" in m


def purge_url(fg, url, prefix=False):
    req = urllib.request.Request(
        f"http://127.0.0.1:{fg.admin}/cache/purge?url=" + urllib.parse.quote(url, safe="")
        + ("&prefix=1" if prefix else ""), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_url_and_prefix_purges_reach_every_instance(fleet, origin):
    r, fgs, _ = fleet(2)
    a, b, c = "/c/p/a?" + CC, "/c/q/b?" + CC, "/c/r/c?" + CC
    for fg in fgs:
        for p in (a, b, c):
            cache_on(fg, p)
    # the key is the Host as the client sent it ("t", conftest.get) and the target
    ans = purge_url(fgs[1], "http://t" + a)
    assert ans == {"purged": 1, "fleet": {"published": True, "receivers": 2}}
    ans = purge_url(fgs[0], "http://t/c/q/", prefix=True)
    assert ans == {"purged": 1, "fleet": {"published": True, "receivers": 2}}
    wait_for(lambda: fleet_stats(fgs[0])["purges_received"] == 1, 1, "received on 1")
    wait_for(lambda: fleet_stats(fgs[1])["purges_received"] == 1, 1, "received on 2")
    for fg in fgs:
        assert (xcache(fg, a), xcache(fg, b), xcache(fg, c)) == ("MISS", "MISS", "HIT")


def test_instance_cut_off_reads_the_purge_back_when_it_reconnects(fleet, origin):
    r, fgs, relays = fleet(3, relay_for=(2,))
    page = "/c/sale/9?" + CC + "&tag=product-9"
    keep = "/c/sale/10?" + CC + "&tag=product-10"
    for fg in fgs:
        cache_on(fg, page)
        cache_on(fg, keep)
    relays[0].cut()
    wait_for(lambda: not fleet_stats(fgs[2])["subscribed"], 10, "instance 3 cut off")
    ans = purge_tag(fgs[0], "product-9")
    assert ans["fleet"] == {"published": True, "receivers": 2}  # instance 3 did not get it
    wait_for(lambda: fleet_stats(fgs[1])["purges_received"] == 1, 1, "instance 2 received")
    assert xcache(fgs[2], page) == "HIT"  # still cut off: it cannot know yet
    relays[0].restore()
    wait_for(lambda: fleet_stats(fgs[2])["purges_replayed"] == 1, 15, "read back from the log")
    st = fleet_stats(fgs[2])
    assert st["subscribed"] and st["flushes"] == 0 and st["purges_received"] == 0
    assert xcache(fgs[2], page) == "MISS"
    assert xcache(fgs[2], keep) == "HIT"  # only what was purged went


def test_log_trimmed_past_the_gap_drops_everything(fleet, origin):
    r, fgs, relays = fleet(2, relay_for=(1,), extra="purge_log 2;")
    pages = ["/c/t/%d?%s&tag=t%d" % (i, CC, i) for i in range(4)]
    for p in pages:
        cache_on(fgs[1], p)
    # instance 2 saw one purge (its place in the log), then is cut off
    purge_tag(fgs[0], "t0")
    wait_for(lambda: fleet_stats(fgs[1])["purges_received"] == 1, 2, "first purge")
    relays[0].cut()
    wait_for(lambda: not fleet_stats(fgs[1])["subscribed"], 10, "cut off")
    for tag in ("t1", "t2", "t3"):  # three purges into a log of two: one is lost
        assert purge_tag(fgs[0], tag)["fleet"]["published"]
    assert r.cmd("XLEN", "fg:fleet:{shop}:log") == 2
    cache_on(fgs[1], "/c/untagged?" + CC)
    relays[0].restore()
    wait_for(lambda: fleet_stats(fgs[1])["flushes"] == 1, 15, "flushed")
    assert xcache(fgs[1], "/c/untagged?" + CC) == "MISS"  # everything went
    assert fgs[1].stats()["caches"]["main"]["entries"] >= 1  # the MISS just refilled it
    assert "purge log was trimmed" in fgs[1].errors(), fgs[1].errors()


def test_redis_down_purge_applies_here_and_says_so(fleet, origin):
    r, fgs, _ = fleet(2)
    page = "/c/down?" + CC + "&tag=d"
    cache_on(fgs[0], page)
    r.kill()
    wait_for(lambda: not fleet_stats(fgs[0])["subscribed"], 10, "redis gone")
    t0 = time.monotonic()
    ans = purge_tag(fgs[0], "d")
    assert time.monotonic() - t0 < 3
    assert ans["purged"] == 1 and ans["fleet"]["published"] is False and ans["fleet"]["error"]
    assert xcache(fgs[0], page) == "MISS"
    assert fleet_stats(fgs[0])["publish_failures"] == 1


def test_fleet_block_errors(tmp_path):
    def check(text):
        conf = tmp_path / "f.conf"
        conf.write_text(text + "\nupstream app { server 127.0.0.1:9; }\n"
                               "server { listen 127.0.0.1:0; route / { upstream app; } }\n")
        r = subprocess.run([flashgate_bin(), "-t", "-c", str(conf)], capture_output=True,
                           text=True, timeout=10)
        return str(conf), r
    conf, r = check("fleet {\n  channel shop;\n}")
    assert r.returncode == 1 and f"{conf}:1: fleet needs 'redis NAME;'" in r.stderr
    conf, r = check("fleet {\n  redis nope;\n}")
    assert r.returncode == 1 and f"{conf}:2: redis 'nope' is not defined" in r.stderr
    conf, r = check("redis a { url redis://127.0.0.1:1; }\nfleet {\n  redis a;\n  sharded maybe;\n}")
    assert r.returncode == 1 and f"{conf}:4: invalid value 'maybe' for 'sharded'" in r.stderr


# ---- the shared tier (L2) ------------------------------------------------------------------

SHARED = "shared on; shared_timeout 50ms;"


def l2_stats(fg):
    return fleet_stats(fg)["l2"]


def body_of(fg, path, headers=""):
    s, h, b = get(fg.port, path, headers)
    assert s == 200
    return h, b


def test_shared_tier_serves_a_miss_of_another_instance(fleet, origin):
    r, fgs, _ = fleet(2, cache_extra=SHARED)
    page = "/c/l2/a?" + CC + "&tag=p1&bytes=5000"
    h1, b1 = body_of(fgs[0], page)
    wait_for(lambda: l2_stats(fgs[0])["writes"] == 1, 5, "written back")
    h2, b2 = body_of(fgs[1], page)
    assert b2 == b1 and origin.stats()["requests"] == 1  # instance 2 never asked the app
    st = l2_stats(fgs[1])
    assert st["hits"] == 1 and st["bytes_read"] >= 5000
    # stored locally on instance 2 now: a hit without Redis
    assert xcache(fgs[1], page) == "HIT" and l2_stats(fgs[1])["hits"] == 1
    # the copy keeps its tags and its age
    assert "cache-tag" not in h2 and int(h2["age"][0]) >= 0
    m = urllib.request.urlopen(f"http://127.0.0.1:{fgs[1].admin}/metrics", timeout=5).read()
    assert b"flashgate_fleet_l2_hits_total 1\n" in m
    assert b"flashgate_fleet_warming 0\n" in m
    assert purge_tag(fgs[1], "p1")["purged"] == 1


def test_shared_tier_respects_variants(fleet, origin):
    r, fgs, _ = fleet(2, cache_extra=SHARED,
                      route_extra="compress br gzip; compress_min_length 0;")
    page = "/c/l2/v?" + CC + "&ct=text/html&bytes=3000"
    _, br1 = body_of(fgs[0], page, "Accept-Encoding: br\r\n")
    wait_for(lambda: l2_stats(fgs[0])["writes"] == 1, 5, "written back")
    # gzip is another variant: not in the shared tier, the app is asked
    h, gz = body_of(fgs[1], page, "Accept-Encoding: gzip\r\n")
    assert h["content-encoding"] == ["gzip"] and origin.stats()["requests"] == 2
    # br: the encoded body of instance 1, no app request and no compression here
    h, br2 = body_of(fgs[1], page, "Accept-Encoding: br\r\n")
    assert h["content-encoding"] == ["br"] and br2 == br1
    assert origin.stats()["requests"] == 2 and l2_stats(fgs[1])["hits"] == 1


def test_shared_tier_never_keeps_private_or_cookies(fleet, origin):
    r, fgs, _ = fleet(2, cache_extra=SHARED)
    for p in ("/c/l2/priv?cc=private,max-age=60", "/c/l2/cookie?cc=max-age=60&cookie=1",
              "/c/l2/nostore?cc=no-store"):
        body_of(fgs[0], p)
        body_of(fgs[1], p)
    time.sleep(0.3)  # a write back would have been made by now
    assert r.cmd("KEYS", "fg:l2:*") == []
    assert origin.stats()["requests"] == 6
    assert l2_stats(fgs[0])["writes"] == 0


def test_shared_tier_copy_purged_elsewhere_is_not_taken(fleet, origin):
    r, fgs, _ = fleet(2, cache_extra=SHARED)
    page = "/c/l2/purged?" + CC + "&tag=sku-7"
    body_of(fgs[0], page)
    wait_for(lambda: l2_stats(fgs[0])["writes"] == 1, 5, "written back")
    assert purge_tag(fgs[0], "sku-7")["fleet"]["receivers"] == 2
    wait_for(lambda: fleet_stats(fgs[1])["purges_received"] == 1, 1, "purge received")
    _, b = body_of(fgs[1], page)
    assert origin.stats()["requests"] == 2  # the copy in Redis predates the purge
    assert l2_stats(fgs[1])["rejected"] == 1 and l2_stats(fgs[1])["hits"] == 0


def test_shared_tier_redis_killed_every_request_answered(fleet, origin):
    r, fgs, _ = fleet(2, cache_extra=SHARED)
    page = "/c/l2/k?" + CC
    body_of(fgs[0], page)
    wait_for(lambda: l2_stats(fgs[0])["writes"] == 1, 5, "written back")
    r.pause()  # hung: every get runs into its deadline
    t0 = time.monotonic()
    for i in range(5):
        s, h, _ = get(fgs[1].port, "/c/l2/hung%d?%s" % (i, CC))
        assert s == 200
    assert time.monotonic() - t0 < 5
    st = l2_stats(fgs[1])
    # one deadline paid; the hung connection was dropped (proxy/redis), so the later misses
    # do not even ask while it reconnects: refused at once, counted as errors
    assert st["timeouts"] >= 1 and st["timeouts"] + st["errors"] >= 5, st
    r.kill()  # gone: refused at once
    for fg in fgs:
        for i in range(5):
            s, h, _ = get(fg.port, "/c/l2/gone%d?%s" % (i, CC))
            assert s == 200
        assert xcache(fg, page) in ("HIT", "MISS")
    assert fgs[1].proc.poll() is None and fgs[0].proc.poll() is None


def test_redis_killed_mid_traffic_every_request_answered_in_time(fleet, origin):
    """Three instances under traffic (local hits, and cold keys asked on every instance
    at once: shared-tier gets, fleet locks, waits); Redis is killed in the middle. Every
    request is answered 200, none waits for a lock timeout (5 s) or anything like it."""
    r, fgs, _ = fleet(3, cache_extra=SHARED)
    hot = "/c/mid/hot?" + CC
    for fg in fgs:
        cache_on(fg, hot)
    results, stop = [], threading.Event()
    lock = threading.Lock()

    def traffic(k):
        n = 0
        while not stop.is_set():
            n += 1
            # the same cold key on every instance at about the same time
            path = hot if n % 2 else "/c/mid/cold%d?%s&delay=30" % (n // 2, CC)
            t = time.monotonic()
            try:
                s, h, b = get(fgs[k].port, path)
            except Exception as e:  # counted as a failure below
                s = repr(e)
            with lock:
                results.append((s, time.monotonic() - t))

    threads = [threading.Thread(target=traffic, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    r.kill()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(results) > 30
    assert [s for s, _ in results if s != 200] == []
    slowest = max(d for _, d in results)
    assert slowest < 2.0, slowest
    assert all(not fleet_stats(fg)["subscribed"] for fg in fgs)


# ---- fleet-wide coalescing ------------------------------------------------------------------


def storm(fgs, path, n=300):
    """n clients at once on one key, spread over the instances; their (status, body)."""
    out = [None] * n
    start = threading.Barrier(n)

    def run(i):
        try:
            start.wait(20)
            s, h, b = get(fgs[i % len(fgs)].port, path)
            out[i] = (s, b)
        except Exception as e:  # the assertion below shows it
            out[i] = (0, repr(e).encode())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.mark.parametrize("shared,app_requests", [(True, 1), (False, 3)])
def test_cold_key_storm_one_app_request_for_the_fleet(fleet, origin, shared, app_requests):
    r, fgs, _ = fleet(3, cache_extra=SHARED if shared else "")
    path = "/c/storm?" + CC + "&delay=500&bytes=20000"
    res = storm(fgs, path)
    assert all(s == 200 for s, _ in res), [b[:200] for s, b in res if s != 200][:3]
    bodies = {b for _, b in res}
    assert len(bodies) == app_requests  # each app answer is "v<N>:..."
    assert origin.stats()["requests"] == app_requests
    if shared:
        # each instance's access log says what the fleet did for its fill
        def words():
            out = []
            for fg in fgs:
                with open(os.path.join(fg.tmp, "access.log")) as f:
                    out += [json.loads(l).get("fleet") for l in f if l.strip()]
            return out
        wait_for(lambda: len(words()) == len(res), 5, "the access log lines")
        words = words()
        assert sorted(w for w in words if w) == ["lock", "waited", "waited"]
        taken = sum(fleet_stats(fg)["locks"]["taken"] for fg in fgs)
        waited = sum(fleet_stats(fg)["locks"]["waited"] for fg in fgs)
        assert (taken, waited) == (1, 2)
        assert sum(l2_stats(fg)["hits"] for fg in fgs) == 2


def test_redis_hung_during_a_wait_sends_the_waiters_to_the_app(fleet, origin):
    """Redis stops answering (paused, connections open) while two instances wait for the
    third's fill: the notification cannot come, and they must not wait for the lock's
    timeout (5 s): a probe finds Redis silent and sends them to the app."""
    r, fgs, _ = fleet(3, cache_extra=SHARED)
    path = "/c/hung-wait?" + CC + "&delay=1500"
    out = {}

    def client(i):
        t = time.monotonic()
        s, h, b = get(fgs[i].port, path)
        out[i] = (s, time.monotonic() - t)

    ts = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    wait_for(lambda: sum(fleet_stats(fg)["locks"]["waited"] for fg in fgs) == 2, 1, "waits")
    r.pause()
    try:
        for t in ts:
            t.join(20)
        assert [out[i][0] for i in range(3)] == [200, 200, 200]
        # the holder: the app's 1.5 s; the waiters: the probe (~0.5 s), then the app
        assert max(d for _, d in out.values()) < 4.0, out
    finally:
        r.resume()
    assert sum(fleet_stats(fg)["locks"]["timed_out"] for fg in fgs) == 0


def test_uncacheable_answer_releases_the_fleet_at_once(fleet, origin):
    r, fgs, _ = fleet(3, cache_extra=SHARED)
    path = "/c/nostore-storm?cc=no-store&delay=300"
    t0 = time.monotonic()
    res = storm(fgs, path, n=30)
    assert all(s == 200 for s, _ in res)
    # the lock holder's no-store answer sent the other instances to the app at once, not
    # after cache_lock_timeout (5s)
    assert time.monotonic() - t0 < 4
    passed = sum(fleet_stats(fg)["locks"]["passed"] for fg in fgs)
    timed_out = sum(fleet_stats(fg)["locks"]["timed_out"] for fg in fgs)
    assert passed == 2 and timed_out == 0


# ---- the hot pages and the warm start ----------------------------------------------------


def healthz(fg):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/healthz", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_fourth_instance_warms_from_the_fleet_before_it_says_ready(fleet, origin, tmp_path):
    warm = "warm_start 20; warm_concurrency 4;"
    r, fgs, _ = fleet(3, extra=warm, cache_extra=SHARED + " shared_max_object 4k;")
    hot = ["/c/hot/%d?%s&bytes=1000" % (i, CC) for i in range(6)]
    slow = "/c/hot/big?" + CC + "&bytes=8000&delay=1500"  # over shared_max_object: local only
    for p in hot + [slow]:
        for fg in fgs:
            body_of(fg, p)
    wait_for(lambda: sum(l2_stats(fg)["writes"] for fg in fgs) >= len(hot), 5, "written back")
    members = r.cmd("ZREVRANGE", "fg:fleet:{shop}:hot", "0", "-1")
    assert len(members) == len(hot) + 1 and all(m.startswith(b"identity t/c/hot/") for m in members)
    before = origin.stats()["requests"]
    fg4 = start(tmp_path, "fg4", origin, r.port, warm, SHARED + " shared_max_object 4k;")
    try:
        # the slow page keeps the warm start going: not ready yet, on both health checks
        assert healthz(fg4) == (503, b"warming\n")
        s, h, b = get(fg4.port, "/flashgate/healthz")
        assert (s, b) == (503, b"warming\n")
        assert fleet_stats(fg4)["warm_start"]["state"] == "warming"
        wait_for(lambda: healthz(fg4)[0] == 200, 15, "ready")
        ws = fleet_stats(fg4)["warm_start"]
        assert ws["state"] == "done" and ws["pages"] == len(hot) + 1
        assert ws["done"] == len(hot) + 1 and ws["failed"] == 0
        # the hot pages came from the shared tier: only the big one asked the app
        assert origin.stats()["requests"] == before + 1
        for p in hot + [slow]:
            assert xcache(fg4, p) == "HIT"
        assert origin.stats()["requests"] == before + 1
        assert l2_stats(fg4)["hits"] == len(hot)
    finally:
        fg4.stop()


def test_warm_start_without_redis_is_ready_at_warm_timeout(tmp_path, origin):
    d = tmp_path / "alone"
    d.mkdir()
    port = free_port()  # nobody listens: Redis never ready
    fg = Flashgate(str(d), [origin.port],
                   main_extra=fleet_conf(port, "warm_start 10; warm_timeout 1s;", SHARED),
                   routes="    route / { upstream app; cache main; }")
    try:
        assert healthz(fg)[0] == 503
        t0 = time.monotonic()
        wait_for(lambda: healthz(fg)[0] == 200, 10, "ready")
        assert time.monotonic() - t0 < 5
        s, h, b = get(fg.port, "/c/x?" + CC)  # served all along, from the app
        assert s == 200
        assert "gave up" in fg.errors()
    finally:
        fg.stop()


# What docs/caching.md tells an RBAC user needs, with what the client itself asks
# (docs/elasticache.md): the fleet works with exactly these.
FLEET_ACL = ("+@connection +cluster|shards +cluster|slots +asking +script|load +evalsha +eval "
             "+subscribe +ssubscribe +unsubscribe +sunsubscribe "
             "+get +set +del +hgetall +hset +pttl +pexpire +xadd +xlen +xrange +publish "
             "+spublish +zincrby +zrevrange +zunionstore +zremrangebyrank +zcard").split()


# ---- a TLS Redis Cluster with an ACL user: sharded pub/sub, keys on every shard ------------


def test_cluster_tls_sharded_purge_shared_tier_and_coalescing(tmp_path, origin):
    (tmp_path / "pki").mkdir()
    pki = rf.make_pki(str(tmp_path / "pki"))
    pw = "fleet-pw"
    cluster = rf.RedisCluster(tmp_path, tls=pki, password=pw)
    fgs = []
    try:
        for n in cluster.nodes:  # an ACL user of its own, as on ElastiCache (RBAC)
            assert n.cmd("ACL", "SETUSER", "fg", "on", ">" + pw, "~fg:*", "&fg:*", *FLEET_ACL) == "OK"
        pwf = tmp_path / "redis.pass"
        pwf.write_text(pw + "\n")
        os.chmod(pwf, 0o600)
        for i in range(3):
            d = tmp_path / f"c{i}"
            d.mkdir()
            seed = cluster.nodes[i].port  # each instance knows another seed node
            main = (f"redis shared {{ url rediss://fg@127.0.0.1:{seed}; password_file {pwf}; "
                    f"ssl_ca_file {pki['ca']}; }}\n"
                    "fleet { redis shared; channel shop; }\n"
                    f"cache main {{ memory 64m; max_object 1m; {SHARED} }}")
            fgs.append(Flashgate(str(d), [origin.port], main_extra=main,
                                 routes="    route / { upstream app; cache main; }"))
        for fg in fgs:
            wait_for(lambda fg=fg: fleet_stats(fg)["subscribed"], 15, "subscribed")
            assert "(sharded)" in fg.errors()  # SSUBSCRIBE on the channel's shard
        # keys on different shards: the slots of their hash tags differ
        pages = ["/c/cl/%d?%s&tag=cl-sale" % (i, CC) for i in range(6)]
        slots = {rf.key_slot(("fg:l2:{t%s}:shop" % p).encode()) for p in pages}
        owners = {cluster.owner(s).port for s in slots}
        assert len(owners) >= 2
        for p in pages:
            body_of(fgs[0], p)
        wait_for(lambda: l2_stats(fgs[0])["writes"] == len(pages), 5, "written back")
        before = origin.stats()["requests"]
        for p in pages:  # instance 2 from the shared tier, on every shard
            body_of(fgs[1], p)
        assert origin.stats()["requests"] == before and l2_stats(fgs[1])["hits"] == len(pages)
        hot = "fg:fleet:{shop}:hot"  # the misses were recorded (ZINCRBY allowed)
        assert cluster.owner(rf.key_slot(hot)).cmd("ZCARD", hot) == len(pages)
        # one purge by tag, SPUBLISH on the channel's shard, received by all three
        ans = purge_tag(fgs[2], "cl-sale")
        assert ans["fleet"] == {"published": True, "receivers": 3}
        for fg in fgs[:2]:
            wait_for(lambda fg=fg: fleet_stats(fg)["purges_received"] == 1, 1, "received")
        assert xcache(fgs[1], pages[0]) == "MISS"
        # a cold-key storm over the cluster: one app request
        before = origin.stats()["requests"]
        res = storm(fgs, "/c/cl/storm?" + CC + "&delay=300", n=90)
        assert all(s == 200 for s, _ in res) and len({b for _, b in res}) == 1
        assert origin.stats()["requests"] == before + 1
    finally:
        for fg in fgs:
            fg.stop()
        cluster.stop()


def test_reload_moves_the_fleet_to_another_channel(fleet, origin):
    r, fgs, _ = fleet(2)
    page = "/c/rl?" + CC + "&tag=rl"
    for fg in fgs:
        cache_on(fg, page)
    # instance 2 moves to another fleet's channel: purges of the first no longer reach it
    text = open(fgs[1].conf).read().replace("channel shop;", "channel staging;")
    fgs[1].write_conf(text)
    fgs[1].proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "fg:fleet:{staging}:bus" in fgs[1].errors() and
             fleet_stats(fgs[1])["subscribed"], 10, "moved")
    ans = purge_tag(fgs[0], "rl")
    assert ans["fleet"] == {"published": True, "receivers": 1}
    time.sleep(0.2)
    assert xcache(fgs[1], page) == "HIT"
    # an unchanged reload keeps the bus (no new subscription)
    n = fgs[0].errors().count("subscribed to")
    fgs[0].proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "generation 2 is running" in fgs[0].errors(), 10, "reloaded")
    time.sleep(0.3)
    assert fgs[0].errors().count("subscribed to") == n
