"""Health checks: Docker's HEALTHCHECK semantics, one probe in the container, results in the
``health`` table, the supervisor started on demand.

A probe runs the check's command in the container with the container's own process settings
(user, env, capabilities, seccomp: ``config.json``'s process with other args). Two ways,
chosen per container by :func:`probe_method`: entering the container directly from the host
(``moorage.runtime.enter``: same cgroups, namespaces, root and process spec as ``runc exec``
gives, for a few milliseconds of CPU), or through the runtime when the config has something
that path does not reproduce: ``runc exec --process FILE --pid-file PIDFILE ID`` (~33 ms of
CPU). A hung probe is killed at its timeout (SIGKILL to the probe itself, and with the direct
path to its process group). Output is kept up to :data:`MAX_OUTPUT` bytes, as Docker.

This module is imported by every container start, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moorage.runtime.enter import EnterPlan

NS = 1_000_000_000
DEFAULT_INTERVAL = 30 * NS
DEFAULT_TIMEOUT = 30 * NS
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096
LOG_ENTRIES = 5
KILLED_WAIT = 2.0
"""Seconds to wait for a killed probe to end before giving up on it."""


@dataclass(frozen=True)
class HealthConfig:
    """The effective check of a container (defaults applied), durations in nanoseconds."""

    test: tuple[str, ...]
    interval: int = DEFAULT_INTERVAL
    timeout: int = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: int = 0

    def argv(self) -> list[str]:
        kind, *rest = self.test
        if kind == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(rest)]
        return rest


def merge(image: dict[str, Any] | None, container: dict[str, Any] | None) -> dict[str, Any] | None:
    """Docker's merge: the container's options override the image's, field by field; a
    container without a test of its own keeps the image's."""
    if not image:
        return container or None
    if not container:
        return dict(image)
    out = dict(image)
    for key, value in container.items():
        if value or key == "Test":
            out[key] = value
    if not container.get("Test"):
        out["Test"] = image.get("Test")
    return out


def effective(doc: dict[str, Any] | None) -> HealthConfig | None:
    """The check to run, or None (no HEALTHCHECK, ``NONE``, ``--no-healthcheck``)."""
    if not doc:
        return None
    test = list(doc.get("Test") or [])
    if not test or test[0] == "NONE" or len(test) < 2:
        return None
    if test[0] not in ("CMD", "CMD-SHELL"):
        test = ["CMD-SHELL", *test] if len(test) == 1 else ["CMD", *test]
    return HealthConfig(
        test=tuple(test),
        interval=int(doc.get("Interval") or DEFAULT_INTERVAL),
        timeout=int(doc.get("Timeout") or DEFAULT_TIMEOUT),
        retries=int(doc.get("Retries") or DEFAULT_RETRIES),
        start_period=int(doc.get("StartPeriod") or 0),
    )


def from_options(o: dict[str, Any]) -> dict[str, Any] | None:
    """``--health-*`` and ``--no-healthcheck`` to Docker's HealthConfig (None: none given)."""
    from moorage.errors import InvalidArgument

    cmd = o.get("health_cmd")
    given = {
        "Interval": _duration(o.get("health_interval"), "--health-interval"),
        "Timeout": _duration(o.get("health_timeout"), "--health-timeout"),
        "StartPeriod": _duration(o.get("health_start_period"), "--health-start-period"),
        "Retries": int(o.get("health_retries") or 0),
    }
    if given["Retries"] < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    if o.get("no_healthcheck"):
        if cmd or any(given.values()):
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not cmd and not any(given.values()):
        return None
    return {"Test": ["CMD-SHELL", cmd] if cmd else None, **{k: v for k, v in given.items() if v}}


def _duration(value: str | None, flag: str) -> int:
    if not value:
        return 0
    from moorage.engine.containers.logs import _go_duration
    from moorage.errors import InvalidArgument

    secs = _go_duration(value)
    if secs is None:
        raise InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: invalid duration')
    if secs < 0.001 and secs != 0:
        raise InvalidArgument(f"{flag.removeprefix('--')} cannot be less than 1ms")
    if secs < 0:
        raise InvalidArgument(f"{flag.removeprefix('--')} cannot be negative")
    return int(secs * NS)


def go_duration(ns: int) -> str:
    """Go's Duration.String for whole-ish values: ``30s``, ``1m30s``, ``500ms``."""
    if ns % NS:
        return f"{ns / 1e6:g}ms" if ns < NS else f"{ns / NS:g}s"
    s = ns // NS
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


# ---- one probe ----------------------------------------------------------------------------


def probe_paths(run_dir: Path) -> tuple[Path, Path]:
    """The probe's process file and pid file in the container's run directory."""
    return run_dir / "health-process.json", run_dir / "health.pid"


def write_probe_process(bundle: Path, run_dir: Path, cfg: HealthConfig) -> Path:
    """The OCI process of the probe: the container's own, running the check's command."""
    config = json.loads((bundle / "config.json").read_text())
    process = dict(config["process"])
    process["args"] = cfg.argv()
    process["terminal"] = False
    process.pop("consoleSize", None)
    path, _ = probe_paths(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(process))
    os.replace(tmp, path)
    return path


def probe_method(bundle: Path, cfg: HealthConfig, pid: int) -> tuple[EnterPlan | None, str]:
    """How probes of this container run: entering it directly (a plan, the fast path), or
    through the runtime's ``exec`` (None) with the reason. The runtime is used when the
    container's config has something the direct path does not reproduce (see
    ``moorage.runtime.enter.unsupported``), or when ``MOORAGE_HEALTH_EXEC=runtime``."""
    from moorage.runtime import enter

    if os.environ.get("MOORAGE_HEALTH_EXEC") == "runtime":
        return None, "MOORAGE_HEALTH_EXEC=runtime"
    try:
        config = json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError) as e:
        return None, f"no config.json: {e}"
    process = dict(config.get("process") or {})
    process["args"] = cfg.argv()
    process["terminal"] = False
    process.pop("consoleSize", None)
    try:
        return enter.plan(config, process, pid), "direct"
    except enter.EnterFailed as e:
        return None, str(e)


@dataclass
class Probe:
    """A probe in flight through the runtime's ``exec``: its output pipe and process (the
    direct path is followed by its intermediate: :func:`run_probe`, and the supervisor),
    when it must end."""

    cid: str
    out: int
    start: float
    deadline: float
    timeout_ns: int
    output: bytearray
    proc: subprocess.Popen[bytes]
    pidfile: Path
    out_open: bool = True
    timed_out: bool = False
    returncode: int | None = None

    def read(self) -> bool:
        """Read what is there; False at end of output."""
        try:
            chunk = os.read(self.out, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            self.out_open = False
            return False
        room = MAX_OUTPUT - len(self.output)
        if room > 0:
            self.output += chunk[:room]
        return True

    def drain(self) -> None:
        """The process ended: what is left in its output pipe (not waiting for more)."""
        while self.out_open:
            before = len(self.output)
            if not self.read() or len(self.output) == before:
                return

    def kill(self) -> None:
        """The check hangs: end the probe inside the container, then the runtime's exec."""
        self.timed_out = True
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip() or 0)
            if pid > 0:
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def wait(self) -> None:
        """Reap the probe (its output ended, or it was killed)."""
        if self.returncode is None:
            self.returncode = self.proc.wait()

    def close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()  # its fd is ``out``

    def result(self, end: float) -> dict[str, Any]:
        code = self.returncode if self.returncode is not None else -1
        return _result(self.start, end, code, bytes(self.output), self.timed_out, self.timeout_ns)


def _result(start: float, end: float, code: int, output: bytes, timed_out: bool,
            timeout_ns: int) -> dict[str, Any]:  # fmt: skip
    """One entry of ``State.Health.Log``."""
    from moorage.units import rfc3339

    if timed_out:
        code = -1
        out = f"Health check exceeded timeout ({go_duration(timeout_ns)})"
    else:
        out = output.decode(errors="replace")
    return {"Start": rfc3339(start), "End": rfc3339(end), "ExitCode": code, "Output": out}


def report_result(report: Any, start: float, end: float, timeout_ns: int) -> dict[str, Any]:
    """The log entry of a direct probe from its intermediate's report (``S`` or ``T``); it
    ended when the report says (else at ``end``)."""
    from moorage.runtime.enter import exit_status

    end = report.end or end
    if report.kind == "S":
        return _result(start, end, exit_status(report.status), report.output, False, timeout_ns)
    return _result(start, end, -1, b"", True, timeout_ns)


def timeout_result(start: float, end: float, timeout_ns: int) -> dict[str, Any]:
    """The log entry of a probe that outlived its timeout."""
    return _result(start, end, -1, b"", True, timeout_ns)


def start_probe(
    runtime_path: str, runtime_args: list[str], cid: str, run_dir: Path, cfg: HealthConfig
) -> Probe:
    """Start one probe through ``runc exec`` (its process file written by
    :func:`write_probe_process`)."""
    now = time.time()
    deadline = now + cfg.timeout / NS
    process, pidfile = probe_paths(run_dir)
    if not process.exists():
        raise FileNotFoundError(process)
    pidfile.unlink(missing_ok=True)
    argv = [runtime_path, *runtime_args, "exec", "--process", str(process)]
    argv += ["--pid-file", str(pidfile), cid]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    os.set_blocking(out, False)
    return Probe(cid, out, now, deadline, cfg.timeout, bytearray(), proc, pidfile)


def run_probe(runtime_path: str, runtime_args: list[str], cid: str, run_dir: Path,
              cfg: HealthConfig, plan: EnterPlan | None = None) -> dict[str, Any]:  # fmt: skip
    """One probe, synchronously (``moor healthcheck run``): entering the container directly
    with ``plan``, else (or when that could not start it) through ``runc exec``."""
    import select

    if plan is not None:
        from moorage.runtime import enter

        start = time.time()
        try:
            entering = enter.start(plan, start + cfg.timeout / NS)
        except (enter.EnterFailed, OSError):
            entering = None
        if entering is not None:
            try:
                # the intermediate kills the check at its deadline and says so at once
                report = entering.wait(cfg.timeout / NS + KILLED_WAIT)
            finally:
                entering.close()
            end = time.time()
            if report is None:
                return timeout_result(start, end, cfg.timeout)
            if report.kind in ("S", "T"):
                return report_result(report, start, end, cfg.timeout)
            # could not enter (the container is going away?): the runtime's exec says
    probe = start_probe(runtime_path, runtime_args, cid, run_dir, cfg)
    while probe.out_open:
        left = probe.deadline - time.time()
        if left <= 0:
            probe.kill()
            break
        ready, _, _ = select.select([probe.out], [], [], left)
        if probe.out in ready:
            probe.read()
    probe.wait()
    probe.drain()
    probe.close()
    return probe.result(time.time())


# ---- results ------------------------------------------------------------------------------


def apply_result(
    conn: Any, cid: str, cfg: HealthConfig, started_at: float | None, result: dict[str, Any]
) -> tuple[str, str]:
    """Record one probe's result (inside the caller's transaction); returns the status
    before and after."""
    row = conn.execute(
        "SELECT status, failing_streak, log FROM health WHERE container_id = ?", (cid,)
    ).fetchone()
    before, streak, log = (
        ("starting", 0, []) if row is None else (row[0], row[1], json.loads(row[2]))
    )
    log = [*log, result][-LOG_ENTRIES:]
    status, streak = transition(before, streak, result["ExitCode"], cfg, started_at, time.time())
    conn.execute(
        "INSERT INTO health(container_id, status, failing_streak, log) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(container_id) DO UPDATE SET status = excluded.status, "
        "failing_streak = excluded.failing_streak, log = excluded.log",
        (cid, status, streak, json.dumps(log)),
    )
    return before, status


def transition(before: str, streak: int, code: int, cfg: HealthConfig,
               started_at: float | None, now: float) -> tuple[str, int]:  # fmt: skip
    """Docker's rules: the status and failing streak after a result with exit ``code``
    (failures within the start period of a container still ``starting`` do not count)."""
    if code == 0:
        return "healthy", 0
    if before == "starting" and started_at is not None and now < started_at + cfg.start_period / NS:
        return before, streak
    streak += 1
    return ("unhealthy" if streak >= cfg.retries else before), streak


def reset(conn: Any, cid: str) -> None:
    """A (re)started container is ``starting`` again; its log stays."""
    conn.execute(
        "INSERT INTO health(container_id, status, failing_streak) VALUES (?, 'starting', 0) "
        "ON CONFLICT(container_id) DO UPDATE SET status = 'starting', failing_streak = 0",
        (cid,),
    )


def state(conn: Any, cid: str) -> dict[str, Any] | None:
    """Docker's ``State.Health``."""
    row = conn.execute(
        "SELECT status, failing_streak, log FROM health WHERE container_id = ?", (cid,)
    ).fetchone()
    if row is None:
        return None
    return {"Status": row[0], "FailingStreak": row[1], "Log": json.loads(row[2])}


def status(conn: Any, rec: Any) -> str:
    """starting / healthy / unhealthy, or none (no check, or not running)."""
    if effective(rec.spec.healthcheck) is None or rec.state not in ("running", "paused"):
        return "none"
    row = conn.execute("SELECT status FROM health WHERE container_id = ?", (rec.id,)).fetchone()
    return str(row[0]) if row else "starting"


def ps_suffix(conn: Any, rec: Any) -> str:
    """What ``ps`` adds to ``Up 3 minutes``: `` (healthy)``, `` (health: starting)``."""
    st = status(conn, rec)
    if st == "none" or rec.state != "running":
        return ""
    return " (health: starting)" if st == "starting" else f" ({st})"


# ---- hooks the container service calls ----------------------------------------------------


def on_start(svc: Any, rec: Any) -> None:
    """After a start: the probe's process file, status ``starting``, a running supervisor."""
    cfg = effective(rec.spec.healthcheck)
    if cfg is None:
        return
    layout = svc.layout(rec.id)
    write_probe_process(layout.bundle, layout.run_dir, cfg)
    with svc.store.db.transaction() as conn:
        reset(conn, rec.id)
    ensure_supervisor(svc.store.root, svc.store.runroot)


_checked = False


def watch(svc: Any, rec: Any) -> None:
    """A command looked at a running, health-checked container: (re)start the supervisor if
    it is gone (killed, or ended idle meanwhile). Checked once per command."""
    global _checked
    if _checked or effective(rec.spec.healthcheck) is None:
        return
    _checked = True
    ensure_supervisor(svc.store.root, svc.store.runroot)


def supervisor_lock(runroot: Path) -> Path:
    return runroot / "supervisor.lock"


def supervisor_running(runroot: Path) -> bool:
    import fcntl

    path = supervisor_lock(runroot)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def ensure_supervisor(root: Path, runroot: Path) -> None:
    """Start the host-wide supervisor unless one holds its lock (it exits when idle)."""
    if supervisor_running(runroot):
        return
    subprocess.Popen(
        [sys.executable, "-m", "moorage.engine.supervisor", str(root), str(runroot)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
    )
