"""Store-wide operations: disk usage, prune, consistency check and repair, host facts."""

from __future__ import annotations

import os
import platform
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moorage import __version__
from moorage.engine.images import ImageService
from moorage.oci.digest import Digest
from moorage.store import Store
from moorage.store.gc import collect

if TYPE_CHECKING:
    from moorage.engine.containers.service import ContainerRecord, ContainerService


@dataclass(frozen=True)
class UsageRow:
    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


def _containers(images: ImageService) -> ContainerService:
    from moorage.engine.containers.service import ContainerService

    return ContainerService(images.store, images)


def container_bytes(containers: ContainerService, rec: ContainerRecord) -> int:
    """A container's own disk use: its writable layer and its logs."""
    from moorage.store.snapshots import dir_usage

    logs = sum(p.stat().st_size for p in containers.userdata(rec.id).glob("ctr.log*"))
    return dir_usage(containers.overlay(rec.id) / "diff") + logs


def disk_usage(images: ImageService) -> list[UsageRow]:
    """``system df``: what each kind of object takes, and what ``system prune -a`` frees
    (it removes stopped containers first, so only running ones keep their images)."""
    store = images.store
    containers = _containers(images)
    ctrs = containers.ls()
    running = [c for c in ctrs if c.running]
    sizes = {c.id: container_bytes(containers, c) for c in ctrs}
    recs = images.ls()
    in_use = {c.image_id for c in ctrs}
    kept = {c.image_id for c in running}
    size = images.exclusive_bytes(str(r.id) for r in recs)
    reclaim = images.exclusive_bytes(str(r.id) for r in recs if str(r.id) not in kept)
    orphans = orphan_bytes(store)
    return [
        UsageRow(
            "Images", len(recs), sum(1 for r in recs if str(r.id) in in_use),
            size + orphans, reclaim + orphans,
        ),
        UsageRow(
            "Containers", len(ctrs), len(running), sum(sizes.values()),
            sum(v for k, v in sizes.items() if k not in {c.id for c in running}),
        ),
        _volume_usage(containers),
        UsageRow("Build Cache", 0, 0, 0, 0),
    ]  # fmt: skip


def _volume_usage(containers: ContainerService) -> UsageRow:
    """Local volumes: how many, how many a container uses, their bytes (what a tmpfs or a
    bind-backed volume shows is not the store's: not counted), and the unused ones' bytes."""
    from moorage.store.snapshots import dir_usage

    vols = containers.volumes
    total = active = size = reclaim = 0
    for rec in vols.ls():
        total += 1
        used = bool(vols.users(rec.name))
        active += used
        n = 0 if rec.options.get("type") else dir_usage(vols.mountpoint(rec.name))
        size += n
        reclaim += 0 if used else n
    return UsageRow("Local Volumes", total, active, size, reclaim)


def orphan_bytes(store: Store) -> int:
    """Bytes held by blobs and snapshots that nothing references (GC, dry run)."""
    return collect(store, dry_run=True).bytes_freed


@dataclass
class PruneReport:
    containers: list[str] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (kind, value)
    reclaimed: int = 0


def prune(images: ImageService, *, all_unused: bool) -> PruneReport:
    """``system prune``: stopped containers, then unused images (dangling, or all with -a),
    then orphaned content."""
    store = images.store
    report = PruneReport()
    containers = _containers(images)
    for rec in containers.ls():
        if not rec.running:
            report.reclaimed += container_bytes(containers, rec)
            containers.remove(rec.id, force=True)
            report.containers.append(rec.id)
    with store.collecting():
        report.reclaimed += collect(store, dry_run=True).bytes_freed
    events, reclaimed = images.prune(all_unused=all_unused)
    report.deleted.extend((e.kind, e.value) for e in events)
    report.reclaimed += reclaimed
    return report


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)  # damage: the check fails
    leftovers: list[str] = field(default_factory=list)  # orphaned content: harmless, reclaimable
    damaged_images: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)  # what --repair must not do itself


def check(images: ImageService, *, repair: bool) -> CheckReport:
    """``system check``: verify the database, every blob and every snapshot an image uses."""
    store = images.store
    report = CheckReport()
    conn = store.db.conn
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        report.problems.append(f"database: integrity check failed: {result}")
    verified: dict[str, bool] = {}

    def blob_ok(d: Digest) -> bool:
        if str(d) not in verified:
            verified[str(d)] = store.content.verify(d)
        return verified[str(d)]

    for rec in images.ls():
        bad: list[str] = []
        for what, d in (("manifest", rec.manifest_digest), ("config", rec.id)):
            if not blob_ok(d):
                bad.append(f"{what} blob {d} is missing or corrupt")
        for pos, diff_id in enumerate(images.layers(rec.id)):
            row = conn.execute(
                "SELECT blob_digest FROM layers WHERE diff_id = ?", (str(diff_id),)
            ).fetchone()
            if row is None:
                bad.append(f"layer {pos} ({diff_id}) is not recorded")
                continue
            if not store.snapshots.exists(diff_id):
                bad.append(f"layer {pos} ({diff_id}) has no snapshot directory")
            if not blob_ok(Digest.parse(row["blob_digest"])):
                bad.append(f"layer {pos} blob {row['blob_digest']} is missing or corrupt")
        if bad:
            name = ", ".join(rec.tags) or str(rec.id)
            report.damaged_images.append(str(rec.id))
            report.problems.extend(f"image {name}: {b}" for b in bad)
    with store.collecting(blocking=repair) as locked:
        if locked:
            garbage = collect(store, dry_run=True)
            report.leftovers.extend(f"orphan blob {d}" for d in garbage.blobs_removed)
            report.leftovers.extend(
                f"orphan directory {name}"
                if name.startswith("containers/")
                else f"orphan snapshot overlay/{name}"
                for name in garbage.snapshots_removed
            )
    if repair and (report.problems or report.leftovers):
        for image_id in report.damaged_images:
            users = [
                r[0][:12]
                for r in conn.execute("SELECT id FROM containers WHERE image_id = ?", (image_id,))
            ]
            if users:  # containers are the user's to remove, never the repair's
                report.unrepaired.append(
                    f"damaged image {image_id} is used by container(s) {', '.join(users)}: "
                    "remove them (moor rm -f), then run check --repair again"
                )
                continue
            # drop the damaged image (a new pull/load brings it back); the collection below
            # forgets the layers no image uses any more and removes their files
            with store.db.transaction() as c:
                c.execute("DELETE FROM images WHERE id = ?", (image_id,))
            report.repaired.append(f"removed damaged image {image_id}")
        for digest, ok in verified.items():
            if not ok:  # found corrupt above: never leave it to be served again
                store.content.delete(Digest.parse(digest))
        with store.collecting() as _:
            gc = collect(store)
        if gc.blobs_removed or gc.snapshots_removed:
            report.repaired.append(
                f"removed {len(gc.blobs_removed)} orphan blobs and "
                f"{len(gc.snapshots_removed)} orphan snapshots"
            )
    return report


def store_id(store: Store) -> str:
    path = store.root / "id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_hex(16)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        os.replace(tmp, path)
        return value


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _os_release() -> str:
    for line in _lines("/etc/os-release"):
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _mem_total() -> int:
    for line in _lines("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def info(images: ImageService) -> dict[str, Any]:
    """``moor info`` as Docker's ``/info`` field names."""
    store = images.store
    conn = store.db.conn
    n_ctr = conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0]
    running = conn.execute("SELECT COUNT(*) FROM containers WHERE state = 'running'").fetchone()[0]
    n_img = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    from moorage.oci.platform import host_platform

    return {
        "ID": store_id(store),
        "Containers": n_ctr,
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": n_ctr - running,
        "Images": n_img,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", _backing_fs(store)]],
        "LoggingDriver": "k8s-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "DefaultRuntime": "runc",
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_release(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "Platform": str(host_platform().os + "/" + host_platform().architecture),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "DockerRootDir": str(store.root),
        "RunRoot": str(store.runroot),
        "Name": platform.node(),
        "ServerVersion": __version__,
    }


def _backing_fs(store: Store) -> str:
    """The filesystem type of the mount holding the store root (longest matching prefix)."""
    root = str(store.root.resolve())
    best = ("", "unknown")
    for line in _lines("/proc/mounts"):
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1]
        inside = root == mount or root.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, parts[2])
    return best[1]
