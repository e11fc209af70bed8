"""The image service: look images up by name or id, tag, untag, remove, prune, describe."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.errors import Conflict, InvalidArgument, InvalidReference, NotFound
from moorage.oci.digest import Digest
from moorage.oci.reference import Reference, parse_reference
from moorage.store import Store
from moorage.store.gc import GCResult, collect
from moorage.units import go_time


@dataclass(frozen=True)
class ImageRecord:
    id: Digest  # the config digest: Docker's image id
    manifest_digest: Digest
    manifest_media_type: str
    created: str | None
    added: float
    size: int
    os: str
    architecture: str
    last_tag_time: float | None
    tags: tuple[str, ...]  # normalised references, sorted
    repo_digests: tuple[str, ...]

    @property
    def short_id(self) -> str:
        return self.id.short

    @property
    def dangling(self) -> bool:
        return not self.tags


@dataclass(frozen=True)
class RemoveEvent:
    """One line of ``rmi`` output: ``Untagged: ...`` or ``Deleted: ...``."""

    kind: str  # "untagged" | "deleted"
    value: str


_SELECT = """
SELECT i.*,
  (SELECT group_concat(t.name, char(10)) FROM tags t WHERE t.image_id = i.id) AS tag_list,
  (SELECT group_concat(r.name, char(10)) FROM repo_digests r WHERE r.image_id = i.id)
    AS digest_list
FROM images i
"""


def _record(row: sqlite3.Row) -> ImageRecord:
    tags = tuple(sorted(row["tag_list"].split("\n"))) if row["tag_list"] else ()
    digests = tuple(sorted(row["digest_list"].split("\n"))) if row["digest_list"] else ()
    return ImageRecord(
        id=Digest.parse(row["id"]),
        manifest_digest=Digest.parse(row["manifest_digest"]),
        manifest_media_type=row["manifest_media_type"],
        created=row["created"],
        added=row["added"],
        size=row["size"],
        os=row["os"],
        architecture=row["architecture"],
        last_tag_time=row["last_tag_time"],
        tags=tags,
        repo_digests=digests,
    )


def set_tag(conn: sqlite3.Connection, name: str, image_id: Digest, now: float) -> str | None:
    """Point the tag ``name`` at ``image_id``; returns the image id it pointed at before."""
    old = conn.execute("SELECT image_id FROM tags WHERE name = ?", (name,)).fetchone()
    conn.execute(
        "INSERT INTO tags(name, image_id) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
        (name, str(image_id)),
    )
    conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (now, str(image_id)))
    if old is not None and old["image_id"] != str(image_id):
        return str(old["image_id"])
    return None


def familiar(name: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest`` (also for ``@digest``)."""
    return parse_reference(name).familiar()


class ImageService:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.store.db.conn

    # ---- lookup -------------------------------------------------------------------------

    def ls(self, *, filters: Sequence[tuple[str, str]] = ()) -> list[ImageRecord]:
        rows = self._conn.execute(_SELECT + " ORDER BY i.created DESC, i.added DESC").fetchall()
        records = [_record(r) for r in rows]
        return [r for r in records if self._matches(r, filters)]

    def get(self, image_id: Digest) -> ImageRecord:
        row = self._conn.execute(_SELECT + " WHERE i.id = ?", (str(image_id),)).fetchone()
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return _record(row)

    def resolve(self, name: str) -> ImageRecord:
        """An image by reference (tag or repo digest), full id, or unambiguous id prefix."""
        rec = self.find(name)
        if rec is None:
            raise NotFound(f"No such image: {name}")
        return rec

    def find(self, name: str) -> ImageRecord | None:
        if not name:
            raise InvalidArgument("image name must not be empty")
        hexpart = name[7:] if name.startswith("sha256:") else name
        is_hex = 0 < len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart)
        if name.startswith("sha256:") or (is_hex and len(hexpart) == 64):
            if not is_hex:
                raise InvalidReference(f"invalid image id: {name}")
            return self._by_id_prefix(hexpart, name)
        try:
            ref = parse_reference(name)
        except InvalidReference:
            if is_hex:
                return self._by_id_prefix(hexpart, name)
            raise
        if ref.digest is not None:
            row = self._conn.execute(
                _SELECT + " WHERE i.id IN (SELECT image_id FROM repo_digests WHERE name = ?)"
                " OR (i.manifest_digest = ? AND i.id IN"
                " (SELECT image_id FROM tags WHERE name LIKE ? || ':%'))",
                (f"{ref.name}@{ref.digest}", str(ref.digest), ref.name),
            ).fetchone()
            return _record(row) if row else None
        tagged = str(ref.with_default_tag())
        row = self._conn.execute(
            _SELECT + " WHERE i.id = (SELECT image_id FROM tags WHERE name = ?)", (tagged,)
        ).fetchone()
        if row is not None:
            return _record(row)
        if is_hex:
            return self._by_id_prefix(hexpart, name)
        return None

    def _by_id_prefix(self, hexpart: str, name: str) -> ImageRecord | None:
        rows = self._conn.execute(
            _SELECT + " WHERE i.id >= ? AND i.id < ? LIMIT 2",
            (f"sha256:{hexpart}", f"sha256:{hexpart}\x7f"),
        ).fetchall()
        if len(rows) > 1:
            raise InvalidArgument(f"image id prefix {name!r} is ambiguous: give more digits")
        return _record(rows[0]) if rows else None

    def layers(self, image_id: Digest) -> list[Digest]:
        rows = self._conn.execute(
            "SELECT diff_id FROM image_layers WHERE image_id = ? ORDER BY position",
            (str(image_id),),
        )
        return [Digest.parse(r["diff_id"]) for r in rows]

    def config(self, rec: ImageRecord) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.store.content.read(rec.id))
        return data

    def containers_using(self, image_id: Digest) -> list[str]:
        rows = self._conn.execute(
            "SELECT id FROM containers WHERE image_id = ?", (str(image_id),)
        ).fetchall()
        return [r["id"] for r in rows]

    # ---- filters ------------------------------------------------------------------------

    def _matches(self, rec: ImageRecord, filters: Sequence[tuple[str, str]]) -> bool:
        by_key: dict[str, list[str]] = {}
        for k, v in filters:
            by_key.setdefault(k, []).append(v)
        for key, values in by_key.items():
            if key == "dangling":
                want = {_parse_bool_filter(v) for v in values}
                if rec.dangling not in want:
                    return False
            elif key == "reference":
                if not any(_reference_match(v, rec.tags) for v in values):
                    return False
            elif key == "label":
                labels = self._labels(rec)
                if not all(_label_match(v, labels) for v in values):
                    return False
            elif key in ("before", "since"):
                for v in values:
                    other = self.resolve(v)
                    if key == "before" and not (rec.added < other.added):
                        return False
                    if key == "since" and not (rec.added > other.added):
                        return False
            else:
                raise InvalidArgument(f"invalid filter '{key}'")
        return True

    def _labels(self, rec: ImageRecord) -> dict[str, str]:
        labels = (self.config(rec).get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    # ---- changes ------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> ImageRecord:
        rec = self.resolve(source)
        ref = parse_reference(target)
        if ref.digest is not None:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {target}")
        with self.store.db.transaction() as conn:
            set_tag(conn, str(ref.with_default_tag()), rec.id, time.time())
        _event(self.store, "tag", str(rec.id), familiar(str(ref.with_default_tag())))
        return self.get(rec.id)

    def remove(self, name: str, *, force: bool = False, collect: bool = True) -> list[RemoveEvent]:
        """``rmi``: untag if named by a tag and other tags remain; else delete the image.
        ``collect=False`` leaves deleting its files to the caller's one collection."""
        image_id = str(self.resolve(name).id)
        events = self._remove(name, force=force, collect=collect)
        for ev in events:  # recorded once committed, so a follower woken sees them
            _event(self.store, "untag" if ev.kind == "untagged" else "delete", image_id, ev.value)
        return events

    def _remove(self, name: str, *, force: bool, collect: bool) -> list[RemoveEvent]:
        rec = self.resolve(name)
        events: list[RemoveEvent] = []
        by_tag: str | None = None
        if not _names_id(name, rec):
            try:
                ref = parse_reference(name)
            except InvalidReference:
                ref = None
            if ref is not None and ref.digest is None:
                by_tag = str(ref.with_default_tag())
        with self.store.db.transaction() as conn:
            users = self.containers_using(rec.id)
            if by_tag is not None and len(rec.tags) > 1:
                conn.execute("DELETE FROM tags WHERE name = ?", (by_tag,))
                return [RemoveEvent("untagged", familiar(by_tag))]
            if users and not force:
                if by_tag is not None:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}" '
                        f"(must force) - container {users[0][:12]} is using its referenced "
                        f"image {rec.short_id}"
                    )
                raise Conflict(
                    f"conflict: unable to delete {rec.short_id} (must be forced) - image is "
                    f"being used by stopped container {users[0][:12]}"
                )
            if by_tag is None and len(rec.tags) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {rec.short_id} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
            for t in rec.tags:
                events.append(RemoveEvent("untagged", familiar(t)))
            for d in rec.repo_digests:
                events.append(RemoveEvent("untagged", familiar(d)))
            conn.execute("DELETE FROM tags WHERE image_id = ?", (str(rec.id),))
            conn.execute("DELETE FROM repo_digests WHERE image_id = ?", (str(rec.id),))
            if users:
                # forced while a container uses it: Docker keeps the image, untagged
                return events
            parent = conn.execute(
                "SELECT parent FROM images WHERE id = ?", (str(rec.id),)
            ).fetchone()["parent"]
            conn.execute("DELETE FROM images WHERE id = ?", (str(rec.id),))
            events.append(RemoveEvent("deleted", str(rec.id)))
            events.extend(_remove_unused_parents(conn, parent))
        if collect:
            self.collect_garbage(blocking=False)
        return events

    def prune(self, *, all_unused: bool = False) -> tuple[list[RemoveEvent], int]:
        """Remove dangling images (or, with ``all_unused``, every image no container uses)."""
        before = self.reclaimable(all_unused=all_unused)
        events: list[RemoveEvent] = []
        parents = self._parents()
        for rec in self.ls():
            if self.containers_using(rec.id):
                continue
            if not all_unused and str(rec.id) in parents:
                continue  # a build's intermediate image: its child keeps it, as in Docker
            if rec.dangling or all_unused:
                events.extend(self.remove(str(rec.id), force=True, collect=False))
        self.collect_garbage(blocking=True)
        return events, before

    def _parent(self, image_id: Digest) -> str:
        """The image a build made this one from ("" for others)."""
        row = self._conn.execute("SELECT parent FROM images WHERE id = ?", (str(image_id),))
        found = row.fetchone()
        return str(found["parent"]) if found is not None else ""

    def _parents(self) -> set[str]:
        """Ids of images that are the parent of another (built) image."""
        rows = self._conn.execute("SELECT DISTINCT parent FROM images WHERE parent != ''")
        return {r["parent"] for r in rows}

    def reclaimable(self, *, all_unused: bool) -> int:
        """Bytes that ``prune`` would free: the layers and blobs only prunable images use."""
        parents = self._parents()
        prunable = {
            str(r.id)
            for r in self.ls()
            if (all_unused or (r.dangling and str(r.id) not in parents))
            and not self.containers_using(r.id)
        }
        return self.exclusive_bytes(prunable)

    def exclusive_bytes(self, image_ids: Iterable[str]) -> int:
        """Bytes that only these images use: their layers (blob and snapshot), configs and
        manifests."""
        ids = set(image_ids)
        if not ids:
            return 0
        conn = self._conn
        total = 0
        kept_layers = {
            r["diff_id"]
            for r in conn.execute("SELECT image_id, diff_id FROM image_layers")
            if r["image_id"] not in ids
        }
        gone_layers = {
            r["diff_id"]
            for r in conn.execute("SELECT image_id, diff_id FROM image_layers")
            if r["image_id"] in ids
        } - kept_layers
        for d in gone_layers:
            row = conn.execute(
                "SELECT blob_size, content_size FROM layers WHERE diff_id = ?", (d,)
            ).fetchone()
            if row:
                total += row["blob_size"] + row["content_size"]
        for i in ids:
            rec = self.get(Digest.parse(i))
            for d in (rec.id, rec.manifest_digest):
                with contextlib.suppress(NotFound):
                    total += self.store.content.size(d)
        return total

    def collect_garbage(self, *, blocking: bool) -> GCResult | None:
        with self.store.collecting(blocking=blocking) as got:
            if not got:
                return None
            return collect(self.store)

    # ---- describe -----------------------------------------------------------------------

    def inspect(self, rec: ImageRecord) -> dict[str, Any]:
        """Docker's ``image inspect`` JSON shape."""
        cfg = self.config(rec)
        layer_dirs = [str(self.store.snapshots.diff_dir(d)) for d in self.layers(rec.id)]
        container_config = cfg.get("container_config") or _empty_container_config()
        return {
            "Id": str(rec.id),
            "RepoTags": [familiar(t) for t in rec.tags],
            "RepoDigests": [familiar(d) for d in rec.repo_digests],
            "Parent": cfg.get("parent") or self._parent(rec.id),
            "Comment": _comment(cfg),
            "Created": rec.created or "0001-01-01T00:00:00Z",
            "Container": cfg.get("container", ""),
            "ContainerConfig": container_config,
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": _docker_config(cfg.get("config") or {}),
            "Architecture": cfg.get("architecture", ""),
            **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
            "Os": cfg.get("os", ""),
            "Size": rec.size,
            "VirtualSize": rec.size,
            "GraphDriver": {
                "Data": {
                    "LowerDir": ":".join(reversed(layer_dirs[:-1])) or None,
                    "MergedDir": None,
                    "UpperDir": layer_dirs[-1] if layer_dirs else None,
                    "WorkDir": None,
                }
                if layer_dirs
                else None,
                "Name": "overlay",
            },
            "RootFS": {
                "Type": "layers",
                "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or []),
            },
            "Metadata": {
                "LastTagTime": go_time(rec.last_tag_time),
            },
        }

    def history(self, rec: ImageRecord) -> list[dict[str, Any]]:
        """Newest first, as ``docker history``: Id (or ``<missing>``), Created, CreatedBy,
        Size, Comment, Tags."""
        cfg = self.config(rec)
        entries = list(cfg.get("history") or [])
        layers = self.layers(rec.id)
        sizes: list[int] = []
        for d in layers:
            row = self._conn.execute(
                "SELECT content_size FROM layers WHERE diff_id = ?", (str(d),)
            ).fetchone()
            sizes.append(int(row["content_size"]) if row else 0)
        if not entries:
            entries = [{"created": rec.created, "created_by": ""} for _ in layers]
        out: list[dict[str, Any]] = []
        li = 0
        for h in entries:
            empty = bool(h.get("empty_layer"))
            size = 0
            if not empty and li < len(sizes):
                size = sizes[li]
                li += 1
            out.append(
                {
                    "Id": "<missing>",
                    "Created": h.get("created"),
                    "CreatedBy": h.get("created_by", ""),
                    "Size": size,
                    "Comment": h.get("comment", ""),
                    "Tags": None,
                }
            )
        out.reverse()
        if out:
            out[0]["Id"] = str(rec.id)
            out[0]["Tags"] = [familiar(t) for t in rec.tags] or None
        return out


def _remove_unused_parents(conn: sqlite3.Connection, parent: str) -> list[RemoveEvent]:
    """Delete the untagged parents a build left that nothing else uses any more (Docker's
    ``rmi`` deletes a built image's intermediate images with it)."""
    events: list[RemoveEvent] = []
    while parent:
        row = conn.execute("SELECT parent FROM images WHERE id = ?", (parent,)).fetchone()
        if row is None:
            break
        in_use = (
            conn.execute("SELECT 1 FROM tags WHERE image_id = ?", (parent,)).fetchone()
            or conn.execute("SELECT 1 FROM images WHERE parent = ?", (parent,)).fetchone()
            or conn.execute("SELECT 1 FROM containers WHERE image_id = ?", (parent,)).fetchone()
        )
        if in_use:
            break
        conn.execute("DELETE FROM images WHERE id = ?", (parent,))
        events.append(RemoveEvent("deleted", parent))
        parent = row["parent"]
    return events


def _names_id(name: str, rec: ImageRecord) -> bool:
    hexpart = name[7:] if name.startswith("sha256:") else name
    return rec.id.hex.startswith(hexpart) and (name.startswith("sha256:") or len(hexpart) >= 1)


def _parse_bool_filter(v: str) -> bool:
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter 'dangling={v}': expected true or false")


def _reference_match(pattern: str, tags: Sequence[str]) -> bool:
    for t in tags:
        ref: Reference = parse_reference(t)
        fam = ref.familiar()
        for candidate in (fam, ref.familiar_name, str(ref), ref.name):
            if fnmatch.fnmatchcase(candidate, pattern):
                return True
    return False


def _label_match(expr: str, labels: dict[str, str]) -> bool:
    if "=" in expr:
        k, _, v = expr.partition("=")
        return labels.get(k) == v
    return expr in labels


def _comment(cfg: dict[str, Any]) -> str:
    hist = cfg.get("history") or []
    if cfg.get("comment"):
        return str(cfg["comment"])
    if hist and isinstance(hist[-1], dict):
        return str(hist[-1].get("comment", ""))
    return ""


def _empty_container_config() -> dict[str, Any]:
    return _docker_config({})


def _docker_config(c: dict[str, Any]) -> dict[str, Any]:
    """An image config's ``config`` in the full shape Docker's inspect prints."""
    return {
        "Hostname": c.get("Hostname", ""),
        "Domainname": c.get("Domainname", ""),
        "User": c.get("User", ""),
        "AttachStdin": c.get("AttachStdin", False),
        "AttachStdout": c.get("AttachStdout", False),
        "AttachStderr": c.get("AttachStderr", False),
        **({"ExposedPorts": c["ExposedPorts"]} if c.get("ExposedPorts") else {}),
        "Tty": c.get("Tty", False),
        "OpenStdin": c.get("OpenStdin", False),
        "StdinOnce": c.get("StdinOnce", False),
        "Env": c.get("Env"),
        "Cmd": c.get("Cmd"),
        **({"Healthcheck": c["Healthcheck"]} if c.get("Healthcheck") else {}),
        **({"ArgsEscaped": c["ArgsEscaped"]} if c.get("ArgsEscaped") else {}),
        "Image": c.get("Image", ""),
        "Volumes": c.get("Volumes"),
        "WorkingDir": c.get("WorkingDir", ""),
        "Entrypoint": c.get("Entrypoint"),
        "OnBuild": c.get("OnBuild"),
        "Labels": c.get("Labels"),
        **({"StopSignal": c["StopSignal"]} if c.get("StopSignal") else {}),
        **({"Shell": c["Shell"]} if c.get("Shell") else {}),
    }


def _event(store: Store, action: str, image_id: str, name: str) -> None:
    from moorage.engine.events import record_event

    record_event(store, "image", action, image_id, {"name": name})
