"""The registry client against a deliberately flaky registry: transfers resume with Range."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from moorage.distribution.client import RegistryClient
from moorage.oci.digest import Digest

BLOB = os.urandom(3 * 2**20 + 123)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class Flaky(BaseHTTPRequestHandler):
    """Serves one blob; the first full GET breaks off halfway through."""

    broken = 0
    ranges: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        if self.path != f"/v2/repo/blobs/{DIGEST}":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rng = self.headers.get("Range")
        if rng is None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOB)))
            self.end_headers()
            if Flaky.broken == 0:
                Flaky.broken += 1
                self.wfile.write(BLOB[: len(BLOB) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(BLOB)
            return
        Flaky.ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-"))
        self.send_response(206)
        self.send_header("Content-Length", str(len(BLOB) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}")
        self.end_headers()
        self.wfile.write(BLOB[start:])


@pytest.fixture
def flaky() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_resumes_after_a_broken_connection(flaky: str) -> None:
    client = RegistryClient(flaky)
    seen: list[int] = []
    stream = client.blob_stream("repo", Digest.parse(DIGEST), len(BLOB), seen.append)
    got = b""
    while chunk := stream.read(1 << 16):
        got += chunk
    stream.close()
    client.close()
    assert got == BLOB
    assert Flaky.broken == 1 and len(Flaky.ranges) == 1
    assert int(Flaky.ranges[0].removeprefix("bytes=").rstrip("-")) > 0
    assert sum(seen) == len(BLOB)
