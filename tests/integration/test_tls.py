"""TLS end to end (issue 7): HTTPS listeners (versions, SNI, resumption, reload) and TLS
to upstreams (verification, pooled resumption, verify off).

Certificates are made at test time with the openssl CLI: a test CA, leaves for a.test
(also 127.0.0.1) and b.test, an expired leaf, and a second CA whose leaf must never be
accepted where the first CA is trusted.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import Origin, free_port, get, wait_for, wait_port

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl CLI")


def _run(*args):
    subprocess.run([OPENSSL, *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def _ca(d, name):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", pem, "-days", "30", "-subj", "/CN=" + name,
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")
    return pem, key


def _leaf(d, name, ca, san, days="30"):
    key, csr, pem = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + san + "\n")
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
         "-out", csr, "-subj", "/CN=" + name)
    _run("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out", pem,
         "-days", days, "-extfile", ext)
    return pem, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = _ca(d, "testca")
    other = _ca(d, "otherca")
    return {
        "ca": ca[0],
        "other_ca": other[0],
        "a": _leaf(d, "a.test", ca, "DNS:a.test,DNS:localhost,IP:127.0.0.1"),
        "b": _leaf(d, "b.test", ca, "DNS:b.test"),
        "expired": _leaf(d, "expired.test", ca, "DNS:expired.test", days="-1"),
        "rogue": _leaf(d, "rogue.test", other, "DNS:a.test,IP:127.0.0.1"),
    }


def certs(*pairs):
    return "\n".join(f"    certificate {c};\n    certificate_key {k};" for c, k in pairs)


def start_tls(flashgate, pki, pairs=None, extra="", **kw):
    tport = free_port()
    pairs = pairs or [pki["a"], pki["b"]]
    fg = flashgate(server_extra=f"    listen 127.0.0.1:{tport} ssl;\n{certs(*pairs)}\n{extra}",
                   **kw)
    fg.tls_port = tport
    wait_port(tport)
    return fg


def client_ctx(pki, version=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def https_get(port, ctx, path="/", name="a.test", session=None):
    """One request on a fresh TLS connection; (status line, body, ssl socket facts)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name, session=session) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if b"transfer-encoding: chunked" in head.lower():
                body = dechunk(body)
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            return head.split(b"\r\n")[0], body, {
                "version": s.version(), "alpn": s.selected_alpn_protocol(),
                "cn": subject.get("commonName"), "session": s.session,
                "reused": s.session_reused}


def dechunk(data):
    out = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            return out
        out, data = out + data[:n], data[n + 2:]


def tls_stats(fg, side="server"):
    return fg.stats()["tls"][side]


def reload(fg, text, generation_line):
    fg.write_conf(text)
    fg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: generation_line in fg.errors(), 5, "the reload to be answered")


# ---- listeners ---------------------------------------------------------------------------


def test_tls12_and_tls13_with_alpn(flashgate, pki):
    fg = start_tls(flashgate, pki)
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        status, body, facts = https_get(fg.tls_port, client_ctx(pki, version))
        assert status.startswith(b"HTTP/1.1 200 ") and body == b"ok"
        assert facts["version"] == name and facts["alpn"] == "http/1.1"
    st = tls_stats(fg)
    assert st["handshakes"] == 2
    assert st["protocols"]["TLSv1.2"] == 1 and st["protocols"]["TLSv1.3"] == 1
    assert st["ciphers"]["TLS_AES_128_GCM_SHA256"] + st["ciphers"]["TLS_AES_256_GCM_SHA384"] >= 1
    # The plain listener of the same server still speaks HTTP.
    with socket.create_connection(("127.0.0.1", fg.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_app_is_told_the_scheme_is_https(flashgate, pki):
    fg = start_tls(flashgate, pki)
    status, body, _ = https_get(fg.tls_port, client_ctx(pki), path="/echo")
    assert status.startswith(b"HTTP/1.1 200 ")
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(fg.tls_port)
    # The plain listener of the same server still says http.
    r = get(fg.port, "/echo")
    assert {k.lower(): v for k, v in json.loads(r[2])["headers"]}["x-forwarded-proto"] == "http"


@pytest.mark.parametrize("flag", ["-tls1_1", "-tls1"])
def test_old_protocols_refused_by_the_server(flashgate, pki, flag):
    """SECLEVEL=0 lets the local OpenSSL offer TLS 1.0/1.1, so the refusal is the server's."""
    fg = start_tls(flashgate, pki)
    p = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{fg.tls_port}", flag,
                        "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "a.test"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    assert p.returncode != 0
    assert b"alert protocol version" in p.stdout + p.stderr
    wait_for(lambda: tls_stats(fg)["failures"]["protocol_version"] == 1, 3,
             "the refused handshake to be counted")
    assert tls_stats(fg)["handshakes"] == 0


def test_sni_selects_the_certificate(flashgate, pki):
    fg = start_tls(flashgate, pki)
    ctx = client_ctx(pki)
    assert https_get(fg.tls_port, ctx, name="a.test")[2]["cn"] == "a.test"
    assert https_get(fg.tls_port, ctx, name="b.test")[2]["cn"] == "b.test"
    # An unknown name gets the first certificate (the client then refuses its name).
    ctx.check_hostname = False
    assert https_get(fg.tls_port, ctx, name="other.test")[2]["cn"] == "a.test"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(flashgate, pki, version):
    fg = start_tls(flashgate, pki)
    ctx = client_ctx(pki, version)
    first = https_get(fg.tls_port, ctx)[2]
    assert not first["reused"]
    again = https_get(fg.tls_port, ctx, session=first["session"])[2]
    assert again["reused"]
    st = tls_stats(fg)
    assert st["handshakes"] == 2 and st["resumptions"] == 1


def test_reload_swaps_the_certificate_and_keeps_a_download(flashgate, pki):
    fg = start_tls(flashgate, pki, pairs=[pki["a"]])
    # A slow download (60 chunks of 1000 bytes, 25 ms apart) on the old certificate.
    got = {}

    def download():
        got["result"] = https_get(fg.tls_port, client_ctx(pki),
                                  "/c/long?bytes=60000&chunked=1&drip=25&cc=no-store")

    t = threading.Thread(target=download)
    t.start()
    time.sleep(0.3)
    text = fg.text.replace(certs(pki["a"]), certs(pki["b"], pki["a"]))
    assert text != fg.text
    reload(fg, text, "generation 2 is running")
    ctx = client_ctx(pki)
    ctx.check_hostname = False
    assert https_get(fg.tls_port, ctx, name="new.test")[2]["cn"] == "b.test"
    t.join(10)
    status, body, facts = got["result"]
    assert status.startswith(b"HTTP/1.1 200 ") and facts["cn"] == "a.test"
    assert len(body) == 60003 and body.startswith(b"v1:")
    assert fg.proc.poll() is None


def test_bad_certificate_on_reload_keeps_the_old_one(flashgate, pki):
    fg = start_tls(flashgate, pki, pairs=[pki["a"]])
    text = fg.text.replace(pki["a"][0], pki["expired"][0]).replace(pki["a"][1], pki["expired"][1])
    reload(fg, text, "reload refused")
    log = fg.errors()
    assert f"{fg.conf}:" in log and "expired" in log and pki["expired"][0] in log
    assert fg.stats()["generation"] == 1
    assert https_get(fg.tls_port, client_ctx(pki))[2]["cn"] == "a.test"


def test_config_check_names_the_bad_file(tmp_path, pki):
    from conftest import flashgate_bin
    conf = tmp_path / "bad.conf"
    conf.write_text(f"""upstream app {{ server 127.0.0.1:9; }}
server {{
    listen 127.0.0.1:{free_port()} ssl;
    certificate {pki["a"][0]};
    certificate_key {pki["b"][1]};
    route / {{ upstream app; }}
}}
""")
    p = subprocess.run([flashgate_bin(), "-t", "-c", str(conf)], capture_output=True, timeout=10)
    assert p.returncode == 1
    # the line of the key at fault (the certificate may be right for another key)
    assert f"{conf}:5: certificate_key {pki['b'][1]}: does not match" in p.stderr.decode()


# ---- upstreams ---------------------------------------------------------------------------


@pytest.fixture
def tls_origin(pki):
    made = []

    def make(pair):
        o = Origin(tls=pair)
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


def upstream_get(fg, path="/echo"):
    with socket.create_connection(("127.0.0.1", fg.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def upstream_tls(flashgate, origin_port, extra):
    return flashgate(origin_ports=[], upstream_extra=f"    server 127.0.0.1:{origin_port} ssl;\n{extra}")


def test_upstream_tls_verified_and_pooled_connections_resume(flashgate, pki, tls_origin):
    o = tls_origin(pki["a"])
    # keepalive 0: every request connects again, so every handshake after the first resumes.
    fg = upstream_tls(flashgate, o.port, f"    ssl_ca_file {pki['ca']};\n    keepalive 0;")
    for _ in range(3):
        assert upstream_get(fg).startswith(b"HTTP/1.1 200")
    st = tls_stats(fg, "client")
    assert st["handshakes"] == 3 and st["resumptions"] >= 1
    assert sum(st["failures"].values()) == 0


def test_upstream_pool_reuses_tls_connections(flashgate, pki, tls_origin):
    o = tls_origin(pki["a"])
    fg = upstream_tls(flashgate, o.port, f"    ssl_ca_file {pki['ca']};")
    for _ in range(5):
        assert upstream_get(fg).startswith(b"HTTP/1.1 200")
    assert tls_stats(fg, "client")["handshakes"] == 1
    assert fg.stats()["upstreams"]["app"]["connects"] == 1


@pytest.mark.parametrize("case", ["wrong_ca", "rogue_cert", "system_store"])
def test_upstream_certificate_not_trusted_is_502(flashgate, pki, tls_origin, case):
    pair = pki["rogue"] if case == "rogue_cert" else pki["a"]
    ca = {"wrong_ca": f"    ssl_ca_file {pki['other_ca']};",
          "rogue_cert": f"    ssl_ca_file {pki['ca']};", "system_store": ""}[case]
    o = tls_origin(pair)
    fg = upstream_tls(flashgate, o.port, ca)
    assert upstream_get(fg).startswith(b"HTTP/1.1 502")
    wait_for(lambda: "certificate verification failed" in fg.errors(), 3, "the log line")
    assert tls_stats(fg, "client")["failures"]["verify"] >= 1
    assert o.stats()["requests"] == 0


def test_upstream_verify_off_works_and_warns(flashgate, pki, tls_origin):
    o = tls_origin(pki["rogue"])
    fg = upstream_tls(flashgate, o.port, "    ssl_verify off;")
    assert upstream_get(fg).startswith(b"HTTP/1.1 200")
    assert "certificate verification is OFF" in fg.errors()
