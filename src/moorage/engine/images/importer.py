"""``moor import``: a root filesystem tarball becomes a one-layer image."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from moorage.engine.events import record_event
from moorage.engine.images.layers import layer_from_stream, manifest_for, record_image
from moorage.errors import InvalidReference
from moorage.oci import mediatypes as mt
from moorage.oci.config import ImageConfig, apply_changes
from moorage.oci.digest import Digest
from moorage.oci.platform import host_platform
from moorage.oci.reference import parse_reference
from moorage.store import Store
from moorage.units import rfc3339


def import_rootfs(
    store: Store,
    stream: BinaryIO,
    *,
    reference: str | None = None,
    changes: Sequence[str] = (),
    message: str = "",
    source: str = "-",
) -> Digest:
    """Store the tarball as a layer and record an image for it; returns the image id."""
    tag: str | None = None
    if reference:
        ref = parse_reference(reference)
        if ref.digest is not None:
            raise InvalidReference(f"cannot import to a digest reference: {reference}")
        tag = str(ref.with_default_tag())
    base = ImageConfig.from_json(b'{"rootfs":{"type":"layers","diff_ids":[]}}')
    config_part = apply_changes(base, list(changes)).to_json().get("config") or {}
    with store.adding():
        layer = layer_from_stream(store, stream)
        created = rfc3339(time.time())
        platform = host_platform()
        doc: dict[str, Any] = {
            "architecture": platform.architecture,
            **({"variant": platform.variant} if platform.variant else {}),
            "os": platform.os,
            "created": created,
            "config": config_part,
            "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id)]},
            "history": [
                {
                    "created": created,
                    "created_by": "",
                    "comment": message or f"Imported from {source}",
                }
            ],
        }
        raw = json.dumps(doc, separators=(",", ":")).encode()
        config_digest = store.content.put(raw)
        record_image(
            store,
            manifest=manifest_for(config_digest, len(raw), [layer]),
            manifest_media_type=mt.OCI_MANIFEST,
            config_digest=config_digest,
            created=created,
            os_name=platform.os,
            architecture=platform.architecture,
            layers=[layer],
            tags=[tag] if tag else [],
        )
    if tag:  # as Docker: the tag, then the import named by the image id
        record_event(store, "image", "tag", str(config_digest), {"name": _familiar(tag)})
    record_event(store, "image", "import", str(config_digest), {"name": str(config_digest)})
    return config_digest


def _familiar(tag: str | None) -> str:
    from moorage.engine.images.service import familiar

    return familiar(tag) if tag else ""
