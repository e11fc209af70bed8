"""The host-wide health supervisor, and ``moor system boot``.

Not a Docker-style daemon: it holds no container's stdio (conmon does) and owns no state that
the store does not have. ``moor run``/``start`` of a health-checked container starts it (see
``health.ensure_supervisor``); it exits when no running container needs it, and any ``moor``
command that looks at a health-checked container starts it again if it was killed. One
instance per run root, held by a lock on ``RUNROOT/supervisor.lock``.

One thread, one ``poll`` loop: probes run as children whose output pipes it watches (the
check's own process, entered into the container directly, or ``runc exec`` where that path
does not apply: ``health.probe_method``); results are written in one transaction per wakeup.
It imports no click and none of the engine's container code, so it stays small
(``python -m moorage.engine.supervisor``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moorage.engine import health
from moorage.engine.events import record_event
from moorage.runtime import process_alive

if TYPE_CHECKING:
    from moorage.runtime.enter import EnterPlan, ForkServer

IDLE_EXIT = 5.0
"""Seconds without any health-checked container before the supervisor exits."""

RESCAN = 5.0

STEP_GAP = 0.02
"""At most one pass over the probes this often: with many probes, each wakeup handles a
batch (results are 20 ms late at worst, next to intervals of seconds)."""
"""Re-read the containers at least this often (besides whenever the database changed)."""


@dataclass
class _Target:
    cid: str
    name: str
    image: str
    labels: dict[str, str]
    cfg: health.HealthConfig
    started_at: float
    pid: int
    runtime: str
    run_dir: Path
    due: float
    plan: EnterPlan | None = None  # None: probes go through the runtime's exec
    method: str = ""
    probe: health.Probe | None = None

    @property
    def key(self) -> str:
        """Its plan's name at the fork server: one per run of the container."""
        return f"{self.cid}:{self.pid}:{self.started_at}"


class _Store:
    """What ``record_event`` needs, without opening the engine's Store."""

    def __init__(self, db: Any, runroot: Path) -> None:
        self.db = db
        self.runroot = runroot


_alive = process_alive


class Supervisor:
    def __init__(self, root: Path, runroot: Path) -> None:
        from moorage.store.metadata import Metadata

        self.root = root
        self.runroot = runroot
        self.db = Metadata(root / "moorage.db")
        self.store = _Store(self.db, runroot)
        self.targets: dict[str, _Target] = {}
        self.data_version = -1
        self.last_scan = 0.0
        self.last_step = 0.0
        self.runtimes: dict[str, tuple[str, list[str]]] = {}
        self.server: ForkServer | None = None  # forks the direct probes; started on demand
        self.stopping = False

    def _runtime(self, name: str) -> tuple[str, list[str]]:
        if name not in self.runtimes:
            from moorage.runtime import get_runtime

            rt = get_runtime(name, self.runroot / "runtime")
            self.runtimes[name] = (rt.path, rt.global_args())
        return self.runtimes[name]

    def scan(self, now: float) -> None:
        """Re-read the running containers when the database changed (or every RESCAN s)."""
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self.data_version and now - self.last_scan < RESCAN:
            return
        self.data_version = version
        self.last_scan = now
        rows = self.db.conn.execute(
            "SELECT id, name, image_ref, spec, started_at, pid FROM containers "
            "WHERE state = 'running'"
        ).fetchall()
        seen = set()
        for cid, name, image, spec_json, started_at, pid in rows:
            old = self.targets.get(cid)
            if old is not None and old.started_at == started_at and old.pid == pid:
                seen.add(cid)
                continue
            spec = json.loads(spec_json)
            cfg = health.effective(spec.get("healthcheck"))
            if cfg is None or not started_at:
                continue
            seen.add(cid)
            if old is not None and old.probe is not None:
                self._abandon(old)
            if old is not None and self.server is not None:
                self.server.forget(old.key)
            plan, method = health.probe_method(self.root / "containers" / cid, cfg, pid)
            self.targets[cid] = _Target(
                cid=cid, name=name, image=image, labels=dict(spec.get("labels") or {}), cfg=cfg,
                started_at=started_at, pid=pid, runtime=spec.get("runtime") or "runc",
                run_dir=self.runroot / "containers" / cid,
                due=max(now, started_at + cfg.interval / health.NS), plan=plan, method=method,
            )  # fmt: skip
        for cid in list(self.targets):
            if cid not in seen:
                t = self.targets.pop(cid)
                if t.probe is not None:
                    self._abandon(t)
                if self.server is not None:
                    self.server.forget(t.key)

    def _abandon(self, t: _Target) -> None:
        assert t.probe is not None
        t.probe.kill()
        t.probe.wait()
        t.probe.close()
        t.probe = None

    def launch(self, now: float) -> None:
        for t in self.targets.values():
            if t.probe is not None or t.due > now:
                continue
            if not _alive(t.pid):
                t.due = now + t.cfg.interval / health.NS
                continue
            path, args = self._runtime(t.runtime)
            try:
                server = None
                if t.plan is not None:
                    from moorage.runtime.enter import ForkServer

                    server = self.server = self.server or ForkServer()
                t.probe = health.start_probe(
                    path, args, t.cid, t.run_dir, t.cfg, t.plan, wait=False, server=server,
                    key=t.key,
                )  # fmt: skip
            except OSError:
                t.due = now + t.cfg.interval / health.NS

    def step(self, timeout: float) -> None:
        """Wait for output, an exit or a deadline; record what finished."""
        now = time.time()
        if now < self.last_step + STEP_GAP:  # let events gather: one pass handles many
            time.sleep(self.last_step + STEP_GAP - now)
            now = time.time()
        self.last_step = now
        waiting = [t for t in self.targets.values() if t.probe is not None]
        due = [t.due for t in self.targets.values() if t.probe is None]
        due += [t.probe.deadline for t in waiting if t.probe is not None]
        wait = min([timeout, *(d - now for d in due)])
        # output pipes, and the direct probes' reports (pid, then exit status)
        outs = {t.probe.out: t for t in waiting if t.probe is not None and t.probe.out_open}
        reports = {
            t.probe.entering.report: t
            for t in waiting
            if t.probe is not None and t.probe.entering is not None and not t.probe.entering.eof
        }
        if outs or reports:  # poll, not select: no limit on the fd numbers of many probes
            poller = select.poll()
            for fd in [*outs, *reports]:
                poller.register(fd, select.POLLIN | select.POLLHUP)
            ready = {fd for fd, _ in poller.poll(max(wait, 0) * 1000)}
        else:
            time.sleep(max(wait, 0))
            ready = set()
        finished: list[tuple[_Target, dict[str, Any]]] = []
        now = time.time()
        for fd in ready & outs.keys():
            t = outs[fd]
            assert t.probe is not None
            if not t.probe.read() and t.probe.entering is None:
                t.probe.wait()  # runc exec: its output ends with it
                finished.append((t, t.probe.result(now)))
        for fd in ready & reports.keys():
            t = reports[fd]
            p = t.probe
            assert p is not None and p.entering is not None
            p.entering.pump()
            if not p.entering.eof:
                continue
            if not p.entering.pid and not p.timed_out:
                # could not enter (the container is going away?): the runtime's exec says
                p.close()
                t.probe = None
                path, args = self._runtime(t.runtime)
                with contextlib.suppress(OSError):
                    t.probe = health.start_probe(path, args, t.cid, t.run_dir, t.cfg)
                if t.probe is None:
                    t.due = now + t.cfg.interval / health.NS
                continue
            p.drain()
            p.wait()
            finished.append((t, p.result(now)))
        for t in waiting:
            p = t.probe
            if p is None or any(t is f for f, _ in finished):
                continue
            if now >= p.deadline:
                p.kill()
                p.wait()
                finished.append((t, p.result(now)))
        if not finished:
            return
        changes = []
        with self.db.transaction() as conn:
            for t, result in finished:
                assert t.probe is not None
                t.probe.close()
                t.probe = None
                t.due = now + t.cfg.interval / health.NS
                exists = conn.execute("SELECT 1 FROM containers WHERE id = ?", (t.cid,))
                if exists.fetchone() is None:
                    continue
                before, after = health.apply_result(conn, t.cid, t.cfg, t.started_at, result)
                if before != after:
                    changes.append((t, after))
        for t, after in changes:
            attrs = {**t.labels, "image": t.image, "name": t.name}
            record_event(self.store, "container", f"health_status: {after}", t.cid, attrs)

    def run(self) -> int:
        idle_since: float | None = None
        while not self.stopping:
            now = time.time()
            self.scan(now)
            if not self.targets:
                idle_since = idle_since or now
                if now - idle_since >= IDLE_EXIT:
                    break
            else:
                idle_since = None
            self.launch(now)
            self.step(1.0)
        for t in self.targets.values():
            if t.probe is not None:
                self._abandon(t)
        if self.server is not None:
            self.server.close()
            self.server = None
        return 0


@contextlib.contextmanager
def _locked(runroot: Path) -> Iterator[int | None]:
    fd = os.open(health.supervisor_lock(runroot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        os.close(fd)


def ended_marker(runroot: Path) -> Path:
    return runroot / "supervisor.ended"


def _spawn_watchdog(root: Path, runroot: Path) -> None:
    """A tiny shell that waits (no polling: ``flock`` blocks) until this supervisor lets go
    of its lock and, unless it ended on purpose (the marker), starts a new one: kill -9 of
    the supervisor costs a second of checks, not all of them until someone looks."""
    import shutil
    import subprocess

    flock = shutil.which("flock")
    if flock is None:
        return
    lock = str(health.supervisor_lock(runroot))
    script = (
        'flock "$1" true; [ -e "$2" ] && exit 0; sleep 1; '
        'exec "$3" -m moorage.engine.supervisor "$4" "$5"'
    )
    subprocess.Popen(
        ["/bin/sh", "-c", script, "moorage-supervisor-watchdog", lock,
         str(ended_marker(runroot)), sys.executable, str(root), str(runroot)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/",
    )  # fmt: skip


def main(root: Path, runroot: Path) -> int:
    """Supervise until idle. Exits 0 at once when another supervisor holds the lock."""
    sup: Supervisor | None = None

    def stop(*_: Any) -> None:
        if sup is not None:
            sup.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    marker = ended_marker(runroot)
    if not (root / "moorage.db").exists() or not runroot.is_dir():
        return 0  # the store is gone (removed meanwhile): nothing to supervise
    while True:
        with _locked(runroot) as fd:
            if fd is None:
                return 0
            marker.unlink(missing_ok=True)
            _spawn_watchdog(root, runroot)
            try:
                sup = sup or Supervisor(root, runroot)
                code = sup.run()
            finally:
                # an end it saw coming (idle, told to stop, or even an error): the watchdog
                # must not start another; only a kill it could not see does that
                with contextlib.suppress(OSError):
                    marker.touch()
            if sup.stopping:
                return code
        # the lock is released: a command that started a container just before it was saw
        # it held and started nobody; look once more, now that a new one could start
        sup.data_version = -1
        sup.scan(time.time())
        if not sup.targets:
            return code


def boot(svc: Any) -> Iterator[str]:
    """``moor system boot``: after a host restart, start every ``always`` container and
    every ``unless-stopped`` one a user did not stop; yields the names started (and errors).
    Listing the containers first records how the ones the restart killed ended."""
    from moorage.engine.containers.parse import parse_restart
    from moorage.errors import MoorageError

    rows = svc.store.db.conn.execute(
        "SELECT id FROM containers WHERE state IN ('running', 'paused', 'created') "
        "AND conmon_pid != 0"
    ).fetchall()
    for (cid,) in rows:
        if not (svc.run_dir / cid).exists():
            # its run state is gone with the old boot: the pids recorded are not its any
            # more (a new process may have any of them), so forget them before looking
            svc._update(cid, pid=0, conmon_pid=0)
            svc.cleanup(cid)  # records it ended (137: nobody saw how) and unmounts it
    for rec in reversed(svc.ls()):  # oldest first, as they were created
        policy, _ = parse_restart(rec.spec.restart)
        if rec.running or policy not in ("always", "unless-stopped"):
            continue
        if policy == "unless-stopped" and rec.stopped_by_user:
            continue
        try:
            svc.start(rec.id)
        except MoorageError as e:
            yield f"Error: {rec.name}: {e}"
            continue
        yield rec.name


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
