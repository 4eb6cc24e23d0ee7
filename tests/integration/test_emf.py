"""The emf output under traffic: every record written (to a file, a TCP listener, a UDP
socket: the CloudWatch agent's three ways in) is checked against the rules of the
Embedded Metric Format, and the numbers against /stats. The instance's name comes from a
local IMDSv2 when asked; an agent that is not there costs records (counted), never
flashgate's memory or its other work."""
import http.server
import json
import os
import socket
import socketserver
import threading
import time

import pytest

from conftest import Flashgate, get, wait_for

UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
         "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
         "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
         "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
         "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def check_record(line, agent=False):
    """The format's rules on one record (a line of JSON); returns it parsed."""
    rec = json.loads(line)  # one JSON object, nothing before or after it
    assert isinstance(rec, dict)
    aws = rec["_aws"]
    assert isinstance(aws, dict)
    ts = aws["Timestamp"]
    assert isinstance(ts, int) and abs(ts - time.time() * 1000) < 10 * 60 * 1000, ts
    if agent:  # the agent's listener needs to know where the records go
        assert isinstance(aws["LogGroupName"], str) and aws["LogGroupName"]
    else:
        assert "LogGroupName" not in aws
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    metrics, dims = set(), set()
    for d in directives:
        assert isinstance(d["Namespace"], str) and 1 <= len(d["Namespace"]) <= 255
        assert isinstance(d["Dimensions"], list)
        for ds in d["Dimensions"]:
            assert isinstance(ds, list) and len(ds) <= 30
            for k in ds:
                assert isinstance(rec.get(k), str), f"dimension {k} is not a top-level string"
                dims.add(k)
        assert isinstance(d["Metrics"], list) and len(d["Metrics"]) <= 100
        for m in d["Metrics"]:
            name = m["Name"]
            assert isinstance(name, str) and 1 <= len(name) <= 255
            assert name not in metrics, f"metric {name} twice"
            metrics.add(name)
            assert m.get("Unit", "None") in UNITS, m
            v = rec.get(name)
            assert isinstance(v, (int, float)) and not isinstance(v, bool), \
                f"metric {name} is not a top-level number: {v!r}"
    assert len(metrics) <= 100 and len(dims) <= 30
    return rec


class Lines:
    """Collects the lines a TCP (several connections) or UDP listener gets."""

    def __init__(self, udp=False):
        self.lines, self.datagrams, self.connections = [], [], 0
        self.lock = threading.Lock()
        lines = self

        if udp:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.settimeout(0.2)
            self.port = self.sock.getsockname()[1]
            self.stop_ev = threading.Event()

            def loop():
                while not self.stop_ev.is_set():
                    try:
                        d = self.sock.recv(65536)
                    except socket.timeout:
                        continue
                    with self.lock:
                        self.datagrams.append(d)
                        self.lines.extend(d.decode().splitlines())

            self.thread = threading.Thread(target=loop, daemon=True)
        else:
            class H(socketserver.StreamRequestHandler):
                def handle(self):
                    with lines.lock:
                        lines.connections += 1
                    for raw in self.rfile:
                        with lines.lock:
                            lines.lines.append(raw.decode().rstrip("\n"))

            self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
            self.srv.daemon_threads = True
            self.port = self.srv.server_address[1]
            self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.udp = udp
        self.thread.start()

    def get(self):
        with self.lock:
            return list(self.lines)

    def stop(self):
        if self.udp:
            self.stop_ev.set()
            self.thread.join(5)
            self.sock.close()
        else:
            self.srv.shutdown()
            self.srv.server_close()


def traffic(port, seconds):
    """Requests for a while (most cached, one in ten not), returning how many were sent."""
    end, n = time.time() + seconds, 0
    while time.time() < end:
        get(port, f"/c/x{n % 5}?cc=max-age%3D60" if n % 10 else "/c/live?cc=no-store")
        n += 1
        time.sleep(0.01)
    return n


def emf_flashgate(tmp_path, origin, target, extra="", env=None, admin_extra=""):
    old = os.environ.copy()
    os.environ.update(env or {"AWS_EC2_METADATA_DISABLED": "true"})
    try:
        return Flashgate(str(tmp_path), [origin.port],
                         main_extra=f"cache main {{ memory 8m; }}\n"
                                    f"instance_id {'auto' if env else 'web-7'};\n"
                                    f"emf {{ target {target}; interval 1s; {extra} }}",
                         admin_extra=admin_extra,
                         routes="    route / { upstream app; cache main; }")
    finally:
        os.environ.clear()
        os.environ.update(old)


def check_totals(records, fg, sent):
    """Every record is valid; the interval counts add up to what /stats counted, in the
    instance's records and in the routes' (every request went to route "/")."""
    recs = [check_record(r[0], agent=r[1]) for r in records]
    assert recs, "no record"
    for r in recs:
        assert r["Instance"] == "web-7"
        assert r["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "flashgate"
    inst = [r for r in recs if "Route" not in r]
    routes = [r for r in recs if "Route" in r]
    assert inst and routes
    st = fg.stats()
    total = sum(r["Requests"] for r in inst)
    # the records cover the intervals that ended: all the traffic but the current second
    assert sent * 0.5 <= total <= st["downstream"]["requests_total"], (total, sent)
    assert {r["Route"] for r in routes} == {"/"}
    assert sum(r["Requests"] for r in routes) == total  # the same requests, by route
    for r in routes:
        names = {m["Name"] for m in r["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert names <= {"Requests", "Errors4xx", "Errors5xx", "LatencyP99"}
        assert all("Route" in ds for ds in r["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
    hits = sum(r["Hits"] for r in inst)
    assert 0 < hits <= st["caches"]["main"]["hits"] + st["caches"]["main"]["coalesced"]
    assert any("LatencyP99" in r for r in inst)
    assert any("AppLatencyP99" in r for r in inst)  # the misses went to the app
    assert any(r.get("CacheHitRatio", 0) > 50 for r in inst)
    return inst


def test_emf_file_records_follow_the_format(tmp_path, origin):
    path = tmp_path / "emf.log"
    fg = emf_flashgate(tmp_path, origin, f"file:{path}",
                       "dimension AutoScalingGroupName shop-web;")
    try:
        sent = traffic(fg.port, 3.5)
        time.sleep(1.2)
        lines = path.read_text().splitlines()
        recs = check_totals([(l, False) for l in lines], fg, sent)
        for r in recs:  # the fixed dimension: a set of its own, for the group
            assert r["AutoScalingGroupName"] == "shop-web"
            assert r["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == \
                [["Instance"], ["AutoScalingGroupName"]]
        for line in lines:  # and the routes' records put Route in each set
            r = json.loads(line)
            if "Route" in r:
                assert r["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == \
                    [["Instance", "Route"], ["AutoScalingGroupName", "Route"]]
        st = fg.stats()["emf"]
        assert st["records"] >= len(lines) and st["dropped"] == 0 and st["errors"] == 0
        # logrotate moves the file away: the next interval writes a new one
        os.rename(path, str(path) + ".1")
        wait_for(lambda: path.exists() and path.read_text().count("\n") >= 1, 5,
                 "a new file after the rename")
        check_record(path.read_text().splitlines()[0])
    finally:
        fg.stop()


def test_emf_tcp_to_the_agent_listener(tmp_path, origin):
    agent = Lines()
    fg = emf_flashgate(tmp_path, origin, f"tcp://127.0.0.1:{agent.port}",
                       "log_group shop-edge;")
    try:
        sent = traffic(fg.port, 3.5)
        time.sleep(1.2)
        lines = agent.get()
        recs = check_totals([(l, True) for l in lines], fg, sent)
        assert all(r["_aws"]["LogGroupName"] == "shop-edge" for r in recs)
        assert agent.connections == 1  # one connection kept
    finally:
        fg.stop()
        agent.stop()


def test_emf_udp_one_record_a_datagram(tmp_path, origin):
    agent = Lines(udp=True)
    fg = emf_flashgate(tmp_path, origin, f"udp://127.0.0.1:{agent.port}")
    try:
        sent = traffic(fg.port, 3.5)
        time.sleep(1.2)
        with agent.lock:
            grams = list(agent.datagrams)
        assert grams and all(g.endswith(b"\n") and g.count(b"\n") == 1 for g in grams)
        check_totals([(g.decode(), True) for g in grams], fg, sent)
    finally:
        fg.stop()
        agent.stop()


def test_emf_nobody_listening_counts_dropped(tmp_path, origin):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fg = emf_flashgate(tmp_path, origin, f"tcp://127.0.0.1:{port}")
    try:
        wait_for(lambda: fg.stats()["emf"]["dropped"] >= 2, 10, "records dropped")
        st = fg.stats()["emf"]
        assert st["errors"] >= 2 and "127.0.0.1" in st["last_error"]
        assert "emf: tcp://127.0.0.1" in fg.errors()
        assert get(fg.port, "/c/y?cc=max-age%3D60")[0] == 200  # traffic unaffected
        # once the agent listens, the next interval's records get through
        agent = Lines()
        try:
            text = fg.text.replace(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{agent.port}")
            fg.write_conf(text)
            fg.proc.send_signal(1)  # SIGHUP: the emf block is read again
            wait_for(lambda: len(agent.get()) >= 2, 10, "records at the new target")
            for l in agent.get():
                check_record(l, agent=True)
        finally:
            agent.stop()
    finally:
        fg.stop()


class Imds(http.server.BaseHTTPRequestHandler):
    """IMDSv2 as EC2 answers it: a token for PUT /latest/api/token, the instance id for a
    GET that carries it."""
    protocol_version = "HTTP/1.1"
    token = "AQAEAtok-en=="

    def log_message(self, *a):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        ok = self.path == "/latest/api/token" and \
            self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self.reply(200, self.token.encode()) if ok else self.reply(400)

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self.reply(401)
        elif self.path == "/latest/meta-data/instance-id":
            self.reply(200, b"i-0123456789abcdef0")
        else:
            self.reply(404)


def test_instance_id_from_imds(tmp_path, origin):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    path = tmp_path / "emf.log"
    fg = emf_flashgate(tmp_path, origin, f"file:{path}", env={
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{srv.server_address[1]}"})
    try:
        wait_for(lambda: fg.stats()["instance"]["source"] == "imds", 5, "the instance id")
        assert fg.stats()["instance"]["name"] == "i-0123456789abcdef0"
        wait_for(lambda: path.exists() and path.read_text().count("\n") >= 2, 5, "records")
        last = check_record(path.read_text().splitlines()[-1])
        assert last["Instance"] == "i-0123456789abcdef0"
    finally:
        fg.stop()
        srv.shutdown()
        srv.server_close()


def test_instance_id_without_imds_is_the_host_name(tmp_path, origin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing answers there
    path = tmp_path / "emf.log"
    fg = emf_flashgate(tmp_path, origin, f"file:{path}",
                       env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}"})
    try:
        wait_for(lambda: fg.stats()["instance"]["source"] == "hostname", 5, "the host name")
        assert fg.stats()["instance"]["name"] == socket.gethostname()[:128]
    finally:
        fg.stop()


def test_emf_group_only(tmp_path, origin):
    path = tmp_path / "emf.log"
    fg = emf_flashgate(tmp_path, origin, f"file:{path}",
                       "instance_dimension off; dimension AutoScalingGroupName shop-web;")
    try:
        traffic(fg.port, 2.2)
        wait_for(lambda: path.exists() and path.read_text().count("\n") >= 1, 5, "records")
        for line in path.read_text().splitlines():
            r = check_record(line)
            # one metric per group, not per instance; the instance stays a property
            want = [["AutoScalingGroupName", "Route"]] if "Route" in r else \
                [["AutoScalingGroupName"]]
            assert r["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == want
            assert r["Instance"] == "web-7"
    finally:
        fg.stop()


def test_emf_without_routes(tmp_path, origin):
    path = tmp_path / "emf.log"
    fg = emf_flashgate(tmp_path, origin, f"file:{path}", "route_dimension off;")
    try:
        traffic(fg.port, 2.2)
        wait_for(lambda: path.exists() and path.read_text().count("\n") >= 1, 5, "records")
        for line in path.read_text().splitlines():
            assert "Route" not in check_record(line)
    finally:
        fg.stop()
