"""Warm start: commands handed to a background moor process that has everything imported.

These tests turn it on (the rest of the suite runs with MOORAGE_WARM=0 unless asked) and check
that a command run warm behaves as it does cold: output, exit codes, stdin, signals, and that
the warm process cleans up after itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MOOR, Moor

pytestmark = pytest.mark.usefixtures("bb")


@pytest.fixture
def warm(moor: Moor) -> Iterator[Moor]:
    """The test's store with warm start on, and its warm process started."""
    env = {**moor.env, "MOORAGE_WARM": "1", "MOORAGE_WARM_IDLE": "60"}
    w = WarmMoor(moor.root, moor.runroot, env)
    assert "running" in w("system", "warm", "--start").stdout
    yield w
    w("system", "warm", "--stop", check=False)


class WarmMoor(Moor):
    def __init__(self, root: Path, runroot: Path, env: dict[str, str]) -> None:
        super().__init__(root, runroot)
        self._env = env

    @property
    def env(self) -> dict[str, str]:
        return dict(self._env)

    def server_pid(self) -> int | None:
        # asked cold: a warm answer would count as use and keep the process from idling
        out = cold(self, "system", "warm").stdout.decode()
        m = re.search(r"running, pid (\d+)", out)
        return int(m.group(1)) if m else None


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry))
    return out


def commands(server: int) -> list[int]:
    """The warm process's children running a command: each has the cwd of its client, while
    the spare child waiting for the next command stays in / as the warm process does."""
    out = []
    for pid in children(server):
        try:
            if os.readlink(f"/proc/{pid}/cwd") != "/":
                out.append(pid)
        except OSError:
            continue
    return out


def wait_for(cond, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def cold(moor: Moor, *args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [MOOR, *args], input=input, capture_output=True, env={**moor.env, "MOORAGE_WARM": "0"}
    )


@pytest.mark.parametrize(
    "args,stdin",
    [
        (
            [
                "run",
                "--rm",
                "--network",
                "none",
                "bb:1",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            b"",
        ),
        (["run", "-i", "--rm", "--network", "none", "bb:1", "cat"], b"piped through\n"),
        (["nosuch"], b""),
        (["rmi", "no-such-image:9"], b""),
        (["ps", "-a", "--format", "{{.Names}}"], b""),
    ],
)
def test_warm_command_behaves_as_cold(
    warm: WarmMoor, moor: Moor, args: list[str], stdin: bytes
) -> None:
    hot = warm(*args, input=stdin, check=False)
    ref = cold(moor, *args, input=stdin)
    assert (hot.returncode, hot.stdout, hot.stderr) == (
        ref.returncode,
        ref.stdout.decode(),
        ref.stderr.decode(),
    )


def test_command_runs_in_the_warm_process_and_gets_signals(warm: WarmMoor) -> None:
    server = warm.server_pid()
    assert server is not None
    script = 'trap "exit 7" TERM; echo ready; sleep 30 & wait'
    p = warm.popen(
        "run", "--rm", "--network", "none", "bb:1", "sh", "-c", script, stdout=subprocess.PIPE
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        # the command runs as a child of the warm process, not of the moor the test started
        served = wait_for(lambda: commands(server))
        assert p.pid not in served
        p.send_signal(signal.SIGTERM)  # forwarded to the command, which proxies it
        assert p.wait(timeout=20) == 7
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
    wait_for(lambda: not any(pid in children(server) for pid in served))
    assert warm("ps", "-aq").stdout == ""


def test_a_killed_client_takes_its_command_with_it(warm: WarmMoor) -> None:
    server = warm.server_pid()
    assert server is not None
    p = warm.popen("events", stdout=subprocess.DEVNULL)  # follows until killed
    try:
        served = wait_for(lambda: commands(server))
    finally:
        p.kill()  # whatever happens: never leave a follower behind
        p.wait(timeout=5)
    wait_for(lambda: not any(pid in children(server) for pid in served))


def test_warm_process_stops_when_idle_and_comes_back(moor: Moor) -> None:
    env = {**moor.env, "MOORAGE_WARM": "1", "MOORAGE_WARM_IDLE": "1"}
    w = WarmMoor(moor.root, moor.runroot, env)
    cold(w, "system", "warm", "--stop")  # one the fixtures started (MOORAGE_WARM=1 runs)
    w("ps")  # cold: starts the warm process for the next command
    first = wait_for(w.server_pid)
    spare = wait_for(lambda: children(first))  # the child forked ahead for the next command
    sockets = list((moor.runroot / "warm").glob("*.sock"))
    wait_for(lambda: w.server_pid() is None and not any(s.exists() for s in sockets), timeout=15)
    wait_for(lambda: not Path(f"/proc/{first}").exists())  # it exits, and is reaped
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in spare))
    w("ps")
    assert wait_for(w.server_pid) != first


def test_a_killed_warm_process_is_replaced(warm: WarmMoor) -> None:
    server = warm.server_pid()
    assert server is not None
    spare = wait_for(lambda: children(server))
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{server}").exists())
    # its spare child sees the end of its socket and exits
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in spare))
    # the socket is left behind: the next command runs cold and starts a new warm process
    assert warm("run", "--rm", "--network", "none", "bb:1", "echo", "ok").stdout == "ok\n"
    new = wait_for(warm.server_pid)
    assert new != server
    assert warm("run", "--rm", "--network", "none", "bb:1", "echo", "again").stdout == "again\n"


def test_conmons_exit_command_uses_no_warm_process_it_did_not_find(
    tmp_path: Path, busybox_tar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conmon's exit command (``moor container cleanup``) runs with conmon's environment,
    where warm start is on: it may use a warm process, but must not leave one behind."""
    from moorage.engine import Engine
    from moorage.engine.containers.service import ContainerService
    from moorage.engine.containers.spec import ContainerSpec

    monkeypatch.delenv("MOORAGE_WARM", raising=False)  # as a user's shell has it
    eng = Engine(tmp_path / "root", tmp_path / "run")
    subprocess.run(
        [MOOR, "--root", str(eng.root), "--runroot", str(eng.runroot), "import", "-c",
         'CMD ["true"]', str(busybox_tar), "bb:1"],
        check=True, capture_output=True, env={**os.environ, "MOORAGE_WARM": "0"},
    )  # fmt: skip
    svc = ContainerService(eng.store, eng.images)
    rec = svc.create(ContainerSpec(image="bb:1", network_mode="none"))
    svc.start(rec.id)
    conmon = svc.get(rec.id).conmon_pid
    assert conmon
    wait_for(lambda: not Path(f"/proc/{conmon}").exists(), timeout=30)  # cleanup ran
    assert svc.get(rec.id).state == "exited"
    time.sleep(0.5)  # a warm process would have been started by now
    warm_dir = eng.runroot / "warm"
    locks = list(warm_dir.glob("*.lock")) if warm_dir.exists() else []
    from moorage.cli import warm as warm_server

    assert [p for p in locks if warm_server.status(str(p)[: -len(".lock")])] == []
    svc.remove(rec.id)


def _container_files(w: Moor) -> list[str]:
    """Containers' directories and overlay mounts left in this store."""
    out = [p.name for p in (w.root / "containers").glob("*")]
    layers = {p.name for p in (w.root / "overlay").glob("*") if (p / "merged").exists()}
    out += sorted(layers)
    with open("/proc/self/mountinfo") as f:
        out += [line.split()[4] for line in f if line.split()[4].startswith(str(w.root))]
    return out


@pytest.mark.parametrize("how", ["run --rm", "rm -f"])
def test_a_removed_containers_files_go_right_after_the_answer(warm: WarmMoor, how: str) -> None:
    # run warm, a command answers first and then removes the container's files (moorage.later)
    if how == "run --rm":
        assert warm("run", "--rm", "--network", "none", "bb:1", "echo", "hi").stdout == "hi\n"
    else:
        cid = warm("run", "-d", "--network", "none", "bb:1", "sleep", "60").stdout.strip()
        assert warm("rm", "-f", cid).stdout.strip() == cid
    assert warm("ps", "-aq").stdout == ""  # gone as far as anyone asking can tell
    wait_for(lambda: _container_files(warm) == [], timeout=10)
    assert not list((warm.runroot / "containers").glob("*"))


def test_a_stopped_warm_process_takes_its_running_commands_with_it(warm: WarmMoor) -> None:
    server = warm.server_pid()
    assert server is not None
    p = warm.popen("events", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        served = wait_for(lambda: commands(server))
        cold(warm, "system", "warm", "--stop")
        # its client is told (125), and the command does not run on as an orphan
        assert p.wait(timeout=10) == 125
        assert p.stderr is not None and b"went away" in p.stderr.read()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in served))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)


def test_warm_stop_run_by_the_warm_process_itself_answers(warm: WarmMoor) -> None:
    """``system warm --stop`` handed to the warm process stops its own parent, then still
    tells its client the exit code (it used to be lost with the server's socket: 125)."""
    for _ in range(3):
        server = wait_for(warm.server_pid)
        r = warm("system", "warm", "--stop", check=False)
        assert (r.returncode, r.stderr) == (0, "")
        assert "warm process: not running" in r.stdout
        wait_for(lambda: not Path(f"/proc/{server}").exists())  # noqa: B023
        warm("system", "warm", "--start")
