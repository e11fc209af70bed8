"""Entering a running container from the host without the OCI runtime: the fast path of
health checks (a ``runc exec`` costs ~25-33 ms of CPU here, two Go runtime starts; this
costs two forks and a handful of syscalls, ~5 ms).

The process gets what ``runc exec`` gives it, read from the container's ``config.json``:
the container's cgroups (every v1 hierarchy's ``cgroup.procs``, or the v2 one), its
namespaces (``/proc/PID/ns/*`` of its init, for the types the config lists), its root,
then the process spec: rlimits, capability bounding set, supplementary groups, gid, uid,
effective/permitted/inheritable and ambient capabilities, no_new_privs, the seccomp filter
(compiled once with libseccomp, :mod:`moorage.runtime.seccompbpf`), umask, working directory,
environment (``HOME`` from the container's passwd when missing, as runc) and ``execve``.

Shape: an intermediate child joins the namespaces (``setns(CLONE_NEWPID)`` only applies to
children) and the root, and forks the process, which joins the cgroups and becomes the
configured user; the intermediate reports both pids and, once the process ended, its wait
status through a pipe (:class:`Entering`). The caller forks the intermediate (:func:`start`;
it must be single-threaded: a fork of a threaded Python is unsafe), or a small fork server
does (:class:`ForkServer`, for the health supervisor). What runs in those children is in
:mod:`moorage.runtime.enterproc`.

What this path does not handle, :func:`unsupported` names, and the caller then uses the
runtime's ``exec`` (the choice is explicit: see ``engine.health.probe_method``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from moorage.errors import MoorageError
from moorage.runtime.enterproc import _child

_NS_PROC_NAME = {
    "ipc": "ipc",
    "uts": "uts",
    "network": "net",
    "pid": "pid",
    "cgroup": "cgroup",
    "mount": "mnt",
}
# joined in this order: the cgroup namespace after the cgroups are joined by host path, the
# mount namespace last (it changes what paths mean)
_NS_ORDER = ("ipc", "uts", "network", "pid", "cgroup", "mount")


class EnterFailed(MoorageError):
    """The process could not be started in the container (the message says which step)."""


@dataclass(frozen=True)
class EnterPlan:
    """Everything the forked children need, worked out beforehand by the caller so that the
    children only make syscalls."""

    pid: int
    namespaces: tuple[str, ...]  # /proc/PID/ns/* names, in joining order
    cgroup_procs: tuple[str, ...]  # host paths of the container's cgroup.procs files
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    umask: int
    rlimits: tuple[tuple[int, int, int], ...]
    bounding: int  # capability masks
    effective: int
    permitted: int
    inheritable: int
    ambient: int
    no_new_privileges: bool
    seccomp_bpf: bytes | None
    oom_score_adj: int | None


def unsupported(config: dict[str, Any]) -> str | None:
    """Why this path cannot start a process in a container with this ``config.json``, or
    None when it can."""
    if os.geteuid() != 0:
        return "not root"
    process = config.get("process") or {}
    linux = config.get("linux") or {}
    for ns in linux.get("namespaces") or []:
        if ns.get("type") not in _NS_PROC_NAME:
            return f"a {ns.get('type')} namespace"
    for key in ("apparmorProfile", "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity"):
        if process.get(key):
            return f"process.{key}"
    for key in ("intelRdt", "personality", "mountLabel"):
        if linux.get(key):
            return f"linux.{key}"
    if process.get("terminal"):
        return "a terminal"
    for rl in process.get("rlimits") or []:
        if not hasattr(resource, str(rl.get("type"))):
            return f"rlimit {rl.get('type')}"
    seccomp = linux.get("seccomp")
    if seccomp:
        from moorage.runtime import seccompbpf

        try:
            seccompbpf.check(seccomp)
            seccompbpf._libseccomp()
        except seccompbpf.SeccompUnsupported as e:
            return str(e)
    return None


def _cap_mask(names: list[str] | None) -> int:
    from moorage.oci.capabilities import CAPABILITIES

    index = {n: i for i, n in enumerate(CAPABILITIES)}
    mask = 0
    for n in names or []:
        if n in index:
            mask |= 1 << index[n]
    return mask


_mounts: dict[frozenset[str], str] | None = None


def _cgroup_mounts() -> dict[frozenset[str], str]:
    """v1 hierarchies by their controllers (``name=systemd`` included) and the v2 one under
    the empty set, from the host's mount table."""
    global _mounts
    if _mounts is None:
        found: dict[frozenset[str], str] = {}
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(rfields) < 3 or fields[3] != "/":
                    continue
                if rfields[0] == "cgroup2":
                    found.setdefault(frozenset(), fields[4])
                elif rfields[0] == "cgroup":
                    opts = {o for o in rfields[2].split(",") if o not in ("rw", "ro")}
                    found.setdefault(frozenset(opts), fields[4])
        _mounts = found
    return _mounts


def cgroup_procs_files(pid: int) -> list[str]:
    """The ``cgroup.procs`` of every cgroup process ``pid`` is in (host paths)."""
    mounts = _cgroup_mounts()
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            want = frozenset(c for c in controllers.split(",") if c)
            mount = mounts.get(want)
            if mount is None:
                mount = next((m for k, m in mounts.items() if want and want <= k), None)
            if mount is None:
                continue
            out.append(f"{mount.rstrip('/')}/{path.lstrip('/')}".rstrip("/") + "/cgroup.procs")
    return out


def plan(config: dict[str, Any], process: dict[str, Any], pid: int) -> EnterPlan:
    """The plan for running ``process`` (an OCI process object) in the container whose
    ``config.json`` is ``config`` and whose init is host pid ``pid``."""
    reason = unsupported({**config, "process": process})
    if reason is not None:
        raise EnterFailed(f"cannot enter the container directly: {reason}")
    linux = config.get("linux") or {}
    types = {ns.get("type") for ns in linux.get("namespaces") or []}
    namespaces = tuple(_NS_PROC_NAME[t] for t in _NS_ORDER if t in types)
    try:
        cgroups = tuple(cgroup_procs_files(pid))
    except OSError as e:
        raise EnterFailed(f"the container's process {pid} is gone: {e}") from e
    user = process.get("user") or {}
    caps = process.get("capabilities") or {}
    rlimits = tuple(
        (int(getattr(resource, rl["type"])), int(rl["soft"]), int(rl["hard"]))
        for rl in process.get("rlimits") or []
    )
    seccomp = linux.get("seccomp")
    bpf = None
    if seccomp:
        from moorage.runtime import seccompbpf

        try:
            bpf = seccompbpf.compile_bpf(seccomp)
        except seccompbpf.SeccompUnsupported as e:
            raise EnterFailed(f"cannot enter the container directly: {e}") from e
    oom = process.get("oomScoreAdj")
    return EnterPlan(
        pid=pid,
        namespaces=namespaces,
        cgroup_procs=cgroups,
        argv=tuple(process["args"]),
        env=tuple(process.get("env") or ()),
        cwd=process.get("cwd") or "/",
        uid=int(user.get("uid", 0)),
        gid=int(user.get("gid", 0)),
        groups=tuple(int(g) for g in user.get("additionalGids") or ()),
        umask=int(user["umask"]) if user.get("umask") is not None else 0o022,
        rlimits=rlimits,
        bounding=_cap_mask(caps.get("bounding")),
        effective=_cap_mask(caps.get("effective")),
        permitted=_cap_mask(caps.get("permitted")),
        inheritable=_cap_mask(caps.get("inheritable")),
        ambient=_cap_mask(caps.get("ambient")),
        no_new_privileges=bool(process.get("noNewPrivileges")),
        seccomp_bpf=bpf,
        oom_score_adj=int(oom) if oom else None,
    )


# ---- following the children ----------------------------------------------------------------


@dataclass
class Entering:
    """A process being started in (then running in) a container, followed through the
    report pipe of its intermediate: its pid, then its wait status. The pipe is
    non-blocking; :meth:`pump` reads what is there (call it when the pipe is readable)."""

    report: int
    inter: int = 0
    pid: int = 0
    status: int | None = None
    error: str = ""
    eof: bool = False
    reap: int = 0  # our own child (the intermediate forked in process), reaped at the end
    buf: bytes = b""

    def pump(self) -> None:
        while not self.eof:
            try:
                chunk = os.read(self.report, 4096)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            kind, value = text[:1], text[1:]
            if kind == "I":
                self.inter = int(value)
            elif kind == "P":
                self.pid = int(value)
            elif kind == "S":
                self.status = int(value)
            elif kind == "E":
                self.error = value
        if self.eof and self.reap:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.reap, 0)
            self.reap = 0

    def _block(self, until: Any, timeout: float | None = None) -> None:
        import select
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not until() and not self.eof:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            select.select([self.report], [], [], left)
            self.pump()

    def wait_pid(self) -> int:
        """Block until the process is in place; its host pid."""
        self._block(lambda: self.pid)
        if not self.pid:
            raise EnterFailed(self.error or "the entering process died")
        return self.pid

    def wait_status(self, timeout: float | None = None) -> int:
        """Block until the process ended (at most ``timeout`` seconds); its exit code
        (128+N for a signal N). A killed process in a frozen cgroup (a paused container)
        ends only once thawed: the caller bounds its wait."""
        self._block(lambda: False, timeout)
        if self.status is None:
            if not self.eof:
                raise EnterFailed(f"the process did not end within {timeout} s")
            raise EnterFailed(self.error or "the entering process died")
        return exit_status(self.status)

    def kill(self) -> None:
        """SIGKILL the process and its group, or the intermediate if it is not there yet."""
        if self.pid:
            kill(self.pid)
        elif self.inter:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.inter, signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.report)
        if self.reap:
            _unreaped.append(self.reap)
            self.reap = 0
        _reap()


_unreaped: list[int] = []


def _reap() -> None:
    """Reap the intermediates that ended (one may outlive its probe: a paused container)."""
    for pid in list(_unreaped):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _unreaped.remove(pid)


def _report_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    return r, w


def start(p: EnterPlan, out: int) -> Entering:
    """Start the plan's process with ``out`` as its stdout and stderr (stdin /dev/null),
    forking from this process (which must be single-threaded); follow it with the
    returned :class:`Entering`. The fork is the caller's main cost (it grows with the
    caller's memory: ~0.3-0.5 ms for the 19 MB supervisor here)."""
    if threading.active_count() != 1:
        raise EnterFailed("cannot enter a container from a threaded process")
    r, w = _report_pipe()
    try:
        inter = os.fork()
        if inter == 0:
            os.close(r)
            _child(p, w, out)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return Entering(r, inter=inter, reap=inter)


class ForkServer:
    """Forks the intermediates for a caller that starts many (the health supervisor): a
    fork costs in proportion to the forking process's memory, and each one makes the
    caller's next writes to its pages fault; the server (``enterproc.py`` run on its own,
    ~10 MB) forks for ~60% of what the 19 MB supervisor would pay. A plan is sent once under
    a key, then each start is one datagram carrying the output and report pipes. The
    server ends when its caller goes (the socket closes); a dead server is started again."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.known: set[str] = set()

    def _ensure(self) -> socket.socket:
        if self.sock is not None and self.proc is not None and self.proc.poll() is None:
            return self.sock
        self.close()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        from moorage.runtime import enterproc

        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", enterproc.__file__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
            )  # fmt: skip
        except OSError as e:
            mine.close()
            raise EnterFailed(f"cannot start the fork server: {e}") from e
        finally:
            theirs.close()
        self.sock = mine
        self.known = set()
        return mine

    def start(self, key: str, p: EnterPlan, out: int) -> Entering:
        """As :func:`start`, forked by the server; ``key`` names the plan there."""
        import dataclasses
        import marshal

        sock = self._ensure()
        r, w = _report_pipe()
        try:
            if key not in self.known:
                sock.send(marshal.dumps(("plan", key, dataclasses.asdict(p))))
                self.known.add(key)
            socket.send_fds(sock, [marshal.dumps(("run", key))], [out, w])
        except OSError as e:
            os.close(r)
            self.close()
            raise EnterFailed(f"the fork server is gone: {e}") from e
        finally:
            os.close(w)
        return Entering(r)

    def forget(self, key: str) -> None:
        import marshal

        if key in self.known and self.sock is not None:
            self.known.discard(key)
            with contextlib.suppress(OSError):
                self.sock.send(marshal.dumps(("forget", key)))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            self.proc.wait()
            self.proc = None


def exit_status(status: int) -> int:
    """A wait status as a container exit code: the code, or 128+N for a signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def kill(pid: int) -> None:
    """SIGKILL the process and the group it leads."""
    for f in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            f(pid, signal.SIGKILL)
