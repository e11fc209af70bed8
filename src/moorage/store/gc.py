"""Mark-and-sweep garbage collection of blobs, layer rows and snapshot directories.

Roots are the images in the database (their manifest, config and layer blobs, their layers)
and the containers (their own ``overlay/<id>`` directories). Run it only while holding the
store lock exclusively (``Store.collecting``): then no command is midway through adding
content that it has not yet recorded.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

from moorage.errors import MoorageError
from moorage.oci.digest import Digest
from moorage.store import Store
from moorage.store.snapshots import dir_usage


@dataclass
class GCResult:
    blobs_removed: list[Digest] = field(default_factory=list)
    snapshots_removed: list[str] = field(default_factory=list)
    layers_forgotten: int = 0
    bytes_freed: int = 0


def _child_digests(doc: object) -> tuple[list[str], list[str]]:
    """(blobs, manifests) that a manifest or index document points at."""
    blobs: list[str] = []
    manifests: list[str] = []
    if not isinstance(doc, dict):
        return blobs, manifests
    for key in ("config", "subject"):
        ref = doc.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
            blobs.append(ref["digest"])
    for ref in doc.get("layers") or []:
        if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
            blobs.append(ref["digest"])
    for ref in doc.get("manifests") or []:
        if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
            manifests.append(ref["digest"])
    return blobs, manifests


def referenced_blobs(store: Store, *, skip_layers: frozenset[str] = frozenset()) -> set[str]:
    """Hex digests of every blob an image needs: manifest, config, layers (and, for an
    index, everything its manifests need). Layers whose diff id is in ``skip_layers`` are
    treated as already forgotten."""
    conn = store.db.conn
    keep: set[str] = set()
    todo: list[str] = []
    for r in conn.execute("SELECT id, manifest_digest FROM images"):
        keep.add(Digest.parse(r["id"]).hex)
        todo.append(r["manifest_digest"])
    for r in conn.execute("SELECT diff_id, blob_digest FROM layers"):
        if r["diff_id"] not in skip_layers:
            keep.add(Digest.parse(r["blob_digest"]).hex)
    # compressed blobs made for pushing a layer live as long as the layer
    for r in conn.execute(
        "SELECT b.diff_id, b.blob_digest FROM layer_blobs b JOIN layers l USING (diff_id)"
    ):
        if r["diff_id"] not in skip_layers:
            keep.add(Digest.parse(r["blob_digest"]).hex)
    walked: set[str] = set()
    while todo:
        d = Digest.parse(todo.pop())
        if d.hex in walked:
            continue
        walked.add(d.hex)
        keep.add(d.hex)
        try:
            doc = json.loads(store.content.read(d))
        except (MoorageError, ValueError):
            continue
        blobs, manifests = _child_digests(doc)
        for b in blobs:
            keep.add(Digest.parse(b).hex)
        todo.extend(manifests)
    return keep


def collect(store: Store, *, dry_run: bool = False) -> GCResult:
    """Forget unused layers and delete every blob and snapshot nothing references."""
    result = GCResult()
    conn = store.db.conn
    with store.db.transaction():
        unused = frozenset(
            r["diff_id"] for r in conn.execute("SELECT diff_id FROM layer_refs WHERE refcount = 0")
        )
        if not dry_run:
            conn.executemany("DELETE FROM layers WHERE diff_id = ?", [(d,) for d in unused])
            conn.executemany("DELETE FROM layer_blobs WHERE diff_id = ?", [(d,) for d in unused])
    result.layers_forgotten = len(unused)
    live_names = {
        Digest.parse(r["diff_id"]).hex
        for r in conn.execute("SELECT diff_id FROM layers")
        if r["diff_id"] not in unused
    }
    live_names.update(str(r["id"]) for r in conn.execute("SELECT id FROM containers"))
    keep = referenced_blobs(store, skip_layers=unused)

    for digest in list(store.content.list()):
        if digest.hex in keep:
            continue
        try:
            result.bytes_freed += store.content.path_of(digest).stat().st_size
        except FileNotFoundError:
            continue
        if not dry_run:
            store.content.delete(digest)
        result.blobs_removed.append(digest)

    # a container's own files, left by a create that died before its row was written
    userdata = store.root / "containers"
    if userdata.is_dir():
        containers = {str(r["id"]) for r in conn.execute("SELECT id FROM containers")}
        for name in os.listdir(userdata):
            if name not in containers:
                if not dry_run:
                    shutil.rmtree(userdata / name, ignore_errors=True)
                result.snapshots_removed.append(f"containers/{name}")

    for name in list(store.snapshots.names()):
        if name in live_names:
            continue
        path = store.snapshots.dir / name
        result.bytes_freed += dir_usage(path)
        if not dry_run:
            try:
                store.snapshots.remove(Digest.sha256(name))
            except MoorageError:  # not a digest-named dir: something left by hand
                shutil.rmtree(path, ignore_errors=True)
        result.snapshots_removed.append(name)
    return result
