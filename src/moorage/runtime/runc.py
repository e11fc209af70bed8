"""runc (and crun, which takes the same command line) as an OCIRuntime."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from moorage.errors import InvalidArgument, NotFound
from moorage.runtime import RuntimeFailure, process_alive

_KNOWN = {"runc": ("/usr/sbin/runc", "/usr/bin/runc"), "crun": ("/usr/bin/crun",)}


class RuncLike:
    def __init__(self, name: str, path: str, state_root: Path) -> None:
        self.name = name
        self.path = path
        self.state_root = state_root

    @classmethod
    def named(cls, name: str, state_root: Path) -> RuncLike:
        if name not in _KNOWN:
            raise InvalidArgument(f"unknown runtime {name!r}: use runc or crun")
        for p in _KNOWN[name]:
            if Path(p).exists():
                return cls(name, p, state_root / name)
        found = shutil.which(name)
        if found is None:
            raise NotFound(f"runtime {name} is not installed (apt-get install {name})")
        return cls(name, found, state_root / name)

    def global_args(self) -> list[str]:
        return ["--root", str(self.state_root)]

    def _run(self, *args: str, input: bytes | None = None) -> bytes:
        p = subprocess.run(
            [self.path, *self.global_args(), *args],
            input=input,
            capture_output=True,
            check=False,
        )
        if p.returncode != 0:
            msg = p.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeFailure(f"{self.name} {args[0]}: {msg[-1] if msg else 'failed'}")
        return p.stdout

    def run(
        self, cid: str, bundle: Path, *, pid_file: Path, log_file: Path, stdin: bool
    ) -> subprocess.Popen[bytes]:
        """``runc run`` in the foreground: the container gets our stdio as its own (no pipes),
        the runtime forwards the signals it receives to it and exits with its status (128+N
        for a signal), deleting the container's runtime state. The runtime's own errors go to
        ``log_file`` (JSON lines), never to the container's stderr. It runs in a process group
        of its own, so a terminal's Ctrl-C reaches it only through whoever forwards it."""
        args = [self.path, *self.global_args(), "--log", str(log_file), "--log-format", "json"]
        args += ["run", "--bundle", str(bundle), "--pid-file", str(pid_file), cid]
        return subprocess.Popen(args, stdin=None if stdin else subprocess.DEVNULL, process_group=0)

    def start(self, cid: str) -> None:
        if self.name == "runc" and self._start_through_fifo(cid):
            return
        self._run("start", cid)

    def _start_through_fifo(self, cid: str) -> bool:
        """What ``runc start`` does, without starting a second Go program (~20 ms here).

        A created runc container's init waits to open ``exec.fifo`` in its state directory for
        writing; it writes one byte, then execs the user's process (closing the fifo). ``runc
        start`` reads that byte and removes the fifo, which is also how runc tells "created"
        from "running". Done here: open the fifo without blocking, wait for the byte while the
        init lives, read to the end, remove it. False (use ``runc start``) where there is no
        fifo, i.e. a state layout this code does not know."""
        fifo = self.state_root / cid / "exec.fifo"
        try:
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            pid = _init_pid(self.state_root / cid / "state.json")
            data = b""
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP)
            deadline = time.monotonic() + 60
            while True:
                if poller.poll(100):
                    chunk = os.read(fd, 64)
                    if not chunk:
                        break  # the init closed it: it exec'd (or died)
                    data += chunk
                    continue
                if not process_alive(pid) or time.monotonic() > deadline:
                    with contextlib.suppress(BlockingIOError):
                        data += os.read(fd, 64)
                    break
        finally:
            os.close(fd)
        if not data:
            raise RuntimeFailure(f"{self.name} start: container process is already dead")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fifo)
        return True

    def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None:
        self._run("kill", *(["--all"] if all_processes else []), cid, str(signal))

    def delete(self, cid: str, *, force: bool = False) -> None:
        try:
            self._run("delete", *(["--force"] if force else []), cid)
        except RuntimeFailure as e:
            if "does not exist" not in str(e) and "not found" not in str(e):
                raise

    def state(self, cid: str) -> dict[str, Any] | None:
        try:
            out = self._run("state", cid)
        except RuntimeFailure as e:
            if "does not exist" in str(e) or "not found" in str(e):
                return None
            raise
        doc: dict[str, Any] = json.loads(out)
        return doc

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        self._run("update", "--resources", "-", cid, input=json.dumps(resources).encode())

    def pids(self, cid: str) -> list[int]:
        out = self._run("ps", "--format", "json", cid)
        return [int(p) for p in json.loads(out) or []]


def _init_pid(state_json: Path) -> int:
    try:
        return int(json.loads(state_json.read_bytes())["init_process_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
