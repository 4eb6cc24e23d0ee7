#!/usr/bin/env python3
"""A test app for the other protocols an app speaks through flashgate (stdlib only).

  GET /ws...          WebSocket (RFC 6455) when asked with Upgrade: websocket: the
                      handshake, then every text or binary message is echoed; a text
                      message "server-close" makes the app send a Close frame and close;
                      a Close from the peer is answered with a Close, then the app closes.
                      Without Upgrade (or with ?refuse=1): 426 / 403, an ordinary answer.
  GET /upgrade-any    101 to any Upgrade (raw bytes echoed after it): other protocols.
  GET /hints          103 Early Hints (Link), then 200 "hinted"; ?n=K sends K 103s and
                      a 102 Processing first; with Expect: 100-continue a 100 first,
                      and a request body is read before answering.
  GET /sse?n=N&ms=M   text/event-stream, chunked: N events M ms apart, each one
                      "data: <seq> <unix time sent>\\n\\n"; ?cc= sets Cache-Control.
  GET /__stats        JSON: upgrades, open websockets, requests, upgrade headers seen.
Anything else: 200 "ok". Usage: protoorigin.py PORT
"""
import asyncio
import base64
import hashlib
import json
import struct
import sys
import time
from urllib.parse import parse_qs, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STATS = {"upgrades": 0, "open": 0, "requests": 0, "connections": 0, "closed_by_peer": 0,
         "upgrade_headers": [], "connection_headers": []}


async def read_head(reader):
    try:
        data = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = data.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return method, target, headers


async def read_frame(reader):
    """One frame: (opcode, payload) or None at EOF. Client frames are masked."""
    try:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if b1 & 0x80 else None
        payload = await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return b0 & 0x0F, payload


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


async def websocket(reader, writer, headers):
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    STATS["upgrades"] += 1
    STATS["open"] += 1
    try:
        while True:
            f = await read_frame(reader)
            if f is None:
                STATS["closed_by_peer"] += 1
                return
            op, payload = f
            if op == 0x8:  # close: answer it, then close the connection
                writer.write(frame(0x8, payload[:2]))
                await writer.drain()
                STATS["closed_by_peer"] += 1
                return
            if op == 0x9:
                writer.write(frame(0xA, payload))
            elif op == 0x1 and payload == b"server-close":
                writer.write(frame(0x8, struct.pack("!H", 1000)))
                await writer.drain()
                return
            elif op in (0x1, 0x2):
                writer.write(frame(op, payload))
            await writer.drain()
    finally:
        STATS["open"] -= 1
        writer.close()


async def respond(writer, status, body, ctype="text/plain", extra=""):
    writer.write(("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                  % (status, ctype, len(body), extra)).encode() + body)
    await writer.drain()


async def sse(writer, q):
    n = int(q.get("n", ["10"])[0])
    ms = int(q.get("ms", ["100"])[0])
    cc = q.get("cc", ["no-store"])[0]
    writer.write(("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  "Cache-Control: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % cc).encode())
    await writer.drain()
    for i in range(n):
        ev = ("data: %d %.6f\n\n" % (i, time.time())).encode()
        writer.write(b"%x\r\n%s\r\n" % (len(ev), ev))
        await writer.drain()
        await asyncio.sleep(ms / 1000.0)
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def handle(reader, writer):
    STATS["connections"] += 1
    try:
        while True:
            req = await read_head(reader)
            if req is None:
                break
            method, target, headers = req
            url = urlsplit(target)
            if not url.path.startswith("/__"):
                STATS["requests"] += 1
            q = parse_qs(url.query)
            if "upgrade" in headers:
                STATS["upgrade_headers"].append(headers["upgrade"])
                STATS["connection_headers"].append(headers.get("connection", ""))
            if url.path == "/__stats":
                await respond(writer, "200 OK", json.dumps(STATS).encode(), "application/json")
            elif url.path == "/__reset":
                STATS.update(upgrades=0, requests=0, closed_by_peer=0, upgrade_headers=[],
                             connection_headers=[])
                await respond(writer, "200 OK", b"ok")
            elif url.path.startswith("/ws"):
                wants = headers.get("upgrade", "").lower() == "websocket" and \
                    "upgrade" in headers.get("connection", "").lower()
                if q.get("refuse"):
                    await respond(writer, "403 Forbidden", b"no socket for you")
                elif not wants:
                    await respond(writer, "426 Upgrade Required", b"websocket only",
                                  extra="Upgrade: websocket\r\n")
                else:
                    await websocket(reader, writer, headers)
                    return
            elif url.path == "/upgrade-any" and "upgrade" in headers:
                writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
                              "Connection: upgrade\r\n\r\n" % headers["upgrade"]).encode())
                STATS["upgrades"] += 1
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
                writer.close()
                return
            elif url.path == "/hints":
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                n = int(q.get("n", ["1"])[0])
                if n > 1:
                    writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
                for i in range(n):
                    writer.write(("HTTP/1.1 103 Early Hints\r\nLink: </style%d.css>; "
                                  "rel=preload; as=style\r\n\r\n" % i).encode())
                await writer.drain()
                await asyncio.sleep(0.05)
                await respond(writer, "200 OK", b"hinted", extra="Link: </style0.css>; rel=preload\r\n")
            elif url.path == "/sse":
                await sse(writer, q)
            else:
                await respond(writer, "200 OK", b"ok")
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024,
                                        limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
