"""flashgate-agent end to end: a client speaking the agent protocol over the unix socket,
the real agent with its spool in a tmp dir, and a test app recording Idempotency-Keys.

Everything is 127.0.0.1 or a unix socket under tmp_path; every wait is bounded.
"""
import os
import pathlib
import socket
import struct
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import AgentProcess, agent_bin, free_port, wait_for

DURABLE, DUPLICATE, FULL, TOO_BIG, ERROR = 1, 2, 3, 4, 5




def record_frame(rid, key, method="POST", target="/api/orders", headers=(), body=b""):
    k, m, t = key.encode(), method.encode(), target.encode()
    hb = b"".join(struct.pack("<HH", len(n), len(v)) + n + v
                  for n, v in ((n.encode(), v.encode()) for n, v in headers))
    inner = struct.pack("<BBQBBHHI", 1, 1, rid, len(k), len(m), len(t), len(headers), len(body))
    inner += k + m + t + hb + body
    return struct.pack("<I", len(inner)) + inner


class AgentClient:
    def __init__(self, path, timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def answers(self, n, timeout=20.0):
        """Read n answers: {id: status}."""
        got = {}
        end = time.time() + timeout
        while len(got) < n:
            while len(self.buf) >= 15 and len(got) < n:
                length, ver, typ, rid, status = struct.unpack("<IBBQB", self.buf[:15])
                assert (length, ver, typ) == (11, 1, 2), self.buf[:15]
                assert rid not in got, f"answer for {rid} twice"
                got[rid] = status
                self.buf = self.buf[15:]
            if len(got) >= n:
                break
            if time.time() > end:
                raise TimeoutError(f"{len(got)} of {n} answers")
            d = self.s.recv(65536)
            if not d:
                raise EOFError(f"agent closed after {len(got)} of {n} answers")
            self.buf += d
        return got

    def send_async(self, data):
        def run():
            try:
                self.s.sendall(data)
            except OSError:  # the agent was killed mid-send
                pass
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def close(self):
        self.s.close()


# ---- the test app -----------------------------------------------------------------------


class App:
    """Records every request's Idempotency-Key and arrival time; status is settable."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.keys = []
        self.times = []
        self.bodies = {}
        self.status = 200
        app = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                key = self.headers.get("Idempotency-Key")
                with app.lock:
                    st = app.status
                    if st == 200:
                        app.keys.append(key)
                        app.times.append(time.monotonic())
                        app.bodies[key] = (self.command, self.path, dict(self.headers), body)
                self.send_response(st)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_PUT = do_POST

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def distinct(self):
        with self.lock:
            return set(self.keys)

    def count(self):
        with self.lock:
            return len(self.keys)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Agent(AgentProcess):
    def client(self):
        return AgentClient(self.sock)


@pytest.fixture
def app():
    a = App()
    yield a
    a.stop()


@pytest.fixture
def agent(tmp_path):
    made = []

    def make(app_port, extra="", start=True):
        ag = Agent(tmp_path, app_port, extra)
        made.append(ag)
        return ag.start() if start else ag

    yield make
    for ag in made:
        ag.stop()
        ag.logf.close()


def burst(n, prefix, body=b"x" * 1024, start=1):
    return b"".join(record_frame(start + i, f"{prefix}-{i}", body=body,
                                 headers=[("Content-Type", "application/json")])
                    for i in range(n))


# ---- tests --------------------------------------------------------------------------------


def test_burst_2000_durable_then_replayed_exactly(app, agent):
    ag = agent(app.port, "replay_rate 0;\nreplay_concurrency 8;")
    c = ag.client()
    t0 = time.monotonic()
    c.send_async(burst(2000, "burst"))
    got = c.answers(2000)
    dt = time.monotonic() - t0
    assert set(got) == set(range(1, 2001))
    assert set(got.values()) == {DURABLE}
    print(f"\n2000 records of 1 KiB: {2000 / dt:.0f} records/s, one connection")
    wait_for(lambda: app.count() >= 2000, 30, "2000 replays")
    time.sleep(0.3)
    assert app.count() == 2000
    assert app.distinct() == {f"burst-{i}" for i in range(2000)}
    st = wait_for(lambda: (lambda s: s if s["spool"]["depth"] == 0 else None)(ag.status()), 10,
                  "an empty spool")
    assert st["records"]["durable"] == 2000
    assert st["spool"]["committed"] == 2000
    assert st["spool"]["fsyncs"] < 2000, "group commit should batch"
    assert st["replay"]["ok"] == 2000
    # What the app got is the request as it was sent, plus the key.
    method, path, headers, body = app.bodies["burst-7"]
    assert (method, path, body) == ("POST", "/api/orders", b"x" * 1024)
    assert headers["Content-Type"] == "application/json"
    assert ag.stop() == 0


def test_duplicate_key_acknowledged_again_replayed_once(app, agent):
    ag = agent(app.port, "replay_rate 0;")
    c = ag.client()
    c.send(record_frame(1, "same-key", body=b"a") + record_frame(2, "same-key", body=b"a"))
    assert c.answers(2) == {1: DURABLE, 2: DUPLICATE}
    c.send(record_frame(3, "same-key"))  # after the commit too
    assert c.answers(1) == {3: DUPLICATE}
    wait_for(lambda: app.count() >= 1, 10, "the replay")
    time.sleep(0.5)
    assert app.keys == ["same-key"]
    assert ag.status()["records"]["duplicates"] == 2


def test_sigkill_mid_burst_loses_no_durable_record(app, agent, tmp_path):
    ag = agent(app.port, "replay_rate 500;\nreplay_concurrency 4;")
    c = ag.client()
    n = 4000
    c.send_async(burst(n, "kill", body=b"y" * 512))
    durable = set()
    end = time.time() + 20
    while len(durable) < 1500 and time.time() < end:
        durable |= {f"kill-{rid - 1}" for rid, s in c.answers(100).items() if s == DURABLE}
    assert len(durable) >= 1500
    ag.kill()
    try:  # answers already on the way count too
        while True:
            durable |= {f"kill-{rid - 1}" for rid, s in c.answers(1, timeout=1).items()
                        if s == DURABLE}
    except (EOFError, TimeoutError, OSError):
        pass
    c.close()
    before = app.count()
    ag.start()
    wait_for(lambda: durable <= app.distinct(), 60, "every durable record at the app")
    got = app.count()
    print(f"\nkilled after {len(durable)} durable answers; app had {before} before the restart, "
          f"{got} requests now, {got - len(app.distinct())} duplicates")
    assert ag.stop() == 0


def test_app_down_spool_grows_then_drains(agent, tmp_path):
    port = free_port()  # nobody listens yet
    ag = agent(port, "replay_rate 0;")
    c = ag.client()
    c.send(burst(200, "down", body=b"z" * 100))
    assert set(c.answers(200).values()) == {DURABLE}
    st = wait_for(lambda: (lambda s: s if s["replay"]["failed"] >= 3 else None)(ag.status()), 10,
                  "failed replays")
    assert st["spool"]["depth"] == 200
    assert st["spool"]["bytes"] > 200 * 100
    c.send(burst(100, "down2", body=b"z" * 100, start=1000))
    assert set(c.answers(100).values()) == {DURABLE}
    assert ag.status()["spool"]["depth"] == 300
    app = App(port)
    try:
        wait_for(lambda: app.distinct() >= {f"down-{i}" for i in range(200)} |
                 {f"down2-{i}" for i in range(100)}, 30, "the drain")
        st = wait_for(lambda: (lambda s: s if s["spool"]["depth"] == 0 else None)(ag.status()),
                      10, "an empty spool")
        assert st["replay"]["retries"] >= 3
        assert st["replay"]["ok"] == 300
    finally:
        app.stop()


def test_app_5xx_retried_4xx_dropped(app, agent):
    app.status = 503
    ag = agent(app.port, "replay_rate 0;")
    c = ag.client()
    c.send(record_frame(1, "retry-me"))
    assert c.answers(1) == {1: DURABLE}
    wait_for(lambda: ag.status()["replay"]["failed"] >= 2, 10, "5xx retries")
    assert app.count() == 0
    app.status = 200
    wait_for(lambda: app.count() == 1, 10, "the retry to succeed")
    app.status = 404
    c.send(record_frame(2, "rejected"))
    assert c.answers(1) == {2: DURABLE}
    st = wait_for(lambda: (lambda s: s if s["replay"]["rejected"] == 1 else None)(ag.status()), 10,
                  "the permanent refusal")
    wait_for(lambda: ag.status()["spool"]["depth"] == 0, 5, "the ack of the refused record")
    assert st["replay"]["ok"] == 1


def test_replay_rate_respected(app, agent):
    ag = agent(app.port, "replay_rate 50;\nreplay_concurrency 4;")
    c = ag.client()
    c.send(burst(400, "rate", body=b"r"))
    assert set(c.answers(400).values()) == {DURABLE}
    wait_for(lambda: app.count() >= 1, 5, "the first replay")
    time.sleep(3.2)
    with app.lock:
        times = list(app.times)
    first = times[0]
    in_window = [t for t in times if first + 0.5 <= t < first + 3.0]  # after the burst
    rate = len(in_window) / 2.5
    print(f"\nreplay rate measured at the app: {rate:.1f}/s (configured 50/s)")
    assert 30 <= rate <= 65, rate
    assert len(times) <= 50 * 3.3 + 10


def test_spool_full_answers_full(agent):
    ag = agent(free_port(), "spool_max_bytes 64k;\nreplay_rate 0;")
    c = ag.client()
    c.send(burst(200, "full", body=b"f" * 1024))
    got = c.answers(200)
    statuses = [got[i] for i in range(1, 201)]
    assert statuses[0] == DURABLE
    assert statuses.count(FULL) > 100
    assert DURABLE in statuses and set(statuses) <= {DURABLE, FULL}
    first_full = statuses.index(FULL)
    assert set(statuses[first_full:]) == {FULL}
    st = ag.status()
    assert st["records"]["refused_full"] == statuses.count(FULL)
    assert st["spool"]["bytes"] <= 64 * 1024


def test_protocol_refusals(app, agent):
    ag = agent(app.port, "max_record 8k;\nreplay_rate 0;")
    c = ag.client()
    big = record_frame(1, "big", body=b"b" * 20000)
    bad_target = record_frame(2, "bad", target="no-slash")
    ok = record_frame(3, "fine")
    c.send(big + bad_target + ok)
    assert c.answers(3) == {1: TOO_BIG, 2: ERROR, 3: DURABLE}
    c.send(b"GET / HTTP/1.1\r\n\r\n")  # the framing is lost: the agent closes
    c.s.settimeout(5)
    assert c.s.recv(100) == b""
    st = ag.status()
    assert st["records"]["refused_too_big"] == 1
    assert st["records"]["protocol_errors"] == 2
    # Still serving new connections.
    c2 = ag.client()
    c2.send(record_frame(9, "after"))
    assert c2.answers(1) == {9: DURABLE}
    wait_for(lambda: app.distinct() == {"fine", "after"}, 10, "the two good records")


def test_sigterm_commits_and_checkpoints(app, agent):
    ag = agent(app.port, "replay_rate 0;\ncheckpoint_interval 1h;")
    c = ag.client()
    c.send(burst(50, "term"))
    assert set(c.answers(50).values()) == {DURABLE}
    wait_for(lambda: app.count() == 50, 10, "the replays")
    wait_for(lambda: ag.status()["spool"]["acked_seq"] == 50, 5, "the acks")
    assert ag.stop() == 0
    with open(os.path.join(ag.spool, "checkpoint"), "rb") as f:
        cp = f.read()
    # Two 512-byte slots (magic, version 2, acked, generation): the newer one counts.
    slots = [struct.unpack_from("<4sIQQ", cp, off) for off in (0, 512)]
    assert all(sl[0] == b"FGCK" and sl[1] == 2 for sl in slots)
    assert max(slots, key=lambda sl: sl[3])[2] == 50
    # Nothing is replayed again after a clean stop.
    ag.start()
    time.sleep(0.5)
    assert app.count() == 50
    assert ag.status()["spool"]["depth"] == 0


def test_config_check(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("# ok\nlisten /tmp/x.sock;\napp 127.0.0.1:3000;\ncommit_batch 64;\n")
    r = subprocess.run([agent_bin(), "-t", "-c", str(good)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("listen /tmp/x.sock;\nfrobnicate yes;\nreplay_rate fast;\nsink sqs;\n")
    r = subprocess.run([agent_bin(), "-t", "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert f"{bad}:2: unknown directive 'frobnicate'" in r.stderr
    # The same messages as flashgate.conf's (one parser, one directive table machinery).
    assert f"{bad}:3: invalid number 'fast' for 'replay_rate'" in r.stderr
    assert f"{bad}:4: sink sqs needs sqs_queue_url" in r.stderr
    shipped = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "flashgate-agent.conf")
    r = subprocess.run([agent_bin(), "-t", "-c", shipped], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr


def test_config_check_catches_paths_that_cannot_work(tmp_path):
    """-t reports, with the directive's line, the paths that would stop the agent at start:
    a spool directory or a socket directory that cannot be made, a socket path taken by
    another kind of file. Missing directories that can be made pass, and -t makes none."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    taken = tmp_path / "taken.sock"
    taken.write_text("a regular file where the socket goes")
    bad = tmp_path / "bad.conf"
    bad.write_text(f"# paths\nspool_dir {blocker}/spool;\nlisten {blocker}/agent.sock;\n"
                   f"error_log {blocker}/log/agent.log;\n")
    r = subprocess.run([agent_bin(), "-t", "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1, r.stderr
    assert f"{bad}:2: spool_dir {blocker}/spool: cannot be created: {blocker} is not a " \
           "directory" in r.stderr
    assert f"{bad}:3: listen: the socket's directory {blocker}: exists and is not a " \
           "directory" in r.stderr
    assert f"{bad}:4: error_log: the log's directory {blocker}/log: cannot be created" in r.stderr
    bad.write_text(f"listen {taken};\nspool_dir {tmp_path}/spool;\n")
    r = subprocess.run([agent_bin(), "-t", "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert f"{bad}:1: listen {taken}: exists and is not a socket" in r.stderr
    good = tmp_path / "good.conf"
    good.write_text(f"listen {tmp_path}/run/flashgate/agent.sock;\n"
                    f"spool_dir {tmp_path}/lib/flashgate/spool;\n")
    r = subprocess.run([agent_bin(), "-t", "-c", str(good)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "lib").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_config_check_reports_directories_the_user_cannot_write():
    """Run as an unprivileged user (setpriv), -t names the directory it cannot write."""
    with tempfile.TemporaryDirectory(prefix="fg-agent-perm-") as d:
        os.chmod(d, 0o755)  # (pytest's tmp_path is 0700) the agent's user may look, not write
        check_as_nobody(pathlib.Path(d))


def check_as_nobody(tmp_path):
    (tmp_path / "owned-by-root").mkdir(mode=0o755)
    conf = tmp_path / "agent.conf"
    conf.write_text(f"spool_dir {tmp_path}/owned-by-root/spool;\n"
                    f"listen {tmp_path}/owned-by-root/agent.sock;\n")
    os.chmod(conf, 0o644)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        agent_bin(), "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1, r.stderr
    assert f"{conf}:1: spool_dir {tmp_path}/owned-by-root/spool: cannot be created: " \
           f"{tmp_path}/owned-by-root is not writable by uid 65534" in r.stderr
    assert f"{conf}:2: listen: the socket's directory {tmp_path}/owned-by-root: not " \
           "writable by uid 65534" in r.stderr


def test_start_makes_the_spool_and_socket_directories(app, tmp_path):
    """From a source install nothing made /var/lib/flashgate or /run/flashgate: the agent
    makes the directories the man page promises, parents included, mode 0750."""
    spool = tmp_path / "var" / "lib" / "flashgate" / "spool"
    sock = tmp_path / "run" / "flashgate" / "agent.sock"
    ag = Agent(tmp_path, app.port, f"spool_dir {spool};\nlisten {sock};\nreplay_rate 0;")
    ag.sock, ag.spool = str(sock), str(spool)
    ag.start()
    try:
        for d in (spool, spool.parent, spool.parent.parent, sock.parent, sock.parent.parent):
            assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o750, d
        c = ag.client()
        c.send(record_frame(1, "made-dirs", body=b"x"))
        assert c.answers(1) == {1: DURABLE}
        wait_for(lambda: app.distinct() == {"made-dirs"}, 10, "the replay")
    finally:
        assert ag.stop() == 0
        ag.logf.close()


@pytest.mark.parametrize("batch", [64, 1])
def test_group_commit_throughput(agent, batch):
    """Records/s through the socket to DURABLE, 1 KiB bodies, no replay (app down)."""
    n = 20000 if batch > 1 else 2000
    ag = agent(free_port(), f"commit_batch {batch};\nreplay_rate 1;")
    c = ag.client()
    data = burst(n, "tp")
    t0 = time.monotonic()
    c.send_async(data)
    got = c.answers(n, timeout=60)
    dt = time.monotonic() - t0
    assert set(got.values()) == {DURABLE}
    st = ag.status()["spool"]
    print(f"\ncommit_batch {batch}: {n} records in {dt:.2f}s = {n / dt:.0f} records/s, "
          f"{st['commits']} commits, {st['fsyncs']} fsyncs, {n / st['commits']:.1f} records/commit")
    if batch > 1:
        assert st["commits"] < n / 8
