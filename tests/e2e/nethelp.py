"""Helpers the network tests share: unique names, a free loopback port, a patient GET."""

from __future__ import annotations

import os
import socket
import time
import urllib.request


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{os.urandom(4).hex()}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 10, per_try: float = 3, pause: float = 0.1) -> bytes:
    """The body at ``url`` (loopback only), retried until ``timeout``: a container's server
    may still be starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=per_try) as r:
                body: bytes = r.read()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
