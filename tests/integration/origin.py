#!/usr/bin/env python3
"""A small HTTP/1.1 test origin that records what it sees.

Endpoints (path decides):
  /echo            JSON: method, path, headers [[name, value]...], body length, connection id,
                   request number on that connection
  /delay?ms=N      waits, then 200
  /size?bytes=N    N bytes of body (Content-Length)
  /chunked?n=K&size=S   chunked response of K chunks of S bytes
  /close           close-delimited body (no framing), then closes
  /status/N        empty response with that status (204/304 without body)
  /__stats         JSON counters; /__reset zeroes them
  /__drop_next     the next request that arrives on an already used connection is met by
                   a close (the race of an app closing an idle keep-alive connection)
  /c/...           a cacheable resource; the query says how it answers: cc= (Cache-Control),
                   cdn= (CDN-Cache-Control), etag=, lm= (Last-Modified, Unix seconds),
                   vary=, loc= (Location), cloc= (Content-Location), ct= (Content-Type), ce= (Content-Encoding),
                   enc=gzip (the body really gzipped, whatever was asked), cookie=1 (Set-Cookie), delay= (ms), bytes= (body size),
                   chunked=1, drip= (ms between 1000-byte chunks), status=, text=1 (the body
                   words that compress about as well as HTML, instead of one repeated byte). The body starts with "v<N>:" where N counts the
                   origin's answers for that path+query, so a test sees what was cached.
                   If-None-Match equal to etag gets a 304. /__fail?status=S makes /c/
                   answer S (with no caching headers) until /__heal.
Anything else: 200 "ok". Usage: origin.py PORT [--tls CERT KEY] (--tls: HTTPS, for
upstream TLS tests; the handshake runs in each connection's thread)
"""
import json
import socket
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
STATS = {"connections": 0, "requests": 0, "current": 0, "max_concurrent": 0, "paths": []}
DROP_NEXT = [False]
VERSIONS = {}
FAIL = [0]
WORDS = ["<div", "class=", "product", "price", "</div>", "<a href=", "/item/", "sale",
         "<span>", "</span>", "cart", "stock", "shipping", "<li>", "</li>", "title"]


def read_request(f):
    line = f.readline(65536)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").rstrip("\r\n").partition(":")
        headers.append([name, value.strip()])
    hmap = {k.lower(): v for k, v in headers}
    body = b""
    if hmap.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in hmap:
        body = f.read(int(hmap["content-length"]))
    return method, target, headers, body


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        with LOCK:
            STATS["connections"] += 1
            conn_id = STATS["connections"]
        n = 0
        while True:
            try:
                req = read_request(self.rfile)
            except (ConnectionError, ValueError, OSError):  # OSError: a refused TLS handshake
                return
            if req is None:
                return
            n += 1
            method, target, headers, body = req
            if n > 1 and DROP_NEXT[0]:
                DROP_NEXT[0] = False
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            control = target.startswith("/__")
            with LOCK:
                if not control:  # the test's own control requests are not counted
                    STATS["requests"] += 1
                    STATS["paths"].append(target)
                STATS["current"] += 1
                STATS["max_concurrent"] = max(STATS["max_concurrent"], STATS["current"])
            try:
                if not self.respond(method, target, headers, body, conn_id, n):
                    return
            finally:
                with LOCK:
                    STATS["current"] -= 1

    def send(self, status, body=b"", headers=(), length=True):
        out = [f"HTTP/1.1 {status} X"]
        out += [f"{k}: {v}" for k, v in headers]
        if length:
            out.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)

    def respond(self, method, target, headers, body, conn_id, n):
        u = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        p = u.path
        if p == "/__stats":
            with LOCK:
                self.send(200, json.dumps(STATS).encode(), [("Content-Type", "application/json")])
            return True
        if p == "/__reset":
            with LOCK:
                STATS.update(connections=0, requests=0, current=0, max_concurrent=0, paths=[])
                VERSIONS.clear()
                FAIL[0] = 0
            self.send(200, b"reset")
            return True
        if p == "/__drop_next":
            DROP_NEXT[0] = True
            self.send(200, b"armed")
            return True
        if p == "/__fail":
            FAIL[0] = int(q.get("status", "503"))
            self.send(200, b"failing")
            return True
        if p == "/__heal":
            FAIL[0] = 0
            self.send(200, b"healed")
            return True
        if p.startswith("/c/"):
            return self.cacheable(target, q, headers)
        if p == "/echo":
            doc = {"method": method, "target": target, "headers": headers, "body_len": len(body),
                   "body_md5": __import__("hashlib").md5(body).hexdigest(),
                   "conn": conn_id, "n": n}
            self.send(200, json.dumps(doc).encode(), [("Content-Type", "application/json"),
                                                       ("Connection", "X-Hop"), ("X-Hop", "1"),
                                                       ("Keep-Alive", "timeout=5")])
            return True
        if p == "/delay":
            time.sleep(int(q.get("ms", "100")) / 1000)
            self.send(200, b"slow")
            return True
        if p == "/size":
            self.send(200, b"x" * int(q.get("bytes", "0")))
            return True
        if p == "/chunked":
            size = int(q.get("size", "10"))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(int(q.get("n", "3"))):
                self.wfile.write(b"%x\r\n%s\r\n" % (size, bytes([97 + i % 26]) * size))
            self.wfile.write(b"0\r\n\r\n")
            return True
        if p == "/close":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            return False
        if p.startswith("/status/"):
            self.send(int(p.split("/")[2]), b"", length=p.split("/")[2] not in ("204", "304"))
            return True
        self.send(200, b"ok")
        return True

    def cacheable(self, target, q, headers):
        if "delay" in q:
            time.sleep(int(q["delay"]) / 1000)
        if FAIL[0]:
            self.send(FAIL[0], b"failing")
            return True
        hmap = {k.lower(): v for k, v in headers}
        with LOCK:
            VERSIONS[target] = VERSIONS.get(target, 0) + 1
            n = VERSIONS[target]
        out = []
        for key, name in (("cc", "Cache-Control"), ("cdn", "CDN-Cache-Control"), ("vary", "Vary"),
                          ("loc", "Location"), ("cloc", "Content-Location"),
                          ("ct", "Content-Type"), ("ce", "Content-Encoding"),
                          ("tag", "Cache-Tag"), ("skey", "Surrogate-Key")):
            if key in q:
                out.append((name, q[key]))
        if "etag" in q:
            out.append(("ETag", '"%s"' % q["etag"]))
        if "lm" in q:
            out.append(("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                       time.gmtime(int(q["lm"])))))
        if q.get("cookie") == "1":
            out.append(("Set-Cookie", "session=%d" % n))
        out.append(("X-Origin-Version", str(n)))
        if "vary" in q:
            for name in q["vary"].split(","):
                out.append(("X-Echo-" + name.strip(), hmap.get(name.strip().lower(), "")))
        if "etag" in q and hmap.get("if-none-match") == '"%s"' % q["etag"]:
            self.send(304, b"", out, length=False)
            return True
        if q.get("text") == "1":  # words, compressing about as well as HTML (3-4x)
            rnd = __import__("random").Random(target)
            words, size = [], 0
            while size < int(q.get("bytes", "16")):
                w = rnd.choice(WORDS) + str(rnd.randrange(1000))
                words.append(w)
                size += len(w) + 1
            filler = " ".join(words).encode()[:int(q.get("bytes", "16"))]
        else:
            filler = b"x" * int(q.get("bytes", "16"))
        body = ("v%d:" % n).encode() + filler
        if q.get("enc") == "gzip":  # an app that gzips whatever the client asked for
            body = __import__("gzip").compress(body)
            out.append(("Content-Encoding", "gzip"))
        status = int(q.get("status", "200"))
        if q.get("chunked") == "1":
            head = "HTTP/1.1 %d X\r\n" % status + "".join("%s: %s\r\n" % h for h in out)
            self.wfile.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
            for i in range(0, len(body), 1000):
                part = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                if "drip" in q:
                    time.sleep(int(q["drip"]) / 1000)
            self.wfile.write(b"0\r\n\r\n")
            return True
        self.send(status, body, out)
        return True


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    if len(sys.argv) == 5 and sys.argv[2] == "--tls":
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    print("ready", flush=True)
    srv.serve_forever()
