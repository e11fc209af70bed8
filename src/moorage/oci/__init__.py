"""Pure OCI and Docker data: digests, descriptors, media types, manifests, configs, references."""

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
