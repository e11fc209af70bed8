"""The demo's application for real (``examples/counter``): a Debian bookworm base image made by
debootstrap (``scripts/base-images debian``, cached), Redis built from the classic Dockerfile
and a Python hit counter linked to it, run with ``moor compose``. The builds install packages
from Debian's mirror, so these tests skip, saying why, where the mirror cannot be reached; the
refusals of ``base-images`` itself need no mirror and always run."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import MOOR, REPO, Moor

BASE_IMAGES = str(REPO / "scripts" / "base-images")
UNREACHABLE = "http://127.0.0.1:9/debian"  # the discard port: nothing listens on loopback


def base_images(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASE_IMAGES, "debian", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "MOOR": MOOR, **env},
    )  # fmt: skip


@pytest.fixture(scope="session")
def debian_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Debian bookworm root filesystem tarball: debootstrap runs once per machine (the
    tarball is cached by ``base-images``), every later session copies it."""
    check = base_images("--check-mirror")
    if check.returncode == 3:
        pytest.skip(f"Debian's mirror is needed: {check.stderr.strip()}")
    assert check.returncode == 0, check.stderr
    out = tmp_path_factory.mktemp("debian") / "debian-rootfs.tar"
    made = base_images("--tar", str(out), timeout=900)
    if made.returncode == 3:
        pytest.skip(f"Debian's mirror is needed: {made.stderr.strip()}")
    assert made.returncode == 0, made.stderr
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """One GET on loopback: status and body (an error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_counter_app_on_debian(moor: Moor, debian_tar: Path, tmp_path: Path) -> None:
    """``up -d --build`` builds both images on the Debian base (their RUN steps reach the
    mirror), each request through the published port reaches Redis by its link name and the
    count rises, ps and logs show both services, ``down -v`` leaves nothing."""
    moor("import", "--change", 'CMD ["bash"]', str(debian_tar), "debian:bookworm")
    examples = tmp_path / "examples"
    for name in ("counter", "redis"):
        shutil.copytree(REPO / "examples" / name, examples / name)
    app = examples / "counter"
    port = free_port()
    env = {**moor.env, "WEB_PORT": str(port)}

    def compose(*args: str, timeout: float = 120) -> str:
        p = subprocess.run(
            [MOOR, "compose", *args], cwd=app, capture_output=True, text=True, env=env,
            timeout=timeout, check=False,
        )  # fmt: skip
        assert p.returncode == 0, (args, p.stdout[-3000:], p.stderr[-3000:])
        return p.stdout + p.stderr

    out = compose("up", "-d", "--build", timeout=900)
    assert "Successfully tagged counter-db:latest" in out, out[-3000:]
    assert "Successfully tagged counter-web:latest" in out, out[-3000:]
    db = moor("image", "inspect", "-f", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
              "counter-db").stdout.strip()  # fmt: skip
    assert db == '["/usr/bin/redis-server"] ["--protected-mode","no","--bind","0.0.0.0"]'

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    ping: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        try:
            ping = get(f"{base}/ping")
        except OSError:
            ping = None
        if ping is not None and ping[0] == 200:
            break
        time.sleep(0.2)
    assert ping == (200, "PONG\n"), ping

    counts = []
    for _ in range(3):
        status, body = get(f"{base}/")
        assert status == 200, body
        m = re.fullmatch(r"Hello from \w+! I have been seen (\d+) times\.\n", body)
        assert m, body
        counts.append(int(m.group(1)))
    assert counts == [1, 2, 3]
    assert compose("exec", "-T", "db", "redis-cli", "get", "hits").strip() == "3"

    ps = compose("ps", "--format", "{{.Service}} {{.State}} {{.Ports}}").splitlines()
    assert sorted(ps) == ["db running 6379/tcp", f"web running 0.0.0.0:{port}->8000/tcp"]
    logs = compose("logs")
    assert "counter-db-1   | " in logs and "Ready to accept connections" in logs
    assert logs.count('"GET / HTTP/1.1" 200') == 3, logs

    compose("down", "-v")
    assert moor("ps", "-aq").stdout == ""
    assert "counter_default" not in moor("network", "ls", "--format", "{{.Name}}").stdout


def test_debian_tarball_is_cached(debian_tar: Path, tmp_path: Path) -> None:
    """A second ``base-images debian`` takes the cached tarball: no debootstrap, same bytes."""
    again = tmp_path / "again.tar"
    r = base_images("--tar", str(again))
    assert r.returncode == 0, r.stderr
    assert "using the cached" in r.stderr and "debootstrap --variant" not in r.stderr
    assert again.stat().st_size == debian_tar.stat().st_size
    assert subprocess.run(["cmp", "-s", str(again), str(debian_tar)]).returncode == 0


def test_unreachable_mirror_is_said_with_exit_3(tmp_path: Path) -> None:
    """No mirror, no cached tarball: a clear message naming the mirror, exit 3, and nothing
    left in the cache."""
    r = base_images("--check-mirror", DEBIAN_MIRROR=UNREACHABLE)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.startswith(f"base-images: Debian's mirror {UNREACHABLE} cannot be reached: ")
    cache = tmp_path / "cache"
    out = tmp_path / "out.tar"
    r = base_images("--cache", str(cache), "--tar", str(out), DEBIAN_MIRROR=UNREACHABLE)
    assert r.returncode == 3, r.stderr
    assert f"Debian's mirror {UNREACHABLE} cannot be reached" in r.stderr
    assert not out.exists()
    assert [p.name for p in cache.iterdir()] == [".lock"]


def test_usage_errors() -> None:
    r = base_images("--bogus")
    assert r.returncode == 2 and "base-images: unknown argument --bogus" in r.stderr
    r = base_images("--tag")
    assert r.returncode == 2 and r.stderr == "base-images: --tag needs a value\n"
    r = subprocess.run([BASE_IMAGES, "alpine"], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and r.stderr.startswith("usage: scripts/base-images busybox|debian")
