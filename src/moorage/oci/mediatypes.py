"""Media types of the OCI image spec and of Docker's image manifest v2 schema 2.

Only constants and pure predicates live here; nothing reads content.
"""

from __future__ import annotations

from typing import Final, Literal

from moorage.errors import InvalidArgument

# --- OCI image spec ---------------------------------------------------------------------------

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYOUT_HEADER: Final = "application/vnd.oci.layout.header.v1+json"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"

OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP: Final = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)
OCI_LAYER_NONDISTRIBUTABLE_ZSTD: Final = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

# --- Docker image manifest v2, schema 2 -------------------------------------------------------

DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG: Final = "application/vnd.docker.plugin.v1+json"

# Schema 1 (removed from Docker): recognised only so it can be refused with a clear message.
DOCKER_MANIFEST_V1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"

Compression = Literal["none", "gzip", "zstd"]

MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1_TYPES: Final = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})

_LAYER_COMPRESSION: Final[dict[str, Compression]] = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDISTRIBUTABLE: "none",
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER: "none",
    DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}

LAYER_TYPES: Final = frozenset(_LAYER_COMPRESSION)
NON_DISTRIBUTABLE_TYPES: Final = frozenset(
    {
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        DOCKER_FOREIGN_LAYER,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)
DOCKER_TYPES: Final = frozenset(
    {
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_CONFIG,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)


def _base(mt: str) -> str:
    """``mt`` without parameters (``; charset=utf-8``) and surrounding blanks."""
    return mt.split(";", 1)[0].strip()


def is_manifest(mt: str) -> bool:
    """An image manifest (OCI or Docker schema 2), not an index."""
    return _base(mt) in MANIFEST_TYPES


def is_index(mt: str) -> bool:
    """An image index or a Docker manifest list."""
    return _base(mt) in INDEX_TYPES


def is_config(mt: str) -> bool:
    """An image config blob (OCI or Docker)."""
    return _base(mt) in CONFIG_TYPES


def is_schema1(mt: str) -> bool:
    """A Docker schema 1 manifest, which moorage refuses."""
    return _base(mt) in SCHEMA1_TYPES


def is_layer(mt: str) -> bool:
    """A filesystem layer (a tar stream, possibly compressed), distributable or not."""
    return _base(mt) in LAYER_TYPES


def is_non_distributable(mt: str) -> bool:
    """A layer that registries do not serve (OCI non-distributable or Docker foreign)."""
    return _base(mt) in NON_DISTRIBUTABLE_TYPES


def is_docker(mt: str) -> bool:
    """A Docker (not OCI) media type."""
    return _base(mt) in DOCKER_TYPES


def layer_compression(mt: str) -> Compression:
    """How a layer of media type ``mt`` is compressed; InvalidArgument for a non-layer type."""
    try:
        return _LAYER_COMPRESSION[_base(mt)]
    except KeyError:
        raise InvalidArgument(f"unsupported layer media type {mt!r}") from None
