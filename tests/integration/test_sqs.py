"""The SQS side of flashgate-agent against fauxqs (an SQS emulator on 127.0.0.1): sink sqs
(SendMessageBatch, at least once across a SIGKILL, an SQS outage, FIFO ids), credentials
from a fake IMDSv2, drain mode (the queue replayed into a test app), /metrics.

Every wait is bounded; fauxqs accepts any SigV4 credentials, so the tests use "test".
"""
import base64
import json
import os
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import AgentProcess, Flashgate, agent_bin, free_port, wait_for
from test_metrics import parse_exposition
from test_offload import burst, post


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


class SqsAgent(AgentProcess):
    """flashgate-agent with sink sqs to a fauxqs queue (the app port is unused)."""

    def __init__(self, tmp, fq, queue_url, extra="", region="sqs_region us-east-1;"):
        super().__init__(tmp, 1, f"""sink sqs;
sqs_queue_url {queue_url};
sqs_endpoint {fq.endpoint};
{region}
sqs_timeout 2s;
sqs_backoff 50ms;
sqs_backoff_max 500ms;
{extra}
""")

    def sqs(self):
        return self.status()["sqs"]


def route(sock, headers="Content-Type"):
    return f"""    route /api/orders {{
        upstream app;
        methods POST;
        offload {{
            agent unix:{sock};
            headers {headers};
            timeout 2s;
        }}
    }}
    route / {{ upstream app; }}"""


@pytest.fixture
def stack(tmp_path, fauxqs):
    """stack(queue_name, agent_extra, headers) -> (flashgate, agent, queue url)."""
    made = []

    def make(name="orders", extra="", headers="Content-Type", **attrs):
        url = fauxqs.create_queue(name, **attrs)
        ag = SqsAgent(tmp_path, fauxqs, url, extra).start()
        fg = Flashgate(str(tmp_path), [free_port()], routes=route(ag.sock, headers))
        made.append((fg, ag))
        return fg, ag, url

    yield make
    for fg, ag in made:
        fg.stop()
        ag.stop()
        ag.logf.close()


def keys_of(msgs):
    return [m["MessageAttributes"]["fg-idempotency-key"]["StringValue"] for m in msgs]


def drained(ag, n):
    def check():
        s = ag.status()
        return s["sqs"]["sent"] >= n and s["spool"]["depth"] == 0
    return check


# ---- sink sqs ---------------------------------------------------------------------------


def test_burst_2000_each_key_once_in_the_queue(stack, fauxqs):
    fg, ag, url = stack()
    t0 = time.monotonic()
    res = burst(fg.port, 2000, 4)
    t_burst = time.monotonic() - t0
    assert len(res) == 2000 and {s for s, _ in res} == {202}
    acked = {k for _, k in res}
    assert len(acked) == 2000
    wait_for(drained(ag, 2000), 60, "2000 records sent to SQS")
    t_all = time.monotonic() - t0
    msgs = fauxqs.receive_all(url, expect=2000)
    keys = keys_of(msgs)
    dups = len(keys) - len(set(keys))
    print(f"\n2000 POSTs: burst {2000 / t_burst:.0f} req/s; all in SQS after {t_all:.2f}s "
          f"({2000 / t_all:.0f} records/s end to end); duplicates {dups}")
    assert dups == 0 and set(keys) == acked
    s = ag.sqs()
    assert s["sent"] == 2000 and s["failed"] == 0 and s["in_flight"] == 0
    # 10 entries per batch at most: at least 200 batches, and batching did happen.
    assert 200 <= s["batches"] < 2000
    m = msgs[0]
    attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
    assert attrs["fg-method"] == "POST" and attrs["fg-path"] == "/api/orders"
    assert attrs["fg-content-type"] == "application/json"
    assert json.loads(attrs["fg-headers"]) == [["Content-Type", "application/json"]]
    assert "fg-body-encoding" not in attrs and m["Body"] == "x" * 1024


def test_bodies_text_binary_and_empty(stack, fauxqs):
    fg, ag, url = stack()
    bodies = {"k-text": "h\u00e9llo \u2603 \"q\" \\ \n\t".encode(), "k-bin": b"\x00\x01\xff\xfe",
              "k-ctl": b"a\x01b", "k-empty": b""}
    for k, b in bodies.items():
        assert post(fg.port, body=b, headers={"Idempotency-Key": k})[0] == 202
    wait_for(drained(ag, 4), 20, "4 records sent")
    got = {keys_of([m])[0]: m for m in fauxqs.receive_all(url, expect=4)}
    enc = {k: m["MessageAttributes"].get("fg-body-encoding", {}).get("StringValue")
           for k, m in got.items()}
    assert enc == {"k-text": None, "k-bin": "base64", "k-ctl": "base64", "k-empty": "empty"}
    assert got["k-text"]["Body"].encode() == bodies["k-text"]
    assert base64.b64decode(got["k-bin"]["Body"]) == bodies["k-bin"]
    assert base64.b64decode(got["k-ctl"]["Body"]) == bodies["k-ctl"]


def test_entry_sqs_refuses_for_good_is_kept_in_rejected_jsonl(stack, fauxqs, tmp_path):
    # The queue takes messages up to 1 KiB: SQS answers the big one SenderFault.
    fg, ag, url = stack(name="small", MaximumMessageSize=1024)
    assert post(fg.port, body=b"small", headers={"Idempotency-Key": "k-small"})[0] == 202
    assert post(fg.port, body=b"y" * 2000, headers={"Idempotency-Key": "k-big"})[0] == 202
    wait_for(lambda: ag.sqs()["failed"] == 1 and ag.sqs()["sent"] == 1, 20,
             "one sent, one refused for good")
    assert keys_of(fauxqs.receive_all(url, expect=1)) == ["k-small"]
    # Answered 202, refused by SQS: on disk with its key, SQS's code and the whole entry.
    with open(os.path.join(str(tmp_path), "spool", "rejected.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 1
    rec = lines[0]
    assert rec["key"] == "k-big" and rec["code"] == "InvalidParameterValue"
    assert rec["entry"]["MessageBody"] == "y" * 2000
    attrs = rec["entry"]["MessageAttributes"]
    assert attrs["fg-idempotency-key"]["StringValue"] == "k-big"
    wait_for(lambda: ag.status()["spool"]["depth"] == 0, 10, "the spool acknowledged past both")


@pytest.mark.parametrize("trusted", [True, False])
def test_https_endpoint_verified_with_the_shared_tls_client(tmp_path, fauxqs, trusted):
    """SQS over HTTPS: flashgate's own TLS listener in front of fauxqs plays the endpoint.
    With the CA that signed it the records arrive; with another CA nothing is ever sent."""
    from test_tls import _ca, _leaf
    d = str(tmp_path)
    ca, other = _ca(d, "sqsca"), _ca(d, "otherca")
    cert = _leaf(d, "sqs.test", ca, "IP:127.0.0.1")
    tport = free_port()
    os.makedirs(d + "/front")
    front = Flashgate(d + "/front", [fauxqs.port], server_extra=(
        f"    listen 127.0.0.1:{tport} ssl;\n    certificate {cert[0]};\n"
        f"    certificate_key {cert[1]};"))
    url = fauxqs.create_queue("tls-orders")
    ag = AgentProcess(tmp_path, 1, f"""sink sqs;
sqs_queue_url {url};
sqs_endpoint https://127.0.0.1:{tport};
sqs_region us-east-1;
sqs_ca_file {(ca if trusted else other)[0]};
sqs_timeout 2s;
sqs_backoff 50ms;
sqs_backoff_max 300ms;
""").start()
    fg = Flashgate(d, [free_port()], routes=route(ag.sock))
    try:
        for i in range(5):
            assert post(fg.port, headers={"Idempotency-Key": f"tls-{i}"})[0] == 202
        if trusted:
            wait_for(drained(ag, 5), 20, "5 records sent over HTTPS")
            assert sorted(keys_of(fauxqs.receive_all(url, expect=5))) == \
                [f"tls-{i}" for i in range(5)]
            assert front.stats()["tls"]["server"]["handshakes"] >= 1
        else:
            wait_for(lambda: ag.status()["sqs"]["batch_errors"] >= 2, 20, "failed batches")
            s = ag.status()["sqs"]
            assert s["sent"] == 0 and ag.status()["spool"]["depth"] == 5
            assert fauxqs.count(url) == 0
            assert "verif" in ag.errors().lower()  # the log line says why
    finally:
        fg.stop()
        ag.stop()
        ag.logf.close()
        front.stop()


def test_agent_sigkill_mid_burst_loses_no_acknowledged_key(stack, fauxqs):
    fg, ag, url = stack()
    res, done = [], threading.Event()

    def client():
        res.extend(burst(fg.port, 1200, 3, prefix="kill", pause=0.002))
        done.set()
    th = threading.Thread(target=client)
    th.start()
    wait_for(lambda: ag.sqs()["sent"] >= 100 or done.is_set(), 20, "some records sent")
    ag.kill()
    time.sleep(0.3)
    ag.start()
    th.join(120)
    assert len(res) == 1200
    assert {s for s, _ in res} <= {200, 202, 502, 503}
    acked = {k for s, k in res if s == 202}
    assert acked
    wait_for(lambda: ag.status()["spool"]["depth"] == 0, 60, "the spool drained")
    keys = keys_of(fauxqs.receive_all(url, expect=len(acked)))
    missing = acked - set(keys)
    dups = len(keys) - len(set(keys))
    print(f"\nkill: {len(acked)} acknowledged, {len(set(keys))} distinct keys in the queue, "
          f"{dups} duplicates (allowed across the crash)")
    assert not missing, f"{len(missing)} acknowledged keys missing, e.g. {sorted(missing)[:3]}"


def test_sqs_down_spool_grows_then_drains_on_the_same_port(stack, fauxqs):
    fg, ag, url = stack()
    assert post(fg.port, headers={"Idempotency-Key": "before"})[0] == 202
    wait_for(drained(ag, 1), 10, "the first record sent")
    fauxqs.stop()
    for i in range(50):
        assert post(fg.port, headers={"Idempotency-Key": f"down-{i}"})[0] == 202
    wait_for(lambda: ag.status()["spool"]["depth"] == 50, 10, "50 records waiting")
    time.sleep(1.0)
    s = ag.status()
    assert s["spool"]["depth"] == 50 and s["sqs"]["sent"] == 1
    assert s["sqs"]["batch_errors"] >= 1 and s["sqs"]["retries"] >= 1
    fauxqs.start()  # in-memory: the queue is created again, at the same URL
    assert fauxqs.create_queue("orders") == url
    wait_for(drained(ag, 51), 20, "the spool drained into the queue again")
    keys = set(keys_of(fauxqs.receive_all(url, expect=50)))
    assert keys == {f"down-{i}" for i in range(50)}


def test_fifo_group_and_deduplication_ids(stack, fauxqs):
    fg, ag, url = stack("orders.fifo", extra="sqs_message_group header:X-Tenant;",
                        headers="Content-Type X-Tenant", FifoQueue="true")
    assert post(fg.port, headers={"Idempotency-Key": "f-1", "X-Tenant": "t1"})[0] == 202
    assert post(fg.port, headers={"Idempotency-Key": "f-2"})[0] == 202
    wait_for(drained(ag, 2), 20, "2 records sent")
    got = {keys_of([m])[0]: m["Attributes"] for m in fauxqs.receive_all(url, expect=2)}
    assert got["f-1"]["MessageGroupId"] == "t1"
    assert got["f-2"]["MessageGroupId"] == "flashgate"  # no header: the default group
    assert got["f-1"]["MessageDeduplicationId"] == "f-1"
    assert got["f-2"]["MessageDeduplicationId"] == "f-2"


# ---- credentials from IMDSv2 --------------------------------------------------------------


class FakeImds:
    """IMDSv2: a token from PUT, then role and credentials only with that token."""

    def __init__(self, lifetime_s=3600):
        self.port = free_port()
        self.lifetime = lifetime_s
        self.log = []  # (method, path, token header)
        self.creds_served = 0
        imds = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                imds.log.append(("PUT", self.path,
                                 self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
                if self.path == "/latest/api/token" and \
                        self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self.answer(200, b"tok-123")
                else:
                    self.answer(400)

            def do_GET(self):
                tok = self.headers.get("X-aws-ec2-metadata-token")
                imds.log.append(("GET", self.path, tok))
                if tok != "tok-123":
                    return self.answer(401)
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self.answer(200, b"fg-role")
                if self.path == base + "fg-role":
                    imds.creds_served += 1
                    exp = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                        time.gmtime(time.time() + imds.lifetime))
                    return self.answer(200, json.dumps({
                        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAFAKE",
                        "SecretAccessKey": "secret", "Token": "session-token",
                        "Expiration": exp}).encode())
                if self.path == "/latest/meta-data/placement/region":
                    return self.answer(200, b"us-east-1")
                self.answer(404)

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_credentials_and_region_from_imdsv2_refreshed_before_expiry(tmp_path, fauxqs,
                                                                     monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    imds = FakeImds(lifetime_s=6)  # refreshed halfway: every 3 s
    url = fauxqs.create_queue("imds")
    ag = SqsAgent(tmp_path, fauxqs, url, region="",
                  extra=f"imds_endpoint http://127.0.0.1:{imds.port};").start()
    try:
        fg = Flashgate(str(tmp_path), [free_port()], routes=route(ag.sock))
        try:
            assert post(fg.port, headers={"Idempotency-Key": "via-imds"})[0] == 202
            wait_for(drained(ag, 1), 15, "the record sent with IMDS credentials")
        finally:
            fg.stop()
        st = ag.status()["credentials"]
        assert st["source"] == "imds" and st["region"] == "us-east-1"
        assert ("PUT", "/latest/api/token", "21600") in imds.log
        assert all(t == "tok-123" for m, _, t in imds.log if m == "GET")
        wait_for(lambda: imds.creds_served >= 2, 10, "a refresh before the expiry")
        assert keys_of(fauxqs.receive_all(url, expect=1)) == ["via-imds"]
    finally:
        ag.stop()
        imds.stop()


# ---- drain mode -----------------------------------------------------------------------------


class App:
    """Records every request; answers `status` (settable)."""

    def __init__(self, status=200):
        self.port = free_port()
        self.status = status
        self.reqs = []
        self.lock = threading.Lock()
        app = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with app.lock:
                    app.reqs.append((self.command, self.path, dict(self.headers), body))
                self.send_response(app.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_PUT = do_POST

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def keys(self):
        with self.lock:
            return [h.get("Idempotency-Key") for _, _, h, _ in self.reqs]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def send_record(fq, url, key, body, path="/api/orders", enc=None, headers=None):
    attrs = {"fg-method": "POST", "fg-path": path, "fg-idempotency-key": key,
             "fg-headers": json.dumps(headers or [["Content-Type", "text/plain"]])}
    if enc:
        attrs["fg-body-encoding"] = enc
    st, ans = fq.call("SendMessage", {"QueueUrl": url, "MessageBody": body, "MessageAttributes": {
        k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}})
    assert st == 200, ans


def drain_agent(tmp_path, fq, url, app_port, extra=""):
    ag = AgentProcess(tmp_path, app_port, f"""mode drain;
sqs_queue_url {url};
sqs_endpoint {fq.endpoint};
sqs_region us-east-1;
receive_wait 1s;
visibility_timeout 2s;
replay_rate 0;
replay_backoff 50ms;
replay_backoff_max 200ms;
{extra}
""")
    return ag


def start_drain(ag):
    """A drain agent has no record socket: wait for its status listener."""
    ag.proc = subprocess.Popen([agent_bin(), "-c", ag.conf], stdout=ag.logf,
                               stderr=subprocess.STDOUT)

    def up():
        if ag.proc.poll() is not None:
            raise RuntimeError("agent exited: " + ag.errors())
        try:
            return ag.status()["mode"] == "drain"
        except OSError:
            return False
    wait_for(up, 10, "the drain agent's status listener")
    return ag


def test_drain_replays_into_the_app_and_deletes(tmp_path, fauxqs):
    app = App(200)
    url = fauxqs.create_queue("drain-ok")
    for i in range(25):
        send_record(fauxqs, url, f"d-{i}", f"body {i}")
    send_record(fauxqs, url, "d-bin", base64.b64encode(b"\x00\xff").decode(), enc="base64",
                headers=[["Content-Type", "application/octet-stream"], ["X-Tenant", "t\u00e9"]])
    ag = start_drain(drain_agent(tmp_path, fauxqs, url, app.port))
    try:
        wait_for(lambda: fauxqs.count(url) == 0, 20, "every message deleted")
        keys = app.keys()
        assert sorted(set(keys)) == sorted([f"d-{i}" for i in range(25)] + ["d-bin"])
        with app.lock:
            bykey = {h["Idempotency-Key"]: (m, p, h, b) for m, p, h, b in app.reqs}
        m, p, h, b = bykey["d-3"]
        assert (m, p, b, h["Content-Type"]) == ("POST", "/api/orders", b"body 3", "text/plain")
        m, p, h, b = bykey["d-bin"]
        assert b == b"\x00\xff" and h["Content-Type"] == "application/octet-stream"
        assert h["X-Tenant"].encode("latin-1") == "t\u00e9".encode("latin-1")
        d = ag.status()["drain"]
        assert d["ok"] == 26 and d["deleted"] == 26 and d["failed"] == 0
    finally:
        ag.stop()
        app.stop()


def test_drain_5xx_leaves_messages_for_redelivery(tmp_path, fauxqs):
    app = App(503)
    url = fauxqs.create_queue("drain-5xx")
    for i in range(3):
        send_record(fauxqs, url, f"r-{i}", "x")
    ag = start_drain(drain_agent(tmp_path, fauxqs, url, app.port))
    try:
        wait_for(lambda: len(set(app.keys())) == 3, 15, "3 replays tried")
        wait_for(lambda: ag.status()["drain"]["failed"] >= 3, 10, "3 failures counted")
        assert fauxqs.count(url) == 3  # not deleted: SQS redelivers them (redrive, DLQ)
        assert ag.status()["drain"]["deleted"] == 0
        app.status = 200  # the app recovers: the redelivered messages are replayed
        wait_for(lambda: fauxqs.count(url) == 0, 20, "deleted after a 2xx")
    finally:
        ag.stop()
        app.stop()


# ---- /metrics, configuration --------------------------------------------------------------


def test_agent_metrics_strict_exposition(stack, fauxqs):
    fg, ag, url = stack()
    assert post(fg.port)[0] == 202
    wait_for(drained(ag, 1), 10, "a record sent")
    with urllib.request.urlopen(f"http://127.0.0.1:{ag.status_port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode("utf-8")
    fams = parse_exposition(text)
    for name, fam in fams.items():
        assert name.startswith("flashgate_agent_") and fam.help, name
        if fam.type == "counter":
            assert name.endswith("_total"), name
    assert fams["flashgate_agent_sqs_sent_total"].type == "counter"
    assert "flashgate_agent_sqs_sent_total 1\n" in text
    assert "flashgate_agent_spool_depth 0\n" in text


class ThrottlingSqs:
    """A stand-in for SQS that throttles: fauxqs never does. Its first `throttle`
    SendMessageBatch requests get what SQS's JSON protocol answers then (403,
    RequestThrottled, x-amzn-query-error), later ones succeed for every entry."""

    def __init__(self, throttle):
        self.port = free_port()
        self.lock = threading.Lock()
        self.throttle = throttle
        self.answered_403 = 0
        self.ids = []  # the fg-idempotency-key of every message accepted
        sq = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, obj, extra=()):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.headers["X-Amz-Target"] == "AmazonSQS.SendMessageBatch"
                assert self.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
                with sq.lock:
                    if sq.answered_403 < sq.throttle:
                        sq.answered_403 += 1
                        return self.reply(403, {
                            "__type": "com.amazonaws.sqs#RequestThrottled",
                            "message": "Rate exceeded"},
                            [("x-amzn-query-error",
                              "AWS.SimpleQueueService.RequestThrottled;Sender")])
                    for e in req["Entries"]:
                        sq.ids.append(e["MessageAttributes"]["fg-idempotency-key"]
                                      ["StringValue"])
                self.reply(200, {"Successful": [
                    {"Id": e["Id"], "MessageId": f"m-{e['Id']}",
                     "MD5OfMessageBody": "0" * 32} for e in req["Entries"]], "Failed": []})

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_request_throttled_403_counts_as_throttling(tmp_path):
    """SQS answers RequestThrottled with HTTP 403 in its JSON protocol: the agent backs off
    and counts it as throttled (not as a failed batch), then sends everything."""
    from test_agent import DURABLE, AgentClient, record_frame
    sq = ThrottlingSqs(throttle=3)
    ag = AgentProcess(tmp_path, 1, f"""sink sqs;
sqs_queue_url http://127.0.0.1:{sq.port}/000000000000/orders;
sqs_endpoint http://127.0.0.1:{sq.port};
sqs_region us-east-1;
sqs_concurrency 1;
sqs_backoff 20ms;
sqs_backoff_max 100ms;
""").start()
    try:
        c = AgentClient(ag.sock)
        c.send(b"".join(record_frame(i, f"thr-{i}", body=b"{}") for i in range(1, 6)))
        assert set(c.answers(5).values()) == {DURABLE}
        wait_for(drained(ag, 5), 20, "5 records sent after the throttling")
        s = ag.status()["sqs"]
        assert s["throttled"] == 3, s
        assert s["batch_errors"] == 3 and s["failed"] == 0, s
        assert sorted(set(sq.ids)) == [f"thr-{i}" for i in range(1, 6)]
        assert "throttled (status 403 RequestThrottled" in ag.errors()
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{ag.status_port}/metrics", timeout=5).read().decode()
        assert "flashgate_agent_sqs_throttled_total 3\n" in text
    finally:
        ag.stop()
        ag.logf.close()
        sq.stop()


def test_config_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("""listen /tmp/x.sock;
sink sqs;
sqs_queue_url ftp://x/1/q;
sqs_endpoint http://sqs.example.com;
sqs_batch_max 11;
sqs_concurrency 0;
sqs_message_group header:bad/name;
mode sideways;
sqs_backoff 2s;
sqs_backoff_max 1s;
visibility_timeout 1500ms;
sqs_batch_bytes 2m;
""")
    r = subprocess.run([agent_bin(), "-t", "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    for line in (2, 3, 4, 5, 6, 7, 8, 10, 11, 12):
        assert f"{bad}:{line}:" in r.stderr, (line, r.stderr)
    good = tmp_path / "good.conf"
    good.write_text("""listen /tmp/x.sock;
sink sqs;
sqs_queue_url https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo;
sqs_message_group header:X-Tenant;
sqs_concurrency 8;
sqs_batch_max 10;
sqs_batch_bytes 256k;
sqs_timeout 5s;
sqs_backoff 200ms;
sqs_backoff_max 30s;
imds_endpoint http://169.254.169.254;
""")
    r = subprocess.run([agent_bin(), "-t", "-c", str(good)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
