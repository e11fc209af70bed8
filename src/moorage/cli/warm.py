"""The server half of warm start: a process that has imported moorage once and forks per command.

``moor`` starts it in the background the first time it is missing (one per run root and per
installation) and hands it later commands (see ``warmclient``). It holds no store, no lock
and no container state: each command runs in a fresh child forked from it, exactly as it
would have run in the ``moor`` process (same arguments, environment, working directory,
umask and stdio), and the store is opened by that child. It serves only its own user, exits
after ``MOORAGE_WARM_IDLE`` seconds without a command (default 300), and steps aside (answers
``X``) when the code it imported has changed on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import io
import os
import pkgutil
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import moorage
from moorage.cli import warmclient

DEFAULT_IDLE = 300.0
# packages the command line needs but that only one-off servers use: imported when run
SKIP_PRELOAD = ("moorage.__main__", "moorage.api", "moorage.registry", "moorage.cli.warm")
MAX_REQUEST = 4 << 20


def idle_timeout(environ: os._Environ[str] | dict[str, str] = os.environ) -> float:
    try:
        return max(0.1, float(environ.get("MOORAGE_WARM_IDLE", DEFAULT_IDLE)))
    except ValueError:
        return DEFAULT_IDLE


def source_signature(package_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """What the imported code looked like on disk: any change makes this process stale."""
    out = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def preload() -> None:
    """Import every module a command may need, so that no child pays for it."""
    importlib.import_module("moorage.cli.app")
    for info in pkgutil.walk_packages(moorage.__path__, "moorage."):
        if info.name.startswith(SKIP_PRELOAD):
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(info.name)


@dataclass
class Request:
    identity: str
    cwd: bytes
    umask: int
    args: list[str]
    env: dict[bytes, bytes]


def decode_request(body: bytes) -> Request:
    fields = body.split(b"\0")
    if len(fields) < 5 or fields[0] != warmclient.MAGIC:
        raise ValueError("not a warm-start request")
    argc = int(fields[4])
    args = [os.fsdecode(a) for a in fields[5 : 5 + argc]]
    env = {}
    for item in fields[5 + argc :]:
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key] = value
    return Request(fields[1].decode(), fields[2], int(fields[3]), args, env)


@dataclass
class Session:
    conn: socket.socket
    pid: int = 0
    pidfd: int = -1
    buf: bytes = b""
    fds: list[int] = field(default_factory=list)


class WarmServer:
    def __init__(self, path: str, idle: float) -> None:
        self.path = path
        self.idle = idle
        self.identity = warmclient.identity()
        self.package_dir = Path(moorage.__file__).parent
        self.signature: tuple[tuple[str, int, int], ...] = ()
        self.sel = selectors.DefaultSelector()
        self.sessions: dict[int, Session] = {}  # by connection fd
        self.listener: socket.socket | None = None
        self.inode = -1
        self.lock_fd = -1
        self.served = 0
        self.last = time.monotonic()
        self.stale = False

    # -- setup -------------------------------------------------------------------------------
    def claim(self) -> bool:
        """One server per socket: the one holding the lock beside it."""
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.lock_fd)
            return False
        os.ftruncate(self.lock_fd, 0)
        os.write(self.lock_fd, b"%d\n" % os.getpid())
        return True

    def listen(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(tmp)
        finally:
            os.umask(old)
        sock.listen(64)
        os.rename(tmp, self.path)
        self.inode = os.stat(self.path).st_ino
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, self.accept)

    # -- the loop ----------------------------------------------------------------------------
    def serve(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.signature = source_signature(self.package_dir)
        gc.freeze()  # what is imported now stays shared with every child
        try:
            while True:
                if not self.sessions:
                    if self.stale or time.monotonic() - self.last > self.idle:
                        return
                    if not self._still_ours():
                        return
                timeout = max(0.05, self.idle - (time.monotonic() - self.last))
                for key, _ in self.sel.select(timeout=min(timeout, 5.0)):
                    key.data(key.fileobj)
        finally:
            self.close()

    def _stop(self, _signum: int, _frame: object) -> None:
        raise SystemExit(0)

    def _still_ours(self) -> bool:
        """The socket file still names this listener (its run root was not removed)."""
        if self.listener is None:
            return False
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def close(self) -> None:
        if self.listener is not None:
            if self._still_ours():
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            self.listener.close()
            self.listener = None
        for session in list(self.sessions.values()):
            self._end(session)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def accept(self, listener: object) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.last = time.monotonic()
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            conn.close()  # only the user who owns this process
            return
        conn.settimeout(5.0)
        try:
            request, fds = self._read_request(conn)
        except (OSError, ValueError):
            conn.close()
            return
        if request.identity != self.identity or self._changed():
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(b"X\n")
            conn.close()
            if request.identity == self.identity:
                self.stale = True  # new code on disk: let the next command start a new server
            return
        self._start(conn, request, fds)

    def _changed(self) -> bool:
        return source_signature(self.package_dir) != self.signature

    def _read_request(self, conn: socket.socket) -> tuple[Request, list[int]]:
        fds: list[int] = []
        data = b""
        want = 4
        while len(data) < want:
            msg, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(16))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
            if not msg:
                raise ValueError("connection closed mid-request")
            data += msg
            if len(data) >= 4:
                want = 4 + int.from_bytes(data[:4], "big")
                if want > MAX_REQUEST:
                    raise ValueError("request too large")
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            raise ValueError("a request passes exactly stdin, stdout and stderr")
        return decode_request(data[4:want]), fds

    def _start(self, conn: socket.socket, request: Request, fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            self._child(conn, request, fds)
        for fd in fds:
            os.close(fd)
        self.served += 1
        session = Session(conn, pid, os.pidfd_open(pid))
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.send(b"R")
        self.sessions[conn.fileno()] = session
        self.sel.register(conn, selectors.EVENT_READ, self._from_client)
        self.sel.register(session.pidfd, selectors.EVENT_READ, self._exited)

    def _child(self, conn: socket.socket, request: Request, fds: list[int]) -> None:
        code = 1
        try:
            # nothing of the server's survives into the command
            self.sel.close()
            if self.listener is not None:
                self.listener.close()
            conn.close()
            for session in self.sessions.values():
                session.conn.close()
                os.close(session.pidfd)
            os.close(self.lock_fd)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
            _reopen_stdio()
            os.environ.clear()
            os.environb.update(request.env)
            os.chdir(request.cwd)
            os.umask(request.umask)
            sys.argv = [sys.argv[0], *request.args]
            from moorage.cli.main import main

            main(request.args)  # ends the process itself
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # the child must never return into the loop
            with contextlib.suppress(Exception):
                sys.stderr.write(f"moor: {e}\n")
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _from_client(self, conn: object) -> None:
        assert isinstance(conn, socket.socket)
        session = self.sessions.get(conn.fileno())
        if session is None:
            return
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            # the client is gone (killed): so is its command, as if it had run in that process
            with contextlib.suppress(ProcessLookupError):
                os.kill(session.pid, signal.SIGKILL)
            self.sel.unregister(conn)
            return
        session.buf += data
        while b"\n" in session.buf:
            line, _, session.buf = session.buf.partition(b"\n")
            if line[:1] == b"S" and line[1:].isdigit():
                with contextlib.suppress(ProcessLookupError, ValueError, OSError):
                    os.kill(session.pid, int(line[1:]))

    def _exited(self, pidfd: object) -> None:
        session = next((s for s in self.sessions.values() if s.pidfd == pidfd), None)
        if session is None:
            return
        _, status = os.waitpid(session.pid, 0)
        if os.WIFSIGNALED(status):
            reply = b"K%d\n" % os.WTERMSIG(status)
        else:
            reply = b"E%d\n" % os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            session.conn.setblocking(True)
            session.conn.settimeout(1.0)
            session.conn.sendall(reply)
        self._end(session)
        self.last = time.monotonic()

    def _end(self, session: Session) -> None:
        for obj in (session.conn, session.pidfd):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(obj)
        self.sessions.pop(session.conn.fileno(), None)
        session.conn.close()
        if session.pidfd >= 0:
            os.close(session.pidfd)
            session.pidfd = -1


def _reopen_stdio() -> None:
    """New sys.std* on the passed descriptors, set up as Python does at startup."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        tty = raw.isatty()
        buffered: io.BufferedReader | io.BufferedWriter = (
            io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        )
        stream = io.TextIOWrapper(
            buffered,
            encoding="utf-8",
            errors="backslashreplace" if fd == 2 else "surrogateescape",
            line_buffering=tty or fd == 2,
            write_through=fd == 2,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def spawn(args: list[str]) -> None:
    """Start a warm process for this run root in the background (if none is running)."""
    run_root = warmclient.runroot(args)
    path = warmclient.socket_path(run_root)
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        env = dict(os.environ)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the intermediate child
            try:
                os.setsid()
                devnull = os.open(os.devnull, os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(devnull, target)
                os.execve(
                    sys.executable,
                    [sys.executable, "-m", "moorage.cli.warm", path],
                    env,
                )
            finally:
                os._exit(127)
        # not waited for: it outlives this command, and init reaps it


def status(path: str) -> int | None:
    """The pid of the warm process serving this socket, if one holds its lock."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            data = os.pread(fd, 32, 0).strip()
            return int(data) if data.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def main(argv: list[str]) -> None:
    path = os.path.abspath(argv[0])
    os.chdir("/")  # hold no directory busy; each command gets its own cwd
    server = WarmServer(path, idle_timeout())
    if not server.claim():
        return
    preload()
    server.listen()
    server.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
