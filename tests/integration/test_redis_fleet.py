"""Fleet-wide limits against Redis the way AWS runs it (issue 14), with real parts:
redis-server over TLS with ACL users and a password file, a 3-master Redis Cluster with a
slot migrated and a failover during traffic, a DNS name that moves (a tiny DNS server in
the test), ElastiCache IAM tokens (an IMDS endpoint and a TLS front that checks tokens and
cuts connections at a maximum age), a hung, killed and restarted server, a stalled TLS
handshake. Every request is answered, and never later than its limit's timeout allows.
"""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import Flashgate, flashgate_bin, free_port, get
import redisfleet as rf

TIMEOUT_MS = 50
# A request's answer: the limit's timeout, plus the round trips of the test's own
# connection and the app, under a loaded CI machine.
LATE_S = 0.6


@pytest.fixture
def flashgate(tmp_path, origin):
    """As conftest's, but each instance in a folder of its own (its log is its own)."""
    made = []

    def make(**kw):
        d = tmp_path / f"fg{len(made)}"
        d.mkdir()
        fg = Flashgate(str(d), [origin.port], **kw)
        made.append(fg)
        return fg

    yield make
    for fg in made:
        fg.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    rf.need_redis()
    return rf.make_pki(str(tmp_path_factory.mktemp("pki")))


def password_file(tmp, name, secret, mode=0o600):
    path = os.path.join(str(tmp), name)
    with open(path, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, mode)
    return path


def fleet(flashgate, redis_block, limit="fleet", key="route", rate="1r/h", burst=59,
          fail="open", main="", timeout_ms=TIMEOUT_MS):
    """A flashgate whose /api route has one Redis-backed limit."""
    limits = (f"{redis_block}\n{main}\n"
              f"limit {limit} {{ key {key}; rate {rate}; burst {burst}; "
              f"backend redis fleet timeout={timeout_ms}ms fail={fail}; }}")
    return flashgate(main_extra=limits,
                     routes=f"    route /api {{ upstream app; limit {limit}; }}\n"
                            "    route / { upstream app; }")


def stats(fg):
    return fg.stats()


def lim(fg, name="fleet"):
    return stats(fg)["limits"][name]["redis"]


def rstat(fg, endpoint="fleet"):
    return stats(fg)["redis"].get(endpoint, {})


def wait_connected(fg, name="fleet", n=1, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if lim(fg, name)["connects"] >= n:
            return
        time.sleep(0.05)
    raise TimeoutError("no Redis connection: " + fg.errors()[-2000:])


def timed_get(port, path="/api/x", headers=""):
    t0 = time.time()
    s, _, _ = get(port, path, headers)
    return s, time.time() - t0


def rkey(limit, part):
    """The Redis key of a limit's key (parts joined by the server's separator)."""
    return b"fg:rl:" + limit.encode() + b":" + part.encode() + b"\x1f"


def consumed(node, key, period_s=3600):
    """Requests a key's stored GCRA state says were allowed (for a slow limit, within a
    few seconds of the first): Redis's own count, whatever the instances answered."""
    v = node.cmd("GET", key)
    tat_us = int(v.split(b":")[0])
    sec, usec = node.cmd("TIME")
    ahead = tat_us - (int(sec) * 1000000 + int(usec))
    return -(-ahead // (period_s * 1000000))


def exact_budget(statuses, budget, fallbacks):
    """The instances' answers agree with the budget: exactly, unless some decisions went
    to the local table (a Redis answer later than the timeout under load, a connection
    lost in a failover), each of which may add one."""
    allowed = statuses.count(200)
    assert budget <= allowed + fallbacks and allowed <= budget + fallbacks, (allowed, fallbacks)
    if fallbacks == 0:
        assert allowed == budget


def limit_name_on(cluster, node, part="/api"):
    """A limit name whose route key lives on node (so a test knows where its budget is)."""
    for i in range(5000):
        name = f"fleet{i}"
        if cluster.owner(rf.key_slot(rkey(name, part))) is node:
            return name
    raise LookupError("no name maps to that node")


# ---- TLS, ACL users, secrets -----------------------------------------------------------


def test_tls_acl_user_with_password_file(flashgate, pki, tmp_path):
    r = rf.RedisServer(tmp_path, "tls", tls=pki, users=["app on >s3cret-pw ~* &* +@all"])
    try:
        pw = password_file(tmp_path, "redis.pass", "s3cret-pw")
        fg = fleet(flashgate, f"redis fleet {{ url rediss://app@127.0.0.1:{r.port}; "
                              f"password_file {pw}; ssl_ca_file {pki['ca']}; }}", burst=4)
        wait_connected(fg)
        got = [get(fg.port, "/api/x")[0] for _ in range(7)]
        assert got == [200] * 5 + [429] * 2
        assert lim(fg)["ok"] == 7 and lim(fg)["fallbacks"] == 0
        # the budget is in Redis, written through the ACL user
        assert r.cmd("EXISTS", rkey("fleet", "/api")) == 1
        st = rstat(fg)
        assert st["connects"] >= 1 and st["tls_handshakes"] >= 1 and st["tls_failures"] == 0
        # /config: the file's path, never its content
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/config", timeout=5) as resp:
            conf = resp.read().decode()
        assert f"password_file {pw};" in conf and "s3cret-pw" not in conf
        assert f"url rediss://app@127.0.0.1:{r.port};" in conf
        assert "s3cret-pw" not in json.dumps(stats(fg)) and "s3cret-pw" not in fg.errors()
        # /metrics: valid exposition, the same numbers, one series per endpoint
        from test_metrics import scrape, value
        fams, text = scrape(fg)
        assert value(fams, "flashgate_redis_tls_handshakes_total",
                     endpoint="fleet") == rstat(fg)["tls_handshakes"]
        assert value(fams, "flashgate_redis_auth_failures_total", endpoint="fleet",
                     kind="wrongpass") == 0
        assert fams["flashgate_redis_connects_total"].type == "counter"
        assert "s3cret-pw" not in text
    finally:
        r.kill()


def test_url_password_is_masked(flashgate, pki, tmp_path):
    r = rf.RedisServer(tmp_path, "tls", tls=pki, users=["app on >url-secret ~* &* +@all"])
    try:
        fg = fleet(flashgate, f"redis fleet {{ url rediss://app:url-secret@127.0.0.1:{r.port}; "
                              f"ssl_ca_file {pki['ca']}; }}")
        wait_connected(fg)
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/config", timeout=5) as resp:
            conf = resp.read().decode()
        assert "url-secret" not in conf and "rediss://app:********@127.0.0.1" in conf
    finally:
        r.kill()


def check_config(tmp_path, text):
    conf = tmp_path / "check.conf"
    conf.write_text("upstream app { server 127.0.0.1:1; }\n" + text +
                    "server { listen 127.0.0.1:1; route / { upstream app; } }\n")
    return conf, subprocess.run([flashgate_bin(), "-t", "-c", str(conf)], capture_output=True,
                                text=True, timeout=30)


def test_config_refuses_unsafe_or_unreadable_secrets(tmp_path, pki):
    loose = password_file(tmp_path, "loose.pass", "topsecret", 0o644)
    conf, r = check_config(tmp_path, f"redis fleet {{\n url rediss://app@cache.fleet.test;\n"
                                     f" password_file {loose};\n}}\n")
    assert r.returncode == 1
    assert f"{conf}:2: redis 'fleet': password_file {loose}: group or others have access" \
        in r.stderr
    assert "topsecret" not in r.stderr
    conf, r = check_config(tmp_path, "redis fleet {\n url rediss://cache.fleet.test;\n"
                                     f" ssl_ca_file {tmp_path}/nope.pem;\n}}\n")
    assert r.returncode == 1 and f"{conf}:2: redis 'fleet':" in r.stderr
    assert "nope.pem: cannot open" in r.stderr
    conf, r = check_config(tmp_path, "redis fleet { url redis://cache.fleet.test; "
                                     "auth iam user=app cache=c; }\n")
    assert r.returncode == 1 and "auth iam needs rediss://" in r.stderr
    conf, r = check_config(tmp_path, "redis fleet { password_file /x; }\n")
    assert r.returncode == 1 and "redis 'fleet' needs a url" in r.stderr
    conf, r = check_config(tmp_path, "resolver dns.example;\n")
    assert r.returncode == 1 and f"{conf}:2: invalid resolver 'dns.example'" in r.stderr
    # a root-only file (0600) is fine, and so is the whole config
    tight = password_file(tmp_path, "tight.pass", "topsecret", 0o600)
    _, r = check_config(tmp_path, f"resolver 127.0.0.1:5353;\nredis fleet {{ url "
                                  f"rediss://app@cache.fleet.test; password_file {tight}; }}\n")
    assert r.returncode == 0, r.stderr


def test_untrusted_certificate_and_wrong_password_fall_back_clearly(flashgate, pki, tmp_path):
    r = rf.RedisServer(tmp_path, "tls", tls=pki, users=["app on >right ~* &* +@all"])
    try:
        untrusted = fleet(flashgate, f"redis fleet {{ url rediss://app:right@127.0.0.1:{r.port};"
                                     f" ssl_ca_file {pki['other_ca']}; }}", burst=0)
        wrong = fleet(flashgate, f"redis fleet {{ url rediss://app:wrong@127.0.0.1:{r.port}; "
                                 f"ssl_ca_file {pki['ca']}; }}", burst=0)
        rf_wait = time.time() + 5
        while time.time() < rf_wait and (rstat(untrusted).get("tls_failures", 0) < 1 or
                                         rstat(wrong).get("auth_failures", {}).get("wrongpass",
                                                                                   0) < 1):
            time.sleep(0.05)
        assert rstat(untrusted)["tls_failures"] >= 1 and rstat(untrusted)["connects"] == 0
        assert "the certificate of 127.0.0.1 is not trusted" in untrusted.errors()
        assert rstat(wrong)["auth_failures"]["wrongpass"] >= 1
        assert "AUTH refused: WRONGPASS" in wrong.errors()
        # decided locally at once (fail open), each within the limit's time
        for fg in (untrusted, wrong):
            s1, t1 = timed_get(fg.port)
            s2, t2 = timed_get(fg.port)
            assert (s1, s2) == (200, 429) and max(t1, t2) < LATE_S
            assert lim(fg)["fallbacks"] >= 2 and lim(fg)["ok"] == 0
    finally:
        r.kill()


# ---- a hung, killed and restarted server; a stalled TLS handshake ------------------------


def test_hung_killed_restarted_and_stalled_every_answer_in_time(flashgate, pki, tmp_path):
    r = rf.RedisServer(tmp_path, "tls", tls=pki)
    silent = rf.Silent()
    try:
        fg = fleet(flashgate, f"redis fleet {{ url rediss://127.0.0.1:{r.port}; ssl_ca_file "
                              f"{pki['ca']}; connect_timeout 300ms; }}", rate="100r/s", burst=100)
        stalled = fleet(flashgate, f"redis fleet {{ url rediss://127.0.0.1:{silent.port}; "
                                   f"ssl_ca_file {pki['ca']}; connect_timeout 300ms; }}",
                        rate="100r/s", burst=100)
        wait_connected(fg)
        worst = 0.0

        def burst_of(port, n=8):
            nonlocal worst
            for _ in range(n):
                s, t = timed_get(port)
                assert s == 200
                worst = max(worst, t)

        burst_of(fg.port)
        r.pause()  # hung: the socket stays open, nothing is answered
        burst_of(fg.port)
        assert lim(fg)["timeouts"] >= 1
        r.resume()
        r.kill()  # dead: refused at once
        burst_of(fg.port)
        port = r.port
        r = rf.RedisServer(tmp_path, "tls2", port=port, tls=pki)  # back on the same port
        ok0 = lim(fg)["ok"]
        end = time.time() + 8
        while time.time() < end and lim(fg)["ok"] == ok0:
            burst_of(fg.port, 1)
            time.sleep(0.05)
        assert lim(fg)["ok"] > ok0, "decisions never returned to Redis"
        # a TLS handshake that never ends: decisions do not wait for it
        burst_of(stalled.port, 10)
        time.sleep(0.7)
        burst_of(stalled.port, 5)
        assert lim(stalled)["ok"] == 0 and rstat(stalled)["connect_failures"] >= 1
        assert "no answer within connect_timeout (300 ms)" in stalled.errors()
        assert worst < LATE_S, f"a request took {worst:.3f} s"
    finally:
        r.kill()
        silent.stop()


def test_reloads_during_traffic(flashgate, pki, tmp_path):
    """A reload makes new clients and retires the old ones while decisions are in flight
    (the last request of an old snapshot may finish inside a Redis callback): every request
    answered, decisions back on Redis under the new generation, a rotated password taken."""
    r = rf.RedisServer(tmp_path, "tls", tls=pki, users=["app on >pw-1 ~* &* +@all"])
    try:
        pw = password_file(tmp_path, "redis.pass", "pw-1")
        fg = fleet(flashgate, f"redis fleet {{ url rediss://app@127.0.0.1:{r.port}; "
                              f"password_file {pw}; ssl_ca_file {pki['ca']}; }}",
                   rate="1000r/s", burst=1000)  # never refuses: the traffic thread
        wait_connected(fg)                             # can send ~200 req/s on a quiet box
        traffic = Traffic([fg.port])
        for gen in range(2, 6):
            time.sleep(0.2)
            if gen == 4:  # the password is rotated: the server first, then the file
                assert r.cmd("ACL", "SETUSER", "app", "resetpass", ">pw-2") == "OK"
                password_file(tmp_path, "redis.pass", "pw-2")
            fg.proc.send_signal(signal.SIGHUP)
            end = time.time() + 5
            while time.time() < end and stats(fg)["generation"] < gen:
                time.sleep(0.05)
            assert stats(fg)["generation"] == gen
        time.sleep(0.5)
        results = traffic.stop()
        assert fg.proc.poll() is None
        assert {st for st, _ in results} == {200} and max(t for _, t in results) < LATE_S
        ok0 = lim(fg)["ok"]
        for _ in range(5):
            assert timed_get(fg.port)[0] == 200
        assert lim(fg)["ok"] == ok0 + 5
        assert "pw-1" not in fg.errors() and "pw-2" not in fg.errors()
    finally:
        r.kill()


# ---- DNS failover -----------------------------------------------------------------------


def dns_fleet(flashgate, pki, dns, port, extra=""):
    return fleet(flashgate, f"redis fleet {{ url rediss://cache.fleet.test:{port}; ssl_ca_file "
                            f"{pki['ca']}; resolve_interval 1s; connect_timeout 300ms; {extra} }}",
                 rate="1r/m", burst=1000, main=f"resolver 127.0.0.1:{dns.port};")


def test_failover_moves_the_name_and_the_old_node_stops_answering(flashgate, pki, tmp_path):
    port = free_port()
    a = rf.RedisServer(tmp_path, "a", port=port, bind="127.0.0.1", tls=pki)
    b = rf.RedisServer(tmp_path, "b", port=port, bind="127.0.0.2", tls=pki)
    dns = rf.DnsServer()
    dns.records["cache.fleet.test"] = ["127.0.0.1"]
    try:
        fg = dns_fleet(flashgate, pki, dns, port)
        wait_connected(fg)
        assert timed_get(fg.port)[0] == 200
        assert a.cmd("EXISTS", rkey("fleet", "/api")) == 1
        assert rstat(fg)["resolutions"] >= 1
        # the failover: the name points to b, a stops answering
        dns.records["cache.fleet.test"] = ["127.0.0.2"]
        a.pause()
        t0 = time.time()
        worst = 0.0
        while time.time() - t0 < 8 and b.cmd("EXISTS", rkey("fleet", "/api")) == 0:
            s, t = timed_get(fg.port)
            assert s == 200
            worst = max(worst, t)
            time.sleep(0.05)
        back = time.time() - t0
        assert b.cmd("EXISTS", rkey("fleet", "/api")) == 1, "decisions never reached b"
        # within the re-resolution interval (1 s) plus a reconnect's backoff and handshake
        assert back < 3.0, f"took {back:.2f} s"
        assert worst < LATE_S
        ok0 = lim(fg)["ok"]
        for _ in range(5):
            assert timed_get(fg.port)[0] == 200
        assert lim(fg)["ok"] == ok0 + 5  # Redis again, no reload
        assert stats(fg)["generation"] == 1
    finally:
        a.kill()
        b.kill()
        dns.stop()


def test_moved_name_with_the_old_node_alive_loses_no_decision(flashgate, pki, tmp_path):
    port = free_port()
    a = rf.RedisServer(tmp_path, "a", port=port, bind="127.0.0.1", tls=pki)
    b = rf.RedisServer(tmp_path, "b", port=port, bind="127.0.0.2", tls=pki)
    dns = rf.DnsServer()
    dns.records["cache.fleet.test"] = ["127.0.0.1"]
    try:
        fg = dns_fleet(flashgate, pki, dns, port)
        wait_connected(fg)
        assert timed_get(fg.port)[0] == 200
        dns.records["cache.fleet.test"] = ["127.0.0.2"]
        end = time.time() + 6
        while time.time() < end and rstat(fg)["address_changes"] < 1:
            assert timed_get(fg.port)[0] == 200
            time.sleep(0.02)
        assert rstat(fg)["address_changes"] >= 1
        for _ in range(5):
            assert timed_get(fg.port)[0] == 200
        assert b.cmd("EXISTS", rkey("fleet", "/api")) == 1
        # a new connection took over beside the old one: no decision went local
        assert lim(fg)["fallbacks"] == 0 and lim(fg)["errors"] == 0
    finally:
        a.kill()
        b.kill()
        dns.stop()


def test_demoted_primary_answers_readonly_and_the_client_moves(flashgate, tmp_path):
    """A failover as ElastiCache does it for a cluster-mode-disabled cache: the replica is
    promoted, the old primary becomes its replica (and answers writes READONLY), the
    primary endpoint's name moves. The next lookup is far away (resolve_interval 1h): the
    READONLY answer itself makes the client look the name up again and move."""
    port = free_port()
    a = rf.RedisServer(tmp_path, "a", port=port, bind="127.0.0.1")
    b = rf.RedisServer(tmp_path, "b", port=port, bind="127.0.0.2")
    dns = rf.DnsServer()
    dns.records["primary.fleet.test"] = ["127.0.0.1"]
    try:
        assert b.cmd("REPLICAOF", "127.0.0.1", port) == "OK"
        fg = fleet(flashgate, f"redis fleet {{ url redis://primary.fleet.test:{port}; "
                              f"resolve_interval 1h; }}", rate="1r/m", burst=1000,
                   main=f"resolver 127.0.0.1:{dns.port};")
        wait_connected(fg)
        assert timed_get(fg.port)[0] == 200
        # the failover
        assert b.cmd("REPLICAOF", "NO", "ONE") == "OK"
        assert a.cmd("REPLICAOF", "127.0.0.2", port) == "OK"
        dns.records["primary.fleet.test"] = ["127.0.0.2"]
        end = time.time() + 6
        while time.time() < end and rstat(fg)["readonly"] < 1:
            s, t = timed_get(fg.port)
            assert s == 200 and t < LATE_S
            time.sleep(0.02)
        assert rstat(fg)["readonly"] >= 1
        b.cmd("DEL", rkey("fleet", "/api"))
        ok0 = lim(fg)["ok"]
        while time.time() < end and lim(fg)["ok"] == ok0:  # the new connection is ready
            assert timed_get(fg.port)[0] == 200
            time.sleep(0.02)
        ok0 = lim(fg)["ok"]
        for _ in range(5):
            assert timed_get(fg.port)[0] == 200
        assert lim(fg)["ok"] == ok0 + 5  # on the new primary, without a reload
        assert b.cmd("EXISTS", rkey("fleet", "/api")) == 1
        assert stats(fg)["generation"] == 1
    finally:
        a.kill()
        b.kill()
        dns.stop()


# ---- ElastiCache IAM authentication ----------------------------------------------------------


def test_iam_tokens_and_connections_replaced_before_the_cut(flashgate, pki, tmp_path):
    backend = rf.RedisServer(tmp_path, "backend")
    imds = rf.Imds(region="eu-west-1")
    front = rf.ElastiCacheFront(pki, backend.port, user="app-user", cache="fleet-cache",
                                region="eu-west-1", serverless=True, max_age=3.0)
    dns = rf.DnsServer()
    dns.records["cache.fleet.test"] = ["127.0.0.1"]
    try:
        fg = fleet(flashgate, f"redis fleet {{ url rediss://cache.fleet.test:{front.port}; "
                              f"ssl_ca_file {pki['ca']}; auth iam user=app-user cache=fleet-cache "
                              f"serverless; imds_endpoint {imds.url}; max_connection_age 1500ms; "
                              f"cluster off; }}",
                   rate="100r/s", burst=100, main=f"resolver 127.0.0.1:{dns.port};")
        wait_connected(fg)
        assert front.accepted >= 1 and front.refused == []
        assert imds.requests >= 3  # token, role, credentials (and the region)
        # decisions for 5 s: connections are replaced every ~1.5 s, before the 3 s cut
        end = time.time() + 5
        n = 0
        while time.time() < end:
            s, t = timed_get(fg.port)
            assert s == 200 and t < LATE_S
            n += 1
            time.sleep(0.02)
        st = rstat(fg)
        assert st["aged_out"] >= 2
        assert front.cut == 0, "a connection lived until the front cut it"
        assert front.accepted >= 3 and front.refused == []
        assert st["token_renewals"] >= 1 and st["auth_failures"]["no_credentials"] == 0
        assert lim(fg)["ok"] == n and lim(fg)["fallbacks"] == 0
        assert all(t.startswith("fleet-cache/?Action=connect&User=app-user&ResourceType="
                                "ServerlessCache&") for t in front.tokens)
    finally:
        dns.stop()
        front.stop()
        imds.stop()
        backend.kill()


def test_iam_wrong_user_is_refused_and_counted(flashgate, pki, tmp_path):
    backend = rf.RedisServer(tmp_path, "backend")
    imds = rf.Imds(region="eu-west-1")
    front = rf.ElastiCacheFront(pki, backend.port, user="app-user", cache="fleet-cache",
                                region="eu-west-1")
    try:
        fg = fleet(flashgate, f"redis fleet {{ url rediss://127.0.0.1:{front.port}; ssl_ca_file "
                              f"{pki['ca']}; auth iam user=intruder cache=fleet-cache; "
                              f"imds_endpoint {imds.url}; cluster off; }}", burst=0)
        end = time.time() + 5
        while time.time() < end and rstat(fg).get("auth_failures", {}).get("wrongpass", 0) < 1:
            time.sleep(0.05)
        assert rstat(fg)["auth_failures"]["wrongpass"] >= 1
        assert front.accepted == 0 and front.refused
        s, t = timed_get(fg.port)
        assert s == 200 and t < LATE_S and lim(fg)["fallbacks"] == 1
    finally:
        front.stop()
        imds.stop()
        backend.kill()


# ---- cluster mode ----------------------------------------------------------------------------


class Traffic:
    """Requests from a thread, round robin over flashgates, until stopped: every answer
    and its time kept."""

    def __init__(self, ports, headers=""):
        self.ports = ports
        self.headers = headers
        self.results = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        i = 0
        while not self.stopped.is_set():
            self.results.append(timed_get(self.ports[i % len(self.ports)], "/api/x",
                                          self.headers))
            i += 1
            time.sleep(0.005)

    def stop(self):
        self.stopped.set()
        self.thread.join(30)
        return self.results


def migrate_slot(cluster, slot, src, dst, password, during=lambda: None):
    """Move slot from src to dst the way redis-cli does, calling during() at each step."""
    src_id, dst_id = cluster.node_id(src), cluster.node_id(dst)
    assert dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id) == "OK"
    assert src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id) == "OK"
    during()
    keys = src.cmd("CLUSTER", "GETKEYSINSLOT", slot, 100)
    if keys:
        r = src.cmd("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "AUTH", password, "KEYS",
                    *keys)
        assert r == "OK", r
    during()
    for n in cluster.nodes:
        assert n.cmd("CLUSTER", "SETSLOT", slot, "NODE", dst_id) == "OK"
    during()


def cluster_block(cluster, pki, password_path, node=1, extra=""):
    return (f"redis fleet {{ url rediss://app@127.0.0.1:{cluster.nodes[node].port}; "
            f"password_file {password_path}; ssl_ca_file {pki['ca']}; {extra} }}")


def test_cluster_slot_migrated_during_traffic_budget_exact(flashgate, pki, tmp_path):
    pw = "cluster-pw"
    cluster = rf.RedisCluster(tmp_path, tls=pki, password=pw)
    try:
        for n in cluster.nodes:
            assert n.cmd("ACL", "SETUSER", "app", "on", ">" + pw, "~*", "&*", "+@all") == "OK"
        pwf = password_file(tmp_path, "cl.pass", pw)
        src = cluster.nodes[0]
        name = limit_name_on(cluster, src)
        a = fleet(flashgate, cluster_block(cluster, pki, pwf), limit=name, burst=59,
                  timeout_ms=250)
        b = fleet(flashgate, cluster_block(cluster, pki, pwf, node=2), limit=name, burst=59,
                  timeout_ms=250)
        wait_connected(a, name, 3)
        wait_connected(b, name, 3)
        slot = rf.key_slot(rkey(name, "/api"))
        dst = cluster.nodes[1]
        traffic = Traffic([a.port, b.port])
        time.sleep(0.3)
        migrate_slot(cluster, slot, src, dst, pw, during=lambda: time.sleep(0.4))
        time.sleep(0.4)
        results = traffic.stop()
        statuses = [s for s, _ in results]
        assert len(statuses) > 60 and set(statuses) <= {200, 429}
        assert max(t for _, t in results) < LATE_S
        # 1r/h with burst 59: exactly 60 for the whole fleet, wherever the key lived
        assert consumed(dst, rkey(name, "/api")) == 60
        fallbacks = lim(a, name)["fallbacks"] + lim(b, name)["fallbacks"]
        exact_budget(statuses, 60, fallbacks)
        assert fallbacks <= 2, (lim(a, name), lim(b, name))  # a slow answer, not the move
        moved = rstat(a)["moved"] + rstat(b)["moved"]
        ask = rstat(a)["ask"] + rstat(b)["ask"]
        assert moved >= 1 and ask >= 1, (moved, ask)
        assert dst.cmd("EXISTS", rkey(name, "/api")) == 1
        assert src.cmd("EXISTS", rkey(name, "/api")).startswith("MOVED ")  # not its slot now
    finally:
        cluster.stop()


def test_two_instances_tls_cluster_survive_failover_and_node_restart(flashgate, pki, tmp_path):
    """Done means: two flashgates share one budget through a TLS, password-authenticated,
    cluster-mode Redis, and survive a failover and a node restart without a reload or a
    late answer."""
    pw = "cluster-pw"
    cluster = rf.RedisCluster(tmp_path, tls=pki, password=pw, replica=True)
    try:
        pwf = password_file(tmp_path, "cl.pass", pw)
        first = cluster.nodes[0]
        name = limit_name_on(cluster, first)
        block = lambda node: (f"redis fleet {{ url rediss://:{pw}@127.0.0.1:"
                              f"{cluster.nodes[node].port}; ssl_ca_file {pki['ca']}; }}")
        a = fleet(flashgate, block(1), limit=name, burst=199, timeout_ms=250)
        b = fleet(flashgate, block(2), limit=name, burst=199, timeout_ms=250)
        wait_connected(a, name, 3)
        wait_connected(b, name, 3)
        traffic = Traffic([a.port, b.port])
        time.sleep(0.3)
        # a manual failover: the replica takes the first master's slots, the old master
        # becomes its replica and answers MOVED
        assert cluster.replica.cmd("CLUSTER", "FAILOVER") == "OK"
        end = time.time() + 15
        while time.time() < end and cluster.owner(rf.key_slot(rkey(name, "/api"))) is first:
            time.sleep(0.1)
        assert cluster.owner(rf.key_slot(rkey(name, "/api"))) is cluster.replica
        time.sleep(0.5)
        # a node restart: the third master goes away and comes back on its port
        third = cluster.nodes[2]
        third.kill()
        time.sleep(0.5)
        third.start()
        cluster.wait_ok()
        time.sleep(1.0)
        results = traffic.stop()
        statuses = [s for s, _ in results]
        assert set(statuses) <= {200, 429} and len(statuses) > 200
        assert max(t for _, t in results) < LATE_S
        # the route's budget lives on the failed-over shard: still exact for the fleet
        assert consumed(cluster.replica, rkey(name, "/api")) == 200
        fallbacks = lim(a, name)["fallbacks"] + lim(b, name)["fallbacks"]
        exact_budget(statuses, 200, fallbacks)
        assert fallbacks <= 4, (lim(a, name), lim(b, name))
        assert rstat(a)["moved"] + rstat(b)["moved"] >= 1
        assert stats(a)["generation"] == 1 and stats(b)["generation"] == 1
        # every node serves again, through both instances, keys all over the slot space
        for fg in (a, b):
            before = lim(fg, name)["ok"]
            assert timed_get(fg.port)[0] == 429
            assert lim(fg, name)["ok"] == before + 1
        c = fleet(flashgate, block(0), limit="spread", key="header X-K", rate="100r/s",
                  burst=100)
        wait_connected(c, "spread", 3)
        for i in range(30):
            assert timed_get(c.port, headers=f"X-K: k{i}\r\n")[0] == 200
        assert lim(c, "spread")["fallbacks"] == 0
        assert {n.cmd("DBSIZE") > 0 for n in (cluster.replica, cluster.nodes[1], third)} == {True}
    finally:
        cluster.stop()
