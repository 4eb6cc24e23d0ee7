"""A real browser for the dashboard's tests: Debian's chromium, headless, driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ended by NUL on fds 3
and 4), so the test needs nothing beyond the standard library.

--dump-dom cannot be used: it waits for the page's network to go quiet, and the page
follows an event stream that never ends.
"""
import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time


def chromium_path():
    return shutil.which("chromium")


class Browser:
    """One headless chromium with one page; every wait is bounded."""

    def __init__(self, width, height, scale=1, mobile=False):
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is missing (scripts/deps.sh installs it)")
        self.profile = tempfile.mkdtemp(prefix="fg-chromium-")
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "about:blank"]
        # fd 3 is what chromium reads (our stdin pipe), fd 4 what it writes (our stdout).
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'] + args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 0
        self.buf = b""
        self.events = []
        self.exceptions = []  # Runtime.exceptionThrown: uncaught errors in the page
        self.console_errors = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Runtime.enable", "Page.enable", "Log.enable"):
            self.call(m, session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale,
                   "mobile": mobile}, session=True)

    # ---- the protocol ----

    def _send(self, msg):
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()

    def _read_one(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed its DevTools pipe")
                self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        msg = json.loads(raw)
        if "method" in msg:
            self._event(msg)
        return msg

    def _event(self, msg):
        m, p = msg["method"], msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.exceptions.append(d.get("exception", {}).get("description") or d.get("text"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.console_errors.append(" ".join(str(a.get("value", a.get("description")))
                                                for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.console_errors.append(p["entry"].get("text", ""))
        self.events.append(msg)

    def call(self, method, params=None, session=False, timeout=15.0):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            r = self._read_one(deadline)
            if r.get("id") == self.next_id:
                if "error" in r:
                    raise RuntimeError(f"{method}: {r['error']}")
                return r.get("result", {})

    def pump(self, seconds):
        """Let the page run, collecting its events, for this long."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._read_one(deadline)
        except TimeoutError:
            pass

    # ---- what the tests use ----

    def open(self, url):
        self.call("Page.navigate", {"url": url}, session=True)

    def eval(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      session=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def dom(self):
        return self.eval("document.documentElement.outerHTML")

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            h = self.eval("Math.ceil(document.documentElement.scrollHeight)")
            w = self.eval("Math.ceil(document.documentElement.clientWidth)")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params, session=True, timeout=30)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self._send({"id": 0, "method": "Browser.close"})
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)
