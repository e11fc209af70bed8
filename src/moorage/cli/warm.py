"""The server half of warm start: a process that has imported moorage once and forks per command.

``moor`` starts it in the background the first time it is missing (one per run root and per
installation) and hands it later commands (see ``warmclient``). It holds no store, no lock
and no container state: each command runs in a fresh child forked from it, exactly as it
would have run in the ``moor`` process (same arguments, environment, working directory,
umask and stdio), and the store is opened by that child. It serves only its own user, exits
after ``MOORAGE_WARM_IDLE`` seconds without a command (default 300), and steps aside (answers
``X``, then exits) when the code it imported changes on disk (inotify tells it).

The child for the next command is forked ahead (the spare): between commands it opens the
store's database and parses a command line once, so the fork, that opening and most of the
fork's copy-on-write faults are paid while no command waits. It reads its command from a
socket pair, with the client's stdio and connection, and tells the client its exit code
itself, before its exit tears down its copy of the address space.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import io
import os
import pkgutil
import select
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import moorage
from moorage import later
from moorage.cli import warmclient
from moorage.errors import MoorageError
from moorage.inotify import Inotify

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


class SourceWatch:
    """Whether the code this process imported has changed on disk since it was created.

    inotify on the package's directories, so that a command costs nothing to check; where no
    inotify instance can be had, a signature of every ``.py`` file, read per check (~1 ms)."""

    def __init__(self, package_dir: Path) -> None:
        self.package_dir = package_dir
        self.changed = False
        self.signature: tuple[tuple[str, int, int], ...] = ()
        self.inotify: Inotify | None = None
        try:
            self.inotify = Inotify()
            self.inotify.watch_tree(str(package_dir), skip=("__pycache__",))
        except (MoorageError, OSError):
            if self.inotify is not None:
                self.inotify.close()
                self.inotify = None
            self.signature = source_signature(package_dir)

    def check(self) -> bool:
        if self.changed:
            return True
        if self.inotify is None:
            self.changed = source_signature(self.package_dir) != self.signature
            return self.changed
        try:
            paths = self.inotify.read(0)
        except MoorageError:  # the queue overflowed: something changed
            self.changed = True
        else:
            self.changed = any(p.endswith(".py") for p in paths)
        return self.changed

    def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()


def preload() -> None:
    """Import every module a command may need, so that no child pays for it."""
    importlib.import_module("moorage.cli.app")
    importlib.import_module("encodings.ascii")  # files read as ascii (/proc/self/status)
    for info in pkgutil.walk_packages(moorage.__path__, "moorage."):
        if info.name.startswith(SKIP_PRELOAD):
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(info.name)
    # the default seccomp filter in OCI form (368 syscalls converted, ~0.5 ms a container)
    from moorage.engine.containers.security import DEFAULT_CAPABILITIES, default_seccomp

    default_seccomp(DEFAULT_CAPABILITIES)


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
    ctl: socket.socket | None = None  # the child says ``A`` here once it has answered
    answered: bool = False

    def has_answered(self) -> bool:
        """The command told the client its exit code (and works on, moorage.later)."""
        if not self.answered and self.ctl is not None:
            with contextlib.suppress(OSError):
                self.ctl.setblocking(False)
                self.answered = b"A" in self.ctl.recv(16)
        return self.answered


@dataclass
class Spare:
    """A child forked ahead, waiting on ``sock`` for its command."""

    pid: int
    sock: socket.socket


class WarmServer:
    def __init__(self, path: str, idle: float) -> None:
        self.path = path
        self.idle = idle
        self.identity = warmclient.identity()
        self.watch: SourceWatch | None = None
        self.sel = selectors.DefaultSelector()
        self.sessions: dict[int, Session] = {}  # by connection fd
        self.listener: socket.socket | None = None
        self.inode = -1
        self.lock_fd = -1
        self.served = 0
        self.last = time.monotonic()
        self.stale = False
        self.spare: Spare | None = None

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
        if self.watch is not None and self.watch.inotify is not None:
            self.sel.register(self.watch.inotify.fd, selectors.EVENT_READ, self._source_event)
        gc.freeze()  # what is imported now stays shared with every child
        try:
            self.spare = self._fork_spare(prepare=True)
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

    def _source_event(self, fd: object) -> None:
        assert self.watch is not None and isinstance(fd, int)
        if self.watch.check():
            self.stale = True  # the loop ends once the commands running now are done
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)

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
        if self.spare is not None:
            self._discard_spare(self.spare)
            self.spare = None
        if self.watch is not None:
            self.watch.close()
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
            body, fds = _receive_request(conn, 3)  # stdin, stdout, stderr
            request = decode_request(body)
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
        self._start(conn, body, fds)

    def _changed(self) -> bool:
        return self.watch is not None and self.watch.check()

    def _start(self, conn: socket.socket, body: bytes, fds: list[int]) -> None:
        with contextlib.suppress(OSError):
            conn.send(b"R")  # before the command can answer E itself
        spare, self.spare = self.spare, None
        try:
            for _attempt in range(2):
                if spare is None:  # taken by a command still running, or died
                    spare = self._fork_spare(prepare=False)
                try:
                    _send_with_fds(
                        spare.sock, len(body).to_bytes(4, "big") + body, [*fds, conn.fileno()]
                    )
                    break
                except OSError:  # it was killed: another
                    self._discard_spare(spare)
                    spare = None
        finally:
            for fd in fds:
                os.close(fd)
        if spare is None:
            conn.close()  # the client reports that the warm process went away
            return
        self.served += 1
        session = Session(conn, spare.pid, os.pidfd_open(spare.pid), ctl=spare.sock)
        conn.setblocking(False)
        self.sessions[conn.fileno()] = session
        self.sel.register(conn, selectors.EVENT_READ, self._from_client)
        self.sel.register(session.pidfd, selectors.EVENT_READ, self._exited)

    # -- the spare child ---------------------------------------------------------------------
    def _fork_spare(self, *, prepare: bool) -> Spare:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            ours.close()
            self._spare_main(theirs, prepare)
        theirs.close()
        return Spare(pid, ours)

    def _discard_spare(self, spare: Spare) -> None:
        spare.sock.close()  # it reads the end of its socket and exits, or:
        with contextlib.suppress(ProcessLookupError):
            os.kill(spare.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spare.pid, 0)

    def _spare_main(self, sock: socket.socket, prepare: bool) -> None:
        code = 1
        server = os.getppid()
        try:
            # when the server goes (stopped, killed), its client has been told so (125) and
            # this command goes with it, as with a killed client: never an orphan running on
            _die_with_parent(server)
            # nothing of the server's survives into the command
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.sel.close()
            if self.listener is not None:
                self.listener.close()
            for session in self.sessions.values():
                session.conn.close()
                os.close(session.pidfd)
                if session.ctl is not None:
                    session.ctl.close()
            if self.spare is not None:
                self.spare.sock.close()
            if self.watch is not None:
                self.watch.close()
            os.close(self.lock_fd)
            if prepare:
                _prepare_for_a_command(self.path + ".hot", lambda: _readable(sock))
            try:
                body, fds = _receive_request(sock, 4)  # and the client's connection
            except (OSError, ValueError):
                os._exit(0)  # the server went away (or closed us): no command will come
            self._run_command(decode_request(body), fds, sock)
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

    def _run_command(self, request: Request, fds: list[int], ctl: socket.socket) -> None:
        stdio, conn_fd = fds[:3], fds[3]
        os.set_inheritable(conn_fd, False)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
        _reopen_stdio()
        os.environ.clear()
        os.environb.update(request.env)
        os.chdir(request.cwd)
        os.umask(request.umask)
        sys.argv = [sys.argv[0], *request.args]
        from moorage.cli import main as cli_main

        def tell_client(code: int) -> None:
            # first the client's stdin/stdout/stderr go: whoever reads its output to the end
            # (`x=$(moor ...)`, a pipe) has it now, not once the clean-up below is done; then
            # the exit code, so the client goes on while this process does what the command
            # left for after its answer (moorage.later) and exits (another ms or two)
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.close(devnull)
            with contextlib.suppress(OSError):  # the server may be gone (system warm --stop)
                ctl.send(b"A")  # then: so the server lets this process finish
            with contextlib.suppress(OSError):
                os.write(conn_fd, b"E%d\n" % code)
            os.close(conn_fd)
            ctl.close()
            # what is left yields to the client's exit and to the next command
            with contextlib.suppress(OSError):
                os.nice(10)
            later.run_held()
            with contextlib.suppress(Exception):  # a hint for the next spare, nothing more
                _save_pages(self.path + ".hot", written_pages())

        later.enable()  # short commands hold their clean-up for after the answer
        cli_main.before_exit = tell_client
        cli_main.main(request.args)  # ends the process itself

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
            # the client is gone: killed, so is its command (as if it had run in that process),
            # unless the command answered and only finishes what it left for after (later)
            if not session.has_answered():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(session.pid, signal.SIGKILL)
            else:
                # the client has its answer and is gone: the next spare can start now (not
                # at the answer, when forking this large process and preparing the spare
                # would compete for the CPU with the client's exit)
                self._replenish()
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
            session.conn.sendall(reply)  # unless the child told the client itself
        self._end(session)
        self.last = time.monotonic()
        self._replenish()  # if the child ended without answering

    def _replenish(self) -> None:
        """A prepared spare for the next command, if there is none (and the code is current)."""
        if self.spare is None and not self.stale:
            self.spare = self._fork_spare(prepare=True)

    def _end(self, session: Session) -> None:
        for obj in (session.conn, session.pidfd):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(obj)
        self.sessions.pop(session.conn.fileno(), None)
        session.conn.close()
        if session.ctl is not None:
            session.ctl.close()
        if session.pidfd >= 0:
            os.close(session.pidfd)
            session.pidfd = -1


def _die_with_parent(parent: int) -> None:
    """SIGKILL when ``parent`` ends (prctl PR_SET_PDEATHSIG); at once if it already has."""
    _parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # it ended before the line above


def outlive_parent() -> None:
    """Let this command's process outlive its warm process: ``system warm --stop`` run by the
    warm process's own child stops its parent, then still answers its client (the client's
    socket and stdio are its own)."""
    _parent_death_signal(0)


def _parent_death_signal(signum: int) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG


def _receive_request(conn: socket.socket, nfds: int) -> tuple[bytes, list[int]]:
    """A length-prefixed request and the ``nfds`` descriptors passed with it."""
    fds: list[int] = []
    data = b""
    want = 4
    try:
        while len(data) < want:
            msg, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(4 * nfds))
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
        if len(fds) != nfds:
            raise ValueError(f"a request passes exactly {nfds} descriptors")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return data[4:want], fds


def _send_with_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sent = sock.sendmsg(
        [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    )
    if sent < len(data):
        sock.sendall(data[sent:])


def _prepare_for_a_command(hot: str, arrived: Callable[[], bool]) -> None:
    """What the next command will do first, done before it comes: open the database of the
    store this process's environment names, parse a command line (see ``rehearse``), and take
    the copy-on-write faults of the pages the last command wrote (``hot``, see
    ``written_pages``). Each step only while no command has ``arrived``: a command that
    comes sooner is not kept waiting for the rest."""
    from moorage.cli.app import rehearse
    from moorage.store import default_root
    from moorage.store.metadata import prepare

    with contextlib.suppress(Exception):  # the command meets (and reports) any problem
        prepare(default_root().absolute() / "moorage.db")
    with contextlib.suppress(Exception):
        if not arrived():
            rehearse()
    with contextlib.suppress(Exception):
        if not arrived():
            populate_pages(_load_pages(hot), arrived)


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


# A child forked from the warm process copies each page of its heap the first time it
# writes to it: ~3 us a fault here, ~1,000 of them for a `run` (~3 ms). The pages one
# command wrote are a good guess for the next, so a child records them after it answered
# and the next spare takes those faults ahead, with one madvise per run of pages.
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MADV_POPULATE_WRITE = 23  # Linux 5.14; elsewhere madvise fails and nothing is done
_PRESENT, _EXCLUSIVE = 1 << 63, 1 << 56  # pagemap bits: in memory; mapped by us alone


def _heap_ranges() -> list[tuple[int, int]]:
    """This process's private writable memory without a file behind it (the heap, obmalloc's
    arenas, other anonymous mappings)."""
    out = []
    with open("/proc/self/maps", encoding="ascii") as f:
        for line in f:
            parts = line.split()
            anonymous = len(parts) < 6 or parts[5] == "[heap]"
            if anonymous and parts[1].startswith("rw") and parts[1].endswith("p"):
                start, _, end = parts[0].partition("-")
                out.append((int(start, 16), int(end, 16)))
    return out


def written_pages() -> list[int]:
    """The heap pages this process has to itself (written since the fork, or new): page
    numbers, from /proc/self/pagemap."""
    import array

    pages: list[int] = []
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for start, end in _heap_ranges():
            first = start // _PAGE
            entries = array.array("Q", os.pread(fd, (end - start) // _PAGE * 8, first * 8))
            pages += [first + i for i, e in enumerate(entries) if e & _PRESENT and e & _EXCLUSIVE]
    finally:
        os.close(fd)
    return pages


def _save_pages(path: str, pages: list[int]) -> None:
    import array

    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "wb") as f:
        array.array("Q", pages).tofile(f)
    os.replace(tmp, path)


def _load_pages(path: str) -> list[int]:
    import array

    pages = array.array("Q")
    with open(path, "rb") as f:
        pages.frombytes(f.read(8 << 20))
    return list(pages)


def populate_pages(pages: list[int], stop: Callable[[], bool] = lambda: False) -> int:
    """Write-fault ``pages`` (numbers) in, one madvise per run of consecutive ones, until
    ``stop`` says so (asked every 64 runs); returns how many runs the kernel took."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    i = 0
    pages = sorted(pages)
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        if libc.madvise(pages[i] * _PAGE, (j - i + 1) * _PAGE, _MADV_POPULATE_WRITE) == 0:
            done += 1
            if done % 64 == 0 and stop():
                break
        elif ctypes.get_errno() == 22 and done == 0:  # EINVAL: the kernel has no such advice
            return 0
        i = j + 1
    return done


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
    server.watch = SourceWatch(Path(moorage.__file__).parent)  # from before the imports
    preload()
    server.listen()
    server.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
