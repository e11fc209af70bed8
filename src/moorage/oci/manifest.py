"""Image manifests and image indexes, OCI and Docker schema 2 (a manifest list is an index).

Raw bytes: a model parsed by :func:`parse_manifest` keeps the exact bytes it came from in its
``raw`` field (excluded from equality and repr). ``content`` returns ``raw`` when present and
the canonical serialisation (:meth:`to_bytes`) otherwise, and ``digest``/``size`` are computed
on ``content`` — so a pulled manifest keeps the digest the registry gave it, never that of a
re-serialisation. ``dataclasses.replace`` copies ``raw``: use :meth:`evolve`, which drops it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from moorage.errors import InvalidArgument, Unsupported
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import (
    ContentAddressed,
    Descriptor,
    FrozenMap,
    get_str,
    get_str_map,
    is_media_type,
    load_json_object,
)
from moorage.oci.platform import Platform

__all__ = ["ImageIndex", "ImageManifest", "parse_manifest"]

# Content types that say nothing about the kind of manifest (sloppy registries, files on disk).
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})

_SCHEMA1_MESSAGE = (
    "unsupported manifest: Docker Image manifest version 2, schema 1 ({mt}) is not supported; "
    "the image must be pushed again as Docker schema 2 or OCI"
)


def _empty_annotations() -> FrozenMap[str]:
    return FrozenMap()


def _freeze_annotations(obj: Any) -> None:
    if not isinstance(obj.annotations, FrozenMap):
        object.__setattr__(obj, "annotations", FrozenMap(obj.annotations))


@dataclass(frozen=True, slots=True)
class ImageManifest(ContentAddressed):
    """An image manifest (``application/vnd.oci.image.manifest.v1+json`` or Docker schema 2).

    ``media_type`` mirrors the JSON ``mediaType`` field: None when the document omits it
    (allowed for OCI); :attr:`effective_media_type` resolves that to the OCI type.
    """

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str | None = mt.OCI_MANIFEST
    schema_version: int = 2
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=_empty_annotations)
    artifact_type: str | None = None
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple):
            object.__setattr__(self, "layers", tuple(self.layers))
        _freeze_annotations(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], raw: bytes | None = None) -> ImageManifest:
        """Strictly build a manifest from decoded JSON (see :func:`parse_manifest`)."""
        _check_schema_version(obj, "manifest")
        media_type = _declared_media_type(obj, "manifest")
        if "manifests" in obj:
            raise InvalidArgument(
                "invalid manifest: an image manifest must not have a 'manifests' field"
            )
        if "config" not in obj or obj["config"] is None:
            raise InvalidArgument("invalid manifest.config: required field is missing")
        config = Descriptor.from_json(obj["config"], "manifest.config")
        layers_obj = obj.get("layers")
        if not isinstance(layers_obj, list):
            raise InvalidArgument("invalid manifest.layers: required, must be an array")
        layers = tuple(
            Descriptor.from_json(item, f"manifest.layers[{i}]") for i, item in enumerate(layers_obj)
        )
        return cls(
            config=config,
            layers=layers,
            media_type=media_type,
            schema_version=2,
            subject=_subject(obj, "manifest"),
            annotations=get_str_map(obj, "annotations", "manifest") or FrozenMap(),
            artifact_type=_artifact_type(obj, "manifest"),
            raw=raw,
        )

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> ImageManifest:
        """Like :func:`parse_manifest` but InvalidArgument unless it is an image manifest."""
        parsed = parse_manifest(data, media_type)
        if not isinstance(parsed, ImageManifest):
            raise InvalidArgument("invalid manifest: expected an image manifest, got an index")
        return parsed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def effective_media_type(self) -> str:
        return self.media_type or mt.OCI_MANIFEST

    def descriptor(
        self,
        platform: Platform | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """A descriptor pointing at this manifest's :attr:`content`."""
        return Descriptor(
            media_type=self.effective_media_type,
            digest=self.digest,
            size=self.size,
            annotations=FrozenMap(annotations or {}),
            platform=platform,
            artifact_type=self.artifact_type,
        )

    def evolve(self, **changes: Any) -> ImageManifest:
        """``dataclasses.replace`` that drops ``raw`` (the bytes no longer match)."""
        return dataclasses.replace(self, raw=None, **changes)


@dataclass(frozen=True, slots=True)
class ImageIndex(ContentAddressed):
    """An image index (``application/vnd.oci.image.index.v1+json``) or Docker manifest list."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str | None = mt.OCI_INDEX
    schema_version: int = 2
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=_empty_annotations)
    artifact_type: str | None = None
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.manifests, tuple):
            object.__setattr__(self, "manifests", tuple(self.manifests))
        _freeze_annotations(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], raw: bytes | None = None) -> ImageIndex:
        """Strictly build an index from decoded JSON (see :func:`parse_manifest`)."""
        _check_schema_version(obj, "index")
        media_type = _declared_media_type(obj, "index")
        for key in ("config", "layers"):
            if key in obj:
                raise InvalidArgument(
                    f"invalid index: an image index must not have a {key!r} field"
                )
        items = obj.get("manifests")
        if not isinstance(items, list):
            raise InvalidArgument("invalid index.manifests: required, must be an array")
        manifests = tuple(
            Descriptor.from_json(item, f"index.manifests[{i}]") for i, item in enumerate(items)
        )
        return cls(
            manifests=manifests,
            media_type=media_type,
            schema_version=2,
            subject=_subject(obj, "index"),
            annotations=get_str_map(obj, "annotations", "index") or FrozenMap(),
            artifact_type=_artifact_type(obj, "index"),
            raw=raw,
        )

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> ImageIndex:
        """Like :func:`parse_manifest` but InvalidArgument unless it is an index."""
        parsed = parse_manifest(data, media_type)
        if not isinstance(parsed, ImageIndex):
            raise InvalidArgument("invalid index: expected an image index, got an image manifest")
        return parsed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def effective_media_type(self) -> str:
        return self.media_type or mt.OCI_INDEX

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        """A descriptor pointing at this index's :attr:`content`."""
        return Descriptor(
            media_type=self.effective_media_type,
            digest=self.digest,
            size=self.size,
            annotations=FrozenMap(annotations or {}),
            artifact_type=self.artifact_type,
        )

    def evolve(self, **changes: Any) -> ImageIndex:
        """``dataclasses.replace`` that drops ``raw`` (the bytes no longer match)."""
        return dataclasses.replace(self, raw=None, **changes)


# --- parsing ----------------------------------------------------------------------------------


def _check_schema_version(obj: Mapping[str, Any], what: str) -> None:
    if "schemaVersion" not in obj:
        raise InvalidArgument(f"invalid {what}.schemaVersion: required field is missing")
    version = obj["schemaVersion"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidArgument(f"invalid {what}.schemaVersion: must be the integer 2")
    if version == 1:
        raise Unsupported(_SCHEMA1_MESSAGE.format(mt="schemaVersion 1"))
    if version != 2:
        raise InvalidArgument(f"invalid {what}.schemaVersion: unsupported version {version}")


def _declared_media_type(obj: Mapping[str, Any], what: str) -> str | None:
    declared = get_str(obj, "mediaType", what)
    if declared is not None and not is_media_type(declared):
        raise InvalidArgument(f"invalid {what}.mediaType: {declared!r} is not a media type")
    return declared


def _subject(obj: Mapping[str, Any], what: str) -> Descriptor | None:
    if obj.get("subject") is None:
        return None
    return Descriptor.from_json(obj["subject"], f"{what}.subject")


def _artifact_type(obj: Mapping[str, Any], what: str) -> str | None:
    value = get_str(obj, "artifactType", what)
    if value is not None and not is_media_type(value):
        raise InvalidArgument(f"invalid {what}.artifactType: {value!r} is not a media type")
    return value


def _a(kind: str | None) -> str:
    return "an index" if kind == "index" else "a manifest"


def _kind_of(media_type: str) -> str | None:
    if mt.is_manifest(media_type):
        return "manifest"
    if mt.is_index(media_type):
        return "index"
    return None


def parse_manifest(data: bytes, media_type: str | None = None) -> ImageManifest | ImageIndex:
    """Parse a manifest or index, keeping ``data`` as the model's ``raw`` bytes.

    ``media_type`` is the type the content was served or stored as (a Content-Type or a
    descriptor's mediaType); generic types such as ``application/json`` are ignored. The kind
    comes from the ``mediaType`` field when present, else from the content (``manifests`` ->
    index, ``config`` + ``layers`` -> manifest). Docker schema 1 raises Unsupported; a
    declared type that disagrees with ``media_type`` or with the content, a schemaVersion other
    than 2 and malformed JSON raise InvalidArgument naming the field.
    """
    hint = media_type.split(";", 1)[0].strip() if media_type is not None else None
    if hint is not None and mt.is_schema1(hint):
        raise Unsupported(_SCHEMA1_MESSAGE.format(mt=hint))
    if hint is not None and hint not in _GENERIC_TYPES and _kind_of(hint) is None:
        raise InvalidArgument(f"invalid manifest: unsupported manifest media type {hint!r}")
    if isinstance(data, str):
        raise TypeError("parse_manifest() needs the raw bytes, not a str")
    raw = bytes(data)
    obj = load_json_object(raw, "manifest")

    declared = obj.get("mediaType")
    if isinstance(declared, str) and mt.is_schema1(declared):
        raise Unsupported(_SCHEMA1_MESSAGE.format(mt=declared))
    if obj.get("schemaVersion") == 1 and not isinstance(obj.get("schemaVersion"), bool):
        raise Unsupported(_SCHEMA1_MESSAGE.format(mt="schemaVersion 1"))
    if declared is not None and not isinstance(declared, str):
        raise InvalidArgument("invalid manifest.mediaType: must be a string")

    has_index_shape = "manifests" in obj
    has_manifest_shape = "config" in obj or "layers" in obj
    if has_index_shape and has_manifest_shape:
        raise InvalidArgument(
            "invalid manifest: ambiguous content, has both 'manifests' and 'config'/'layers'"
        )
    content_kind = "index" if has_index_shape else "manifest" if has_manifest_shape else None

    kind: str | None
    if declared is not None:
        kind = _kind_of(declared)
        if kind is None:
            raise InvalidArgument(
                f"invalid manifest.mediaType: {declared!r} is not an image manifest or index type"
            )
        if hint is not None and hint not in _GENERIC_TYPES and hint != declared:
            raise InvalidArgument(
                f"invalid manifest.mediaType: declared {declared!r} but the content was "
                f"served as {hint!r}"
            )
        if content_kind is not None and content_kind != kind:
            field_name = "manifests" if content_kind == "index" else "config/layers"
            raise InvalidArgument(
                f"invalid manifest.mediaType: declared {declared!r} ({_a(kind)}) but the content "
                f"has {field_name!r} fields of {_a(content_kind)}"
            )
    elif hint is not None and hint not in _GENERIC_TYPES:
        kind = _kind_of(hint)
        if content_kind is not None and content_kind != kind:
            raise InvalidArgument(
                f"invalid manifest: served as {hint!r} ({_a(kind)}) but the content is "
                f"{_a(content_kind)}"
            )
    else:
        kind = content_kind
    if kind is None:
        raise InvalidArgument(
            "invalid manifest: cannot tell manifest from index: no mediaType field, no "
            "'manifests' field and no 'config'/'layers' fields"
        )
    if kind == "index":
        return ImageIndex.from_json(obj, raw)
    return ImageManifest.from_json(obj, raw)
