"""Spawning conmon, the per-container monitor: it owns the container's stdio and log, records
the exit code, and runs moorage's exit command, so containers outlive the ``moor`` command.

conmon is told the runtime's create result through a sync pipe (``_OCI_SYNCPIPE``): it writes
``{"data": PID}``, or ``{"data": -1, "message": ...}`` when creation failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from moorage.errors import NotFound
from moorage.runtime import OCIRuntime, RuntimeFailure

CONMON_PATHS = ("/usr/bin/conmon", "/usr/libexec/podman/conmon", "/usr/local/bin/conmon")


def conmon_path() -> str:
    for p in CONMON_PATHS:
        if os.path.exists(p):
            return p
    found = shutil.which("conmon")
    if found is None:
        raise NotFound("conmon is not installed (apt-get install conmon)")
    return found


@dataclass(frozen=True)
class ConmonLayout:
    """Where conmon keeps a container's files."""

    bundle: Path  # config.json (conmon adds its ctl and winsz FIFOs here)
    run_dir: Path  # pid files, exit dir, attach socket dir (tmpfs)
    log_path: Path

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "pid"

    @property
    def conmon_pidfile(self) -> Path:
        return self.run_dir / "conmon.pid"

    @property
    def exit_dir(self) -> Path:
        return self.run_dir / "exits"

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "sockets"

    def exit_file(self, cid: str) -> Path:
        return self.exit_dir / cid

    def attach_socket(self, cid: str) -> Path:
        # with --full-attach conmon binds the socket in the bundle dir itself
        return self.bundle / "attach"

    @property
    def ctl(self) -> Path:
        return self.bundle / "ctl"

    @property
    def winsz(self) -> Path:
        return self.bundle / "winsz"


def spawn(
    runtime: OCIRuntime,
    cid: str,
    name: str,
    layout: ConmonLayout,
    *,
    stdin: bool,
    tty: bool,
    exit_command: list[str],
    log_args: list[str],
    log_driver: str = "k8s-file",
) -> tuple[int, int]:
    """Start conmon, which creates the container (not started); returns (pid, conmon pid)."""
    layout.exit_dir.mkdir(parents=True, exist_ok=True)
    layout.socket_dir.mkdir(parents=True, exist_ok=True)
    for stale in (layout.pidfile, layout.exit_file(cid)):
        stale.unlink(missing_ok=True)
    args = [
        conmon_path(),
        "--api-version", "1",
        "-c", cid,
        "-u", cid,
        "-n", name,
        "-r", runtime.path,
        "-b", str(layout.bundle),
        "-p", str(layout.pidfile),
        "--exit-dir", str(layout.exit_dir),
        "--conmon-pidfile", str(layout.conmon_pidfile),
        "--socket-dir-path", str(layout.socket_dir),
        "--full-attach",
        "-l", _log_target(log_driver, layout.log_path, cid),
        "--log-level", "error",
        *log_args,
    ]  # fmt: skip
    for arg in runtime.global_args():
        args += ["--runtime-arg", arg]
    if stdin:
        args.append("-i")
    if tty:
        # a client that goes away (detach keys, a killed moor) must not take the terminal's
        # input side with it: the next attach types into the same shell
        args += ["-t", "--leave-stdin-open"]
    if exit_command:
        args += ["--exit-command", exit_command[0]]
        for a in exit_command[1:]:
            args += ["--exit-command-arg", a]
    r, w = os.pipe()
    try:
        env = {"_OCI_SYNCPIPE": str(w), "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")}
        if "MOORAGE_WARM" in os.environ:  # the exit command honours MOORAGE_WARM=0 too
            env["MOORAGE_WARM"] = os.environ["MOORAGE_WARM"]
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(w,),
            env=env,
            cwd=layout.bundle,  # conmon marks an OOM kill with a file "oom" in its cwd
        )
        os.close(w)
        w = -1
        data = _read_sync(r)
        _, err = proc.communicate()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    conmon_pid = read_pid(layout.conmon_pidfile)
    if not data:
        msg = err.decode(errors="replace").strip() or "conmon exited without a word"
        raise RuntimeFailure(f"conmon failed: {msg}")
    doc = json.loads(data)
    pid = int(doc.get("data", -1))
    if pid <= 0:
        message = runtime_message(str(doc.get("message") or "container creation failed"))
        raise CreateFailed(message, conmon_pid)
    return pid, conmon_pid


def _log_target(driver: str, path: Path, cid: str) -> str:
    """conmon's ``-l DRIVER:PATH``: json-file is written as k8s-file (as Podman does)."""
    if driver == "none":
        return "none"
    if driver == "journald":
        return f"journald:{cid}"
    return f"k8s-file:{path}"


_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def runtime_message(text: str) -> str:
    """runc logs as logrus (``time=... level=error msg="..."``): keep just the message."""
    m = _LOGRUS_MSG.search(text)
    if m is None:
        return text.strip()
    return str(json.loads(f'"{m.group(1)}"'))


class CreateFailed(RuntimeFailure):
    """The runtime could not create the container (message from runc, via conmon)."""

    def __init__(self, message: str, conmon_pid: int) -> None:
        super().__init__(message)
        self.conmon_pid = conmon_pid


def _read_sync(fd: int) -> bytes:
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
        try:
            json.loads(data)
            return data
        except ValueError:
            continue


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
