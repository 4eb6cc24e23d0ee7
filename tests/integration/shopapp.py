#!/usr/bin/env python3
"""The shop behind a waiting room, for tests/integration/test_waitroom.py.

Every request is answered 200 with a small HTML page; the app records, for each admitted
session (the ticket in flashgate's fgwa_<room> cookie), when it first saw it: the "new
sessions" the room lets in. Control (path decides):
  /__sessions   JSON {"first_seen": {ticket: unix time}, "requests": n, "no_session": n}
  /__delay?ms=N every answer waits N ms from now on (the app slows down); ms=0: fast again
  /__reset      forget the sessions
Usage: shopapp.py PORT
"""
import json
import re
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
FIRST_SEEN = {}
COUNTS = {"requests": 0, "no_session": 0}
DELAY = [0.0]
SESSION = re.compile(r"fgwa_[A-Za-z0-9_.-]+=1\.A\.(\d+)\.")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body, ctype="text/html; charset=utf-8"):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        u = urlsplit(self.path)
        if u.path == "/__sessions":
            with LOCK:
                doc = {"first_seen": dict(FIRST_SEEN), **COUNTS}
            self.answer(json.dumps(doc), "application/json")
            return
        if u.path == "/__delay":
            DELAY[0] = int(parse_qs(u.query).get("ms", ["0"])[0]) / 1000.0
            self.answer("ok", "text/plain")
            return
        if u.path == "/__reset":
            with LOCK:
                FIRST_SEEN.clear()
            self.answer("ok", "text/plain")
            return
        now = time.time()
        m = SESSION.search(self.headers.get("Cookie", ""))
        with LOCK:
            COUNTS["requests"] += 1
            if m is None:
                COUNTS["no_session"] += 1
            else:
                FIRST_SEEN.setdefault(m.group(1), now)
        if DELAY[0] > 0:
            time.sleep(DELAY[0])
        self.answer("<!doctype html><title>Shop</title><h1 id=shop>The shop: " + u.path + "</h1>")


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
