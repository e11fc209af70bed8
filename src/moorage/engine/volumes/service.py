"""Volumes (the local driver) and every container's mounts: named and anonymous volumes
under ``ROOT/volumes/<name>/_data`` (or a tmpfs/bind the volume's options ask for), bind
mounts, tmpfs; Docker's copy-up of the image's content into a new volume."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.engine.volumes.parse import (
    MountRequest,
    check_volume_name,
    parse_mount,
    parse_volume,
    parse_volumes_from,
)
from moorage.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from moorage.store import Store


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    seeded: bool
    created: float


def _vol(row: sqlite3.Row) -> VolumeRecord:
    return VolumeRecord(
        name=row["name"], driver=row["driver"], labels=json.loads(row["labels"]),
        options=json.loads(row["options"]), anonymous=bool(row["anonymous"]),
        seeded=bool(row["seeded"]), created=row["created"],
    )  # fmt: skip


def _check_options(options: dict[str, str]) -> None:
    for key in options:
        if key not in ("type", "device", "o"):
            raise InvalidArgument(f"invalid option key: {key!r} (the local driver takes type, "
                                  "device and o)")  # fmt: skip
    kind = options.get("type", "")
    if kind and kind not in ("tmpfs", "none", "bind"):
        raise InvalidArgument(f"unsupported volume type {kind!r}: use tmpfs or none (with o=bind)")
    if kind in ("none", "bind") or "bind" in options.get("o", "").split(","):
        device = options.get("device", "")
        if not device.startswith("/") or not os.path.isdir(device):
            raise InvalidArgument(f"invalid volume device {device!r}: a bind-backed volume "
                                  "needs an existing absolute directory")  # fmt: skip


def _mounted(path: Path) -> bool:
    """Whether something is mounted on ``path`` (os.path.ismount misses a bind mount from
    the same filesystem)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


class VolumeService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.root / "volumes"

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.db.conn

    def mountpoint(self, name: str) -> Path:
        return self.dir / name / "_data"

    # ---- volumes -------------------------------------------------------------------------

    def ls(self) -> list[VolumeRecord]:
        return [_vol(r) for r in self.conn.execute("SELECT * FROM volumes ORDER BY name")]

    def find(self, name: str) -> VolumeRecord | None:
        row = self.conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return _vol(row) if row else None

    def get(self, name: str) -> VolumeRecord:
        rec = self.find(name)
        if rec is None:
            raise NotFound(f"get {name}: no such volume")
        return rec

    def create(
        self,
        name: str = "",
        *,
        driver: str = "local",
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        anonymous: bool = False,
        exist_ok: bool = True,
    ) -> VolumeRecord:
        if driver != "local":
            raise InvalidArgument(f"error looking up volume plugin {driver}: plugin not found")
        if name:
            check_volume_name(name)
        else:
            name, anonymous = os.urandom(32).hex(), True
        opts = dict(options or {})
        _check_options(opts)
        found = self.find(name)
        if found is not None:
            if exist_ok:
                return found
            raise AlreadyExists(f"volume {name} already exists")
        self.mountpoint(name).mkdir(parents=True, exist_ok=True)
        try:
            with self.store.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO volumes(name, driver, labels, options, anonymous, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, driver, json.dumps(labels or {}), json.dumps(opts), int(anonymous),
                     time.time()),
                )  # fmt: skip
        except sqlite3.IntegrityError:
            found = self.find(name)
            if found is not None and exist_ok:
                return found
            raise AlreadyExists(f"volume {name} already exists") from None
        self._event("create", name, driver)
        return self.get(name)

    def _event(self, action: str, name: str, driver: str = "local", **extra: str) -> None:
        from moorage.engine.events import record_event

        record_event(self.store, "volume", action, name, {"driver": driver, **extra})

    def users(self, name: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT container_id FROM container_mounts WHERE type = 'volume' AND"
            " source = ?",
            (name,),
        )
        return [r[0] for r in rows]

    def remove(self, name: str, *, force: bool = False) -> None:
        rec = self.find(name)
        if rec is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        mp = self.mountpoint(name)
        if _mounted(mp):
            p = subprocess.run(["umount", str(mp)], capture_output=True, text=True, check=False)
            if p.returncode != 0 or _mounted(mp):
                raise Conflict(f"remove {name}: cannot unmount it: {p.stderr.strip()}")
        with self.store.db.transaction() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        self._event("destroy", name, rec.driver)
        if rec.options.get("type"):
            # only the empty mount point: never walk into what a bind-backed volume showed
            with contextlib.suppress(OSError):
                mp.rmdir()
                (self.dir / name).rmdir()
        else:
            shutil.rmtree(self.dir / name, ignore_errors=True)

    def prune(self) -> list[str]:
        removed = []
        for rec in self.ls():
            if not self.users(rec.name):
                with contextlib.suppress(Conflict, NotFound):
                    self.remove(rec.name)
                    removed.append(rec.name)
        return removed

    def inspect(self, rec: VolumeRecord) -> dict[str, Any]:
        from moorage.units import go_time

        return {
            "CreatedAt": go_time(rec.created),
            "Driver": rec.driver,
            "Labels": rec.labels or None,
            "Mountpoint": str(self.mountpoint(rec.name)),
            "Name": rec.name,
            "Options": rec.options or None,
            "Scope": "local",
        }

    def _ensure_mounted(self, rec: VolumeRecord) -> None:
        """A volume with options is a mount of its own on ``_data``, made on first use."""
        opts = rec.options
        mp = self.mountpoint(rec.name)
        if not opts.get("type") or _mounted(mp):
            return
        mp.mkdir(parents=True, exist_ok=True)
        if opts["type"] == "tmpfs":
            args = ["mount", "-t", "tmpfs"]
            if opts.get("o"):
                args += ["-o", opts["o"]]
            args += [opts.get("device") or "tmpfs", str(mp)]
        else:
            args = ["mount", "--bind", opts["device"], str(mp)]
        p = subprocess.run(args, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise InvalidArgument(f"error while mounting volume {rec.name}: {p.stderr.strip()}")

    # ---- a container's mounts ------------------------------------------------------------

    def requests(self, spec: Any, image_config: dict[str, Any], containers: Any) -> list[Any]:
        """Every mount the container asks for, in Docker's order of precedence: its own -v
        and --mount, then --volumes-from, then the image's VOLUMEs (anonymous)."""
        out: list[MountRequest] = []
        seen: set[str] = set()
        for spec_text in spec.volumes:
            out.append(parse_volume(spec_text))
        for spec_text in spec.mounts:
            out.append(parse_mount(spec_text))
        for m in out:
            if m.destination in seen:
                raise InvalidArgument(f"Duplicate mount point: {m.destination}")
            seen.add(m.destination)
        for ref in spec.volumes_from:
            name, mode = parse_volumes_from(ref)
            source = containers.get(name)
            for row in self.container_mounts(source.id):
                if row["destination"] in seen or row["type"] == "tmpfs":
                    continue
                rw = bool(row["rw"]) if not mode else mode == "rw"
                out.append(MountRequest(row["type"], row["source"], row["destination"], rw))
                seen.add(row["destination"])
        for dest in image_config.get("Volumes") or {}:
            dest = dest.rstrip("/") or "/"
            if dest not in seen and dest != "/":
                out.append(MountRequest("volume", "", dest))
                seen.add(dest)
        return out

    def prepare(self, requests: list[Any]) -> tuple[list[Any], list[str]]:
        """Before the container row: named volumes made if missing, anonymous ones made.
        Returns the concrete requests and the anonymous volumes made (to undo on error)."""
        concrete, made = [], []
        for m in requests:
            if m.type != "volume":
                concrete.append(m)
                continue
            if m.source:
                vol = self.create(m.source)
            else:
                vol = self.create(anonymous=True)
                made.append(vol.name)
            concrete.append(MountRequest("volume", vol.name, m.destination, m.rw))
        return concrete, made

    def record(self, conn: sqlite3.Connection, cid: str, mounts: list[Any]) -> None:
        """Inside the create transaction."""
        for i, m in enumerate(mounts):
            conn.execute(
                "INSERT INTO container_mounts(container_id, position, type, source, destination,"
                " rw, options) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cid, i, m.type, m.source, m.destination, int(m.rw), m.options),
            )

    def container_mounts(self, cid: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM container_mounts WHERE container_id = ? ORDER BY position", (cid,)
        ).fetchall()

    def oci_mounts(self, cid: str, rootfs: Path) -> list[dict[str, Any]]:
        """At start: the runtime's mount entries; a new volume gets the image's content at
        its destination first (Docker's copy-up)."""
        out = []
        rows = sorted(self.container_mounts(cid), key=lambda r: r["destination"].count("/"))
        for row in rows:
            ro = [] if row["rw"] else ["ro"]
            if row["type"] == "tmpfs":
                opts = ["nosuid", "nodev", *[o for o in row["options"].split(",") if o], *ro]
                out.append({"destination": row["destination"], "type": "tmpfs",
                            "source": "tmpfs", "options": opts})  # fmt: skip
                continue
            if row["type"] == "volume":
                vol = self.find(row["source"])
                if vol is None:
                    raise NotFound(f"volume {row['source']} of the container is missing")
                self._ensure_mounted(vol)
                source = self.mountpoint(vol.name)
                if not vol.seeded:
                    self._copy_up(vol, rootfs, row["destination"])
            else:
                source = Path(row["source"])
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)  # as Docker's -v does
            out.append({"destination": row["destination"], "type": "bind",
                        "source": str(source), "options": ["rbind", "rprivate", *ro]})  # fmt: skip
        return out

    def _copy_up(self, vol: VolumeRecord, rootfs: Path, destination: str) -> None:
        from moorage.engine.containers.fsops import resolve_in_root

        data = self.mountpoint(vol.name)
        if not any(data.iterdir()):
            root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                try:
                    fd = resolve_in_root(root_fd, destination)
                except (NotFound, InvalidArgument):
                    fd = None
                if fd is not None:
                    try:
                        # the directory as resolved inside the root (never a symlink out)
                        src = f"/proc/{os.getpid()}/fd/{fd}"
                        if os.path.isdir(src):
                            subprocess.run(["cp", "-a", f"{src}/.", str(data)], check=True,
                                           capture_output=True)  # fmt: skip
                            st = os.stat(src)
                            os.chown(data, st.st_uid, st.st_gid)
                            os.chmod(data, st.st_mode & 0o7777)
                    finally:
                        os.close(fd)
            finally:
                os.close(root_fd)
        with self.store.db.transaction() as conn:
            conn.execute("UPDATE volumes SET seeded = 1 WHERE name = ?", (vol.name,))

    def anonymous_of(self, cid: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT m.source FROM container_mounts m JOIN volumes v ON v.name = m.source"
            " WHERE m.container_id = ? AND m.type = 'volume' AND v.anonymous = 1",
            (cid,),
        )
        return [r[0] for r in rows]

    def inspect_mounts(self, cid: str) -> list[dict[str, Any]]:
        """``Mounts`` of ``container inspect``, as Docker."""
        return self.mount_docs(self.container_mounts(cid))

    def mount_docs(self, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        """``container_mounts`` rows as ``Mounts`` entries (for listings read in bulk)."""
        out: list[dict[str, Any]] = []
        for row in rows:
            rw = bool(row["rw"])
            if row["type"] == "volume":
                out.append({"Type": "volume", "Name": row["source"],
                            "Source": str(self.mountpoint(row["source"])),
                            "Destination": row["destination"], "Driver": "local",
                            "Mode": "" if rw else "ro", "RW": rw, "Propagation": ""})  # fmt: skip
            elif row["type"] == "bind":
                out.append({"Type": "bind", "Source": row["source"],
                            "Destination": row["destination"], "Mode": "" if rw else "ro",
                            "RW": rw, "Propagation": "rprivate"})  # fmt: skip
            else:
                out.append({"Type": "tmpfs", "Source": "", "Destination": row["destination"],
                            "Mode": "", "RW": rw, "Propagation": ""})  # fmt: skip
        return out
