"""Real parts for the Redis tests: redis-server processes (plain or TLS, ACL users, cluster
nodes), a 3-master Redis Cluster made with redis-cli, certificates made with the openssl
CLI, and small servers that reproduce what AWS does around ElastiCache: a DNS server whose
answer a test can switch (failover), an IMDSv2 endpoint handing out role credentials, and a
TLS front that checks IAM tokens as ElastiCache documents them and cuts connections at a
maximum age (the 12-hour cut, shortened).

Everything listens on 127.0.0.x; every wait is bounded; every process and thread is
stopped by its owner.
"""
import datetime
import hashlib
import hmac
import http.server
import json
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
OPENSSL = shutil.which("openssl")


def need_redis():
    if not os.access(REDIS_SERVER, os.X_OK) or not os.access(REDIS_CLI, os.X_OK):
        pytest.fail("redis-server and redis-cli are needed (scripts/deps.sh installs them)")
    if OPENSSL is None:
        pytest.fail("the openssl CLI is needed")


# ---- certificates -----------------------------------------------------------------------


def _openssl(*args):
    subprocess.run([OPENSSL, *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def make_ca(d, name):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", pem, "-days", "30", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")
    return pem, key


def make_leaf(d, name, ca, san, days="30"):
    key, csr, pem = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + san + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             key, "-out", csr, "-subj", "/CN=" + name)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out",
             pem, "-days", days, "-extfile", ext)
    return pem, key


def make_pki(d):
    """A CA, a server certificate for cache.fleet.test and the loopback addresses, one for
    another name, and a CA nobody trusts."""
    ca = make_ca(d, "fleetca")
    other = make_ca(d, "otherca")
    return {
        "ca": ca[0],
        "other_ca": other[0],
        "server": make_leaf(d, "cache.fleet.test", ca,
                            "DNS:cache.fleet.test,DNS:localhost,IP:127.0.0.1,IP:127.0.0.2"),
        "wrong_name": make_leaf(d, "elsewhere.test", ca, "DNS:elsewhere.test"),
    }


# ---- a small RESP client for the tests' own checks ----------------------------------------


class Resp:
    """One blocking connection, plain or TLS (no certificate check: the test's side)."""

    def __init__(self, port, host="127.0.0.1", tls=False, password=None, user=None, timeout=5.0):
        s = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl._create_unverified_context()
            s = ctx.wrap_socket(s, server_hostname="cache.fleet.test")
        self.s = s
        self.buf = b""
        if password is not None:
            r = self.cmd("AUTH", *([user] if user else []), password)
            assert r == "OK", r

    def close(self):
        self.s.close()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ValueError(f"bad RESP: {line!r}")

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)

    def cmd(self, *args):
        self.send(*args)
        return self._reply()


class RespError(str):
    pass


# ---- redis-server -------------------------------------------------------------------------


class RedisServer:
    """One redis-server. tls: the pki dict (TLS port only, no client certificates).
    users: ACL lines ("app on >pw ~* &* +@all"). cluster: a cluster node."""

    def __init__(self, tmp, name, port=None, bind="127.0.0.1", tls=None, password=None,
                 users=(), cluster=False, extra=()):
        need_redis()
        self.dir = os.path.join(str(tmp), name)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.port = port or free_port()
        self.bind = bind
        self.tls = tls
        self.password = password
        self.args = [REDIS_SERVER, "--bind", bind, "--save", "", "--appendonly", "no",
                     "--dir", self.dir, "--daemonize", "no", "--loglevel", "notice",
                     "--logfile", os.path.join(self.dir, "redis.log")]
        if tls:
            self.args += ["--port", "0", "--tls-port", str(self.port),
                          "--tls-cert-file", tls["server"][0], "--tls-key-file", tls["server"][1],
                          "--tls-ca-cert-file", tls["ca"], "--tls-auth-clients", "no"]
            if cluster:
                self.args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
        else:
            self.args += ["--port", str(self.port)]
        if password:
            self.args += ["--requirepass", password, "--masterauth", password]
        for u in users:
            self.args += ["--user"] + u.split()
        if cluster:
            self.args += ["--cluster-enabled", "yes", "--cluster-config-file",
                          os.path.join(self.dir, "nodes.conf"), "--cluster-node-timeout", "3000",
                          "--cluster-port", str(free_port()),
                          "--cluster-require-full-coverage", "no"]
        self.args += list(extra)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        end = time.time() + 10
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server {self.name} exited: " + self.log())
            try:
                c = self.conn()
                ok = c.cmd("PING")
                c.close()
                if ok == "PONG" or isinstance(ok, RespError):
                    return
            except (OSError, EOFError, ssl.SSLError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"redis-server {self.name} did not start")

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def conn(self, **kw):
        kw.setdefault("password", self.password)
        return Resp(self.port, host=self.bind, tls=bool(self.tls), **kw)

    def cmd(self, *args):
        c = self.conn()
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    stop = kill


def cli_tls_args(tls):
    return ["--tls", "--cacert", tls["ca"]] if tls else []


class RedisCluster:
    """Three masters (and optionally a replica of the first), made with redis-cli."""

    def __init__(self, tmp, tls=None, password=None, replica=False):
        self.tls = tls
        self.password = password
        self.nodes = [RedisServer(tmp, f"node{i}", tls=tls, password=password, cluster=True)
                      for i in range(3)]
        args = [REDIS_CLI, "--cluster", "create"] + [f"127.0.0.1:{n.port}" for n in self.nodes]
        args += ["--cluster-yes"] + cli_tls_args(tls)
        if password:
            args += ["-a", password, "--no-auth-warning"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        self.replica = None
        if replica:
            self.replica = RedisServer(tmp, "replica0", tls=tls, password=password, cluster=True)
            args = [REDIS_CLI, "--cluster", "add-node", f"127.0.0.1:{self.replica.port}",
                    f"127.0.0.1:{self.nodes[0].port}", "--cluster-slave",
                    "--cluster-master-id", self.node_id(self.nodes[0])] + cli_tls_args(tls)
            if password:
                args += ["-a", password, "--no-auth-warning"]
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        self.wait_ok()

    def all(self):
        return self.nodes + ([self.replica] if self.replica else [])

    def node_id(self, n):
        return n.cmd("CLUSTER", "MYID").decode()

    def wait_ok(self, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            try:
                alive = [n for n in self.all() if n.proc.poll() is None]
                if all(b"cluster_state:ok" in n.cmd("CLUSTER", "INFO") for n in alive) and \
                        all(self._synced(n) for n in alive):
                    return
            except (OSError, EOFError):
                pass
            time.sleep(0.1)
        raise TimeoutError("the cluster did not become ok")

    @staticmethod
    def _synced(n):
        """A replica (whichever node is one now) has its link to its master up."""
        info = n.cmd("INFO", "replication")
        return b"role:slave" not in info or b"master_link_status:up" in info

    def owner(self, slot):
        """The master node serving slot now."""
        for n in self.all():
            if n.proc.poll() is not None:
                continue
            for entry in n.cmd("CLUSTER", "SLOTS"):
                if entry[0] <= slot <= entry[1]:
                    port = entry[2][1]
                    return next(x for x in self.all() if x.port == port)
        raise LookupError(slot)

    def stop(self):
        for n in self.all():
            n.kill()


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def key_slot(key):
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384


# ---- DNS ----------------------------------------------------------------------------------


class DnsServer:
    """A tiny authoritative DNS server on UDP 127.0.0.1: A records from self.records
    (name -> list of IPv4 addresses, switched by the test), TTL 1 s. Names it does not know
    get NXDOMAIN; AAAA questions for known names get an empty answer. It answers the
    question as asked (evdns randomises the case of names)."""

    def __init__(self):
        self.records = {}
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self._answer(data)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            if reply is not None:
                self.sock.sendto(reply, peer)

    def _answer(self, data):
        qid, flags, qd = struct.unpack(">HHH", data[:6])
        if qd != 1:
            return None
        i, labels = 12, []
        while data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii"))
            i += 1 + n
        qtype, qclass = struct.unpack(">HH", data[i + 1:i + 5])
        question = data[12:i + 5]
        name = ".".join(labels).lower()
        self.queries += 1
        addrs = self.records.get(name)
        rd = flags & 0x0100
        if addrs is None:
            return struct.pack(">HHHHHH", qid, 0x8403 | rd, 1, 0, 0, 0) + question  # NXDOMAIN
        answers = b""
        count = 0
        if qtype == 1:
            for a in addrs:
                answers += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(a)
                count += 1
        return struct.pack(">HHHHHH", qid, 0x8400 | rd, 1, count, 0, 0) + question + answers

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


# ---- IMDSv2 -------------------------------------------------------------------------------


class Imds:
    """Instance metadata: a session token on PUT, then the role and its credentials."""

    KEY, SECRET, TOKEN = "AKIDFLEETTEST", "fleet/secret+key/EXAMPLE", "session-token-EXAMPLE=="

    def __init__(self, region="eu-west-1"):
        self.region = region
        self.requests = 0
        imds = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body):
                b = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

            def do_PUT(self):
                imds.requests += 1
                if self.path == "/latest/api/token":
                    self._send(200, "imds-session")
                else:
                    self._send(404, "")

            def do_GET(self):
                imds.requests += 1
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-session":
                    self._send(401, "")
                elif self.path == "/latest/meta-data/iam/security-credentials/":
                    self._send(200, "fleet-role")
                elif self.path == "/latest/meta-data/iam/security-credentials/fleet-role":
                    exp = (datetime.datetime.now(datetime.timezone.utc) +
                           datetime.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    self._send(200, json.dumps({
                        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": imds.KEY,
                        "SecretAccessKey": imds.SECRET, "Token": imds.TOKEN,
                        "Expiration": exp}))
                elif self.path == "/latest/meta-data/placement/region":
                    self._send(200, imds.region)
                else:
                    self._send(404, "")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---- an ElastiCache-like front: TLS, IAM tokens, the connection age cut -------------------


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(s):
    return urllib.parse.quote(s, safe="-_.~")


def check_iam_token(token, user, cache, region, secret, session_token, serverless, now=None):
    """Check an ElastiCache IAM token as AWS documents it, independently of flashgate's
    code: host/?query with the presigned SigV4 fields, scope .../elasticache/aws4_request,
    at most 900 s, the session token included and signed. Returns None or what is wrong."""
    if token.startswith("http"):
        return "the token must not carry a scheme"
    host, sep, query = token.partition("/?")
    if not sep or host != cache:
        return f"host part {host!r} is not the cache name"
    pairs = [p.split("=", 1) for p in query.split("&")]
    params = {k: urllib.parse.unquote(v) for k, v in pairs}
    want = {"Action": "connect", "User": user, "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-SignedHeaders": "host", "X-Amz-Security-Token": session_token}
    if serverless:
        want["ResourceType"] = "ServerlessCache"
    elif "ResourceType" in params:
        return "ResourceType on a node-based cache"
    for k, v in want.items():
        if params.get(k) != v:
            return f"{k} is {params.get(k)!r}, not {v!r}"
    if [k for k, _ in pairs][:2] != ["Action", "User"]:
        return "Action and User must come first"
    expires = int(params["X-Amz-Expires"])
    if not 0 < expires <= 900:
        return f"X-Amz-Expires {expires}"
    date = params["X-Amz-Date"]
    signed_at = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    now = time.time() if now is None else now
    if now > signed_at + expires or now < signed_at - 300:
        return "expired or from the future"
    akid, day, reg, service, term = params["X-Amz-Credential"].split("/")
    if (day, reg, service, term) != (date[:8], region, "elasticache", "aws4_request"):
        return f"credential scope {params['X-Amz-Credential']}"
    canon_q = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in
                       sorted(params.items()) if k != "X-Amz-Signature")
    creq = "\n".join(["GET", "/", canon_q, f"host:{host}", "", "host",
                      hashlib.sha256(b"").hexdigest()])
    scope = f"{day}/{region}/elasticache/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = _sign(("AWS4" + secret).encode(), day)
    k = _sign(_sign(_sign(k, region), "elasticache"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if sig != params["X-Amz-Signature"]:
        return "bad signature"
    return None


class ElastiCacheFront:
    """TLS on 127.0.0.1:port in front of a plain redis-server: the first command must be
    AUTH user <IAM token> (checked with check_iam_token), then bytes are relayed both ways
    until max_age seconds, when the connection is cut as ElastiCache cuts IAM connections
    after 12 hours."""

    def __init__(self, pki, backend_port, user, cache, region, serverless=False, max_age=None,
                 port=None):
        self.backend_port = backend_port
        self.user, self.cache, self.region = user, cache, region
        self.serverless = serverless
        self.max_age = max_age
        self.accepted = 0
        self.refused = []
        self.cut = 0
        self.tokens = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*pki["server"])
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port or 0))
        self.port = self.lsock.getsockname()[1]
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.stopped = threading.Event()
        self.threads = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, raw):
        born = time.time()
        try:
            raw.settimeout(5)
            s = self.ctx.wrap_socket(raw, server_side=True)
            r = Resp.__new__(Resp)
            r.s, r.buf = s, b""
            args = r._reply()
            if not isinstance(args, list) or len(args) != 3 or args[0].upper() != b"AUTH":
                s.sendall(b"-NOAUTH Authentication required.\r\n")
                self.refused.append("no AUTH")
                return
            user, token = args[1].decode(), args[2].decode()
            self.tokens.append(token)
            why = None if user == self.user else f"user {user}"
            why = why or check_iam_token(token, self.user, self.cache, self.region, Imds.SECRET,
                                         Imds.TOKEN, self.serverless)
            if why is not None:
                self.refused.append(why)
                s.sendall(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
                return
            self.accepted += 1
            s.sendall(b"+OK\r\n")
            b = socket.create_connection(("127.0.0.1", self.backend_port), timeout=5)
            try:
                self._relay(s, r.buf, b, born)
            finally:
                b.close()
        except (OSError, EOFError, ssl.SSLError, ValueError):
            pass
        finally:
            raw.close()

    def _relay(self, s, pending, b, born):
        if pending:
            b.sendall(pending)
        s.setblocking(False)
        b.setblocking(False)
        while not self.stopped.is_set():
            if self.max_age is not None and time.time() - born > self.max_age:
                self.cut += 1
                return
            ready, _, _ = select.select([s, b], [], [], 0.05)
            if s in ready or s.pending():
                try:
                    d = s.recv(65536)
                except ssl.SSLWantReadError:
                    d = None
                if d == b"":
                    return
                if d:
                    b.setblocking(True)
                    b.sendall(d)
                    b.setblocking(False)
            if b in ready:
                d = b.recv(65536)
                if not d:
                    return
                s.setblocking(True)
                s.sendall(d)
                s.setblocking(False)

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        self.lsock.close()
        for t in self.threads:
            t.join(5)


class Silent:
    """Accepts TCP connections and never says a word (a stalled TLS handshake)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.conns = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                s, _ = self.lsock.accept()
                self.conns.append(s)
            except socket.timeout:
                continue
            except OSError:
                return

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        for s in self.conns:
            s.close()
        self.lsock.close()
