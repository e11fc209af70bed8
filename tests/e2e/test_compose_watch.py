"""``moor compose watch`` on a real container: a saved file is in the container within a
bounded wait; ``ignore`` globs and the build context's .dockerignore keep files out;
deletions follow; sync+restart restarts; rebuild rebuilds the image and recreates."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MOOR, Moor
from tests.e2e.test_compose_up import compose, containers

PROJECT = """
services:
  web:
    build: .
    command: sleep 1000
    stop_signal: KILL
    network_mode: none
    develop:
      watch:
        - {path: ./src, action: sync, target: /app, ignore: ['**/*.tmp']}
        - {path: ./conf, action: sync+restart, target: /etc/app}
        - {path: ./version, action: rebuild}
"""


class Watch:
    def __init__(self, moor: Moor, d: Path) -> None:
        self.proc = subprocess.Popen(
            [MOOR, "compose", "-p", "demo", "watch"], cwd=d, env=moor.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(text in line for line in self.lines):
                return
            assert self.proc.poll() is None, self.lines
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in {self.lines}")

    def stop(self) -> None:
        self.proc.terminate()  # our own process, by its handle
        self.proc.wait(10)
        self.thread.join(5)


@pytest.fixture
def watched(moor: Moor, bb: str, tmp_path: Path) -> Iterator[tuple[Path, Watch]]:
    (tmp_path / "compose.yaml").write_text(PROJECT)
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nCOPY version /version\n")
    (tmp_path / ".dockerignore").write_text("src/secret*\n")
    (tmp_path / "version").write_text("v1\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "conf").mkdir()
    w = Watch(moor, tmp_path)
    try:
        w.wait_line("Watch enabled")
        yield tmp_path, w
    finally:
        w.stop()
        compose(moor, tmp_path, "down", "--rmi", "local")


def eventually(check: Callable[[], bool], timeout: float = 10) -> float:
    """Seconds until ``check`` held (polled), or an AssertionError after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError("not within the wait")


def cat(moor: Moor, path: str) -> str | None:
    """The file's text as a process inside demo-web-1 sees it (None: no such file)."""
    r = moor("exec", "demo-web-1", "cat", path, check=False)
    return r.stdout if r.returncode == 0 else None


def test_sync_ignore_delete(moor: Moor, watched: tuple[Path, Watch]) -> None:
    d, w = watched
    (d / "src" / "a.txt").write_text("first\n")
    eventually(lambda: cat(moor, "/app/a.txt") == "first\n")  # ~0.3 s here, exec included
    # a new directory with a file in it; then a change to an existing file
    (d / "src" / "sub").mkdir()
    (d / "src" / "sub" / "b.txt").write_text("below\n")
    eventually(lambda: cat(moor, "/app/sub/b.txt") == "below\n")
    (d / "src" / "a.txt").write_text("second\n")
    eventually(lambda: cat(moor, "/app/a.txt") == "second\n")
    # ignored by the rule's glob and by the build context's .dockerignore
    (d / "src" / "x.tmp").write_text("no\n")
    (d / "src" / "sub" / "y.tmp").write_text("no\n")
    (d / "src" / "secret.key").write_text("no\n")
    (d / "src" / "after.txt").write_text("yes\n")
    eventually(lambda: cat(moor, "/app/after.txt") == "yes\n")
    for ignored in ("/app/x.tmp", "/app/sub/y.tmp", "/app/secret.key"):
        assert cat(moor, ignored) is None, ignored
    # deleted on the host: deleted in the container
    (d / "src" / "a.txt").unlink()
    eventually(lambda: cat(moor, "/app/a.txt") is None)
    assert any('Syncing service "web" after' in line for line in w.lines)


def test_sync_restart_and_rebuild(moor: Moor, watched: tuple[Path, Watch]) -> None:
    d, w = watched

    def started() -> str:
        return str(containers(moor)["demo-web-1"]["State"]["StartedAt"])  # type: ignore[index]

    before = started()
    old_id = containers(moor)["demo-web-1"]["Id"]
    (d / "conf" / "app.conf").write_text("level=debug\n")
    eventually(lambda: started() != before and cat(moor, "/etc/app/app.conf") == "level=debug\n")
    w.wait_line('Restarting service "web"')
    assert containers(moor)["demo-web-1"]["Id"] == old_id  # restarted, not recreated

    assert cat(moor, "/version") == "v1\n"
    (d / "version").write_text("v2\n")
    w.wait_line('service "web" successfully built')
    eventually(lambda: cat(moor, "/version") == "v2\n", timeout=60)
    assert containers(moor)["demo-web-1"]["Id"] != old_id
