"""Pure OCI and Docker data: digests, descriptors, media types, manifests, configs, references.

The names below are re-exported lazily (PEP 562): importing ``moorage.oci.reference`` for a
``moor images`` must not pay for building the manifest and config models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moorage.oci.config import (
        ContainerConfig,
        HealthConfig,
        HistoryEntry,
        ImageConfig,
        RootFS,
        apply_changes,
    )
    from moorage.oci.descriptor import Descriptor, FrozenMap
    from moorage.oci.digest import Digest
    from moorage.oci.manifest import ImageIndex, ImageManifest, parse_manifest
    from moorage.oci.platform import Platform, host_platform, matches, normalize, select_manifest
    from moorage.oci.reference import Reference, looks_like_id, parse_reference

_WHERE = {
    "ContainerConfig": "config",
    "HealthConfig": "config",
    "HistoryEntry": "config",
    "ImageConfig": "config",
    "RootFS": "config",
    "apply_changes": "config",
    "Descriptor": "descriptor",
    "FrozenMap": "descriptor",
    "Digest": "digest",
    "ImageIndex": "manifest",
    "ImageManifest": "manifest",
    "parse_manifest": "manifest",
    "Platform": "platform",
    "host_platform": "platform",
    "matches": "platform",
    "normalize": "platform",
    "select_manifest": "platform",
    "Reference": "reference",
    "looks_like_id": "reference",
    "parse_reference": "reference",
}

__all__ = [
    "ContainerConfig",
    "Descriptor",
    "Digest",
    "FrozenMap",
    "HealthConfig",
    "HistoryEntry",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "Platform",
    "Reference",
    "RootFS",
    "apply_changes",
    "host_platform",
    "looks_like_id",
    "matches",
    "normalize",
    "parse_manifest",
    "parse_reference",
    "select_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"moorage.oci.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'moorage.oci' has no attribute {name!r}")
