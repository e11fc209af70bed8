"""A step's layer made in place: the step writes its changes straight into a snapshot being
built (an overlay upper dir), which becomes the layer's snapshot as it is; only the layer
blob is written as a tar. No copy into a scratch dir, no unpacking, no tree to delete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moorage.engine.images.layers import LayerInfo, _record_layer
from moorage.oci import mediatypes as mt
from moorage.oci.digest import Digest
from moorage.store import Store
from moorage.store.layerwriter import write_layer
from moorage.store.snapshots import dir_usage

# overlay's own bookkeeping on an upper dir; only "opaque" has a meaning in a layer
_OVERLAY_PRIVATE = (
    "trusted.overlay.origin", "trusted.overlay.impure", "trusted.overlay.nlink",
    "trusted.overlay.upper", "trusted.overlay.redirect", "trusted.overlay.metacopy",
)  # fmt: skip


class _NoChanges(Exception):
    pass


@dataclass(frozen=True)
class _Made:
    diff_id: Digest
    tar_size: int
    content_size: int


def _strip_overlay_xattrs(top: Path) -> None:
    for dirpath, dirs, files in os.walk(top):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + files)]:
            try:
                keys = os.listxattr(name, follow_symlinks=False)
            except OSError:
                continue
            for k in keys:
                if k in _OVERLAY_PRIVATE:
                    with contextlib.suppress(OSError):
                        os.removexattr(name, k, follow_symlinks=False)


def layer_in_place(
    store: Store, fill: Callable[[Path], None], *, clamp_mtime: int | None
) -> LayerInfo | None:
    """``fill(diff)`` puts the step's changes (overlay form) into ``diff``; returns the
    recorded layer, or None if there were no changes."""

    def make(diff: Path) -> _Made:
        fill(diff)
        if not os.listdir(diff):
            raise _NoChanges
        _strip_overlay_xattrs(diff)
        with store.content.writer(hashing=True) as w:
            write_layer(diff, w, clamp_mtime=clamp_mtime)  # type: ignore[arg-type]
            digest = w.commit()
            size = w.size
        return _Made(digest, size, dir_usage(diff))

    try:
        diff_id, made = store.snapshots.create(None, make)
    except _NoChanges:
        return None
    info = LayerInfo(diff_id, diff_id, mt.OCI_LAYER, made.tar_size, made.content_size)
    _record_layer(store, info, made.tar_size)
    return info
