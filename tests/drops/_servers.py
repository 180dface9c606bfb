"""Tiny local servers for the drop tests: a static HTTP server, a webhook sink, an SMTP sink."""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import threading
import time
from contextlib import contextmanager
from functools import partial


class _Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def static_server(root, *, delay: float = 0.0):
    """Serve folder ``root`` over HTTP; yields (base URL, stats) with the peak concurrency."""
    stats = {"active": 0, "peak": 0, "requests": 0}
    lock = threading.Lock()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            with lock:
                stats["active"] += 1
                stats["requests"] += 1
                stats["peak"] = max(stats["peak"], stats["active"])
            time.sleep(delay)
            with lock:  # before the response: the client cannot start its next one earlier
                stats["active"] -= 1
            super().do_GET()

        def log_message(self, *a):
            pass

    srv = _Threaded(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", stats
    finally:
        srv.shutdown()
        srv.server_close()


@contextmanager
def webhook_sink(status: int = 200):
    """Accept POSTs; yields (URL, list of decoded JSON bodies)."""
    got: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(json.loads(body))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = _Threaded(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    finally:
        srv.shutdown()
        srv.server_close()


@contextmanager
def smtp_sink():
    """A minimal SMTP server (one connection at a time); yields (port, list of message texts)."""
    got: list[str] = []
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(5)
    ls.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = ls.accept()
            except OSError:
                continue
            with conn, conn.makefile("rb") as rf:
                conn.sendall(b"220 sink ESMTP\r\n")
                while True:
                    line = rf.readline()
                    if not line:
                        break
                    cmd = line.strip().upper()
                    if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                        conn.sendall(b"250 sink\r\n")
                    elif cmd == b"DATA":
                        conn.sendall(b"354 go on\r\n")
                        data = []
                        while (ln := rf.readline()) not in (b".\r\n", b""):
                            data.append(ln)
                        got.append(b"".join(data).decode())
                        conn.sendall(b"250 queued\r\n")
                    elif cmd == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    else:
                        conn.sendall(b"250 ok\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield ls.getsockname()[1], got
    finally:
        stop.set()
        t.join(2)
        ls.close()


def dead_port() -> int:
    """A local port with nothing listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
