"""Content descriptors (``mediaType`` + ``digest`` + ``size``) and the small JSON helpers the
other ``oci`` modules share (an immutable, hashable mapping and strict field readers)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from moorage.errors import InvalidArgument, InvalidDigest
from moorage.oci.digest import Digest
from moorage.oci.platform import Platform

__all__ = ["Descriptor", "FrozenMap", "is_media_type"]

V = TypeVar("V")

# RFC 6838 type/subtype shape, as the OCI descriptor spec restricts it.
_MEDIA_TYPE_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z"
)


def is_media_type(value: object) -> bool:
    """Whether ``value`` is a string of RFC 6838 ``type/subtype`` shape (no parameters)."""
    return isinstance(value, str) and _MEDIA_TYPE_RE.match(value) is not None


class FrozenMap(Mapping[str, V]):
    """An immutable ``str``-keyed mapping that keeps insertion order and hashes by content.

    Equal to any mapping with the same items (including a plain ``dict``).
    """

    __slots__ = ("_data",)

    _data: dict[str, V]

    def __init__(self, items: Mapping[str, V] | Iterable[tuple[str, V]] = ()) -> None:
        object.__setattr__(self, "_data", dict(items))

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenMap is immutable")

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self) -> tuple[type[FrozenMap[V]], tuple[dict[str, V]]]:
        return (type(self), (self._data,))

    def to_dict(self) -> dict[str, V]:
        return dict(self._data)


def freeze_json(value: Any) -> Any:
    """Deep-freeze decoded JSON: objects become FrozenMap, arrays tuples (so it can be hashed)."""
    if isinstance(value, Mapping):
        return FrozenMap((str(k), freeze_json(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(freeze_json(v) for v in value)
    return value


def thaw_json(value: Any) -> Any:
    """The inverse of :func:`freeze_json`: plain dicts and lists, ready for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw_json(v) for v in value]
    return value


def compact_json(obj: Any) -> bytes:
    """Canonical compact JSON bytes (no spaces, key order as given, non-ASCII kept as UTF-8)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_json_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Decode a JSON document that must be an object; duplicate keys are rejected.

    Errors are InvalidArgument naming ``what`` (e.g. ``manifest``).
    """
    try:
        obj = json.loads(data, object_pairs_hook=_reject_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid {what}: malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {what}: must be a JSON object, got {type(obj).__name__}")
    return obj


def parse_digest(value: str) -> Digest:
    """``Digest.parse`` that also refuses anything around the digest (e.g. a final newline)."""
    digest = Digest.parse(value)
    if str(digest) != value:
        raise InvalidDigest(f"invalid digest {value!r}: expected sha256:<64 hex digits>")
    return digest


# --- strict field readers ---------------------------------------------------------------------


def _bad(where: str, key: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid {where}.{key}: {problem}" if where else f"invalid {key}: {problem}"
    )


def get_str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    """``obj[key]`` as a string; null/absent is None (or an error when ``required``)."""
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(where, key, "required field is missing")
        return None
    if not isinstance(value, str):
        raise _bad(where, key, f"must be a string, got {_json_type(value)}")
    return value


def get_str_list(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """``obj[key]`` as a list of strings; null/absent is None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(where, key, "must be a list of strings")
    return tuple(value)


def get_str_map(obj: Mapping[str, Any], key: str, where: str) -> FrozenMap[str] | None:
    """``obj[key]`` as an object of string values; null/absent is None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(where, key, "must be an object with string values")
    return FrozenMap(value)


def get_int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(where, key, f"must be an integer, got {_json_type(value)}")
    return value


def get_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _bad(where, key, f"must be a boolean, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- Descriptor -------------------------------------------------------------------------------


def _empty_annotations() -> FrozenMap[str]:
    return FrozenMap()


class ContentAddressed:
    """Mixin for documents named by the digest of their bytes (manifests, indexes, configs).

    ``raw`` keeps the bytes a document was parsed from: its digest is always computed on
    those, never on a re-serialisation. Without them, the canonical compact JSON is used.
    """

    __slots__ = ()
    raw: bytes | None

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Canonical compact JSON (not necessarily the bytes this was parsed from)."""
        return compact_json(self.to_json())

    @property
    def content(self) -> bytes:
        """The original bytes when parsed, else the canonical serialisation."""
        return self.raw if self.raw is not None else self.to_bytes()

    @property
    def digest(self) -> Digest:
        return Digest.of(self.content)

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor. Immutable and hashable (annotations are a FrozenMap)."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=_empty_annotations)
    platform: Platform | None = None
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        if not is_media_type(self.media_type):
            raise InvalidArgument(f"invalid descriptor.mediaType: {self.media_type!r}")
        if not isinstance(self.digest, Digest):
            raise InvalidArgument("invalid descriptor.digest: must be a Digest")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InvalidArgument(f"invalid descriptor.size: {self.size!r}")
        if self.artifact_type is not None and not is_media_type(self.artifact_type):
            raise InvalidArgument(f"invalid descriptor.artifactType: {self.artifact_type!r}")
        if not isinstance(self.urls, tuple):
            object.__setattr__(self, "urls", tuple(self.urls))
        if not isinstance(self.annotations, FrozenMap):
            object.__setattr__(self, "annotations", FrozenMap(self.annotations))

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        """Strictly parse a descriptor object; errors name ``where`` and the bad field."""
        if not isinstance(obj, Mapping):
            raise InvalidArgument(f"invalid {where}: must be a JSON object")
        media_type = get_str(obj, "mediaType", where, required=True)
        if not is_media_type(media_type):
            raise _bad(where, "mediaType", f"{media_type!r} is not a type/subtype media type")
        raw_digest = get_str(obj, "digest", where, required=True)
        try:
            digest = parse_digest(raw_digest or "")
        except InvalidDigest as e:
            raise _bad(where, "digest", str(e)) from None
        if "size" not in obj:
            raise _bad(where, "size", "required field is missing")
        size = obj["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(where, "size", f"must be a non-negative integer, got {size!r}")
        urls = get_str_list(obj, "urls", where) or ()
        annotations = get_str_map(obj, "annotations", where) or FrozenMap()
        platform = None
        if obj.get("platform") is not None:
            platform = Platform.from_json(obj["platform"], f"{where}.platform")
        artifact_type = get_str(obj, "artifactType", where)
        if artifact_type is not None and not is_media_type(artifact_type):
            raise _bad(where, "artifactType", f"{artifact_type!r} is not a type/subtype media type")
        return cls(
            media_type=media_type or "",
            digest=digest,
            size=size,
            urls=urls,
            annotations=annotations,
            platform=platform,
            artifact_type=artifact_type,
        )

    def to_json(self) -> dict[str, Any]:
        """OCI JSON with the empty optional fields omitted."""
        out: dict[str, Any] = {"mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["digest"] = str(self.digest)
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out
