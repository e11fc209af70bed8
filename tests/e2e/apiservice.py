"""A real ``moor system service`` on a private socket and store, for the API tests."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MOOR, Moor

DOCKER_CLIS = [p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if os.path.exists(p)]
if not DOCKER_CLIS and shutil.which("docker"):
    DOCKER_CLIS = [str(shutil.which("docker"))]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Service:
    """The running service: its socket, its process, and clients for it."""

    socket: Path
    proc: subprocess.Popen[bytes]
    moor: Moor
    home: Path

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = _UnixConnection(str(self.socket))
        data: bytes | None
        hdrs = dict(headers or {})
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
            hdrs.setdefault("Content-Type", "application/json")
        else:
            data = body
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def docker(
        self,
        *args: str,
        cli: str | None = None,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        assert DOCKER_CLIS, "no docker CLI"
        p = subprocess.run(
            [cli or DOCKER_CLIS[0], *args],
            input=input if input is not None else b"",
            capture_output=True,
            env=self.docker_env,
            timeout=timeout,
            check=False,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout!r}\n"
                f"stderr: {p.stderr!r}"
            )
        return p

    def docker_popen(self, *args: str, cli: str | None = None) -> subprocess.Popen[bytes]:
        """A docker command left running (``events``, ``logs -f``); stdout is a pipe."""
        assert DOCKER_CLIS, "no docker CLI"
        return subprocess.Popen(
            [cli or DOCKER_CLIS[0], *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.docker_env,
        )

    @property
    def docker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.home / "docker-config")
        env["HOME"] = str(self.home)
        return env


def start_service(moor: Moor, sock: Path, *extra: str) -> subprocess.Popen[bytes]:
    log = sock.with_name(sock.name + ".log")
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the service
        proc = subprocess.Popen(
            [MOOR, "system", "service", "--host", f"unix://{sock}", *extra],
            env=moor.env,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the service exited {proc.returncode}: {log.read_text()}")
        if sock.exists():
            try:
                conn = _UnixConnection(str(sock), timeout=5)
                conn.request("GET", "/_ping")
                if conn.getresponse().status == 200:
                    return proc
            except OSError:
                pass
        time.sleep(0.05)
    stop_service(proc)
    raise AssertionError("the service did not answer /_ping within 30 s")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    """End the service we started, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def api(moor: Moor, tmp_path: Path) -> Iterator[Service]:
    sock = tmp_path / "api.sock"
    proc = start_service(moor, sock)
    svc = Service(sock, proc, moor, tmp_path)
    try:
        yield svc
    finally:
        stop_service(proc)
