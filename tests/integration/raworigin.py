"""An origin that answers with raw bytes a test chooses: hostile, malformed, frozen or
dripping responses that a real HTTP server would never send.

RawOrigin(answer) listens on 127.0.0.1; for every request it reads (head and a
Content-Length body) it records (connection number, request head) and calls
answer(sock, head, origin): answer writes what it wants and returns True to read the next
request on the connection, False to close it, or None to leave it open and silent (a
frozen app). Everything is bounded: sockets time out, threads are daemons.
"""
import socket
import threading
import time


class RawOrigin:
    def __init__(self, answer):
        self.answer = answer
        self.lock = threading.Lock()
        self.requests = []  # (connection number, head bytes)
        self.connections = 0
        self.held = []  # sockets left open by answers that return None
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(256)
        self.port = self.srv.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, path=None):
        with self.lock:
            return sum(1 for _, h in self.requests
                       if path is None or h.split(b" ", 2)[1] == path.encode())

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(s, n), daemon=True).start()

    def _serve(self, s, n):
        s.settimeout(30)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        s.close()
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        need = int(v.strip())
                        while len(buf) < need:
                            d = s.recv(65536)
                            if not d:
                                break
                            buf += d
                        buf = buf[need:]
                with self.lock:
                    self.requests.append((n, head))
                keep = self.answer(s, head, self)
                if keep is None:
                    with self.lock:
                        self.held.append(s)
                    return
                if not keep:
                    s.close()
                    return
        except OSError:
            s.close()

    def stop(self):
        self.stopped = True
        self.srv.close()
        with self.lock:
            for s in self.held:
                s.close()


def path_of(head):
    return head.split(b" ", 2)[1].decode("latin-1")


def drip(sock, data, every):
    """Send data a byte at a time, every seconds apart (stops when the peer is gone)."""
    for i in range(len(data)):
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return False
        time.sleep(every)
    return True
