"""flashgate-agent under the conditions of a real sale (issue 19's reliability suite, the
agent's part): its spool on a disk that fills up (seen by the agent's protocol and by a
client of flashgate), and its memory over 100,000 records.

Real processes over real sockets: the agent, the test app of test_agent.py, a tmpfs of
2 MiB for the spool (mounted under the test's temporary directory and unmounted after;
CI runs as root, elsewhere the test is skipped with the reason). Every wait is bounded.
"""
import os
import subprocess
import time
import urllib.request

import pytest

from test_agent import DURABLE, ERROR, FULL, Agent, AgentClient, record_frame
from test_agent import app  # noqa: F401  (the fixture: a recording app)
from conftest import Flashgate, agent_bin, free_port, post, rss_kib, sanitized, wait_for

BODY = b"o" * 4096


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: the spool's whole disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the spool needs root (CI runs the suite as root)")
    d = tmp_path / "small-disk"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0750", "tmpfs", str(d)],
                   check=True, timeout=10)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], timeout=10)


def free_bytes(path):
    v = os.statvfs(path)
    return v.f_bavail * v.f_frsize


def metric(ag, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{ag.status_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
    return None


class Sender:
    """Sends records on one connection and keeps what each was answered."""

    def __init__(self, ag, prefix):
        self.c = AgentClient(ag.sock)
        self.prefix = prefix
        self.next = 1
        self.answers = {}  # key -> status

    def send(self, n):
        first = self.next
        self.c.send(b"".join(record_frame(first + i, f"{self.prefix}-{first + i}", body=BODY)
                             for i in range(n)))
        got = self.c.answers(n)
        for rid, st in got.items():
            self.answers[f"{self.prefix}-{rid}"] = st
        self.next += n
        return [got[first + i] for i in range(n)]

    def keys(self, status):
        return {k for k, st in self.answers.items() if st == status}


@pytest.mark.parametrize("segment", ["64m", "256k"])
def test_full_spool_frees_itself_and_loses_no_durable_record(app, tmp_path, small_disk, segment):
    """The disk fills while the app is down: records are refused (the proxy falls back)
    and /status says the disk is why. Once the app is back every DURABLE record reaches
    it, the delivered segments are deleted although the disk is full (the checkpoint is
    written in place), and records are taken again. Space freed by someone else counts
    too. A restart replays nothing that was delivered."""
    spool = small_disk / "spool"
    app.status = 503  # the app is down: nothing drains
    conf = (f"spool_dir {spool};\nspool_segment_size {segment};\nreplay_rate 0;\n"
            "replay_concurrency 8;\nreplay_backoff 20ms;\nreplay_backoff_max 100ms;\n"
            "checkpoint_interval 100ms;")
    ag = Agent(tmp_path, app.port, conf).start()
    try:
        s = Sender(ag, "fill")
        for _ in range(60):  # 2 MiB of 4 KiB records: about 500 fit
            if set(s.send(25)) == {FULL}:
                break
        else:
            pytest.fail("the disk never filled")
        assert len(s.keys(DURABLE)) > 300
        st = ag.status()["spool"]
        assert st["disk_full"] is True, st
        assert st["refused_disk_full"] >= 1 and st["disk_full_events"] >= 1, st
        assert st["depth"] == len(s.keys(DURABLE)), st
        assert st["fs_free_bytes"] < 256 * 1024, st
        assert metric(ag, "flashgate_agent_spool_disk_full") == 1
        # Still full a while later: nothing is taken while there is no room.
        assert set(s.send(5)) == {FULL}

        app.status = 200  # the app is back: the spool drains and frees its disk
        durable = s.keys(DURABLE)
        wait_for(lambda: durable <= app.distinct(), 30, "every DURABLE record at the app")
        wait_for(lambda: ag.status()["spool"]["depth"] == 0, 10, "an empty spool")
        wait_for(lambda: free_bytes(small_disk) > 1536 * 1024, 10,
                 "the delivered segments deleted from the full disk")
        assert set(s.send(20)) == {DURABLE}
        assert ag.status()["spool"]["disk_full"] is False
        assert metric(ag, "flashgate_agent_spool_disk_full") == 0

        # Someone else fills the disk, then frees it.
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        answers = s.send(20)
        assert FULL in answers or ERROR in answers, answers
        assert ag.status()["spool"]["disk_full"] is True
        filler.unlink()
        assert set(s.send(20)) == {DURABLE}

        durable = s.keys(DURABLE)
        wait_for(lambda: durable <= app.distinct(), 20, "the later records at the app")
        wait_for(lambda: ag.status()["spool"]["depth"] == 0, 10, "an empty spool")
        time.sleep(0.3)  # a checkpoint after the last acknowledgment
    finally:
        assert ag.stop() == 0
    assert "final checkpoint failed" not in ag.errors()
    # Nothing delivered is replayed after a restart.
    seen = app.count()
    ag.start()
    try:
        time.sleep(1.0)
        assert app.count() == seen
        assert ag.status()["spool"]["depth"] == 0
    finally:
        assert ag.stop() == 0
        ag.logf.close()


def test_no_202_lost_through_flashgate_when_the_spool_disk_fills(app, tmp_path, small_disk):
    """The same full disk seen from the client's side: flashgate in front, an offload
    route with `fallback reject`, the app down. Every POST is answered 202 (durable in
    the spool) or 503 (the agent had no room: flashgate says so, nothing is half-taken);
    none is lost: every key answered 202 reaches the app once it is back. When the spool
    has drained, POSTs are answered 202 again."""
    spool = small_disk / "spool"
    app.status = 503
    ag = Agent(tmp_path, app.port, f"spool_dir {spool};\nspool_segment_size 256k;\n"
               "replay_rate 0;\nreplay_concurrency 8;\nreplay_backoff 20ms;\n"
               "replay_backoff_max 100ms;\ncheckpoint_interval 100ms;").start()
    routes = f"""    route /api/orders {{
        upstream app;
        methods POST;
        offload {{ agent unix:{ag.sock}; fallback reject; timeout 2s; }}
    }}
    route / {{ upstream app; }}"""
    fg = Flashgate(str(tmp_path), [app.port], routes=routes)
    answered = {}
    try:
        for i in range(1200):  # 2 MiB of 4 KiB records: about 500 fit
            answered[f"w-{i}"] = post(fg.port, f"w-{i}", BODY)
            if list(answered.values())[-5:] == [503] * 5:
                break
        else:
            pytest.fail("the disk never filled")
        accepted = {k for k, st in answered.items() if st == 202}
        assert set(answered.values()) == {202, 503}, set(answered.values())
        assert len(accepted) > 300
        assert ag.status()["spool"]["disk_full"] is True
        assert fg.stats()["offload"]["fallback_reject"] >= 5
        app.status = 200  # the app is back: every 202 reaches it, the disk frees itself
        wait_for(lambda: accepted <= app.distinct(), 30, "every 202 at the app")
        wait_for(lambda: ag.status()["spool"]["depth"] == 0, 10, "an empty spool")
        wait_for(lambda: post(fg.port, f"later-{time.monotonic()}", BODY) == 202, 10,
                 "POSTs answered 202 again once the spool has room")
        later = {f"after-{i}" for i in range(50)}
        assert {post(fg.port, k, BODY) for k in later} == {202}
        wait_for(lambda: later <= app.distinct(), 20, "the later writes at the app")
        print(f"\nfull spool through flashgate: {len(accepted)} answered 202 and delivered, "
              f"{len(answered) - len(accepted)} refused 503 while the disk was full")
    finally:
        fg.stop()
        assert ag.stop() == 0
        ag.logf.close()


def test_memory_stays_within_the_documented_bound_over_150k_records(tmp_path):
    """150,000 records with distinct 32-character keys (what flashgate generates) through
    the proxy<->agent protocol, replayed as they come to an app (flashgate answering
    `return 200`), the backlog kept under 3,000. flashgate-agent(8), MEMORY: the agent
    grows by at most the recent-key window (dedup_window x 40 bytes + dedup_window_bytes,
    the defaults here), 32 bytes per record waiting in the spool, and 2 MiB of buffers;
    and once the window is full it does not grow with the records it takes (it grew by
    about 125 bytes per record, still rising at 170,000)."""
    if sanitized(agent_bin()):
        pytest.skip("RSS under AddressSanitizer measures its shadow memory and quarantine")
    sink = Flashgate(str(tmp_path), [free_port()], routes='    route / { return 200 "ok"; }')
    ag = Agent(tmp_path, sink.port, "replay_rate 0;\nreplay_concurrency 16;").start()
    try:
        c = AgentClient(ag.sock)
        start = rss_kib(ag.proc.pid)
        samples, sent, deepest = {}, 0, 0
        while sent < 150000:
            c.send(b"".join(record_frame(sent + i + 1, "%032x" % (0x5a1e0000000 + sent + i),
                                         body=b"b" * 256) for i in range(1000)))
            assert set(c.answers(1000, timeout=60).values()) == {DURABLE}
            sent += 1000
            end = time.time() + 60
            while True:  # pace the sender to what the app takes
                depth = ag.status()["spool"]["depth"]
                deepest = max(deepest, depth)
                if depth < 3000:
                    break
                assert time.time() < end, "the replay stalled"
                time.sleep(0.01)
            if sent % 10000 == 0:
                samples[sent] = rss_kib(ag.proc.pid)
        st = ag.status()
        grown = (max(samples.values()) - start) * 1024
        window = 100000 * 40 + 4 * 1024 * 1024  # the defaults, as the man page counts them
        bound = window + 32 * deepest + 2 * 1024 * 1024
        print(f"\nagent RSS: {start} KiB at start, then "
              + ", ".join(f"{k // 1000}k: {v}" for k, v in samples.items())
              + f" KiB; bound {start + bound // 1024} KiB")
        assert grown <= bound, (grown, bound, samples)
        assert st["dedup"]["keys"] == 100000
        assert st["dedup"]["memory_bytes"] <= window
        # The window is full (its key ring too) from about 130k on: flat from there.
        assert samples[150000] - samples[130000] <= 384, samples
        wait_for(lambda: ag.status()["spool"]["depth"] == 0, 30, "the last replays")
    finally:
        assert ag.stop() == 0
        ag.logf.close()
        sink.stop()
