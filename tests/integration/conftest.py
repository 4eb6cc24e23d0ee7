"""Fixtures: a test origin, flashgate processes with generated configs, raw clients.

Everything runs on 127.0.0.1 with free ports; every wait is bounded.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def flashgate_bin():
    cand = [os.environ.get("FLASHGATE_BIN", ""),
            os.path.join(os.getcwd(), "flashgate"),
            os.path.join(HERE, "..", "..", "build", "flashgate")]
    for c in cand:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    pytest.fail("flashgate binary not found: set FLASHGATE_BIN")


_ISSUED = set()


def free_port():
    """A port nobody listens on, and not one handed out before in this run: the kernel may
    give the same free port to two successive binds (a test's proxy and admin listener)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ISSUED:
            _ISSUED.add(port)
            return port
    raise RuntimeError("no fresh free port")


def wait_port(port, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} did not open")


class Origin:
    def __init__(self, tls=None):
        """tls: (certificate, key) to serve HTTPS instead (upstream TLS tests)."""
        self.port = free_port()
        self.tls = tls is not None
        args = [sys.executable, os.path.join(HERE, "origin.py"), str(self.port)]
        if tls is not None:
            args += ["--tls", tls[0], tls[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def get(self, path):
        if self.tls:  # the test's own control requests: no certificate check needed
            import ssl
            ctx = ssl._create_unverified_context()
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}{path}", timeout=5,
                                        context=ctx) as r:
                return r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.read()

    def stats(self):
        return json.loads(self.get("/__stats"))

    def reset(self):
        self.get("/__reset")

    def stop(self):
        self.proc.kill()
        self.proc.wait(5)


class Flashgate:
    def __init__(self, tmp, origin_ports, server_extra="", upstream_extra="", main_extra="",
                 routes=None, admin_extra=""):
        self.tmp = tmp
        self.port = free_port()
        self.admin = free_port()
        self.conf = os.path.join(tmp, "flashgate.conf")
        self.log = os.path.join(tmp, "error.log")
        self.access = os.path.join(tmp, "access.log")
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;" for p in origin_ports)
        routes = routes or "    route / { upstream app; }"
        self.text = f"""workers 1;
{main_extra}
admin {{ listen 127.0.0.1:{self.admin}; {admin_extra} }}
upstream app {{
{servers}
{upstream_extra}
}}
server {{
    listen 127.0.0.1:{self.port};
{server_extra}
    route /flashgate/healthz {{ health on; }}
{routes}
}}
"""
        with open(self.conf, "w") as f:
            f.write(self.text)
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen([flashgate_bin(), "-c", self.conf], stdout=self.errf,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)
        wait_port(self.admin)

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats", timeout=5) as r:
            return json.loads(r.read())

    def errors(self):
        self.errf.flush()
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.errf.close()


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


@pytest.fixture
def flashgate(tmp_path, origin):
    made = []

    def make(**kw):
        ports = kw.pop("origin_ports", [origin.port])
        fg = Flashgate(str(tmp_path), ports, **kw)
        made.append(fg)
        return fg

    yield make
    for fg in made:
        fg.stop()


# ---- a raw HTTP/1.1 client -----------------------------------------------------------


class Conn:
    """One TCP connection; send raw bytes, read whole responses, see closes."""

    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self, head=False):
        """Read one response: (status, headers dict lower-case -> list, body bytes)."""
        while True:
            status_line = self._line().decode("latin-1")
            status = int(status_line.split(" ")[1])
            headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers.setdefault(k.strip().lower(), []).append(v.strip())
            if status >= 200 or status == 101:
                break
        body = b""
        if head or status in (204, 304):
            return status, headers, body
        if "chunked" in ",".join(headers.get("transfer-encoding", [])):
            while True:
                size = int(self._line().split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif "content-length" in headers:
            n = int(headers["content-length"][0])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout with nothing more sent."""
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(1)
            return d == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


@pytest.fixture
def conn():
    opened = []

    def make(port, timeout=5.0):
        c = Conn(port, timeout)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def get(port, path, headers=""):
    c = Conn(port)
    c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n")
    r = c.response()
    c.close()
    return r


# ---- flashgate-agent -----------------------------------------------------------------


def agent_bin():
    cand = [os.environ.get("FLASHGATE_AGENT_BIN", "")]
    fg = os.environ.get("FLASHGATE_BIN", "")
    if fg:
        cand.append(os.path.join(os.path.dirname(os.path.abspath(fg)), "flashgate-agent"))
    cand.append(os.path.join(os.getcwd(), "flashgate-agent"))
    for c in cand:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    pytest.fail("flashgate-agent not found: set FLASHGATE_AGENT_BIN or FLASHGATE_BIN")


def wait_for(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


# ---- the protocol (see docs/agent-protocol.md) ----------------------------------------


class AgentProcess:
    """A flashgate-agent process with a generated config (local sink to app_port)."""

    def __init__(self, tmp, app_port, extra=""):
        self.tmp = str(tmp)
        self.sock = os.path.join(self.tmp, "agent.sock")
        self.spool = os.path.join(self.tmp, "spool")
        self.status_port = free_port()
        self.conf = os.path.join(self.tmp, "agent.conf")
        self.log = os.path.join(self.tmp, "agent.log")
        with open(self.conf, "w") as f:
            f.write(f"""# generated by the integration tests
listen {self.sock};
spool_dir {self.spool};
sink local;
app 127.0.0.1:{app_port};
status_listen 127.0.0.1:{self.status_port};
checkpoint_interval 100ms;
replay_backoff 50ms;
replay_backoff_max 300ms;
replay_timeout 2s;
{extra}
""")
        self.proc = None
        self.logf = open(self.log, "a")

    def start(self):
        self.proc = subprocess.Popen([agent_bin(), "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited: " + self.errors())
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                s.close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "the agent socket")
        wait_port(self.status_port)
        return self


    def status(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/status", timeout=5) as r:
            return json.loads(r.read())

    def errors(self):
        self.logf.flush()
        with open(self.log) as f:
            return f.read()

    def kill(self):
        self.proc.kill()
        self.proc.wait(5)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return self.proc.returncode if self.proc else None


# ---- fauxqs, the SQS emulator (scripts/deps.sh installs it) ----------------------------


def fauxqs_bin():
    default = os.path.join(HERE, "..", "..", ".deps", "fauxqs", "node_modules", ".bin", "fauxqs")
    path = os.environ.get("FG_FAUXQS", default)
    return path if os.access(path, os.X_OK) else None


class Fauxqs:
    """A fauxqs process on 127.0.0.1 and a small SQS JSON-protocol client for the tests.
    stop() and start() keep the port, so an agent sees the queue go away and come back."""

    def __init__(self, tmp):
        self.port = free_port()
        self.log = open(os.path.join(str(tmp), "fauxqs.log"), "a")
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ, FAUXQS_PORT=str(self.port), FAUXQS_LOGGER="false")
        self.proc = subprocess.Popen([fauxqs_bin()], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=20)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def call(self, target, body):
        """One SQS JSON call: (status, decoded answer)."""
        req = urllib.request.Request(self.endpoint + "/", data=json.dumps(body).encode(),
                                     method="POST", headers={
                                         "X-Amz-Target": "AmazonSQS." + target,
                                         "Content-Type": "application/x-amz-json-1.0"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def create_queue(self, name, **attrs):
        st, ans = self.call("CreateQueue", {"QueueName": name,
                                            "Attributes": {k: str(v) for k, v in attrs.items()}})
        assert st == 200, ans
        return ans["QueueUrl"]

    def queues(self):
        with urllib.request.urlopen(self.endpoint + "/_fauxqs/queues", timeout=5) as r:
            return {q["url"]: q for q in json.loads(r.read())}

    def count(self, url):
        """Messages in the queue, visible or not."""
        q = self.queues()[url]
        return q["approximateMessageCount"] + q["approximateInflightCount"]

    def receive_all(self, url, expect=None, timeout=20.0):
        """Every message now in the queue (hidden for 10 minutes once received)."""
        got = []
        end = time.time() + timeout
        while time.time() < end:
            st, ans = self.call("ReceiveMessage", {
                "QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 600,
                "WaitTimeSeconds": 0, "MessageAttributeNames": ["All"],
                "MessageSystemAttributeNames": ["All"]})
            assert st == 200, ans
            msgs = ans.get("Messages", [])
            got.extend(msgs)
            if not msgs and (expect is None or len(got) >= expect):
                break
            if not msgs:
                time.sleep(0.1)
        return got


@pytest.fixture
def fauxqs(tmp_path):
    if fauxqs_bin() is None:
        if os.environ.get("FG_FAUXQS"):
            # scripts/test.sh (CI) sets it after installing fauxqs: missing there is a failure.
            pytest.fail(f"FG_FAUXQS={os.environ['FG_FAUXQS']} is not an executable")
        pytest.skip("fauxqs not installed (scripts/deps.sh) and FG_FAUXQS not set")
    f = Fauxqs(tmp_path)
    yield f
    f.stop()
    f.log.close()
