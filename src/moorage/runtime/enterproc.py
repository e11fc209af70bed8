"""What runs in the processes that enter a container (``moorage.runtime.enter`` plans them):
the intermediate child that joins the namespaces and root, the process that joins the
cgroups and takes on the process spec, and the fork server that forks intermediates for the
health supervisor.

Kept to syscalls, ctypes and modules built into the interpreter (os, _signal, time, marshal,
gc): the fork server runs this module on its own (``python -S``, see :func:`serve`), and the
cost of each of its forks grows with its memory and its mappings (each extension module
loaded is five more; ``poll`` and ``setrlimit`` are called through ctypes for that). A plan
arrives here as an object with :class:`moorage.runtime.enter.EnterPlan`'s attributes.

The intermediate follows its process to the end itself: it reads the process's output
(keeping the first :data:`OUTPUT_LIMIT` bytes), kills the process and its group at the
deadline, and reports once, in one record on a ``SOCK_SEQPACKET`` socket (one record per
``write``, so the intermediates of many probes can share the fork server's socket):

- ``S<token> <wait status> <end>\n<output>``: the process ended (at ``end``, ``time.time()``);
- ``T<token> 0 <end>\n``: it outlived its deadline and was killed (its end is not waited for: a
  frozen container's process dies only once thawed);
- ``G<token>\n<why>``: the container's process is gone (exited, or its pid is another's now);
- ``E<token>\n<why>``: the process could not be started.
"""

from __future__ import annotations

import ctypes
import os
import time

MYPY = False
if MYPY:  # typing is not imported at run time: it would weigh on every fork
    import signal
    from typing import Any
else:  # _signal, not signal: signal.py imports enum, and with it ~0.5 MB that every fork copies
    import _signal as signal

_PR_SET_KEEPCAPS = 8
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

OUTPUT_LIMIT = 4096
"""Bytes of a process's output kept (as Docker: ``health.MAX_OUTPUT``)."""


_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                              ctypes.c_ulong]  # fmt: skip
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.setrlimit.argtypes = [ctypes.c_int, ctypes.c_void_p]
        lib.poll.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int]
        _libc = lib
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _prctl(option: int, a: int = 0, b: int = 0) -> None:
    _check(_c().prctl(option, a, b, 0, 0), f"prctl({option})")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


_PollFds = _PollFd * 2  # made once here, not in each child


_POLLIN = 0x1


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


_LAST_CAP: int | None = None


def _home(uid: int) -> str:
    """runc's HOME for a process without one: the user's passwd entry in the container."""
    try:
        with open("/etc/passwd", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def _lookpath(argv0: str, env: tuple[str, ...]) -> str:
    if "/" in argv0:
        return argv0
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
    for d in path.split(":"):
        cand = f"{d or '.'}/{argv0}"
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError(f'exec: "{argv0}": executable file not found in $PATH')


def _become(p: Any) -> None:
    """In the process itself (in the container's namespaces and root, still host root): the
    process spec, in runc's order, then execve. Never returns."""
    c = _c()
    for res, soft, hard in p.rlimits:
        # as resource.setrlimit (-1: unlimited)
        rl = _Rlimit(soft, hard)
        _check(c.setrlimit(res, ctypes.addressof(rl)), f"setrlimit({res})")
    env = list(p.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={_home(p.uid)}")
    exe = _lookpath(p.argv[0], p.env)
    if p.no_new_privileges:
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    fprog = None
    if p.seccomp_bpf is not None:
        buf = ctypes.create_string_buffer(p.seccomp_bpf, len(p.seccomp_bpf))
        fprog = _SockFprog(len(p.seccomp_bpf) // 8, ctypes.addressof(buf))
        if not p.no_new_privileges:
            # without no_new_privs loading needs CAP_SYS_ADMIN: before the capabilities go
            _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    last = _LAST_CAP if _LAST_CAP is not None else _last_cap()
    for cap in range(last + 1):
        if not p.bounding & (1 << cap):
            _prctl(_PR_CAPBSET_DROP, cap)
    _prctl(_PR_SET_KEEPCAPS, 1)
    os.setgroups(list(p.groups))
    os.setresgid(p.gid, p.gid, p.gid)
    os.setresuid(p.uid, p.uid, p.uid)
    _prctl(_PR_SET_KEEPCAPS, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(
        p.effective & 0xFFFFFFFF, p.permitted & 0xFFFFFFFF, p.inheritable & 0xFFFFFFFF,
        p.effective >> 32, p.permitted >> 32, p.inheritable >> 32,
    )  # fmt: skip
    _check(c.capset(ctypes.addressof(header), ctypes.addressof(data)), "capset")
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(last + 1):
        if p.ambient & (1 << cap):
            _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)
    os.umask(p.umask)
    os.chdir(p.cwd)
    if fprog is not None and p.no_new_privileges:
        _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    os.execve(exe, list(p.argv), dict(e.split("=", 1) for e in env if "=" in e))


class _Gone(Exception):
    """The container's process is not there any more (or its pid belongs to another)."""


def _check_init(p: Any) -> None:
    """The process at ``p.pid`` is still the container's init (not a zombie, the start time
    of the plan): what was opened through ``/proc/PID`` before this check was its."""
    try:
        with open(f"/proc/{p.pid}/stat", "rb") as f:
            stat = f.read()
    except OSError as e:
        raise _Gone(f"the container's process {p.pid} is gone: {e}") from None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        raise _Gone(f"the container's process {p.pid} has exited")
    if p.start_time and int(fields[19]) != p.start_time:
        raise _Gone(f"the container's process {p.pid} is gone (the pid is another's now)")


def _open_all(p: Any) -> tuple[list[int], int, list[int]]:
    """The container's namespaces, root and ``cgroup.procs`` files, opened."""
    try:
        fds = [os.open(f"/proc/{p.pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
               for ns in p.namespaces]  # fmt: skip
        root = os.open(f"/proc/{p.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        cgroups = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in p.cgroup_procs]
    except OSError:
        _check_init(p)  # the container is gone: says so
        raise
    _check_init(p)
    return fds, root, cgroups


def _intermediate(p: Any, token: int, deadline: float, report: int) -> None:
    """In the first child: join the namespaces and the container's root, fork the process
    (which joins the cgroups through files opened here, before the mount namespace changed
    what paths mean), follow it to its end or its deadline, report (see the module's doc).
    This child stays out of the container's cgroups."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # whatever the caller did with it: we wait
    c = _c()
    if p.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(p.oom_score_adj))
    fds, root, cgroups = _open_all(p)
    cgroupns = -1
    for ns, fd in zip(p.namespaces, fds, strict=True):
        if ns == "cgroup":
            cgroupns = fd  # the process joins it, after the cgroups (see below)
            continue
        _check(c.setns(fd, 0), f"setns {ns}")
        os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    r, out = os.pipe()
    child = os.fork()
    if child == 0:
        code = 126
        try:
            for fd in cgroups:
                os.write(fd, b"0")  # "0": the writer itself
            if cgroupns >= 0:
                # after the cgroups, as runc: with cgroup2's nsdelegate a process inside
                # a cgroup namespace cannot be moved in from outside it
                _check(c.setns(cgroupns, 0), "setns cgroup")
            os.setsid()  # its own process group: a timeout kills whatever it started
            # what Python ignores from its start, back to the default (as subprocess does
            # before an exec; runc exec's process has them so)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 1 << 20)
            try:
                _become(p)
            except FileNotFoundError as e:
                code = 127
                os.write(2, f"exec failed: unable to start container process: {e}\n".encode())
            except BaseException as e:
                os.write(2, f"exec failed: unable to start container process: {e}\n".encode())
        finally:
            os._exit(code)
    try:
        for fd in cgroups:
            os.close(fd)
        if cgroupns >= 0:
            os.close(cgroupns)
        os.close(out)  # the output ends with the process
        status = _follow(child, r, deadline)
    except BaseException:
        _kill(child)
        raise
    if status is None:
        os.write(report, b"T%d 0 %r\n" % (token, time.time()))
        os.waitpid(child, 0)  # a frozen process ends once thawed
        return
    end = time.time()
    output = _drain(r, status[1])
    os.write(report, b"S%d %d %r\n" % (token, status[0], end) + output)


def _follow(child: int, r: int, deadline: float) -> tuple[int, bytearray] | None:
    """Read the process's output until it ended: its wait status and the output read so
    far; None if the deadline came first (it and its group are killed)."""
    pidfd = os.pidfd_open(child)
    fds = _PollFds(_PollFd(r, _POLLIN, 0), _PollFd(pidfd, _POLLIN, 0))
    poll = _c().poll
    output = bytearray()
    while True:
        left = deadline - time.time()
        if left <= 0:
            _kill(child)
            return None
        if poll(ctypes.addressof(fds), 2, min(int(left * 1000) + 1, 1 << 30)) < 0:
            if ctypes.get_errno() == 4:  # EINTR
                continue
            _check(-1, "poll")
        if fds[0].revents:
            chunk = os.read(r, 65536)
            if not chunk:
                fds[0].fd = -1  # its end: not polled any more
            elif len(output) < OUTPUT_LIMIT:
                output += chunk
        if fds[1].revents:
            _, status = os.waitpid(child, 0)
            os.close(pidfd)
            return status, output


def _drain(r: int, output: bytearray) -> bytes:
    """What is left in the output pipe once the process ended, not waiting for more (what it
    started in the background may hold the pipe open)."""
    os.set_blocking(r, False)
    try:
        while len(output) < OUTPUT_LIMIT:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            output += chunk
    except BlockingIOError:
        pass
    os.close(r)
    return bytes(output[:OUTPUT_LIMIT])


def _kill(pid: int) -> None:
    """SIGKILL the process and the group it leads."""
    for f in (os.killpg, os.kill):
        try:  # noqa: SIM105 - contextlib is not imported here
            f(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _child(p: Any, token: int, deadline: float, report: int) -> None:
    """The first child's whole life; never returns."""
    code = 1
    try:
        _intermediate(p, token, deadline, report)
        code = 0
    except BaseException as e:
        kind = b"G" if isinstance(e, _Gone) else b"E"
        try:  # noqa: SIM105 - contextlib is not imported here
            os.write(report, kind + b"%d\n" % token + str(e).encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def serve(fd: int) -> int:
    """The fork server: plans arrive once (``("plan", (id, attributes))``), then each
    ``("run", [(plan id, token, deadline), ...])`` record starts one intermediate per entry,
    which reports on this same socket (the caller reads its end). Ends when its caller
    goes (the socket closes)."""
    import gc
    import marshal
    import sys

    global _LAST_CAP
    _LAST_CAP = _last_cap()
    lib = _c()
    namespace = type(sys.implementation)  # types.SimpleNamespace, without importing types
    plans: dict[int, Any] = {}
    filters: dict[bytes, bytes] = {}
    # no collections: this loop makes no cycles, and a collection writes to every object
    # it traverses (each write after a fork is a page copied)
    gc.disable()
    gc.collect()
    gc.freeze()
    lib.malloc_trim(0)
    while True:
        msg = os.read(fd, 1 << 20)  # one record
        if not msg:
            return 0
        kind, arg = marshal.loads(msg)
        if kind == "run":
            _run(arg, plans, fd)
        elif kind == "plan":
            attrs = arg[1]
            bpf = attrs["seccomp_bpf"]  # one copy of each filter, not one per container
            if bpf is not None:
                attrs["seccomp_bpf"] = filters.setdefault(bpf, bpf)
            plans[arg[0]] = namespace(**attrs)
            del msg, arg, attrs, bpf
            lib.malloc_trim(0)  # the record's memory back: less to copy at each fork
        elif kind == "forget":
            plans.pop(arg, None)
        # reap the intermediates that ended (waited for, their CPU and their probes' shows
        # in this process's children times)
        while True:
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not done:
                break


def _run(runs: list[tuple[int, int, float]], plans: dict[int, Any], fd: int) -> None:
    """Fork one intermediate per ``(plan id, token, deadline)``. Between two forks this
    touches as little as it can (each page written after a fork is copied): the plan is
    looked up in the child."""
    fork = os.fork
    for plan_id, token, deadline in runs:
        try:
            if fork() == 0:
                plan = plans.get(plan_id)
                if plan is None:
                    os.write(fd, b"E%d\nno such plan" % token)
                    os._exit(1)
                _child(plan, token, deadline, fd)
        except OSError as e:
            try:  # noqa: SIM105
                os.write(fd, b"E%d\n" % token + str(e).encode(errors="replace"))
            except OSError:
                pass


SERVE = (
    "import sys; sys.path[0] = sys.argv[1].rpartition('/')[0]; import enterproc; "
    "sys.exit(enterproc.serve(int(sys.argv[2])))"
)
"""How the fork server starts: ``python -S -c SERVE PATH-OF-THIS-FILE FD``, this file
imported as a module on its own (from its cached bytecode: a script would be compiled at
each start, and the compiler's garbage would stay in the heap that every fork copies)."""


if __name__ == "__main__":
    import sys

    sys.exit(serve(int(sys.argv[1])))
