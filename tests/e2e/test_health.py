"""Health checks: --health-* and the image's HEALTHCHECK, the on-demand supervisor, ps and
inspect, moor healthcheck run, hung probes killed at their timeout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Moor


def _supervisor_pid(moor: Moor) -> int:
    try:
        text = (moor.runroot / "supervisor.lock").read_text().strip()
    except FileNotFoundError:
        return 0
    pid = int(text or 0)
    return pid if pid and _is_supervisor(pid, moor.runroot) else 0


def _is_supervisor(pid: int, runroot: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"moorage.engine.supervisor" in cmdline and str(runroot).encode() in cmdline


def _watchdogs(moor: Moor) -> list[int]:
    """This test's supervisor watchdogs (``sh -c ... moorage-supervisor-watchdog LOCK``)."""
    lock = str(moor.runroot / "supervisor.lock").encode()
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"moorage-supervisor-watchdog" in argv and lock in argv:
            found.append(int(p.name))
    return found


@pytest.fixture
def hmoor(moor: Moor) -> Iterator[Moor]:
    """``moor``, and afterwards the end of this test's supervisor and its watchdog (by pid;
    SIGTERM is an ordinary end, so the watchdog goes without starting another)."""
    yield moor
    ids = moor("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        moor("rm", "-f", *ids, check=False)
    pid = _supervisor_pid(moor)
    if pid:
        os.kill(pid, signal.SIGTERM)
        _until(lambda: _state(pid) in (b"X", b"Z"), timeout=10)
    with contextlib.suppress(AssertionError):
        _until(lambda: not _watchdogs(moor), timeout=5)
    for w in _watchdogs(moor):
        os.kill(w, signal.SIGKILL)


def _until(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def _health(moor: Moor, name: str) -> dict[str, object]:
    doc = json.loads(moor("inspect", "-f", "{{json .State.Health}}", name).stdout)
    assert isinstance(doc, dict)
    return doc


def test_status_follows_the_check(hmoor: Moor, bb: str) -> None:
    moor = hmoor
    moor("run", "-d", "--name", "hh", "--health-cmd", "test -e /tmp/ok", "--health-interval",
         "1s", "--health-retries", "2", "bb:1", "sleep", "1000")  # fmt: skip
    assert "(health: starting)" in moor("ps").stdout
    assert moor("ps", "-q", "--filter", "health=starting").stdout.strip()
    _until(lambda: _health(moor, "hh")["Status"] == "unhealthy")
    assert "(unhealthy)" in moor("ps").stdout
    doc = _health(moor, "hh")
    assert doc["FailingStreak"] >= 2  # type: ignore[operator]
    log = doc["Log"]
    assert isinstance(log, list) and log[-1]["ExitCode"] == 1
    assert set(log[-1]) == {"Start", "End", "ExitCode", "Output"}
    moor("exec", "hh", "touch", "/tmp/ok")
    _until(lambda: _health(moor, "hh")["Status"] == "healthy")
    ps = moor("ps", "--format", "{{.Status}}", "--filter", "health=healthy").stdout
    assert ps.strip().endswith("(healthy)")
    assert moor("ps", "-q", "--filter", "health=unhealthy").stdout == ""
    assert len(_health(moor, "hh")["Log"]) <= 5  # type: ignore[arg-type]
    cfg = json.loads(moor("inspect", "-f", "{{json .Config.Healthcheck}}", "hh").stdout)
    assert cfg == {"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 10**9, "Retries": 2}
    until = f"{time.time() + 0.2:.3f}"
    evs = moor("events", "--since", "5m", "--until", until, "--filter", "event=health_status",
               "--format", "{{.Action}}").stdout.split("\n")  # fmt: skip
    assert evs[:2] == ["health_status: unhealthy", "health_status: healthy"]
    r = moor("ps", "--filter", "health=bogus", check=False)
    assert r.returncode != 0


def test_hung_check_is_killed_at_its_timeout(hmoor: Moor, bb: str) -> None:
    moor = hmoor
    moor("run", "-d", "--name", "hung", "--health-cmd", "sleep 4242.5", "--health-interval",
         "1s", "--health-timeout", "300ms", "--health-retries", "1",
         "bb:1", "sleep", "1000")  # fmt: skip
    _until(lambda: _health(moor, "hung")["Status"] == "unhealthy")
    entry = _health(moor, "hung")["Log"][0]  # type: ignore[index]
    assert entry["ExitCode"] == -1
    assert entry["Output"] == "Health check exceeded timeout (300ms)"
    moor("stop", "-t", "0", "hung")
    # no probe outlives its timeout: none is left once the container stopped
    time.sleep(0.5)
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"4242.5" in (p / "cmdline").read_bytes():
                    left.append(p.name)
            except OSError:
                pass
    assert not left


def test_image_healthcheck_and_no_healthcheck(hmoor: Moor, busybox_tar: Path) -> None:
    moor = hmoor
    check = 'HEALTHCHECK --interval=1s --retries=1 CMD ["false"]'
    moor("import", "-c", 'CMD ["sleep", "1000"]', "-c", check, str(busybox_tar), "hc:1")
    moor("run", "-d", "--name", "img", "hc:1")
    _until(lambda: _health(moor, "img")["Status"] == "unhealthy")
    # the container's options override the image's field by field
    moor("run", "-d", "--name", "over", "--health-cmd", "true", "hc:1")
    cfg = json.loads(moor("inspect", "-f", "{{json .Config.Healthcheck}}", "over").stdout)
    assert cfg["Test"] == ["CMD-SHELL", "true"] and cfg["Interval"] == 10**9
    moor("run", "-d", "--name", "none", "--no-healthcheck", "hc:1")
    assert moor("inspect", "-f", "{{.State.Health}}", "none").stdout.strip() == "<no value>"
    assert moor("ps", "-q", "--filter", "health=none").stdout.strip()
    r = moor("healthcheck", "run", "none", check=False)
    assert r.returncode == 125 and "no defined healthcheck" in r.stderr


def test_healthcheck_run(hmoor: Moor, bb: str) -> None:
    moor = hmoor
    moor("run", "-d", "--name", "ok", "--health-cmd", "echo fine", "bb:1", "sleep", "1000")
    r = moor("healthcheck", "run", "ok")
    assert r.returncode == 0 and r.stdout.strip() == "healthy"
    h = _health(moor, "ok")
    assert h["Status"] == "healthy"
    assert h["Log"][-1]["Output"] == "fine\n"  # type: ignore[index]
    moor("run", "-d", "--name", "bad", "--health-cmd", "exit 3", "--health-retries", "1",
         "bb:1", "sleep", "1000")  # fmt: skip
    r = moor("healthcheck", "run", "bad", check=False)
    assert r.returncode == 1 and r.stdout.strip() == "unhealthy"
    assert _health(moor, "bad")["Status"] == "unhealthy"
    r = moor("healthcheck", "run", "nosuch", check=False)
    assert r.returncode == 125 and "No such container: nosuch" in r.stderr


def test_supervisor_restarts_on_demand_and_exits_idle(hmoor: Moor, bb: str) -> None:
    moor = hmoor
    moor("run", "-d", "--name", "sv", "--health-cmd", "true", "--health-interval", "1s",
         "bb:1", "sleep", "1000")  # fmt: skip
    _until(lambda: _supervisor_pid(moor) != 0)
    first = _supervisor_pid(moor)
    assert _is_supervisor(first, moor.runroot)
    # it holds no container's stdio: none of its fds is a terminal
    for fd in Path(f"/proc/{first}/fd").iterdir():
        target = os.readlink(fd)
        assert "ptmx" not in target and "/dev/pts" not in target
    _until(lambda: len(_watchdogs(moor)) == 1)
    # kill -9: its watchdog starts another within a second or so, no command needed
    os.kill(first, signal.SIGKILL)
    _until(lambda: _supervisor_pid(moor) not in (0, first), timeout=10)
    second = _supervisor_pid(moor)
    n = len(_health(moor, "sv")["Log"])  # type: ignore[arg-type]
    _until(lambda: len(_health(moor, "sv")["Log"]) > n or n == 5)  # type: ignore[arg-type]
    # both gone (watchdog first): the next command that looks at the container starts it
    _until(lambda: len(_watchdogs(moor)) == 1)
    for w in _watchdogs(moor):
        os.kill(w, signal.SIGKILL)
    os.kill(second, signal.SIGKILL)
    _until(lambda: _state(second) in (b"X", b"Z"))
    moor("ps")
    _until(lambda: _supervisor_pid(moor) not in (0, first, second))
    third = _supervisor_pid(moor)
    # nothing to check any more: it exits by itself, and its watchdog with it
    moor("rm", "-f", "sv")
    _until(lambda: _state(third) in (b"X", b"Z"), timeout=30)
    _until(lambda: not _watchdogs(moor), timeout=10)
    assert _supervisor_pid(moor) == 0


def _state(pid: int) -> bytes:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return b"X"
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--health-interval", "soon"], 'invalid argument "soon" for "--health-interval"'),
        (["--health-retries", "-1"], "--health-retries cannot be negative"),
        (["--no-healthcheck", "--health-cmd", "true"], "conflicts"),
    ],
)
def test_bad_health_options(moor: Moor, bb: str, args: list[str], message: str) -> None:
    r = moor("run", "-d", *args, "bb:1", "true", check=False)
    assert r.returncode == 125
    assert message in r.stderr
    assert moor("ps", "-aq").stdout == ""
