"""Attaching to a container through conmon's attach socket: relay its output to ours, our
stdin to it, forward signals, and keep a terminal's size in step."""

from __future__ import annotations

import contextlib
import os
import signal as signals
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

# conmon prefixes each packet it sends with the pipe it came from
_STDOUT = 2
_STDERR = 3
_PACKET = 8192 + 1


def connect(path: Path) -> socket.socket:
    """Connect to conmon's SOCK_SEQPACKET attach socket, whatever the length of its path."""
    dir_fd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(f"/proc/self/fd/{dir_fd}/{path.name}")
        return s
    finally:
        os.close(dir_fd)


def relay(
    sock: socket.socket,
    *,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    stderr: BinaryIO,
) -> None:
    """Copy until conmon closes the socket (the container exited)."""
    if stdin is not None:
        t = threading.Thread(target=_pump_stdin, args=(stdin, sock), daemon=True)
        t.start()
    out_fd, err_fd = stdout.fileno(), stderr.fileno()
    while True:
        try:
            data = sock.recv(_PACKET)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
        target = err_fd if data[0] == _STDERR else out_fd
        _write_all(target, memoryview(data)[1:])
    sock.close()


def _pump_stdin(stdin: BinaryIO, sock: socket.socket) -> None:
    fd = stdin.fileno()
    try:
        while True:
            data = os.read(fd, 8192)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


# signals the docker CLI forwards to the container (not the ones about terminals or children)
PROXIED = [
    s
    for s in signals.valid_signals()
    if isinstance(s, signals.Signals)
    and s
    not in (
        signals.SIGCHLD,
        signals.SIGPIPE,
        signals.SIGURG,
        signals.SIGWINCH,
        signals.SIGKILL,
        signals.SIGSTOP,
        signals.SIGTSTP,
        signals.SIGTTIN,
        signals.SIGTTOU,
        signals.SIGCONT,
    )
]


@contextlib.contextmanager
def proxy_signals(send: Callable[[int], None]) -> Iterator[None]:
    """Forward the signals ``moor`` gets to the container while attached."""
    previous = {}
    for s in PROXIED:
        with contextlib.suppress(OSError, ValueError):
            previous[s] = signals.signal(s, lambda num, _frame: send(num))
    try:
        yield
    finally:
        for s, handler in previous.items():
            with contextlib.suppress(OSError, ValueError):
                signals.signal(s, handler)


@contextlib.contextmanager
def raw_terminal(winsz: Path) -> Iterator[None]:
    """Put our terminal in raw mode and keep the container's terminal size in step."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)

    def resize(*_: object) -> None:
        try:
            rows, cols = os.get_terminal_size(fd)
        except OSError:
            return
        with contextlib.suppress(OSError):
            w = os.open(winsz, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(w, f"1 {rows} {cols}\n".encode())
            finally:
                os.close(w)

    old = signals.signal(signals.SIGWINCH, resize)
    tty.setraw(fd)
    resize()
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signals.signal(signals.SIGWINCH, old)
