"""Restart policies under faults, and ``moor system boot`` after a (simulated) host reboot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import Moor


def _state(moor: Moor, name: str) -> dict[str, object]:
    doc = json.loads(moor("inspect", "-f", "{{json .State}}", name).stdout)
    assert isinstance(doc, dict)
    return doc


def _conmon_pid(moor: Moor, cid: str) -> int:
    return int((moor.runroot / "containers" / cid / "conmon.pid").read_text().strip())


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z":
            return
        time.sleep(0.05)


def test_boot_starts_always_and_unless_stopped(moor: Moor, bb: str) -> None:
    names = {
        "alw": ["--restart", "always"],
        "unl": ["--restart", "unless-stopped"],
        "unl-stopped": ["--restart", "unless-stopped"],
        "alw-stopped": ["--restart", "always"],
        "no": [],
        "onf": ["--restart", "on-failure"],
    }
    ids = {}
    for name, opts in names.items():
        ids[name] = moor("run", "-d", "--name", name, *opts, "bb:1", "sleep", "1000").stdout.strip()
    moor("stop", "-t", "0", "unl-stopped", "alw-stopped")
    # the host goes down: every conmon and container process dies at once, without any
    # exit command, the mounts go and the run state (a tmpfs) is wiped
    for name in ("alw", "unl", "no", "onf"):
        pid = int(_state(moor, name)["Pid"])  # type: ignore[call-overload]
        conmon = _conmon_pid(moor, ids[name])
        os.kill(conmon, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        _wait_gone(conmon)
    for cid in ids.values():  # and the kernel's cgroups with it
        for d in Path("/sys/fs/cgroup").glob(f"*/moorage/{cid}"):
            d.rmdir()
    with open("/proc/mounts") as f:
        mounts = [
            ln.split()[1]
            for ln in f
            if ln.split()[1].startswith((str(moor.root), str(moor.runroot)))  # netns binds too
        ]
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", m], check=True)
    shutil.rmtree(moor.runroot)
    r = moor("system", "boot")
    assert sorted(r.stdout.split()) == ["alw", "alw-stopped", "unl"]
    running = {n: _state(moor, n)["Status"] for n in names}
    assert running == {
        "alw": "running", "unl": "running", "alw-stopped": "running",
        "unl-stopped": "exited", "no": "exited", "onf": "exited",
    }  # fmt: skip
    assert _state(moor, "no")["ExitCode"] == 137
    # they really run: exec reaches them
    assert moor("exec", "alw", "echo", "up").stdout == "up\n"
    # a second boot starts nothing more
    assert moor("system", "boot").stdout == ""


def test_crash_restarts_with_backoff(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "crash", "--restart", "always", "bb:1", "sleep", "1000")
    first = int(_state(moor, "crash")["Pid"])  # type: ignore[call-overload]
    os.kill(first, signal.SIGKILL)  # the process crashes
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = _state(moor, "crash")
        if st["Running"] and st["Pid"] not in (0, first):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("not restarted")
    assert json.loads(moor("inspect", "-f", "{{json .RestartCount}}", "crash").stdout) == 1
    until = f"{time.time() + 0.2:.3f}"
    actions = moor("events", "--since", "5m", "--until", until, "--filter", "container=crash",
                   "--format", "{{.Action}}").stdout.split()  # fmt: skip
    assert actions == ["create", "start", "die", "start"]
    moor("rm", "-f", "crash")


def test_restart_when_conmon_was_killed(moor: Moor, bb: str) -> None:
    """conmon killed, then the container dies: no exit command ran, so the next command
    that looks finds it ended and hands its restart policy on."""
    cid = moor("run", "-d", "--name", "orphan", "--restart", "on-failure",
               "bb:1", "sleep", "1000").stdout.strip()  # fmt: skip
    first = int(_state(moor, "orphan")["Pid"])  # type: ignore[call-overload]
    conmon = _conmon_pid(moor, cid)
    os.kill(conmon, signal.SIGKILL)
    _wait_gone(conmon)
    os.kill(first, signal.SIGKILL)
    _wait_gone(first)
    moor("ps", "-a")  # looks, records the exit (137: nobody saw it), hands the restart on
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = _state(moor, "orphan")
        if st["Running"] and st["Pid"] not in (0, first):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not restarted: {st}")
    assert moor("inspect", "-f", "{{.RestartCount}}", "orphan").stdout.strip() == "1"
    moor("rm", "-f", "orphan")
