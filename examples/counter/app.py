"""A hit counter: each request increments a key in Redis (the `db` service) and says how many
times the page was seen. Python's standard library only; Redis is spoken through RESP."""

import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DB = (os.environ.get("REDIS_HOST", "db"), int(os.environ.get("REDIS_PORT", "6379")))


def command(*words: str) -> bytes:
    """Send one command as a RESP array of bulk strings; return the reply's first line."""
    out = [f"*{len(words)}\r\n".encode()]
    for w in words:
        data = w.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(DB, timeout=5) as s:
        s.sendall(b"".join(out))
        with s.makefile("rb") as replies:
            reply = replies.readline()
    if not reply.endswith(b"\r\n"):
        raise OSError("the connection closed before Redis answered")
    if reply.startswith(b"-"):
        raise OSError(reply[1:].strip().decode())
    return reply.strip()


class Counter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ping":  # ready: the store answers (and nothing is counted)
            try:
                self.answer(200, command("PING")[1:].decode() + "\n")
            except OSError as e:
                self.answer(503, f"the key-value store {DB[0]}:{DB[1]} cannot be reached: {e}\n")
            return
        if self.path not in ("/", "/index.html"):
            self.answer(404, "not found\n")
            return
        try:
            hits = int(command("INCR", "hits")[1:])  # an integer reply: b":42"
        except (OSError, ValueError) as e:
            self.answer(503, f"the key-value store {DB[0]}:{DB[1]} cannot be reached: {e}\n")
            return
        self.answer(200, f"Hello from {socket.gethostname()}! I have been seen {hits} times.\n")

    def answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    # as PID 1 nothing stops on SIGTERM unless it says so: `stop` would wait its timeout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"hit counter on :8000, counting in {DB[0]}:{DB[1]}")
    ThreadingHTTPServer(("0.0.0.0", 8000), Counter).serve_forever()
