#!/usr/bin/python3
"""test_notify.py — the Type=notify handshake flashgate.service relies on, with the real
daemon and a datagram socket standing in for systemd:

- READY=1 arrives, from the main PID (NotifyAccess=main), and only once the traffic port
  accepts connections (systemd reports the unit started at that moment);
- SIGHUP (what ExecReload sends) gives RELOADING=1 then READY=1;
- SIGHUP with a broken config still ends in READY=1 (the old config keeps running, so
  systemd must not be left in "reloading");
- SIGTERM (KillSignal) gives STOPPING=1 at once, not after shutdown_delay, and the
  process exits by itself within shutdown_delay + drain_timeout.

Run by `make check` from the build tree; FLASHGATE=/path overrides ./flashgate.
"""
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("FLASHGATE", "./flashgate")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(port, upstream_port):
    return f"""
workers 2;
error_log stderr notice;
shutdown_delay 1s;
drain_timeout 2s;
admin off;
upstream app {{ server 127.0.0.1:{upstream_port}; }}
server {{
    listen 127.0.0.1:{port};
    route / {{ upstream app; }}
}}
"""


class Notify:
    """A bound AF_UNIX datagram socket that records sender credentials, like systemd's."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)

    def recv(self, timeout):
        """(message, sender pid) or (None, None) after timeout seconds."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return None, None
        msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(data[0:4], sys.byteorder)
        return msg.decode(), pid

    def expect(self, want, pid, timeout=5.0):
        msg, sender = self.recv(timeout)
        assert msg is not None, f"no notification within {timeout}s (expected {want!r})"
        assert want in msg.split("\n"), f"expected {want!r}, got {msg!r}"
        assert sender == pid, f"{want} came from pid {sender}, not the main pid {pid}"
        return msg


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main():
    if not os.access(BIN, os.X_OK):
        print(f"FAIL: flashgate binary not found at {BIN} (build it, or set FLASHGATE=)")
        return 1
    with tempfile.TemporaryDirectory(prefix="fg-notify-") as tmp:
        port, upstream_port = free_port(), free_port()
        conf = os.path.join(tmp, "flashgate.conf")
        with open(conf, "w") as f:
            f.write(config(port, upstream_port))
        notify = Notify(os.path.join(tmp, "notify"))
        log = open(os.path.join(tmp, "stderr"), "w+")
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(tmp, "notify"))
        proc = subprocess.Popen([BIN, "-c", conf], env=env, stdout=log, stderr=log)
        try:
            # Ready means listening: nothing may be refused after READY=1.
            notify.expect("READY=1", proc.pid)
            assert port_accepts(port), "READY=1 sent but the traffic port refuses connections"
            print("ok: READY=1 from the main pid, traffic port listening")

            os.kill(proc.pid, signal.SIGHUP)
            notify.expect("RELOADING=1", proc.pid)
            notify.expect("READY=1", proc.pid)
            print("ok: SIGHUP -> RELOADING=1, READY=1")

            with open(conf, "a") as f:
                f.write("this is not a directive\n")
            os.kill(proc.pid, signal.SIGHUP)
            notify.expect("RELOADING=1", proc.pid)
            notify.expect("READY=1", proc.pid)
            assert proc.poll() is None, "a broken config on reload stopped the daemon"
            assert port_accepts(port), "after a refused reload the traffic port is gone"
            print("ok: refused reload -> READY=1, still serving")

            sent = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)
            notify.expect("STOPPING=1", proc.pid, timeout=0.8)
            print(f"ok: STOPPING=1 {time.monotonic() - sent:.2f}s after SIGTERM")
            # shutdown_delay 1s + drain_timeout 2s, plus scheduling margin.
            rc = proc.wait(timeout=6)
            took = time.monotonic() - sent
            assert rc == 0, f"exit status {rc} after a drain"
            assert took >= 0.9, f"exited {took:.2f}s after SIGTERM, before shutdown_delay"
            print(f"ok: exited 0 {took:.2f}s after SIGTERM")
        except BaseException:
            log.seek(0)
            sys.stderr.write("--- flashgate stderr ---\n" + log.read())
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
