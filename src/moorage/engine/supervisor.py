"""The host-wide health supervisor, and ``moor system boot``.

Not a Docker-style daemon: it holds no container's stdio (conmon does) and owns no state that
the store does not have. ``moor run``/``start`` of a health-checked container starts it (see
``health.ensure_supervisor``); it exits when no running container needs it, and any ``moor``
command that looks at a health-checked container starts it again if it was killed. One
instance per run root, held by a lock on ``RUNROOT/supervisor.lock``.

One thread, one ``poll`` loop. A probe enters its container directly (``health.probe_method``):
a small fork server (``moorage.runtime.enter.ForkServer``) forks its intermediate, which
follows the check to its end or its timeout and reports the result on the one socket this
loop watches; where that path does not apply, ``runc exec`` runs the probe as a child whose
output pipe the loop watches. Results are written in one transaction per wakeup, without a
read first while no other process wrote to the database.
It imports no click and none of the engine's container code, so it stays small
(``python -m moorage.engine.supervisor``).
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import json
import math
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
"""Re-read the containers at least this often (besides whenever the database changed)."""

STEP_GAP = 0.05
"""At most one pass over the probes this often: with many probes, each wakeup handles a
batch (a probe starts 50 ms late at worst, next to intervals of seconds; a result is
recorded with the time its probe ended, which its intermediate reports)."""

WRITE_GAP = 0.1
"""Results are written to the database (one transaction) at most this long after they came:
one write for the results of several passes."""

_UPSERT = (
    "INSERT INTO health(container_id, status, failing_streak, log) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(container_id) DO UPDATE SET status = excluded.status, "
    "failing_streak = excluded.failing_streak, log = excluded.log"
)


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
    token: int = 0  # the direct probe in flight (its intermediate reports under it)
    start: float = 0.0  # when it started
    deadline: float = 0.0
    probe: health.Probe | None = None  # a runtime exec in flight

    def __post_init__(self) -> None:
        self.interval = self.cfg.interval / health.NS
        self.timeout = self.cfg.timeout / health.NS

    @property
    def key(self) -> str:
        """Its plan's name at the fork server: one per run of the container."""
        return f"{self.cid}:{self.pid}:{self.started_at}"


@dataclass
class _Row:
    """A container's row of the ``health`` table as this process last wrote or read it; its
    log as the JSON text of each entry (one is added, one encoded, per result)."""

    status: str
    streak: int
    log: list[str]


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
        # idle targets by due time (entries of a target since rescheduled are skipped)
        self.queue: list[tuple[float, int, _Target]] = []
        self.seq = itertools.count()
        self.inflight: dict[int, _Target] = {}  # direct probes by token
        self.execs: dict[str, _Target] = {}  # probes through the runtime's exec
        self.last_token = 0
        # the health rows as of ``rows_version`` (PRAGMA data_version): while nobody else
        # wrote to the database, a result needs no read before its write
        self.rows: dict[str, _Row] = {}
        self.rows_version = -1
        self.pending: list[tuple[_Target, dict[str, Any], float]] = []  # results to write
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
            if old is not None:
                self._drop(old)
            plan, method = health.probe_method(self.root / "containers" / cid, cfg, pid)
            t = self.targets[cid] = _Target(
                cid=cid, name=name, image=image, labels=dict(spec.get("labels") or {}), cfg=cfg,
                started_at=started_at, pid=pid, runtime=spec.get("runtime") or "runc",
                run_dir=self.runroot / "containers" / cid, due=0.0, plan=plan, method=method,
            )  # fmt: skip
            self._schedule(t, max(now, started_at + t.interval))
        for cid in list(self.targets):
            if cid not in seen:
                self._drop(self.targets.pop(cid))

    def _drop(self, t: _Target) -> None:
        """A run of a container that is over: its probe in flight goes unrecorded (a direct
        one ends by its deadline at the latest, killed by its intermediate)."""
        if t.probe is not None:
            self._abandon(t)
        if t.token:
            self.inflight.pop(t.token, None)
            t.token = 0
        if self.server is not None:
            self.server.forget(t.key)

    def _abandon(self, t: _Target) -> None:
        assert t.probe is not None
        t.probe.kill()
        t.probe.wait()
        t.probe.close()
        t.probe = None
        self.execs.pop(t.cid, None)

    def _schedule(self, t: _Target, when: float) -> None:
        t.due = when
        heapq.heappush(self.queue, (when, next(self.seq), t))

    def _idle(self, t: _Target, when: float) -> bool:
        """Whether a queue entry is current: the target's run, idle, due then."""
        return t.due == when and not t.token and t.probe is None and self.targets.get(t.cid) is t

    def _next_due(self) -> float:
        q = self.queue
        while q:
            when, _, t = q[0]
            if self._idle(t, when):
                return when
            heapq.heappop(q)
        return math.inf

    def launch(self, now: float) -> None:
        if self.server is not None and self.server.sock is not None and not self.server.alive():
            # the fork server died (killed?): the probes it started report nowhere now;
            # they are tried again, not counted as failures (a new server starts below)
            for t in self.inflight.values():
                t.token = 0
                self._schedule(t, now)
            self.inflight.clear()
            self.server.close()
        direct = []
        q = self.queue
        while q and q[0][0] <= now:
            when, _, t = heapq.heappop(q)
            if not self._idle(t, when):
                continue
            if t.plan is not None:
                self.last_token += 1
                t.token = self.last_token
                t.start = now
                t.deadline = now + t.timeout
                self.inflight[t.token] = t
                direct.append((t.key, t.plan, t.token, t.deadline))
            elif _alive(t.pid):
                self._exec(t, now)
            else:
                self._schedule(t, now + t.interval)
        if not direct:
            return
        from moorage.runtime.enter import EnterFailed, ForkServer

        self.server = self.server or ForkServer()
        try:
            self.server.start(direct)
        except EnterFailed:
            for _, _, token, _ in direct:
                t = self.inflight.pop(token)
                t.token = 0
                self._schedule(t, now + t.interval)

    def _exec(self, t: _Target, now: float) -> None:
        """A probe through the runtime's exec."""
        path, args = self._runtime(t.runtime)
        try:
            t.probe = health.start_probe(path, args, t.cid, t.run_dir, t.cfg)
        except OSError:
            self._schedule(t, now + t.interval)
        else:
            self.execs[t.cid] = t

    def step(self, timeout: float) -> None:
        """Wait for a report, output, an exit or a deadline; record what finished."""
        now = time.time()
        if now < self.last_step + STEP_GAP:
            # let events gather first: one pass handles many (then poll returns at once)
            time.sleep(self.last_step + STEP_GAP - now)
            now = time.time()
        wait = min(timeout, self._next_due() - now)
        if self.pending:
            wait = min(wait, self.pending[0][2] + WRITE_GAP - now)
        for t in self.inflight.values():
            # the intermediate reports at the deadline; this is for one that died
            wait = min(wait, t.deadline + health.KILLED_WAIT - now)
        outs = {}
        for t in self.execs.values():
            assert t.probe is not None
            wait = min(wait, t.probe.deadline - now)
            if t.probe.out_open:
                outs[t.probe.out] = t
        server = self.server.fileno() if self.server is not None else -1
        if server >= 0 or outs:  # poll, not select: no limit on the fd numbers
            poller = select.poll()
            for fd in outs:
                poller.register(fd, select.POLLIN | select.POLLHUP)
            if server >= 0:
                poller.register(server, select.POLLIN | select.POLLHUP)
            ready = {fd for fd, _ in poller.poll(max(wait, 0) * 1000)}
        else:
            time.sleep(max(wait, 0))
            ready = set()
        now = self.last_step = time.time()
        if server in ready and self.server is not None:
            for report in self.server.reports():
                probed = self.inflight.pop(report.token, None)
                if probed is None:
                    continue  # its container run is over
                probed.token = 0
                if report.kind in ("S", "T"):
                    result = health.report_result(report, probed.start, now, probed.cfg.timeout)
                    # the next one is due an interval after it ended (not after this pass)
                    self.finish(probed, result, min(report.end or now, now))
                elif report.kind == "G":
                    self._schedule(probed, now + probed.interval)  # the container is going away
                else:
                    self._exec(probed, now)  # could not enter: the runtime's exec says why
        for fd in ready & outs.keys():
            t = outs[fd]
            assert t.probe is not None
            if not t.probe.read():
                t.probe.wait()  # runc exec: its output ends with it
                self.finish(t, t.probe.result(now), now)
        for t in [t for t in self.inflight.values() if now >= t.deadline + health.KILLED_WAIT]:
            # no report from its intermediate (it died?): as a check that hung
            del self.inflight[t.token]
            t.token = 0
            self.finish(t, health.timeout_result(t.start, now, t.cfg.timeout), now)
        for t in list(self.execs.values()):
            assert t.probe is not None
            if now >= t.probe.deadline and t.probe.out_open:
                t.probe.kill()
                t.probe.wait()
                self.finish(t, t.probe.result(now), now)
        if self.pending and now >= self.pending[0][2] + WRITE_GAP:
            self.record()

    def finish(self, t: _Target, result: dict[str, Any], end: float) -> None:
        """A probe ended at ``end``: its result waits to be written (:meth:`record`); the next
        one is due an interval later."""
        if t.probe is not None:
            t.probe.close()
            t.probe = None
            del self.execs[t.cid]
        self._schedule(t, end + t.interval)
        self.pending.append((t, result, end))

    def record(self) -> None:
        """Write the results waiting (one transaction), then the events of status changes."""
        pending, self.pending = self.pending, []
        changes = []
        try:
            with self.db.transaction() as conn:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self.rows_version:  # another process wrote: read again
                    self.rows.clear()
                    self.rows_version = version
                writes = {}
                for t, result, end in pending:
                    row = self.rows.get(t.cid)
                    if row is None:
                        row = self._read(conn, t.cid)
                        if row is None:
                            continue  # the container is gone
                    before = row.status
                    row.status, row.streak = health.transition(
                        before, row.streak, result["ExitCode"], t.cfg, t.started_at, end
                    )
                    row.log = [*row.log, json.dumps(result)][-health.LOG_ENTRIES :]
                    self.rows[t.cid] = row
                    writes[t.cid] = (t.cid, row.status, row.streak, "[" + ", ".join(row.log) + "]")
                    if before != row.status:
                        changes.append((t, row.status))
                conn.executemany(_UPSERT, writes.values())
        except BaseException:
            self.rows.clear()
            self.rows_version = -1
            raise
        for t, after in changes:
            attrs = {**t.labels, "image": t.image, "name": t.name}
            record_event(self.store, "container", f"health_status: {after}", t.cid, attrs)

    @staticmethod
    def _read(conn: Any, cid: str) -> _Row | None:
        if conn.execute("SELECT 1 FROM containers WHERE id = ?", (cid,)).fetchone() is None:
            return None
        row = conn.execute(
            "SELECT status, failing_streak, log FROM health WHERE container_id = ?", (cid,)
        ).fetchone()
        if row is None:
            return _Row("starting", 0, [])
        return _Row(row[0], row[1], [json.dumps(e) for e in json.loads(row[2])])

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
        if self.pending:
            self.record()
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
