"""The client half of warm start: hand this command to a warm ``moor`` process, if one runs.

Starting Python and importing click and the engine costs ~70 ms, more than the work of most
commands. A warm process (``moorage.cli.warm``) has imported everything once; it forks a
child per command, and the child runs the command exactly as this process would have, with
this process's stdin/stdout/stderr (passed over the socket), arguments, environment, working
directory and umask. This process waits, forwards the signals it gets, and exits with the
child's status. It imports nothing beyond the interpreter's own built-in modules (not even
``os``: ``posix`` is already loaded; no ``__future__`` either), so that asking costs a
millisecond on top of the interpreter's start.

Wire format, on a unix stream socket: the request is a 4-byte big-endian length and then
NUL-separated fields (magic, identity, cwd, umask, argc, args..., env...), sent with fds 0, 1, 2
as SCM_RIGHTS. The server answers ``R`` once the child is forked, then ``E<code>\\n`` or
``K<signal>\\n`` when it ends, or ``X\\n`` before forking when it will not run the command
(stale code, another user): then the command runs here. The client sends ``S<signal>\\n`` for
each signal it forwards.
"""

import _signal  # type: ignore[import-not-found]  # signal.py would import enum (4 ms)
import _socket
import posix  # what os wraps, already imported by the interpreter: os costs ~1 ms more
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAGIC = b"MOORWARM1"
FORWARDED = (
    _signal.SIGINT,
    _signal.SIGTERM,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
    _signal.SIGWINCH,
)
DEFAULT_RUNROOT = "/run/moorage"


# commands that need the controlling terminal (a password prompt opens /dev/tty), which a
# command run by the warm process does not have
COLD_COMMANDS = frozenset({"login"})


def _globals(args: list[str]) -> tuple[str | None, int]:
    """The ``--runroot`` among the leading global flags, and where the command name is."""
    value = None
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        arg = args[i]
        if arg == "--runroot" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--runroot="):
            value = arg.partition("=")[2]
        i += 2 if arg in ("--runroot", "--root", "--log-level", "-l") else 1
    return value, i


def runroot(args: list[str], environ: "Mapping[str, str] | None" = None) -> str:
    """The run root this command will use: a leading ``--runroot`` flag, the env, the default."""
    flag, _ = _globals(args)
    value = environ.get("MOORAGE_RUNROOT") if environ is not None else getenv("MOORAGE_RUNROOT")
    return flag or value or DEFAULT_RUNROOT


def getenv(name: str) -> "str | None":
    """``os.environ.get`` where os is loaded (it follows changes made since the start, as the
    warm process's child makes), else from the environment the process started with."""
    os_module = sys.modules.get("os")
    if os_module is not None:
        value: str | None = os_module.environ.get(name)
        return value
    raw = posix.environ.get(name.encode())
    return None if raw is None else raw.decode(sys.getfilesystemencoding(), "surrogateescape")


def _environb() -> "Mapping[bytes, bytes]":
    os_module = sys.modules.get("os")
    return os_module.environb if os_module is not None else posix.environ


def command_name(args: list[str]) -> str:
    _, i = _globals(args)
    return args[i] if i < len(args) else ""


def command_path(args: list[str]) -> list[str]:
    """The command and its subcommand (or first argument): ``["container", "cleanup"]``."""
    _, i = _globals(args)
    return args[i : i + 2]


def identity() -> str:
    """Which code this is: the interpreter and the package directory. A warm process of other
    code (another virtualenv, another checkout) listens on another socket."""
    here = __file__.rpartition("/")[0].rpartition("/")[0]
    return f"{sys.executable}\n{here}"


def _fnv64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def socket_path(run_root: str, ident: str | None = None) -> str:
    return f"{run_root}/warm/{_fnv64((ident or identity()).encode())}.sock"


def encode_request(args: list[str], ident: str) -> bytes:
    umask = posix.umask(0)
    posix.umask(umask)
    fs = sys.getfilesystemencoding()
    fields = [MAGIC, ident.encode(), posix.getcwdb(), b"%d" % umask, b"%d" % len(args)]
    fields += [a.encode(fs, "surrogateescape") for a in args]
    fields += [k + b"=" + v for k, v in _environb().items()]
    body = b"\0".join(fields)
    return len(body).to_bytes(4, "big") + body


def _fds_payload(fds: tuple[int, ...]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)


def run(args: list[str]) -> int | None:
    """Run the command in the warm process: its exit code, or None to run it here instead."""
    if command_name(args) in COLD_COMMANDS:
        return None
    try:
        for fd in (0, 1, 2):
            posix.fstat(fd)
    except OSError:
        return None  # a closed stdio descriptor cannot be passed on
    ident = identity()
    path = socket_path(runroot(args), ident)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = encode_request(args, ident)
        sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _fds_payload((0, 1, 2)))])
    except OSError:
        sock.close()
        return None
    return _wait(sock)


def _wait(sock: _socket.socket) -> int | None:
    started = False
    buf = b""

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105 - contextlib costs an import here
            sock.send(b"S%d\n" % signum)
        except OSError:
            pass

    previous = {}
    while True:
        try:
            chunk = sock.recv(256)
        except InterruptedError:  # pragma: no cover - PEP 475 retries recv for us
            continue
        except OSError:
            chunk = b""
        if not chunk:
            sock.close()
            if not started:
                return None  # it went away before running anything: run the command here
            sys.stderr.write("moor: the warm process went away while running this command\n")
            return 125
        buf += chunk
        while b"\n" in buf or buf.startswith(b"R"):
            if buf.startswith(b"R"):
                started = True
                buf = buf[1:]
                for signum in FORWARDED:
                    previous[signum] = _signal.signal(signum, forward)
                continue
            line, _, buf = buf.partition(b"\n")
            kind, value = line[:1], line[1:]
            if kind == b"X" and not started:
                sock.close()
                return None
            if kind in (b"E", b"K"):
                sock.close()
                for signum, handler in previous.items():
                    _signal.signal(signum, handler)
                if kind == b"E":
                    return int(value)
                signum = int(value)
                _signal.signal(signum, _signal.SIG_DFL)
                posix.kill(posix.getpid(), signum)  # die the way the command died
                return 128 + signum
