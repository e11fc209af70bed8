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
configured user; the intermediate keeps the process's output, kills it (and its group) at
its deadline, and reports once, with its wait status and output, in one record on a
``SOCK_SEQPACKET`` socket (:class:`Report`). Before joining anything it checks that the pid
is still the container's init (its start time), so a pid reused meanwhile is never entered.
The caller forks the intermediate (:func:`start`; it must be single-threaded: a fork of a
threaded Python is unsafe), or a small fork server does (:class:`ForkServer`, for the
health supervisor). What runs in those children is in :mod:`moorage.runtime.enterproc`.

What this path does not handle, :func:`unsupported` names, and the caller then uses the
runtime's ``exec`` (the choice is explicit: see ``engine.health.probe_method``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    start_time: int = 0  # of the container's init (clock ticks after boot): its identity


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
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        start_time = int(stat[stat.rfind(b")") + 2 :].split()[19])
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
        start_time=start_time,
    )


# ---- following the children ----------------------------------------------------------------


class Report(NamedTuple):
    """What an intermediate reported (see :mod:`moorage.runtime.enterproc`): ``kind`` is
    ``S`` (ended at ``end``: ``status`` is its wait status, ``output`` what it wrote), ``T``
    (killed at its deadline, at ``end``), ``G`` (the container's process is gone) or ``E``
    (could not start: ``output`` says why)."""

    kind: str
    token: int
    status: int
    end: float  # when it ended or was killed (``time.time()``; 0 for G and E)
    output: bytes


def parse_report(record: bytes) -> Report:
    head, _, rest = record.partition(b"\n")
    token, status, end = [*head[1:].split(b" "), b"0", b"0"][:3]
    return Report(head[:1].decode(), int(token), int(status), float(end), rest)


class Entering:
    """A process being started in (then running in) a container by an intermediate this
    process forked (:func:`start`), followed through its report socket (one record)."""

    def __init__(self, sock: socket.socket, inter: int) -> None:
        self.sock = sock
        self.inter = inter
        self.report: Report | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait(self, timeout: float) -> Report | None:
        """The report, waiting at most ``timeout`` seconds (None: none came)."""
        import select
        import time

        end = time.monotonic() + timeout
        while self.report is None:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            record = self.sock.recv(1 << 16)
            if not record:  # the intermediate died without a word
                self.report = Report("E", 0, 0, 0.0, b"the entering process died")
            else:
                self.report = parse_report(record)
        return self.report

    def close(self) -> None:
        self.sock.close()
        if self.inter:
            _unreaped.append(self.inter)
            self.inter = 0
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


def start(p: EnterPlan, deadline: float) -> Entering:
    """Start the plan's process (stdin /dev/null, its output kept by the intermediate),
    killed at ``deadline`` (``time.time()``) if still running; forking from this process
    (which must be single-threaded); follow it with the returned :class:`Entering`. The
    fork is the caller's main cost (it grows with the caller's memory)."""
    if threading.active_count() != 1:
        raise EnterFailed("cannot enter a container from a threaded process")
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        inter = os.fork()
        if inter == 0:
            mine.close()
            _child(p, 0, deadline, theirs.fileno())
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    return Entering(mine, inter)


_SO_SNDBUFFORCE = 32  # Linux's; not in the socket module


class ForkServer:
    """Forks the intermediates for a caller that starts many (the health supervisor): a
    fork costs in proportion to the forking process's memory, and each one makes the
    caller's next writes to its pages fault; the server (``enterproc.py`` run on its own,
    ~10 MB) forks for less than the ~19 MB supervisor would pay. A plan is sent once under
    an id, then each batch of starts is one record; the intermediates report on the
    server's end of the same socket, so the caller reads every report from its one socket
    (:meth:`fileno`, :meth:`reports`). The server ends when its caller goes (the socket
    closes); a dead server is started again."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ids: dict[str, int] = {}
        self.last_id = 0

    def alive(self) -> bool:
        return self.sock is not None and self.proc is not None and self.proc.poll() is None

    def _ensure(self) -> socket.socket:
        if self.sock is not None and self.alive():
            return self.sock
        self.close()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):  # room for the reports of many intermediates
            theirs.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, 1 << 20)
        from moorage.runtime import enterproc

        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-c", enterproc.SERVE, enterproc.__file__,
                 str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
            )  # fmt: skip
        except OSError as e:
            mine.close()
            raise EnterFailed(f"cannot start the fork server: {e}") from e
        finally:
            theirs.close()
        self.sock = mine
        self.ids = {}
        return mine

    def fileno(self) -> int:
        """The socket the reports arrive on (-1 before the server started)."""
        return self.sock.fileno() if self.sock is not None else -1

    def start(self, runs: list[tuple[str, EnterPlan, int, float]]) -> None:
        """Start the process of each ``(key, plan, token, deadline)`` (as :func:`start`);
        ``key`` names the plan at the server, ``token`` the report."""
        import marshal

        sock = self._ensure()
        batch = []
        try:
            for key, p, token, deadline in runs:
                plan_id = self.ids.get(key)
                if plan_id is None:
                    self.last_id += 1
                    plan_id = self.ids[key] = self.last_id
                    sock.send(marshal.dumps(("plan", (plan_id, dict(vars(p))))))
                batch.append((plan_id, token, deadline))
            sock.send(marshal.dumps(("run", batch)))
        except OSError as e:
            self.close()
            raise EnterFailed(f"the fork server is gone: {e}") from e

    def reports(self) -> list[Report]:
        """The reports that arrived (not waiting for more). When the server and every
        intermediate are gone, closes (the next :meth:`start` starts another)."""
        out = []
        while self.sock is not None:
            try:
                record = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if not record:
                self.close()
                break
            out.append(parse_report(record))
        return out

    def forget(self, key: str) -> None:
        import marshal

        plan_id = self.ids.pop(key, None)
        if plan_id is not None and self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(marshal.dumps(("forget", plan_id)))

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
