"""Attaching to a container through conmon's attach socket: relay its output to ours, our
stdin to it, forward signals, and keep a terminal's size in step."""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal as signals
import socket
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from tty import setraw
from types import FrameType
from typing import Any, BinaryIO

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
    tty: bool | None = None,
    detach_keys: bytes = b"",
) -> bool:
    """Copy until conmon closes the socket (the container exited): False; or until the
    ``detach_keys`` sequence is typed on our stdin (Docker's Ctrl-P Ctrl-Q): True, and the
    container goes on running.

    ``tty``: the container has a terminal (``-t``); by default, whether we are inside
    :func:`raw_terminal`. Then our terminal goes raw while we forward ``stdin`` to it (so
    Ctrl-C, Ctrl-D, ... are bytes for the container's terminal to interpret), and the end
    of our stdin leaves the container's terminal open, as Docker does. Without a terminal
    the end of our stdin closes the container's stdin."""
    detached = threading.Event()
    term = _terminal.get()
    if tty is None:
        tty = term is not None
    if stdin is not None:
        if tty and term is not None:
            term.make_raw(stdin.fileno())
        t = threading.Thread(
            target=_pump_stdin, args=(stdin, sock, not tty, detach_keys, detached), daemon=True
        )
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
    return detached.is_set()


def _pump_stdin(
    stdin: BinaryIO,
    sock: socket.socket,
    close_on_eof: bool,
    detach_keys: bytes = b"",
    detached: threading.Event | None = None,
) -> None:
    fd = stdin.fileno()
    held = b""  # a prefix of the detach keys typed so far, not yet sent
    try:
        while True:
            data = os.read(fd, 8192)
            if not data:
                break
            if detach_keys:
                data, held, hit = _scan_detach(held + data, detach_keys)
                if hit:
                    if data:
                        sock.sendall(data)
                    if detached is not None:
                        detached.set()
                    sock.shutdown(socket.SHUT_RDWR)  # ends relay(): the container runs on
                    return
            if data:
                sock.sendall(data)
    except OSError:
        return
    if close_on_eof:
        # conmon then closes the container's stdin (with a terminal, that would be the
        # terminal's input side, for good: never do that)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def _scan_detach(data: bytes, keys: bytes) -> tuple[bytes, bytes, bool]:
    """Split typed ``data`` into (what to send now, a held tail that may begin ``keys``,
    whether ``keys`` was typed). Bytes before the sequence are sent; a partial match that
    the next byte breaks is sent as typed, as Docker's escape proxy does."""
    at = data.find(keys)
    if at >= 0:
        return data[:at], b"", True
    for n in range(min(len(keys) - 1, len(data)), 0, -1):
        if data.endswith(keys[:n]):
            return data[:-n], data[-n:], False
    return data, b"", False


def parse_detach_keys(spec: str) -> bytes:
    """Docker's ``--detach-keys`` syntax: comma-separated ``ctrl-<x>`` or single characters
    (``ctrl-p,ctrl-q``, the default); an empty string disables detaching."""
    out = bytearray()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        low = part.lower()
        if low.startswith("ctrl-") and len(low) == 6:
            c = low[5]
            codes = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in codes:
                out.append(codes[c])
            else:
                raise ValueError(f"invalid detach keys: unknown character {part!r}")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise ValueError(f"invalid detach keys: {part!r}")
    return bytes(out)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def resize(winsz: Path, rows: int, cols: int) -> None:
    """Set the size of a container's terminal through conmon's ``winsz`` FIFO."""
    w = os.open(winsz, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(w, f"{rows} {cols}\n".encode())
    finally:
        os.close(w)


class _Terminal:
    """Our side of a container's terminal while attached: its size, and raw mode."""

    def __init__(self, winsz: Path) -> None:
        self.winsz = winsz
        self._raw_fd = -1
        self._saved: list[Any] | None = None

    def size(self) -> tuple[int, int] | None:
        """(rows, columns) of our terminal, from stdout as Docker does, else stdin."""
        for fd in (1, 0):
            try:
                cols, rows = os.get_terminal_size(fd)
            except OSError:
                continue
            return rows, cols
        return None

    def resize(self) -> None:
        r"""Give the container's terminal our size. conmon (2.1.6, src/ctrl.c) reads
        ``"ROWS COLS\n"`` lines from the ``winsz`` FIFO (``"1 ROWS COLS\n"`` is the format
        of its ``ctl`` FIFO, which forwards to ``winsz``) and applies them with TIOCSWINSZ;
        it watches the FIFO once it has the terminal, before it reports the container
        created, so this works before and after the container starts."""
        size = self.size()
        if size is None:
            return
        rows, cols = size
        with contextlib.suppress(OSError):
            resize(self.winsz, rows, cols)

    def make_raw(self, fd: int) -> None:
        if self._saved is not None or not os.isatty(fd):
            return
        try:
            saved = termios.tcgetattr(fd)
            # TCSANOW, not setraw's default TCSAFLUSH: keep what was typed ahead
            setraw(fd, termios.TCSANOW)
        except termios.error:
            return
        self._raw_fd, self._saved = fd, saved

    def restore(self) -> None:
        if self._saved is None:
            return
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self._raw_fd, termios.TCSADRAIN, self._saved)
        self._saved = None


_terminal: contextvars.ContextVar[_Terminal | None] = contextvars.ContextVar(
    "moorage_attached_terminal", default=None
)

_Handler = Callable[[int, FrameType | None], Any] | int | signals.Handlers | None

# signals that end us while our terminal may be raw: put it back first
_FATAL = (signals.SIGHUP, signals.SIGTERM)


@contextlib.contextmanager
def raw_terminal(winsz: Path) -> Iterator[None]:
    """Attach to a container that has a terminal: keep its size in step with ours (now and
    on SIGWINCH), and let :func:`relay` put our terminal in raw mode while it forwards our
    stdin; restore our terminal when done, or when SIGHUP/SIGTERM ends us."""
    term = _Terminal(winsz)
    token = _terminal.set(term)
    previous: dict[int, _Handler] = {}

    def fatal(num: int, _frame: FrameType | None) -> None:
        term.restore()
        signals.signal(num, previous.pop(num, signals.SIG_DFL))
        signals.raise_signal(num)

    with contextlib.suppress(ValueError):  # not the main thread: no signal handlers
        previous[signals.SIGWINCH] = signals.signal(
            signals.SIGWINCH, lambda _num, _frame: term.resize()
        )
        for sig in _FATAL:
            if signals.getsignal(sig) == signals.SIG_DFL:
                previous[sig] = signals.signal(sig, fatal)
    term.resize()
    try:
        yield
    finally:
        term.restore()
        for s, handler in previous.items():
            with contextlib.suppress(OSError, ValueError):
                signals.signal(s, handler)
        _terminal.reset(token)
