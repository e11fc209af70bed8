"""What runs in the processes that enter a container (``moorage.runtime.enter`` plans them):
the intermediate child that joins the namespaces and root, the process that joins the
cgroups and takes on the process spec, and the fork server that forks intermediates for the
health supervisor.

Kept to syscalls and the standard library's lightest modules (os, ctypes, resource,
signal, marshal): the fork server runs this file on its own (``python -S FILE FD``), and the
cost of each fork grows with the forking process's memory. A plan arrives here as an object
with :class:`moorage.runtime.enter.EnterPlan`'s attributes.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

MYPY = False
if MYPY:  # typing is not imported at run time: it would weigh on every fork
    from typing import Any

_PR_SET_KEEPCAPS = 8
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                              ctypes.c_ulong]  # fmt: skip
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
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
        resource.setrlimit(res, (soft, hard))
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


def _intermediate(p: Any, report: int, out: int) -> None:
    """In the first child: join the namespaces and the container's root, fork the process
    (which joins the cgroups through files opened here, before the mount namespace changed
    what paths mean), report ``I<own pid>``, ``P<its pid>``, and once it ended
    ``S<wait status>`` on ``report``. This child stays out of the container's cgroups."""
    os.write(report, f"I{os.getpid()}\n".encode())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # whatever the caller did with it: we wait
    c = _c()
    if p.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(p.oom_score_adj))
    fds = [os.open(f"/proc/{p.pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in p.namespaces]
    root = os.open(f"/proc/{p.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cgroups = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in p.cgroup_procs]
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
            os.close(report)
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
    for fd in cgroups:
        os.close(fd)
    if cgroupns >= 0:
        os.close(cgroupns)
    os.close(out)  # the output ends with the process
    os.write(report, f"P{child}\n".encode())
    _, status = os.waitpid(child, 0)
    os.write(report, f"S{status}\n".encode())


def _child(p: Any, report: int, out: int) -> None:
    """The first child's whole life; never returns."""
    code = 1
    try:
        _intermediate(p, report, out)
        code = 0
    except BaseException as e:
        try:  # noqa: SIM105 - contextlib is not imported here
            os.write(report, f"E{e}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def serve(fd: int) -> int:
    """The fork server: plans arrive once (``("plan", key, attributes)``), then each
    ``("run", key)`` datagram carries the output and report pipes of one start. Ends when
    its caller goes (the socket closes)."""
    import marshal
    import socket
    import types

    global _LAST_CAP
    _LAST_CAP = _last_cap()
    _c()
    sock = socket.socket(fileno=fd)
    plans: dict[str, Any] = {}
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        except InterruptedError:
            continue
        if not msg:
            return 0
        kind, key, *rest = marshal.loads(msg)
        if kind == "plan":
            plans[key] = types.SimpleNamespace(**rest[0])
        elif kind == "forget":
            plans.pop(key, None)
        elif kind == "run" and len(fds) == 2:
            out, report = fds
            try:
                plan = plans.get(key)
                if plan is None:
                    os.write(report, b"Eno such plan\n")
                elif os.fork() == 0:
                    sock.close()
                    _child(plan, report, out)
            except OSError:
                pass
            finally:
                os.close(out)
                os.close(report)
        else:
            for f in fds:
                os.close(f)
        # reap the intermediates that ended (waited for, their CPU and their probes' shows
        # in this process's children times)
        while True:
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not done:
                break


if __name__ == "__main__":
    import sys

    sys.exit(serve(int(sys.argv[1])))
