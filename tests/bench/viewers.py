#!/usr/bin/env python3
"""viewers.py PORT N — N dashboard viewers of flashgate's admin listener on 127.0.0.1:PORT:
each opens /stats/stream and reads everything it is sent, until SIGTERM. Prints "ready"
once every viewer got its 200. For tests/bench/run.sh (scenario dashboard)."""
import selectors
import signal
import socket
import sys


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    sel = selectors.DefaultSelector()
    heads = {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /stats/stream HTTP/1.1\r\nHost: bench\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        heads[s] = b""
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    ready = False
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                d = s.recv(1 << 16)
            except BlockingIOError:
                continue
            if not d:
                sys.exit("viewers: the stream closed a viewer")
            if s in heads:
                heads[s] += d
                if b"\r\n\r\n" in heads[s]:
                    if not heads[s].startswith(b"HTTP/1.1 200"):
                        sys.exit(f"viewers: {heads[s].splitlines()[0].decode()}")
                    del heads[s]
        if not ready and not heads:
            ready = True
            print("ready", flush=True)


if __name__ == "__main__":
    main()
