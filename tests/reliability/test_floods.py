"""Slow and idle client floods: hundreds of connections that drip a request head a byte
at a time, and hundreds that connect and send nothing, while normal traffic flows.

docs/keepalive.md: a request head has a deadline from its first byte (header_timeout),
however often bytes arrive; a connection that sends nothing is closed after
keepalive_timeout. Both must hold under the flood, and normal traffic must stay sane: its
p99 is compared with a baseline taken in the same run, with a generous factor (no tight
timing assertion on a shared machine).
"""
import selectors
import socket
import threading
import time

from conftest import Conn, percentile, raise_fd_limit

SLOW, IDLE = 400, 400
HEADER_TIMEOUT, KEEPALIVE_TIMEOUT = 2.0, 3.0
MARGIN = 2.5  # seconds: a loaded machine (or a sanitizer build) is slow to notice


def latencies(port, n, seconds=None):
    """n requests on one keep-alive connection (or as many as fit in seconds, 2 ms apart)."""
    out = []
    c = Conn(port, 10)
    end = time.monotonic() + (seconds or 1e9)
    try:
        for i in range(n):
            if seconds is not None:
                if time.monotonic() > end:
                    break
                time.sleep(0.002)
            t0 = time.monotonic()
            c.send("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.response()[0] == 200
            out.append(time.monotonic() - t0)
    finally:
        c.close()
    return out


class Flood:
    """Drives the slow and idle connections from one thread; records when each closes."""

    def __init__(self, port):
        self.sel = selectors.DefaultSelector()  # epoll: more than FD_SETSIZE sockets
        self.conns = []  # [kind, socket, opened, closed_at, bytes sent]
        for kind, n in (("slow", SLOW), ("idle", IDLE)):
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setblocking(False)
                c = [kind, s, time.monotonic(), None, 0]
                self.conns.append(c)
                self.sel.register(s, selectors.EVENT_READ, c)
        self.head = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Drip: " + b"y" * 4000
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def closed(self, c):
        if c[3] is None:
            c[3] = time.monotonic()
            self.sel.unregister(c[1])
            c[1].close()

    def run(self):
        while not self.stop.is_set():
            for c in self.conns:
                if c[0] == "slow" and c[3] is None and c[4] < len(self.head):
                    try:
                        c[1].send(self.head[c[4]:c[4] + 1])
                        c[4] += 1
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self.closed(c)
            for key, _ in self.sel.select(timeout=0.2):
                c = key.data
                try:
                    c[1].recv(65536)  # a 408 or the close: either way, cut
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                self.closed(c)
            if all(c[3] is not None for c in self.conns):
                return

    def finish(self, timeout):
        self.thread.join(timeout)
        self.stop.set()
        self.thread.join(5)
        return [(c[0], c[3] - c[2] if c[3] is not None else None) for c in self.conns]


def test_slow_and_idle_floods_are_cut_on_time_and_traffic_stays_sane(flashgate):
    raise_fd_limit(4 * (SLOW + IDLE) + 512)
    fg = flashgate(server_extra=f"    header_timeout {int(HEADER_TIMEOUT * 1000)}ms;\n"
                                f"    keepalive_timeout {int(KEEPALIVE_TIMEOUT * 1000)}ms;")
    latencies(fg.port, 50)  # warm-up
    base = latencies(fg.port, 300)
    flood = Flood(fg.port)
    during = latencies(fg.port, 100000, seconds=HEADER_TIMEOUT - 0.3)  # the whole flood
    alive = sum(1 for c in flood.conns if c[3] is None)
    lives = flood.finish(KEEPALIVE_TIMEOUT + MARGIN + 5)
    b99, d99 = percentile(base, 0.99), percentile(during, 0.99)
    slow = [t for k, t in lives if k == "slow"]
    idle = [t for k, t in lives if k == "idle"]
    st = fg.stats()["downstream"]
    print(f"\nfloods: {SLOW} slow + {IDLE} idle connections; normal traffic p99 "
          f"{b99 * 1000:.1f} ms before, {d99 * 1000:.1f} ms during ({len(during)} requests, {alive} flood "
          f"connections open when it ended); slow cut after {min(filter(None, slow), default=0):.2f}"
          f"-{max(filter(None, slow), default=0):.2f} s, idle after "
          f"{min(filter(None, idle), default=0):.2f}-{max(filter(None, idle), default=0):.2f} s; "
          f"timeouts {st['timeouts']}")
    assert len(during) > 100
    assert alive > (SLOW + IDLE) // 2, "the flood ended before the normal traffic was measured"
    assert None not in slow, "a dripping head outlived its deadline"
    assert None not in idle, "an idle connection outlived keepalive_timeout"
    # Each dripping head cut at its deadline from the first byte, not per read.
    assert min(slow) > HEADER_TIMEOUT - 0.3 and max(slow) < HEADER_TIMEOUT + MARGIN, slow
    assert min(idle) > KEEPALIVE_TIMEOUT - 0.3 and max(idle) < KEEPALIVE_TIMEOUT + MARGIN, idle
    assert st["timeouts"]["header"] >= SLOW
    assert st["timeouts"]["idle"] >= IDLE
    # Normal traffic stays sane: a generous factor over the same run's baseline.
    assert d99 < max(20 * b99, 0.5), (b99, d99)
