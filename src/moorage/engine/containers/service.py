"""The container service: create, start, stop, kill, remove, wait, list and describe
containers; conmon runs each one, and ``moor container cleanup`` records how it ended."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal as signals
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moorage import later
from moorage.engine.containers.logdefaults import default_log_opts
from moorage.engine.containers.names import random_name
from moorage.engine.containers.ociconfig import Placement, generate, process_args
from moorage.engine.containers.parse import merge_env, parse_restart, parse_stop_signal
from moorage.engine.containers.rootfs import mount_overlay, unmount
from moorage.engine.containers.spec import ContainerSpec
from moorage.engine.containers.users import resolve_user
from moorage.engine.events import container_event, notify
from moorage.engine.images import ImageRecord, ImageService
from moorage.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    MoorageError,
    NotFound,
)
from moorage.runtime import OCIRuntime, RuntimeFailure, get_runtime, process_alive
from moorage.runtime.conmon import ConmonLayout, CreateFailed, read_pid, spawn
from moorage.store import Store
from moorage.store.locks import flocked
from moorage.units import go_time

if TYPE_CHECKING:
    from moorage.engine.network.service import NetworkService
    from moorage.engine.volumes.service import VolumeService

INIT_BINARIES = ("/usr/bin/catatonit", "/usr/libexec/podman/catatonit", "/usr/bin/tini")


class CommandNotFound(MoorageError):
    """The container's command does not exist (exit 127, as Docker)."""

    exit_code = 127


class CommandNotExecutable(MoorageError):
    """The container's command cannot be run (exit 126, as Docker)."""

    exit_code = 126


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    name: str
    image_id: str
    image_ref: str
    created: float
    state: str  # created | running | paused | exited | removing
    spec: ContainerSpec
    pid: int
    conmon_pid: int
    exit_code: int
    started_at: float | None
    finished_at: float | None
    restart_count: int
    oom_killed: bool
    error: str
    stopped_by_user: bool

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused")


def _record(row: sqlite3.Row) -> ContainerRecord:
    return ContainerRecord(
        id=row["id"],
        name=row["name"],
        image_id=row["image_id"],
        image_ref=row["image_ref"],
        created=row["created"],
        state=row["state"],
        spec=ContainerSpec.from_json(json.loads(row["spec"])),
        pid=row["pid"],
        conmon_pid=row["conmon_pid"],
        exit_code=row["exit_code"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        restart_count=row["restart_count"],
        oom_killed=bool(row["oom_killed"]),
        error=row["error"],
        stopped_by_user=bool(row["stopped_by_user"]),
    )


# seconds between two sweeps for leftovers of killed creates by one long-lived service
SWEEP_EVERY = 5.0
# ids this process removed whose files go once the command has answered (moorage.later)
_LEAVING: set[str] = set()


class ContainerService:
    def __init__(self, store: Store, images: ImageService) -> None:
        self.store = store
        self.images = images
        self.dir = store.root / "containers"
        self.run_dir = store.runroot / "containers"
        self._swept_at: float | None = None  # time.monotonic() of the last sweep_orphans

    @contextlib.contextmanager
    def separate(self) -> Iterator[ContainerService]:
        """A service on a store connection of its own, for another thread (SQLite and flock
        make that as safe as a separate moor command). It leaves sweep_orphans to us."""
        from moorage.engine import Engine

        engine = Engine(self.store.root, self.store.runroot)
        try:
            other = ContainerService(engine.store, engine.images)
            other._swept_at = time.monotonic()
            yield other
        finally:
            engine.close()

    # ---- paths ---------------------------------------------------------------------------

    def userdata(self, cid: str) -> Path:
        return self.dir / cid

    def layout(self, cid: str) -> ConmonLayout:
        return ConmonLayout(
            bundle=self.userdata(cid),
            run_dir=self.run_dir / cid,
            log_path=self.userdata(cid) / "ctr.log",
        )

    def overlay(self, cid: str) -> Path:
        return self.store.snapshots.dir / cid

    def rootfs(self, cid: str) -> Path:
        return self.overlay(cid) / "merged"

    def lower_dirs(self, rec: ContainerRecord) -> list[Path]:
        """The image's layer directories, top layer first, as overlay stacks them."""
        layers = self.images.layers(_digest(rec.image_id))
        return [self.store.snapshots.diff_dir(d) for d in reversed(layers)]

    def mount_rootfs(self, rec: ContainerRecord) -> Path:
        overlay = self.overlay(rec.id)
        mount_overlay(
            self.lower_dirs(rec), overlay / "diff", overlay / "work", overlay / "merged",
            links=self.store.runroot / "layer-links",
        )  # fmt: skip
        return overlay / "merged"

    @cached_property
    def volumes(self) -> VolumeService:
        from moorage.engine.volumes.service import VolumeService

        return VolumeService(self.store)

    @cached_property
    def networks(self) -> NetworkService:
        from moorage.engine.network.service import NetworkService

        return NetworkService(self.store)

    def runtime(self, rec: ContainerRecord) -> OCIRuntime:
        return get_runtime(rec.spec.runtime, self.store.runroot / "runtime")

    @contextlib.contextmanager
    def locked(self, cid: str) -> Iterator[None]:
        (self.run_dir / cid).mkdir(parents=True, exist_ok=True)
        with flocked(self.run_dir / cid / "lock", exclusive=True):
            yield

    # ---- lookup --------------------------------------------------------------------------

    def ls(self) -> list[ContainerRecord]:
        rows = self.store.db.conn.execute("SELECT * FROM containers ORDER BY created DESC")
        return [r for r in (self.refresh(_record(row)) for row in rows.fetchall()) if r]

    def find(self, ref: str) -> ContainerRecord | None:
        conn = self.store.db.conn
        name = ref.removeprefix("/")
        row = conn.execute("SELECT * FROM containers WHERE id = ? OR name = ?", (ref, name))
        found = row.fetchone()
        if found is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = conn.execute(
                "SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "g")
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"multiple containers match the id prefix {ref!r}")
            found = rows[0] if rows else None
        return self.refresh(_record(found)) if found is not None else None

    def get(self, ref: str) -> ContainerRecord:
        rec = self.find(ref)
        if rec is None:
            raise NotFound(f"No such container: {ref}")
        return rec

    def _reload(self, cid: str) -> ContainerRecord:
        row = self.store.db.conn.execute("SELECT * FROM containers WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise NotFound(f"No such container: {cid}")
        return _record(row)

    def _update(self, cid: str, _event: tuple[Any, str] | None = None, **fields: Any) -> None:
        """Set ``fields`` of the container's row; with ``_event`` (a record, an action), that
        container event in the same transaction (one commit, not two)."""
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.store.db.transaction() as conn:
            conn.execute(f"UPDATE containers SET {cols} WHERE id = ?", (*fields.values(), cid))
            if _event is not None:
                container_event(self.store, _event[0], _event[1], wake=False)
        if _event is not None:
            notify(self.store.runroot)

    def refresh(self, rec: ContainerRecord) -> ContainerRecord | None:
        """Reconcile the recorded state with what conmon and the runtime say now; None when
        that removed it (a ``--rm`` container found ended)."""
        if rec.state not in ("running", "paused", "created") or rec.conmon_pid == 0:
            return rec
        layout = self.layout(rec.id)
        if layout.exit_file(rec.id).exists():
            self.cleanup(rec.id)
            return self._find_raw(rec.id)
        if rec.pid == 0 and rec.state == "running":  # a foreground run: its runtime's pid file
            pid = read_pid(layout.pidfile)
            if pid:
                self._update(rec.id, pid=pid)
                rec = _replace_record(rec, pid=pid)
        if rec.spec.log_opts:
            # no daemon watches the log: every command that looks at the container rotates it
            from moorage.engine.containers import logs as logmod

            logmod.keep_rotated(layout.log_path, logmod.parse_log_opts(list(rec.spec.log_opts)))
        if process_alive(rec.conmon_pid):
            if rec.state == "created" and process_alive(rec.pid):
                # started, but the command that started it died before recording it
                st = self.runtime(rec).state(rec.id)
                if st is not None and st.get("status") == "running":
                    self._update(rec.id, state="running", started_at=time.time())
                    return self._find_raw(rec.id)
            if rec.spec.healthcheck:
                _health_checks().watch(self, rec)
            return rec  # conmon still watches it: its exit file will tell
        if rec.state in ("running", "paused") and not process_alive(rec.pid):
            # ended while nobody watched (conmon was killed): the code is unknown
            self.cleanup(rec.id)
            self._restart_unwatched(rec.id)
            return self._find_raw(rec.id)
        return rec

    def _restart_unwatched(self, cid: str) -> None:
        """Its restart policy still holds: hand it to a detached ``container cleanup`` (the
        exit command conmon would have run), whose back-off must not hold up this command."""
        rec = self._find_raw(cid)
        if rec is None or rec.state != "exited" or not self._should_restart(rec):
            return
        import subprocess

        subprocess.Popen(
            self.cleanup_command(cid), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    # ---- create --------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> ContainerRecord:
        spec.validate()
        image = self.images.resolve(spec.image)
        image_config = self.images.config(image).get("config") or {}
        process_args(spec, image_config)  # fails early with "no command specified"
        if spec.stop_signal is None and image_config.get("StopSignal"):
            spec = _replace(spec, stop_signal=image_config["StopSignal"])
        if spec.healthcheck or image_config.get("Healthcheck"):
            merged = _health_checks().merge(image_config.get("Healthcheck"), spec.healthcheck)
            spec = _replace(spec, healthcheck=merged)
        spec = _replace(spec, log_opts=default_log_opts(spec.log_opts, spec.log_driver))
        cid = os.urandom(32).hex()
        name = spec.name.removeprefix("/") or self._free_name()
        hostname = spec.hostname or cid[:12]
        self.networks.check_spec(spec)
        mounts: list[Any] = []
        made: list[str] = []
        if spec.volumes or spec.mounts or spec.volumes_from or image_config.get("Volumes"):
            mounts, made = self.volumes.prepare(self.volumes.requests(spec, image_config, self))
        try:
            for attempt in range(5):
                try:
                    return self._create(spec, image, cid, name, hostname, mounts)
                except AlreadyExists:
                    if spec.name or attempt == 4:
                        raise
                    # a generated name another create took meanwhile: another one
                    name = self._free_name()
            raise AssertionError("unreachable")
        except BaseException:
            for vol in made:
                with contextlib.suppress(MoorageError):
                    self.volumes.remove(vol, force=True)
            raise

    def _create(
        self, spec: ContainerSpec, image: Any, cid: str, name: str, hostname: str,
        mounts: list[Any],
    ) -> ContainerRecord:  # fmt: skip
        # held until the row is in: a command killed before that leaves directories that
        # sweep_orphans() recognises by this lock being free
        with self.locked(cid), self.store.adding():
            overlay = self.overlay(cid)
            for sub in ("diff", "work", "merged"):
                (overlay / sub).mkdir(parents=True, exist_ok=True)
            ud = self.userdata(cid)
            ud.mkdir(parents=True, exist_ok=True)
            self._write_etc(ud, hostname, spec.network_mode)
            try:
                with self.store.db.transaction() as conn:
                    conn.execute(
                        "INSERT INTO containers(id, name, image_id, image_ref, created, state,"
                        " spec) VALUES (?, ?, ?, ?, ?, 'created', ?)",
                        (cid, name, str(image.id), spec.image, time.time(),
                         json.dumps({**spec.to_json(), "hostname": hostname, "name": name})),
                    )  # fmt: skip
                    self.networks.record_endpoint(conn, cid, spec)
                    self.volumes.record(conn, cid, mounts)
                    rec = self._reload(cid)
                    container_event(self.store, rec, "create", wake=False)  # one commit
            except sqlite3.IntegrityError as e:
                shutil.rmtree(overlay, ignore_errors=True)
                shutil.rmtree(ud, ignore_errors=True)
                shutil.rmtree(self.run_dir / cid, ignore_errors=True)
                if "FOREIGN KEY" in str(e):
                    raise NotFound(f"No such image: {spec.image} (removed meanwhile)") from None
                holder = self.find(name)
                raise AlreadyExists(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{holder.id if holder else "?"}". You have to remove (or rename) that '
                    "container to be able to reuse that name."
                ) from None
        notify(self.store.runroot)
        return rec

    def _free_name(self) -> str:
        for _ in range(100):
            name = random_name()
            if self.find(name) is None:
                return name
        return f"{random_name()}_{os.urandom(2).hex()}"

    def _write_etc(self, ud: Path, hostname: str, network_mode: str) -> None:
        (ud / "hostname").write_text(hostname + "\n")
        if network_mode == "host":
            hosts = Path("/etc/hosts").read_text()
        else:
            hosts = (
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                "ff02::2\tip6-allrouters\n"
            )
        (ud / "hosts").write_text(hosts)
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
        (ud / "resolv.conf").write_text(resolv)

    # ---- start ---------------------------------------------------------------------------

    def start(self, ref: str, *, attach: Any = None) -> ContainerRecord:
        """Start a created or exited container. ``attach`` (if given) is called with the
        attach socket path after conmon created the container and before it runs."""
        rec = self.get(ref)
        if rec.state == "running":
            return rec
        if rec.state == "paused":
            raise Conflict(f"cannot start a paused container {rec.name}, try unpause instead")
        with self.locked(rec.id):
            rec = self._reload(rec.id)
            # decided again under the lock: another command may have started it meanwhile
            if rec.state == "running":
                return rec
            if rec.state == "paused":
                raise Conflict(f"cannot start a paused container {rec.name}, try unpause instead")
            try:
                self._start_locked(rec, attach)
            except BaseException:
                self._teardown_runtime(rec.id)
                raise
        container_event(self.store, rec, "start")
        if rec.spec.healthcheck:
            _health_checks().on_start(self, self._reload(rec.id))
        return self._reload(rec.id)

    def _start_locked(self, rec: ContainerRecord, attach: Any) -> None:
        spec = rec.spec
        from moorage.engine.containers import logs as logmod

        self._write_bundle(rec)
        log_cfg = logmod.parse_log_opts(list(spec.log_opts))
        runtime = self.runtime(rec)
        layout = self.layout(rec.id)
        if (runtime.state_root / rec.id).exists():
            runtime.delete(rec.id, force=True)  # a leftover from a crash would block the id
        (layout.bundle / "oom").unlink(missing_ok=True)
        try:
            pid, conmon_pid = spawn(
                runtime, rec.id, rec.name, layout,
                stdin=spec.open_stdin, tty=spec.tty,
                exit_command=self._exit_command(rec.id),
                log_args=logmod.conmon_log_args(log_cfg.max_size),
                log_driver=spec.log_driver,
            )  # fmt: skip
        except CreateFailed as e:
            self._update(rec.id, error=str(e), conmon_pid=0)
            raise _classify(str(e)) from None
        logmod.keep_rotated(layout.log_path, log_cfg)
        self._update(
            rec.id, pid=pid, conmon_pid=conmon_pid, stopped_by_user=0, error="", oom_killed=0
        )
        if attach is not None:
            attach(layout.attach_socket(rec.id))
        runtime.start(rec.id)
        self._update(rec.id, state="running", started_at=time.time(), exit_code=0)

    def _write_bundle(self, rec: ContainerRecord) -> None:
        """Mount the rootfs and write the runtime's config.json for ``rec``."""
        spec = rec.spec
        image = self.images.get(_digest(rec.image_id))
        image_config = self.images.config(image).get("config") or {}
        rootfs = self.mount_rootfs(rec)
        user = spec.user or image_config.get("User") or ""
        uid, gid, gids, _home = resolve_user(
            user, lambda p: _read_in_root(rootfs, p), list(spec.group_add)
        )
        workdir = spec.workdir or image_config.get("WorkingDir") or "/"
        _ensure_workdir(rootfs, workdir, uid, gid)
        ud = self.userdata(rec.id)
        hostname = spec.hostname or rec.id[:12]
        place = Placement(
            cid=rec.id,
            rootfs=rootfs,
            hostname_file=ud / "hostname",
            hosts_file=ud / "hosts",
            resolv_file=ud / "resolv.conf",
            init_binary=_init_binary() if spec.init else None,
        )
        if spec.init and place.init_binary is None:
            raise NotFound("--init needs catatonit or tini (apt-get install catatonit)")
        extra_mounts = self.volumes.oci_mounts(rec.id, rootfs)
        net = self.networks.setup(rec, image_config, self)  # hook: network before create
        place = dataclasses.replace(place, netns_path=net.netns_path, extra_env=net.extra_env,
                                    extra_mounts=tuple(extra_mounts))  # fmt: skip
        config = generate(
            spec, image_config, place, hostname=hostname, uid=uid, gid=gid,
            additional_gids=gids, workdir=workdir,
        )  # fmt: skip
        tmp = ud / "config.json.tmp"
        tmp.write_text(json.dumps(config))
        os.replace(tmp, ud / "config.json")

    def attached_lock(self, cid: str) -> Path:
        """Held by a ``moor`` attached to the container: it records the exit itself."""
        return self.run_dir / cid / "attached"

    def cleanup_command(self, cid: str) -> list[str]:
        """``moor container cleanup CID`` for this store: conmon's exit command."""
        return [
            sys.executable, "-m", "moorage",
            "--root", str(self.store.root), "--runroot", str(self.store.runroot),
            "container", "cleanup", cid,
        ]  # fmt: skip

    def _exit_command(self, cid: str) -> list[str]:
        cleanup = self.cleanup_command(cid)
        if shutil.which("flock") is None:
            return cleanup
        # while an attached moor holds its lock, starting a Python here would only compete
        # with it for the CPU: it records the exit itself. The lock is only tested, never
        # held, so a restarted container's own exit command is never locked out.
        script = 'flock --nonblock "$0" true || exit 0; exec "$@"'
        return ["/bin/sh", "-c", script, str(self.attached_lock(cid)), *cleanup]

    # ---- exit, cleanup -------------------------------------------------------------------

    def cleanup(self, ref: str, *, restart: bool = False) -> None:
        """Record how the container ended, release its runtime state and rootfs; remove it
        (``--rm``) unless an attached ``moor`` will. Idempotent. Only conmon's exit command
        (and an attached run handing over) pass ``restart``: they alone apply the restart
        policy with its back-off, so no other command ever waits."""
        rec = self._find_raw(ref)
        if rec is None:
            return
        with self.locked(rec.id):
            rec = self._find_raw(rec.id)
            if rec is None:
                return
            if rec.state in ("running", "paused", "created"):
                exit_file = self.layout(rec.id).exit_file(rec.id)
                watched = (
                    rec.state == "created"
                    or process_alive(rec.pid)
                    or process_alive(rec.conmon_pid)
                )
                if not exit_file.exists() and watched:
                    return  # still running, or conmon is about to write the code
                try:
                    code = int(exit_file.read_text().strip() or 0)
                    finished = exit_file.stat().st_mtime
                except (FileNotFoundError, ValueError):
                    code, finished = 137, time.time()  # nobody saw how it ended
                self._finish(rec.id, code, finished)
            rec = self._reload(rec.id)
        if rec.state != "exited":
            return
        if rec.spec.auto_remove:
            with flocked(self.attached_lock(rec.id), exclusive=True, blocking=False) as free:
                if not free:
                    return  # the attached moor reads the exit code, then removes it
            self.remove(rec.id, force=True, anonymous_volumes=True)
            return
        if restart and self._should_restart(rec):
            delay = min(0.1 * (2 ** min(rec.restart_count, 10)), 60.0)
            if rec.started_at and rec.finished_at and rec.finished_at - rec.started_at > 10:
                delay = 0.1  # it ran a while: start over with the shortest back-off
            time.sleep(delay)
            fresh = self._find_raw(rec.id)
            if fresh is None or fresh.stopped_by_user or fresh.state != "exited":
                return
            self._update(rec.id, restart_count=rec.restart_count + 1)
            with contextlib.suppress(MoorageError):
                self.start(rec.id)

    def _find_raw(self, ref: str) -> ContainerRecord | None:
        row = self.store.db.conn.execute(
            "SELECT * FROM containers WHERE id = ? OR name = ?", (ref, ref)
        ).fetchone()
        return _record(row) if row else None

    def _finish(self, cid: str, code: int, finished: float) -> None:
        self._teardown_runtime(cid)
        oom = (self.userdata(cid) / "oom").exists()  # conmon's mark of an OOM kill
        self._update(
            cid, state="exited", exit_code=code, finished_at=finished, pid=0, oom_killed=int(oom)
        )
        if oom:
            container_event(self.store, self._reload(cid), "oom")
        container_event(self.store, self._reload(cid), "die", exitCode=str(code))

    def _teardown_runtime(
        self, cid: str, *, unmount_rootfs: bool = True, rec: ContainerRecord | None = None
    ) -> None:
        """The runtime's state, the rootfs mount (unless ``_discard`` will do it: a container
        being removed) and the network. ``rec``: the container's record, if at hand (only
        its runtime is read)."""
        rec = rec if rec is not None else self._find_raw(cid)
        if rec is not None:
            with contextlib.suppress(MoorageError):
                runtime = self.runtime(rec)
                if (runtime.state_root / cid).exists():
                    runtime.delete(cid, force=True)
        if unmount_rootfs:
            with contextlib.suppress(MoorageError):
                unmount(self.rootfs(cid))
        with contextlib.suppress(MoorageError, OSError):
            self.networks.teardown(cid)  # hook: network teardown on exit, stop, rm

    def _should_restart(self, rec: ContainerRecord) -> bool:
        if rec.stopped_by_user:
            return False
        policy, maximum = parse_restart(rec.spec.restart)
        if policy in ("always", "unless-stopped"):
            return True
        if policy == "on-failure":
            return rec.exit_code != 0 and (maximum == 0 or rec.restart_count < maximum)
        return False

    # ---- signals, stop, remove -----------------------------------------------------------

    def kill(self, ref: str, signal: str | int = "KILL") -> ContainerRecord:
        rec = self.get(ref)
        if not rec.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {rec.id} is not running")
        sig = signal if isinstance(signal, int) else parse_stop_signal(signal)
        with contextlib.suppress(RuntimeFailure):
            self.runtime(rec).kill(rec.id, sig)
        container_event(self.store, rec, "kill", signal=str(sig))
        return rec

    def record_restart(self, ref: str) -> None:
        """Docker's ``restart`` event, once ``restart`` (the command or the API call) has
        started it again. A restart policy's restarts record ``die`` then ``start`` only, as
        Docker's do."""
        container_event(self.store, self.get(ref), "restart")

    def stop(self, ref: str, timeout: int | None = None) -> ContainerRecord:
        rec = self.get(ref)
        self._update(rec.id, stopped_by_user=1)  # also cancels a restart in its back-off
        if not rec.running:
            return rec
        if rec.state == "paused":
            with contextlib.suppress(RuntimeFailure):
                self.runtime(rec).resume(rec.id)
        sig = parse_stop_signal(rec.spec.stop_signal or "SIGTERM")
        grace = timeout if timeout is not None else rec.spec.stop_timeout
        grace = 10 if grace is None else grace
        runtime = self.runtime(rec)
        # holding the attach lock until conmon is done makes its exit command a no-op: this
        # command records the exit itself just below, and a stop of many containers (compose
        # down) does not start one Python cleanup process per container beside it
        with flocked(self.attached_lock(rec.id), exclusive=True, blocking=False) as held:
            with contextlib.suppress(RuntimeFailure):
                runtime.kill(rec.id, sig)
            if not self._wait_exit(rec, grace):
                with contextlib.suppress(RuntimeFailure):
                    runtime.kill(rec.id, signals.SIGKILL, all_processes=True)
                self._wait_exit(rec, 10)
            if held:
                self._wait_conmon(rec, 2)
        self.cleanup(rec.id)
        container_event(self.store, rec, "stop")
        return self._find_raw(rec.id) or rec  # a --rm container is gone by now

    def _wait_exit(self, rec: ContainerRecord, timeout: float) -> bool:
        exit_file = self.layout(rec.id).exit_file(rec.id)
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            if exit_file.exists() or not (process_alive(rec.pid) or process_alive(rec.conmon_pid)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _wait_conmon(self, rec: ContainerRecord, timeout: float) -> None:
        """Until conmon has run its exit command (it exits right after)."""
        deadline = time.monotonic() + timeout
        while process_alive(rec.conmon_pid) and time.monotonic() < deadline:
            time.sleep(0.005)

    def wait(self, ref: str) -> int:
        """Block until the container has exited (a created one: until it ran and exited)."""
        rec = self.get(ref)
        while rec.state != "exited":
            time.sleep(0.02)
            found = self.find(rec.id)
            if found is None:  # removed meanwhile (e.g. --rm)
                return rec.exit_code
            rec = found
        return rec.exit_code

    def remove(
        self, ref: str, *, force: bool = False, anonymous_volumes: bool = False
    ) -> ContainerRecord:
        rec = self.get(ref)
        if rec.running:
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {rec.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            self._update(rec.id, stopped_by_user=1)
            # holding the attach lock tells conmon's exit command that we clean up ourselves
            with flocked(self.attached_lock(rec.id), exclusive=True, blocking=False):
                with contextlib.suppress(RuntimeFailure):
                    self.runtime(rec).kill(rec.id, signals.SIGKILL, all_processes=True)
                self._wait_exit(rec, 10)
                self._wait_conmon(rec, 2)
        with self.locked(rec.id):
            fresh = self._find_raw(rec.id)
            if fresh is None:
                return rec
            rec = fresh
            if rec.running and process_alive(rec.pid) and not force:
                # started by another command since we looked
                raise Conflict(
                    f"You cannot remove a running container {rec.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            if rec.running and process_alive(rec.pid):
                with contextlib.suppress(RuntimeFailure):
                    self.runtime(rec).kill(rec.id, signals.SIGKILL, all_processes=True)
                self._wait_exit(rec, 10)
            self._teardown_runtime(rec.id, unmount_rootfs=False)
            if rec.running:  # ended here, not through cleanup: say so as Docker's rm -f does
                container_event(self.store, rec, "kill", signal=str(int(signals.SIGKILL)))
                container_event(self.store, rec, "die", exitCode=self._exit_code_of(rec.id))
            if rec.state == "created" and rec.conmon_pid and process_alive(rec.conmon_pid):
                # created but never started (e.g. moor was killed mid-start): end its conmon
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rec.conmon_pid, signals.SIGKILL)
            self._discard(rec.id, anonymous_volumes=anonymous_volumes)
        run_dir = self.run_dir / rec.id
        later.after_reply(lambda: shutil.rmtree(run_dir, ignore_errors=True))
        # once per command (rm of many ids), and at most every few seconds in the service
        if self._swept_at is None or time.monotonic() - self._swept_at > SWEEP_EVERY:
            self.sweep_orphans()
        return rec

    def sweep_orphans(self) -> None:
        """Remove what a ``create`` killed before it recorded its container left: directories
        of an id with no row whose creation lock is free (a create in progress holds it)."""
        self._swept_at = time.monotonic()
        try:
            entries = os.listdir(self.dir)
        except FileNotFoundError:
            return
        known = {row[0] for row in self.store.db.conn.execute("SELECT id FROM containers")}
        for cid in entries:
            if cid in known or cid in _LEAVING:
                continue
            if len(cid) != 64 or not all(c in "0123456789abcdef" for c in cid):
                continue
            (self.run_dir / cid).mkdir(parents=True, exist_ok=True)  # gone after a reboot
            with flocked(self.run_dir / cid / "lock", exclusive=True, blocking=False) as free:
                if not free or self._find_raw(cid) is not None:
                    continue
                self._remove_files(cid)
            shutil.rmtree(self.run_dir / cid, ignore_errors=True)

    def _exit_code_of(self, cid: str) -> str:
        try:
            return self.layout(cid).exit_file(cid).read_text().strip() or "0"
        except FileNotFoundError:
            return "137"

    def _discard(self, cid: str, *, anonymous_volumes: bool = False) -> None:
        """Forget a container whose runtime state and mounts are gone (under its lock);
        with ``anonymous_volumes`` (``rm -v``, ``--rm``), its anonymous volumes too."""
        gone = self._find_raw(cid)
        anonymous = self.volumes.anonymous_of(cid) if anonymous_volumes else []
        with self.store.db.transaction() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (cid,))
            if gone is not None:
                container_event(self.store, gone, "destroy", wake=False)
        if gone is not None:
            notify(self.store.runroot)
        for vol in anonymous:
            with contextlib.suppress(MoorageError):
                self.volumes.remove(vol)
        _LEAVING.add(cid)  # not an orphan for sweep_orphans: its removal is under way
        # nothing refers to them any more: the user may have the answer first (later)
        later.after_reply(lambda: self._remove_files(cid))

    def _remove_files(self, cid: str) -> None:
        """A forgotten container's rootfs mount and directories."""
        with contextlib.suppress(MoorageError):
            unmount(self.rootfs(cid))
        shutil.rmtree(self.overlay(cid), ignore_errors=True)
        # last: sweep_orphans finds ids by this directory
        shutil.rmtree(self.userdata(cid), ignore_errors=True)

    # ---- foreground --rm runs ------------------------------------------------------------

    def run_foreground(self, rec: ContainerRecord) -> int:
        """Run a created ``--rm`` container in the foreground and remove it; returns its exit
        code. No conmon and no log file: the runtime runs it straight on our stdio (there is
        nothing to relay and nothing to keep, since the container is removed when it ends),
        and the signals we get are forwarded to it. ``moor ps``, ``stop``, ``kill`` and
        ``rm -f`` from other shells see and reach it meanwhile, the runtime process standing
        in for conmon; if this ``moor`` is killed, the next command that looks at the
        container finds it ended and removes it."""
        from moorage.engine.containers.sigproxy import proxy_signals

        runtime = self.runtime(rec)
        layout = self.layout(rec.id)
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        runtime_log = layout.run_dir / "runtime.log"
        proc = None
        with flocked(self.attached_lock(rec.id), exclusive=True):
            try:
                with self.locked(rec.id):
                    self._write_bundle(rec)
                    if (runtime.state_root / rec.id).exists():
                        runtime.delete(rec.id, force=True)  # a leftover from a crash
                    proc = runtime.run(
                        rec.id, layout.bundle, pid_file=layout.pidfile, log_file=runtime_log,
                        stdin=rec.spec.open_stdin,
                    )  # fmt: skip
                    self._update(
                        rec.id, (rec, "start"), state="running", conmon_pid=proc.pid,
                        started_at=time.time(), exit_code=0, stopped_by_user=0, error="",
                    )  # fmt: skip

                def send(signum: int) -> None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signum)

                with proxy_signals(send):
                    code = proc.wait()
                # the runtime's own failure (it also said so on stderr): Docker's exit code
                failure = _runtime_error(runtime_log) if code != 0 else None
                if failure:
                    code = _classify(failure).exit_code
                container_event(self.store, rec, "die", exitCode=str(_status(code)))
            finally:
                if proc is not None and proc.poll() is None:  # we failed, not the container
                    with contextlib.suppress(RuntimeFailure):
                        runtime.kill(rec.id, signals.SIGKILL, all_processes=True)
                    proc.wait()
                with self.locked(rec.id):
                    # runc run left no state: the network (the rootfs goes with _discard)
                    self._teardown_runtime(rec.id, unmount_rootfs=False, rec=rec)
                    self._discard(rec.id, anonymous_volumes=True)
                later.after_reply(lambda: shutil.rmtree(layout.run_dir, ignore_errors=True))
        return _status(code)

    def rename(self, ref: str, new_name: str) -> None:
        rec = self.get(ref)
        ContainerSpec(image="x", name=new_name).validate()
        try:
            with self.store.db.transaction() as conn:
                conn.execute("UPDATE containers SET name = ? WHERE id = ?", (new_name, rec.id))
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f'Error when allocating new name: Conflict. The container name "/{new_name}" '
                "is already in use"
            ) from None
        container_event(self.store, self._reload(rec.id), "rename", oldName="/" + rec.name)

    def pause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.state != "running":
            raise Conflict(f"Container {rec.id} is not running")
        self.runtime(rec).pause(rec.id)
        self._update(rec.id, state="paused")
        container_event(self.store, rec, "pause")

    def unpause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.state != "paused":
            raise Conflict(f"Container {rec.id} is not paused")
        self.runtime(rec).resume(rec.id)
        self._update(rec.id, state="running")
        container_event(self.store, rec, "unpause")

    def prune(self) -> list[str]:
        removed = []
        for rec in self.ls():
            if not rec.running:
                self.remove(rec.id, force=True)
                removed.append(rec.id)
        return removed

    def log_path(self, rec: ContainerRecord) -> Path:
        return self.layout(rec.id).log_path

    def image_of(self, rec: ContainerRecord) -> ImageRecord:
        return self.images.get(_digest(rec.image_id))


def _status(code: int) -> int:
    """A Popen return code as a shell's status (128+N for signal N)."""
    return code if code >= 0 else 128 - code


def _digest(image_id: str) -> Any:
    from moorage.oci.digest import Digest

    return Digest.parse(image_id)


def _replace_record(rec: ContainerRecord, **changes: Any) -> ContainerRecord:
    import dataclasses

    return dataclasses.replace(rec, **changes)


def _replace(spec: ContainerSpec, **changes: Any) -> ContainerSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)


def _init_binary() -> str | None:
    for p in INIT_BINARIES:
        if os.path.exists(p):
            return p
    return None


def _runtime_error(log: Path) -> str | None:
    """The last error the runtime logged (``--log-format json``), if any."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg") or "the runtime failed")
    return None


def _classify(message: str) -> MoorageError:
    """Docker's exit codes for a command that cannot be run."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return CommandNotFound(message)
    if "permission denied" in low or "is a directory" in low:
        return CommandNotExecutable(message)
    return RuntimeFailure(message)


@contextlib.contextmanager
def _root_fd(rootfs: Path) -> Iterator[int]:
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _resolve(root_fd: int, path: str) -> int | None:
    """An O_PATH fd of ``path`` resolved inside the root, or None if it is not there."""
    from moorage.engine.containers.fsops import resolve_in_root

    try:
        return resolve_in_root(root_fd, path)
    except (NotFound, InvalidArgument):
        return None


def _read_in_root(rootfs: Path, path: str) -> bytes | None:
    with _root_fd(rootfs) as root_fd:
        fd = _resolve(root_fd, path)
        if fd is None:
            return None
        try:
            import stat as stmod

            # only a regular file: a FIFO or device here would block or feed us anything
            if not stmod.S_ISREG(os.fstat(fd).st_mode):
                return None
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                return f.read(1 << 20)
        except OSError:
            return None
        finally:
            os.close(fd)


def _ensure_workdir(rootfs: Path, workdir: str, uid: int, gid: int) -> None:
    """Create WORKDIR inside the root if missing (as Docker), refusing one that resolves out."""
    with _root_fd(rootfs) as root_fd:
        fd = _resolve(root_fd, workdir)
        if fd is not None:
            os.close(fd)
            return
        parts = [p for p in workdir.split("/") if p and p != "."]
        if ".." in parts:
            raise InvalidArgument(f"working directory {workdir!r} must not contain '..'")
        cur = os.dup(root_fd)
        try:
            for part in parts:
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=cur)
                except FileNotFoundError:
                    os.mkdir(part, 0o755, dir_fd=cur)
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=cur)
                    os.fchown(nxt, uid, gid)
                except OSError as e:
                    raise InvalidArgument(
                        f"working directory {workdir!r} cannot be used: {e.strerror}"
                    ) from None
                os.close(cur)
                cur = nxt
        finally:
            os.close(cur)


def inspect(svc: ContainerService, rec: ContainerRecord) -> dict[str, Any]:
    """Docker's ``container inspect`` JSON shape."""
    spec = rec.spec
    image = svc.image_of(rec)
    image_config = svc.images.config(image).get("config") or {}
    try:
        args = process_args(spec, image_config)
    except MoorageError:
        args = []
    hostname = spec.hostname or rec.id[:12]
    # what was configured; HOSTNAME (and TERM for -t) are added when it runs, as with Docker
    env = merge_env(image_config.get("Env") or [], list(spec.env)) or None
    policy, maximum = parse_restart(spec.restart)
    overlay = svc.overlay(rec.id)
    layers = [str(d) for d in svc.lower_dirs(rec)]
    entrypoint: list[str] | None
    if spec.entrypoint is None:
        entrypoint = image_config.get("Entrypoint")
    else:
        entrypoint = [spec.entrypoint] if spec.entrypoint else None
    cmd = list(spec.args) or (image_config.get("Cmd") if spec.entrypoint is None else None)
    return {
        "Id": rec.id,
        "Created": go_time(rec.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": rec.state,
            "Running": rec.state in ("running", "paused"),
            "Paused": rec.state == "paused",
            "Restarting": False,
            "OOMKilled": rec.oom_killed,
            "Dead": False,
            "Pid": rec.pid if rec.running else 0,
            "ExitCode": rec.exit_code,
            "Error": rec.error,
            "StartedAt": go_time(rec.started_at),
            "FinishedAt": go_time(rec.finished_at),
            **_health(svc, rec),
        },
        "Image": rec.image_id,
        "ResolvConfPath": str(svc.userdata(rec.id) / "resolv.conf"),
        "HostnamePath": str(svc.userdata(rec.id) / "hostname"),
        "HostsPath": str(svc.userdata(rec.id) / "hosts"),
        "LogPath": str(svc.log_path(rec)),
        "Name": "/" + rec.name,
        "RestartCount": rec.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            # -v /dest alone is an anonymous volume: Docker keeps those out of Binds
            "Binds": [v for v in spec.volumes if ":" in v] or None,
            "Mounts": [_mount_doc(m) for m in spec.mounts] or None,
            "VolumesFrom": list(spec.volumes_from) or None,
            "LogConfig": {"Type": spec.log_driver, "Config": _log_config(spec)},
            **_network_host_config(spec),
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": maximum},
            "AutoRemove": spec.auto_remove,
            "CapAdd": list(spec.cap_add) or None,
            "CapDrop": list(spec.cap_drop) or None,
            "GroupAdd": list(spec.group_add) or None,
            "Init": spec.init,
            "Privileged": spec.privileged,
            "ReadonlyRootfs": spec.read_only,
            "SecurityOpt": list(spec.security_opt) or None,
            "Tmpfs": dict(spec.tmpfs) or None,
            "ShmSize": spec.shm_size,
            "Sysctls": dict(spec.sysctls) or None,
            "Runtime": spec.runtime,
            "Memory": spec.resources.memory,
            "MemorySwap": spec.resources.memory_swap,
            "NanoCpus": spec.resources.nano_cpus,
            "CpuShares": spec.resources.cpu_shares,
            "PidsLimit": spec.resources.pids_limit or None,
            "Ulimits": [{"Name": n, "Soft": s, "Hard": h} for n, s, h in spec.ulimits] or None,
        },
        "GraphDriver": {
            "Data": {
                "LowerDir": ":".join(layers),
                "MergedDir": str(overlay / "merged"),
                "UpperDir": str(overlay / "diff"),
                "WorkDir": str(overlay / "work"),
            },
            "Name": "overlay",
        },
        "Mounts": svc.volumes.inspect_mounts(rec.id),
        "Config": {
            "Hostname": hostname,
            "Domainname": "",
            "User": spec.user or image_config.get("User", ""),
            "AttachStdin": spec.open_stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "ExposedPorts": image_config.get("ExposedPorts"),
            "Tty": spec.tty,
            "OpenStdin": spec.open_stdin,
            "StdinOnce": spec.open_stdin,
            "Env": env,
            "Cmd": cmd,
            "Image": rec.image_ref,
            "Volumes": image_config.get("Volumes"),
            "WorkingDir": spec.workdir or image_config.get("WorkingDir", ""),
            "Entrypoint": entrypoint,
            "OnBuild": None,
            "Labels": {**(image_config.get("Labels") or {}), **spec.labels},
            "StopSignal": spec.stop_signal or "SIGTERM",
            **({"StopTimeout": spec.stop_timeout} if spec.stop_timeout is not None else {}),
            **({"Healthcheck": spec.healthcheck} if spec.healthcheck else {}),
        },
        "NetworkSettings": svc.networks.settings(rec, image_config),
    }


def _mount_doc(text: str) -> dict[str, Any]:
    """A ``--mount`` as HostConfig.Mounts shows it."""
    from moorage.engine.volumes.parse import parse_mount

    m = parse_mount(text)
    doc: dict[str, Any] = {"Type": m.type, "Source": m.source, "Target": m.destination}
    if not m.rw:
        doc["ReadOnly"] = True
    if m.type == "tmpfs" and m.options:
        opts = dict(o.partition("=")[::2] for o in m.options.split(","))
        tmpfs: dict[str, Any] = {}
        if "size" in opts and opts["size"].isdigit():
            tmpfs["SizeBytes"] = int(opts["size"])
        if "mode" in opts:
            with contextlib.suppress(ValueError):
                tmpfs["Mode"] = int(opts["mode"], 8)
        if tmpfs:
            doc["TmpfsOptions"] = tmpfs
    return doc


def _network_host_config(spec: ContainerSpec) -> dict[str, Any]:
    from moorage.engine.network.ports import parse_publish

    bindings: dict[str, Any] = {}
    for p in spec.publish:
        for b in parse_publish(p):
            port = str(b.host_port) if b.host_port else ""
            if b.host_port_end:
                port += f"-{b.host_port_end}"
            bindings.setdefault(b.key, []).append({"HostIp": b.host_ip, "HostPort": port})
    return {
        "NetworkMode": spec.network_mode,
        "PortBindings": bindings,
        "PublishAllPorts": spec.publish_all,
        "Dns": list(spec.dns),
        "DnsOptions": list(spec.dns_options),
        "DnsSearch": list(spec.dns_search),
        "ExtraHosts": list(spec.extra_hosts) or None,
        "Links": [f"/{n}:/{spec.name}/{a}" for n, a in map(_link_pair, spec.links)] or None,
    }


def _link_pair(link: str) -> tuple[str, str]:
    from moorage.engine.network.modes import parse_link

    return parse_link(link)


def _health_checks() -> Any:
    """engine.health, imported only for containers that have a check."""
    from moorage.engine import health

    return health


def _health(svc: ContainerService, rec: ContainerRecord) -> dict[str, Any]:
    if not rec.spec.healthcheck:
        return {}
    health = _health_checks()
    if health.effective(rec.spec.healthcheck) is None:
        return {}
    return {"Health": health.state(svc.store.db.conn, rec.id) or {
        "Status": "starting", "FailingStreak": 0, "Log": []}}  # fmt: skip


def _log_config(spec: ContainerSpec) -> dict[str, str]:
    out = {}
    for opt in spec.log_opts:
        k, _, v = opt.partition("=")
        out[k] = v
    return out


@contextlib.contextmanager
def mounted_root(svc: ContainerService, rec: ContainerRecord) -> Iterator[Path]:
    """The container's merged root: its live mount, or one made for the duration."""
    root = svc.rootfs(rec.id)
    if rec.running:
        yield root
        return
    with svc.locked(rec.id):
        svc.mount_rootfs(rec)
        try:
            yield root
        finally:
            unmount(root)


def exec_process(
    svc: ContainerService,
    rec: ContainerRecord,
    args: list[str],
    *,
    env: list[str],
    user: str,
    workdir: str,
    tty: bool,
) -> dict[str, Any]:
    """The OCI process for ``exec``: the container's own process, with these changes."""
    if not rec.running:
        raise Conflict(f"Container {rec.id} is not running")
    if rec.state == "paused":
        raise Conflict(f"Container {rec.id} is paused, unpause the container before exec")
    config = json.loads((svc.userdata(rec.id) / "config.json").read_text())
    process: dict[str, Any] = dict(config["process"])
    root = svc.rootfs(rec.id)
    if user:
        uid, gid, gids, _ = resolve_user(user, lambda p: _read_in_root(root, p))
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": gids}
    if workdir:
        process["cwd"] = workdir
    process["terminal"] = tty
    base = [e for e in process.get("env", []) if e.split("=", 1)[0] not in {
        v.split("=", 1)[0] for v in env
    }]  # fmt: skip
    process["env"] = base + env
    _check_executable(root, args[0], process["env"], process.get("cwd", "/"))
    process["args"] = args
    return process


def _check_executable(root: Path, command: str, env: list[str], cwd: str) -> None:
    """Docker's 126/127 for exec, decided before runc is asked (its errors reach the tty)."""
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
    candidates = [command] if "/" in command else [f"{d}/{command}" for d in path.split(":") if d]
    with _root_fd(root) as root_fd:
        for cand in candidates:
            full = cand if cand.startswith("/") else f"{cwd.rstrip('/')}/{cand}"
            fd = _resolve(root_fd, full)
            if fd is None:
                continue
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            import stat as stmod

            if stmod.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return
            if "/" in command:
                raise CommandNotExecutable(
                    f'exec failed: unable to start container process: exec: "{command}": '
                    "permission denied"
                )
    raise CommandNotFound(
        f'exec failed: unable to start container process: exec: "{command}": '
        + ("no such file or directory" if "/" in command else "executable file not found in $PATH")
    )


_RUNTIME_MOUNTPOINTS = (
    "/dev", "/proc", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf",
    "/run/moorage-init",
)  # fmt: skip


def container_diff(svc: ContainerService, rec: ContainerRecord) -> list[tuple[str, str]]:
    """``docker diff``: the container's changes, without the mount points the runtime made
    for it (Docker keeps those in a hidden init layer)."""
    from moorage.engine.containers import fsops

    changes = fsops.diff(svc.overlay(rec.id) / "diff", svc.lower_dirs(rec))
    hidden = set(_RUNTIME_MOUNTPOINTS) | set(rec.spec.tmpfs)
    kept = [
        (kind, path)
        for kind, path in changes
        if not (kind == "A" and (path in hidden or any(path.startswith(h + "/") for h in hidden)))
    ]
    paths = [p for _, p in kept]
    return [
        (kind, path)
        for kind, path in kept
        if kind != "C"
        or any(p.startswith(path.rstrip("/") + "/") for p in paths)
        or not _is_dir(svc.overlay(rec.id) / "diff" / path.lstrip("/"))
    ]


def _is_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def commit(
    svc: ContainerService,
    rec: ContainerRecord,
    *,
    reference: str | None,
    author: str = "",
    message: str = "",
    changes: list[str] | None = None,
    pause: bool = True,
) -> str:
    """``docker commit``: the container's changes as a new layer on its image."""
    import tempfile

    from moorage.engine.images.layers import layer_from_stream, record_image
    from moorage.oci import mediatypes as mt
    from moorage.oci.config import ImageConfig, apply_changes
    from moorage.oci.reference import parse_reference
    from moorage.store.layerwriter import write_layer
    from moorage.units import rfc3339

    tag = str(parse_reference(reference).with_default_tag()) if reference else None
    image = svc.image_of(rec)
    parent = svc.images.config(image)
    paused_here = False
    if pause and rec.state == "running":
        svc.pause(rec.id)
        paused_here = True
    store = svc.store
    try:
        with store.adding(), tempfile.TemporaryFile(dir=store.content.ingest_dir) as tmp:
            write_layer(svc.overlay(rec.id) / "diff", tmp)
            tmp.seek(0)
            layer = layer_from_stream(store, tmp)
            now = rfc3339(time.time())
            ctr_config = dict(parent.get("config") or {})
            image_config = ctr_config
            ctr_config["Cmd"] = list(rec.spec.args) or image_config.get("Cmd")
            if rec.spec.entrypoint is not None:
                ctr_config["Entrypoint"] = [rec.spec.entrypoint] if rec.spec.entrypoint else None
                if not rec.spec.args:
                    ctr_config["Cmd"] = None
            ctr_config["Env"] = merge_env(image_config.get("Env") or [], list(rec.spec.env))
            if rec.spec.workdir:
                ctr_config["WorkingDir"] = rec.spec.workdir
            if rec.spec.user:
                ctr_config["User"] = rec.spec.user
            if rec.spec.labels:
                ctr_config["Labels"] = {**(ctr_config.get("Labels") or {}), **rec.spec.labels}
            doc = dict(parent)
            doc["config"] = ctr_config
            doc["created"] = now
            doc["container"] = rec.id
            if author:
                doc["author"] = author
            doc["rootfs"] = {
                "type": "layers",
                "diff_ids": [*(parent.get("rootfs") or {}).get("diff_ids", []), str(layer.diff_id)],
            }
            doc["history"] = [
                *(parent.get("history") or []),
                {"created": now, "created_by": " ".join(process_args(rec.spec, image_config)),
                 **({"author": author} if author else {}),
                 **({"comment": message} if message else {})},
            ]  # fmt: skip
            config = apply_changes(ImageConfig.from_json(doc), changes or [])
            raw = config.to_bytes()
            config_digest = store.content.put(raw)
            from moorage.engine.images.layers import known_layer, manifest_for

            parent_layers = []
            for d in svc.images.layers(image.id):
                info = known_layer(store, d)
                if info is None:
                    raise NotFound(f"layer {d} of the container's image is missing")
                parent_layers.append(info)
            layers = [*parent_layers, layer]
            record_image(
                store,
                manifest=manifest_for(config_digest, len(raw), layers),
                manifest_media_type=mt.OCI_MANIFEST,
                config_digest=config_digest,
                created=now,
                os_name=str(doc.get("os") or "linux"),
                architecture=str(doc.get("architecture") or ""),
                layers=layers,
                tags=[tag] if tag else [],
            )
    finally:
        if paused_here:
            svc.unpause(rec.id)
    return str(config_digest)


def update(
    svc: ContainerService, rec: ContainerRecord, changes: dict[str, Any], restart: str | None
) -> None:
    """``docker update``: new resource limits (applied live through the runtime) and restart
    policy, recorded in the container's spec."""
    import dataclasses

    resources = dataclasses.replace(rec.spec.resources, **changes)
    spec = dataclasses.replace(rec.spec, resources=resources, restart=restart or rec.spec.restart)
    spec.validate()
    if rec.running and changes:
        live: dict[str, Any] = {}
        if resources.memory:
            swap = resources.memory_swap or 2 * resources.memory
            live["memory"] = {"limit": resources.memory, "swap": swap}
        cpu: dict[str, Any] = {}
        if resources.cpu_shares:
            cpu["shares"] = resources.cpu_shares
        if resources.nano_cpus:
            from moorage.engine.containers.parse import cpu_quota

            cpu["quota"], cpu["period"] = cpu_quota(resources.nano_cpus)
        if cpu:
            live["cpu"] = cpu
        if resources.pids_limit:
            live["pids"] = {"limit": resources.pids_limit}
        svc.runtime(rec).update(rec.id, live)
    stored = json.loads(
        svc.store.db.conn.execute("SELECT spec FROM containers WHERE id = ?", (rec.id,)).fetchone()[
            "spec"
        ]
    )
    stored.update(spec.to_json())
    svc._update(rec.id, spec=json.dumps(stored))
