#!/usr/bin/env python3
"""WebSocket load for tests/bench/tunnels.sh (stdlib only, one epoll loop, no threads).

  wsload.py origin PORT
      An echo app: answers the WebSocket handshake (RFC 6455 Sec-WebSocket-Accept), then
      sends back every byte it reads, as they come. The client's masked frames come back
      verbatim: the proxies between only carry bytes, and echoing needs no frame parsing,
      so the app costs as little as a Python app can.
  wsload.py client PORT N SECONDS [SIZE]
      Opens N WebSockets through the proxy at PORT (all must get 101), prints "OPEN", waits
      a second (the caller samples the proxy's RSS and CPU then), then keeps one message of
      SIZE bytes (a masked text frame, 64 by default) in flight per socket for SECONDS,
      prints a JSON line {"tunnels", "messages", "seconds", "msg_per_s"} and waits a second
      before closing everything (the caller samples CPU again when the line appears).
"""
import base64
import errno
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def origin(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns = {}  # fd -> [socket, head buffer or None once upgraded]
    while True:
        for fd, ev in ep.poll():
            if fd == ls.fileno():
                while True:
                    try:
                        s, _ = ls.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[s.fileno()] = [s, b""]
                    ep.register(s.fileno(), select.EPOLLIN)
                continue
            s, head = conns[fd]
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                s.close()
                del conns[fd]
                continue
            if head is None:
                s.sendall(data)  # blocking enough for a bench: small frames, fast peers
                continue
            head += data
            if b"\r\n\r\n" not in head:
                conns[fd][1] = head
                continue
            h, _, rest = head.partition(b"\r\n\r\n")
            key = b""
            for line in h.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + rest)
            conns[fd][1] = None


def frame(size):
    payload = b"m" * size
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def client(port, n, seconds, size):
    ep = select.epoll()
    socks = {}
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        socks[s.fileno()] = s
    for s in socks.values():
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                sys.exit("bench: a tunnel closed during its handshake")
            buf += d
        if not buf.startswith(b"HTTP/1.1 101"):
            sys.exit("bench: no 101: " + buf.split(b"\r\n")[0].decode("latin-1"))
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
    print("OPEN", flush=True)
    time.sleep(1.0)
    msg = frame(size)
    want = {fd: len(msg) for fd in socks}
    for s in socks.values():
        s.send(msg)
    messages = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        for fd, ev in ep.poll(end - now):
            s = socks[fd]
            try:
                d = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            if not d:
                sys.exit("bench: a tunnel closed while echoing")
            want[fd] -= len(d)
            while want[fd] <= 0:
                messages += 1
                want[fd] += len(msg)
                try:
                    s.send(msg)
                except OSError as e:
                    if e.errno != errno.EAGAIN:
                        raise
    took = time.monotonic() - start
    print(json.dumps({"tunnels": n, "messages": messages, "seconds": round(took, 3),
                      "msg_per_s": round(messages / took)}), flush=True)
    time.sleep(1.0)
    for s in socks.values():
        s.close()


if __name__ == "__main__":
    if sys.argv[1] == "origin":
        origin(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]),
               int(sys.argv[5]) if len(sys.argv) > 5 else 64)
