"""Turning layer blobs into snapshots, and recording images with their layers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from moorage.engine.images.service import set_tag
from moorage.errors import DigestMismatch, InvalidArgument
from moorage.oci import mediatypes as mt
from moorage.oci.digest import Digest
from moorage.store import Store
from moorage.store.content import BlobWriter
from moorage.store.snapshots import dir_usage
from moorage.store.unpack import unpack_layer

_DEFAULT_MAX_LAYER = 64 * 2**30


def max_layer_size() -> int:
    """The decompression-bomb ceiling: ``MOORAGE_MAX_LAYER_SIZE`` bytes (default 64 GiB)."""
    raw = os.environ.get("MOORAGE_MAX_LAYER_SIZE")
    if not raw:
        return _DEFAULT_MAX_LAYER
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"MOORAGE_MAX_LAYER_SIZE={raw!r} is not a number of bytes") from None
    if value <= 0:
        raise InvalidArgument("MOORAGE_MAX_LAYER_SIZE must be positive")
    return value


def sniff_layer_media_type(head: bytes) -> str:
    """The OCI layer media type for a blob starting with ``head``."""
    if head.startswith(b"\x1f\x8b"):
        return mt.OCI_LAYER_GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return mt.OCI_LAYER_ZSTD
    return mt.OCI_LAYER


@dataclass(frozen=True)
class LayerInfo:
    diff_id: Digest
    blob_digest: Digest
    media_type: str
    blob_size: int
    content_size: int


class TeeReader:
    """Reads from ``src`` and writes every byte read into a blob writer."""

    def __init__(self, src: IO[bytes], sink: BlobWriter) -> None:
        self._src = src
        self._sink = sink
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if data:
            if len(self.head) < 8:
                self.head += data[: 8 - len(self.head)]
            self._sink.write(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def _record_layer(store: Store, info: LayerInfo, tar_size: int) -> None:
    with store.db.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO layers(diff_id, blob_digest, media_type, blob_size, tar_size,"
            " content_size, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                str(info.diff_id),
                str(info.blob_digest),
                info.media_type,
                info.blob_size,
                tar_size,
                info.content_size,
                time.time(),
            ),
        )


def known_layer(store: Store, diff_id: Digest) -> LayerInfo | None:
    row = store.db.conn.execute(
        "SELECT * FROM layers WHERE diff_id = ?", (str(diff_id),)
    ).fetchone()
    if row is None or not store.snapshots.exists(diff_id):
        return None
    return LayerInfo(
        diff_id=diff_id,
        blob_digest=Digest.parse(row["blob_digest"]),
        media_type=row["media_type"],
        blob_size=row["blob_size"],
        content_size=row["content_size"],
    )


def ensure_layer(store: Store, blob: Digest, expected_diff_id: Digest) -> LayerInfo:
    """Unpack the blob into the snapshot ``expected_diff_id`` unless it is already there."""
    have = known_layer(store, expected_diff_id)
    if have is not None:
        return have
    blob_size = store.content.size(blob)
    with store.content.open(blob) as f:
        media_type = sniff_layer_media_type(f.read(8))
        f.seek(0)
        if store.snapshots.exists(expected_diff_id):
            # complete on disk but never recorded (a command died in between): adopt it
            info = LayerInfo(
                expected_diff_id,
                blob,
                media_type,
                blob_size,
                dir_usage(store.snapshots.diff_dir(expected_diff_id)),
            )
            _record_layer(store, info, blob_size)
            return info
        limit = max_layer_size()
        _, result = store.snapshots.create(
            expected_diff_id,
            lambda d: unpack_layer(f, d, max_size=limit, expected_diff_id=expected_diff_id),
        )
    info = LayerInfo(expected_diff_id, blob, media_type, blob_size, result.content_size)
    _record_layer(store, info, result.size)
    return info


def layer_from_stream(
    store: Store, stream: IO[bytes], *, expected_blob: Digest | None = None
) -> LayerInfo:
    """Store ``stream`` as a blob and unpack it in the same single pass (import, load).

    The unpacker hashes every byte it reads through the tee, so the blob writer does not
    hash them a second time.
    """
    limit = max_layer_size()
    with store.content.writer(hashing=False) as writer:
        tee = TeeReader(stream, writer)
        diff_id, res = store.snapshots.create(
            None,
            lambda d: unpack_layer(tee, d, max_size=limit),  # type: ignore[arg-type]
        )
        if expected_blob is not None and expected_blob != res.compressed_digest:
            raise DigestMismatch(
                f"layer blob {expected_blob} does not match its content "
                f"(got {res.compressed_digest})"
            )
        blob = writer.commit(res.compressed_digest)
        info = LayerInfo(
            diff_id, blob, sniff_layer_media_type(tee.head), res.compressed_size, res.content_size
        )
    _record_layer(store, info, res.size)
    return info


def record_image(
    store: Store,
    *,
    manifest: bytes,
    manifest_media_type: str,
    config_digest: Digest,
    created: str | None,
    os_name: str,
    architecture: str,
    layers: Sequence[LayerInfo],
    tags: Sequence[str] = (),
    repo_digests: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """Insert the image (idempotent) and point ``tags`` at it, in one transaction.

    Returns ``(tag, previous image id)`` for each tag that pointed at another image.
    """
    manifest_digest = store.content.put(manifest)
    size = sum(layer.content_size for layer in {li.diff_id: li for li in layers}.values())
    moved: list[tuple[str, str]] = []
    now = time.time()
    with store.db.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO images(id, manifest_digest, manifest_media_type, created,"
            " added, size, os, architecture) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(config_digest),
                str(manifest_digest),
                manifest_media_type,
                created,
                now,
                size,
                os_name,
                architecture,
            ),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO image_layers(image_id, position, diff_id) VALUES (?, ?, ?)",
            [(str(config_digest), i, str(layer.diff_id)) for i, layer in enumerate(layers)],
        )
        for tag in tags:
            old = set_tag(conn, tag, config_digest, now)
            if old is not None:
                moved.append((tag, old))
        conn.executemany(
            "INSERT OR IGNORE INTO repo_digests(name, image_id) VALUES (?, ?)",
            [(d, str(config_digest)) for d in repo_digests],
        )
    return moved


def manifest_for(config: Digest, config_size: int, layers: Sequence[LayerInfo]) -> bytes:
    """The OCI image manifest for a config and its layers, as compact JSON."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(config), "size": config_size},
        "layers": [
            {"mediaType": li.media_type, "digest": str(li.blob_digest), "size": li.blob_size}
            for li in layers
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
