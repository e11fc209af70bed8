"""Containers with a terminal (``-t``), driven from a real terminal: a tmux pane.

Each test runs its own tmux server (``tmux -L <unique socket>``), so nothing here touches
anybody else's tmux sessions.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MOOR, Moor

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

PROMPT = "/ # "  # busybox ash's, as root in /
ROWS, COLS = 40, 120


class Pane:
    """A detached tmux session of ROWS x COLS running one shell command line."""

    def __init__(self, command: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.socket = f"moorage-tty-{os.getpid()}-{tag}"
        self.session = f"tty-{tag}"
        self._tmux(
            "new-session", "-d", "-s", self.session, "-x", str(COLS), "-y", str(ROWS), command
        )
        self.socket_path = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())

    def _tmux(self, *args: str) -> str:
        p = subprocess.run(
            ["tmux", "-f", "/dev/null", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if p.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def screen(self) -> str:
        """The pane's contents, history included, lines unwrapped, trailing blanks gone."""
        out = self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", self.session)
        return "\n".join(line.rstrip() for line in out.splitlines()).rstrip("\n")

    def lines(self) -> list[str]:
        return self.screen().splitlines()

    def type(self, text: str) -> None:
        """Type ``text`` literally, then Enter."""
        self._tmux("send-keys", "-t", self.session, "-l", text)
        self._tmux("send-keys", "-t", self.session, "Enter")

    def key(self, key: str) -> None:
        self._tmux("send-keys", "-t", self.session, key)

    def resize(self, rows: int, cols: int) -> None:
        self._tmux("resize-window", "-t", self.session, "-x", str(cols), "-y", str(rows))

    def wait(self, what: str, ready: Callable[[list[str]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if ready(lines):
                return
            if time.monotonic() > deadline:
                shown = "\n".join(lines)
                raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{shown}")
            time.sleep(0.05)

    def run(self, command: str, timeout: float = 30) -> list[str]:
        """Type a command at the prompt; wait for the next prompt; return the output lines."""
        before = len(self.lines())
        self.type(command)

        def output(lines: list[str]) -> list[str] | None:
            # the typed line (where the prompt was), its output, and a fresh prompt
            new = lines[before - 1 :] if before else lines
            for i, line in enumerate(new):
                if line.startswith(PROMPT) and line.endswith(command):
                    rest = new[i + 1 :]
                    if rest and rest[-1] == PROMPT.rstrip():
                        return rest[:-1]
            return None

        self.wait(f"{command!r} to finish", lambda lines: output(lines) is not None, timeout)
        out = output(self.lines())
        assert out is not None
        return out

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        self.socket_path.unlink(missing_ok=True)


@pytest.fixture
def pane_for(moor: Moor, bb: str) -> Iterator[Callable[..., Pane]]:
    """``pane_for(COMMAND, NAME)`` opens a pane running COMMAND (a shell command line);
    afterwards, kills the tmux server and force-removes container NAME (when given)."""
    panes: list[Pane] = []
    names: list[str] = []

    def open_pane(command: str, name: str = "") -> Pane:
        if name:
            names.append(name)
        panes.append(Pane(command))
        return panes[-1]

    yield open_pane
    for p in panes:
        p.kill()
    for n in names:
        moor("rm", "-f", n, check=False)


def _moor_cmd(moor: Moor, *args: str) -> str:
    env = ["env", f"MOORAGE_ROOT={moor.root}", f"MOORAGE_RUNROOT={moor.runroot}"]
    return shlex.join([*env, MOOR, *args])


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists() and (text := path.read_text()).endswith("\n"):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def _running(moor: Moor, name: str, args: str) -> bool:
    """Whether a process with command line ``args`` runs in container ``name``."""
    out = moor("exec", name, "ps", "-o", "args").stdout
    return args in (line.strip() for line in out.splitlines())


def _wait_running(moor: Moor, name: str, args: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _running(moor, name, args):
        assert time.monotonic() < deadline, f"{args!r} never started"
        time.sleep(0.05)


def test_interactive_shell_in_a_terminal(
    moor: Moor, pane_for: Callable[..., Pane], tmp_path: Path
) -> None:
    name = f"tty-{uuid.uuid4().hex[:8]}"
    exit_file, stty_file = tmp_path / "exit", tmp_path / "stty"
    run = _moor_cmd(moor, "run", "-it", "--rm", "--name", name, "bb:1", "sh")
    # after moor returns: its exit status, then the state it left our terminal in
    script = (
        f"{run}; echo EXIT=$? > {shlex.quote(str(exit_file))}; "
        f"stty -a > {shlex.quote(str(stty_file))}; exec sleep 600"
    )
    pane = pane_for(f"sh -c {shlex.quote(script)}", name)
    pane.wait("the container's shell prompt", lambda lines: bool(lines) and lines[-1] == "/ #")

    # what we type reaches the shell; its output reaches us
    assert pane.run("echo hello-$((6*7))") == ["hello-42"]

    # the container's terminal has our size, and follows it when it changes (SIGWINCH)
    assert pane.run("stty size") == [f"{ROWS} {COLS}"]
    pane.resize(30, 100)  # SIGWINCH reaches moor asynchronously: ask until it is through
    deadline = time.monotonic() + 30
    while (size := pane.run("stty size")) != ["30 100"]:
        assert size == [f"{ROWS} {COLS}"] and time.monotonic() < deadline, size
        time.sleep(0.1)
    assert pane.run("tty")[0].startswith("/dev/pts/")

    # Ctrl-C goes through the container's terminal to its foreground process, not to moor
    pane.type("sleep 100")
    _wait_running(moor, name, "sleep 100")
    started = time.monotonic()
    pane.key("C-c")
    pane.wait(
        "the prompt after Ctrl-C",
        lambda lines: len(lines) >= 2 and lines[-2] == "^C" and lines[-1] == "/ #",
    )
    assert time.monotonic() - started < 20
    assert not _running(moor, name, "sleep 100")
    # moor is still attached: the session goes on
    assert pane.run("echo still-$((1+1))") == ["still-2"]

    # Ctrl-D is a byte for the container's terminal: end of input for cat, not for us
    pane.type("cat")
    _wait_running(moor, name, "cat")  # (Ctrl-D at the prompt would end the shell)
    pane.key("C-d")
    pane.wait("the prompt after Ctrl-D", lambda lines: lines[-1] == "/ #")
    assert pane.run("echo after-eof") == ["after-eof"]

    # the shell's exit status is moor's; --rm removed the container
    pane.type("exit 3")
    assert _wait_file(exit_file) == "EXIT=3\n"
    assert name not in moor("ps", "-a").stdout

    # and our terminal is back the way it was: canonical mode, echo, signals, CR -> NL
    flags = set(_wait_file(stty_file).split())
    for flag in ("icanon", "echo", "isig", "icrnl", "opost"):
        assert flag in flags and f"-{flag}" not in flags, flag


def test_terminal_without_stdin(moor: Moor, bb: str) -> None:
    r = moor("run", "-t", "--rm", "bb:1", "sh", "-c", "tty; [ -t 0 ] && echo stdin-tty")
    # a terminal's output: \r\n line ends
    assert re.fullmatch(r"/dev/pts/\d+\r\nstdin-tty\r\n", r.stdout), r.stdout
    assert moor("ps", "-aq").stdout == ""


def test_interactive_without_terminal(moor: Moor, bb: str) -> None:
    data = b"line one\nline two\x04 and \x03 are bytes\n\x00\xff no newline"
    r = moor("run", "-i", "--rm", "bb:1", "cat", input=data)
    assert r.stdout_bytes == data
    r = moor(
        "run", "-i", "--rm", "bb:1", "sh", "-c", "wc -c; [ -t 0 ] || echo not-a-tty",
        input=data,
    )  # fmt: skip
    assert r.stdout.split() == [str(len(data)), "not-a-tty"]
    assert moor("ps", "-aq").stdout == ""


def test_terminal_with_piped_stdin(moor: Moor, bb: str) -> None:
    # the end of our stdin does not close the container's terminal: what was sent before it
    # is all read, and the shell runs until it exits by itself
    r = moor(
        "run", "-i", "-t", "--rm", "bb:1", "sh",
        input=b"sleep 1; echo piped-$((1+2)); exit 4\n",
        check=False,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 4, r
    assert "piped-3\r\n" in r.stdout
    assert moor("ps", "-aq").stdout == ""


def test_detach_with_ctrl_p_ctrl_q_and_attach_again(
    moor: Moor, pane_for: Callable[..., Pane], tmp_path: Path
) -> None:
    name = f"det-{uuid.uuid4().hex[:8]}"
    exit_file = tmp_path / "exit"
    run = _moor_cmd(moor, "run", "-it", "--name", name, "bb:1", "sh")
    attach = _moor_cmd(moor, "attach", name)
    script = (
        f"{run}; echo DETACHED=$?; {attach}; echo EXIT=$? > {shlex.quote(str(exit_file))}; "
        "exec sleep 600"
    )
    pane = pane_for(f"sh -c {shlex.quote(script)}", name)
    pane.wait("the container's shell prompt", lambda lines: bool(lines) and lines[-1] == "/ #")
    assert pane.run("echo one") == ["one"]
    pane.key("C-p")
    pane.key("C-q")
    pane.wait("moor to detach", lambda lines: any(x.endswith("DETACHED=0") for x in lines))
    assert moor("ps", "--format", "{{.Names}} {{.State}}").stdout == f"{name} running\n"
    # attached again: the same shell, which then ends with its own code
    pane.type("echo two")
    pane.wait("the shell's answer", lambda lines: "two" in lines)
    pane.type("exit 3")
    assert _wait_file(exit_file) == "EXIT=3\n"
    assert moor("ps", "-a", "--format", "{{.State}}").stdout == "exited\n"
