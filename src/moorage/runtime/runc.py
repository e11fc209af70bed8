"""runc (and crun, which takes the same command line) as an OCIRuntime."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from moorage.errors import InvalidArgument, NotFound
from moorage.runtime import RuntimeFailure

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
        self._run("start", cid)

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
