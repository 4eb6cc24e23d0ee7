"""Config check, reload, drain, admin endpoints, access log."""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from conftest import flashgate_bin, get


def test_check_reports_every_error_with_file_and_line(tmp_path):
    p = tmp_path / "bad.conf"
    p.write_text("workers 0;\nupstream app { server 127.0.0.1:1; keepalive_timout 4s; }\n"
                 "server {\n  listen 127.0.0.1:1;\n  keepalive_timeout 75x;\n  route / { upstream ap; }\n}\n")
    r = subprocess.run([flashgate_bin(), "-t", "-c", str(p)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.startswith(str(p) + ":")]
    assert len(lines) >= 4
    assert any(re.match(rf"{re.escape(str(p))}:2: .*keepalive_timout", l) for l in lines)
    assert any(re.match(rf"{re.escape(str(p))}:5: .*75x", l) for l in lines)
    assert any(re.match(rf"{re.escape(str(p))}:6: .*'ap'", l) for l in lines)


def test_check_accepts_shipped_config():
    conf = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "flashgate.conf")
    r = subprocess.run([flashgate_bin(), "-t", "-c", conf], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert "is ok" in r.stderr


def test_reload_applies_new_config_and_keeps_connections(flashgate, conn):
    fg = flashgate(routes='    route /v { return 200 "one\\n"; }\n    route / { upstream app; }')
    c = conn(fg.port)
    c.send("GET /v HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.response()[2] == b"one\n"
    fg.write_conf(fg.text.replace('"one\\n"', '"two\\n"'))
    fg.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while fg.stats()["generation"] != 2 and time.time() < deadline:
        time.sleep(0.05)
    c.send("GET /v HTTP/1.1\r\nHost: a\r\n\r\n")  # same connection, new config
    assert c.response()[2] == b"two\n"


def test_broken_reload_keeps_old_config(flashgate):
    fg = flashgate(routes='    route /v { return 200 "one\\n"; }\n    route / { upstream app; }')
    fg.write_conf(fg.text + "\nbogus_directive 1;\n")
    fg.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reload refused" not in fg.errors() and time.time() < deadline:
        time.sleep(0.05)
    assert re.search(r"flashgate\.conf:\d+: unknown directive 'bogus_directive'", fg.errors())
    assert get(fg.port, "/v")[2] == b"one\n"
    assert fg.stats()["generation"] == 1


def test_drain_on_sigterm(flashgate, origin):
    fg = flashgate(main_extra="shutdown_delay 1s;\ndrain_timeout 5s;")
    result = {}

    def slow():
        result["r"] = get(fg.port, "/delay?ms=1500")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    fg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # health turns 503 at once, on the admin listener and on the traffic port
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/healthz", timeout=2)
        assert False, "healthz should be 503"
    except urllib.error.HTTPError as e:
        assert e.code == 503
    assert get(fg.port, "/flashgate/healthz")[0] == 503
    assert get(fg.port, "/echo")[0] == 200  # still serving during shutdown_delay
    t.join(5)
    assert result["r"][0] == 200  # the in-flight request completed
    assert fg.proc.wait(8) == 0


def test_admin_stats_and_metrics(flashgate):
    fg = flashgate()
    for _ in range(3):
        get(fg.port, "/echo")
    get(fg.port, "/nothing-here/../../x")
    s = fg.stats()
    for key in ("version", "uptime_s", "generation", "draining", "workers", "downstream",
                "upstreams", "latency_us"):
        assert key in s
    assert s["downstream"]["requests_total"] >= 4
    assert s["downstream"]["responses"]["2xx"] >= 3
    assert s["downstream"]["responses"]["4xx"] >= 1
    assert s["upstreams"]["app"]["requests"] >= 3
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert re.search(r"^flashgate_downstream_requests_total \d+$", text, re.M)
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r"^[a-z_:][a-z0-9_:]*(\{[^}]*\})? [0-9.e+-]+$|^\S+ \+Inf", line) \
            or re.match(r'^[a-z_]+\{le="\+Inf"\} \d+$', line), line


def test_access_log_json(flashgate, tmp_path):
    log = tmp_path / "access.log"
    fg = flashgate(server_extra=f"    access_log {log} sample=0 slow=10s;")
    get(fg.port, "/echo")  # sampled out
    get(fg.port, "/status/503")  # 5xx: always logged
    deadline = time.time() + 3
    while (not log.exists() or not log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert len(lines) == 1
    e = lines[0]
    assert e["status"] == 503 and e["path"] == "/status/503" and e["method"] == "GET"
    for k in ("ts", "client", "bytes_in", "bytes_out", "duration_ms", "upstream", "request_id",
              "trace_id", "route", "cache", "ua"):
        assert k in e
