"""Media types, descriptors, manifests and indexes (OCI and Docker schema 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.errors import InvalidArgument, Unsupported
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor, FrozenMap
from moorage.oci.digest import Digest
from moorage.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from moorage.oci.platform import Platform, select_manifest


def dg(name: str) -> str:
    return str(Digest.of(name.encode()))


# --- media types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "manifest", "index", "layer", "compression"),
    [
        (mt.OCI_MANIFEST, True, False, False, None),
        (mt.DOCKER_MANIFEST, True, False, False, None),
        (mt.OCI_INDEX, False, True, False, None),
        (mt.DOCKER_MANIFEST_LIST, False, True, False, None),
        (mt.OCI_CONFIG, False, False, False, None),
        (mt.DOCKER_CONFIG, False, False, False, None),
        (mt.OCI_EMPTY, False, False, False, None),
        (mt.OCI_LAYER, False, False, True, "none"),
        (mt.OCI_LAYER_GZIP, False, False, True, "gzip"),
        (mt.OCI_LAYER_ZSTD, False, False, True, "zstd"),
        (mt.OCI_LAYER_NONDISTRIBUTABLE, False, False, True, "none"),
        (mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP, False, False, True, "gzip"),
        (mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD, False, False, True, "zstd"),
        (mt.DOCKER_LAYER_GZIP, False, False, True, "gzip"),
        (mt.DOCKER_LAYER, False, False, True, "none"),
        (mt.DOCKER_FOREIGN_LAYER_GZIP, False, False, True, "gzip"),
        (f"{mt.DOCKER_MANIFEST}; charset=utf-8", True, False, False, None),
        ("application/vnd.in-toto+json", False, False, False, None),
        ("application/json", False, False, False, None),
        (mt.DOCKER_MANIFEST_V1_SIGNED, False, False, False, None),
    ],
)
def test_media_type_predicates(
    media_type: str, manifest: bool, index: bool, layer: bool, compression: str | None
) -> None:
    assert mt.is_manifest(media_type) is manifest
    assert mt.is_index(media_type) is index
    assert mt.is_layer(media_type) is layer
    if compression is None:
        with pytest.raises(InvalidArgument):
            mt.layer_compression(media_type)
    else:
        assert mt.layer_compression(media_type) == compression


def test_media_type_constants() -> None:
    assert mt.OCI_EMPTY == "application/vnd.oci.empty.v1+json"
    assert mt.DOCKER_LAYER_GZIP == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert mt.is_non_distributable(mt.DOCKER_FOREIGN_LAYER_GZIP)
    assert mt.is_non_distributable(mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD)
    assert not mt.is_non_distributable(mt.OCI_LAYER_GZIP)
    assert mt.is_schema1(mt.DOCKER_MANIFEST_V1)
    assert mt.is_config(mt.DOCKER_CONFIG) and mt.is_config(mt.OCI_CONFIG)
    assert mt.is_docker(mt.DOCKER_MANIFEST_LIST) and not mt.is_docker(mt.OCI_INDEX)


# --- descriptors ------------------------------------------------------------------------------


def test_descriptor_json_round_trip_full() -> None:
    obj = {
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom+json",
        "digest": dg("m"),
        "size": 1234,
        "urls": ["https://mirror.example.com/blob"],
        "annotations": {"org.opencontainers.image.ref.name": "1.0"},
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    d = Descriptor.from_json(obj)
    assert d.size == 1234
    assert d.digest == Digest.parse(dg("m"))
    assert d.platform == Platform("linux", "arm64", "v8")
    assert d.annotations == {"org.opencontainers.image.ref.name": "1.0"}
    assert d.to_json() == obj
    assert Descriptor.from_json(d.to_json()) == d


def test_descriptor_omits_empty_optionals() -> None:
    d = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"x"), 1)
    assert d.to_json() == {
        "mediaType": mt.OCI_LAYER_GZIP,
        "digest": str(Digest.of(b"x")),
        "size": 1,
    }
    assert Descriptor.from_json({**d.to_json(), "urls": [], "annotations": {}}) == d


def test_descriptor_hashable_and_immutable() -> None:
    a = Descriptor(mt.OCI_CONFIG, Digest.of(b"c"), 2, annotations={"k": "v"})
    b = Descriptor(mt.OCI_CONFIG, Digest.of(b"c"), 2, annotations=FrozenMap({"k": "v"}))
    assert a == b and hash(a) == hash(b)
    assert isinstance(a.annotations, FrozenMap)
    with pytest.raises(TypeError):
        a.annotations["k"] = "w"  # type: ignore[index]


def test_descriptor_ignores_unknown_fields() -> None:
    d = Descriptor.from_json(
        {"mediaType": mt.OCI_EMPTY, "digest": dg("e"), "size": 2, "data": "e30="}
    )
    assert d.media_type == mt.OCI_EMPTY


_GOOD = {"mediaType": mt.OCI_LAYER_GZIP, "digest": dg("l"), "size": 10}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"mediaType": None}, "descriptor.mediaType"),
        ({"mediaType": 5}, "descriptor.mediaType"),
        ({"mediaType": "notamediatype"}, "descriptor.mediaType"),
        ({"mediaType": "application/x y"}, "descriptor.mediaType"),
        ({"mediaType": "/json"}, "descriptor.mediaType"),
        ({"mediaType": mt.OCI_LAYER + "; x=y"}, "descriptor.mediaType"),
        ({"digest": None}, "descriptor.digest"),
        ({"digest": "sha256:abc"}, "descriptor.digest"),
        ({"digest": dg("l").upper()}, "descriptor.digest"),
        ({"digest": dg("l") + "\n"}, "descriptor.digest"),
        ({"digest": "md5:" + "0" * 32}, "descriptor.digest"),
        ({"size": -1}, "descriptor.size"),
        ({"size": 1.5}, "descriptor.size"),
        ({"size": "10"}, "descriptor.size"),
        ({"size": True}, "descriptor.size"),
        ({"size": None}, "descriptor.size"),
        ({"urls": "http://x"}, "descriptor.urls"),
        ({"urls": [1]}, "descriptor.urls"),
        ({"annotations": {"a": 1}}, "descriptor.annotations"),
        ({"annotations": ["a"]}, "descriptor.annotations"),
        ({"platform": "linux/amd64"}, "descriptor.platform"),
        ({"platform": {"os": "linux"}}, "descriptor.platform.architecture"),
        ({"artifactType": "nope"}, "descriptor.artifactType"),
    ],
)
def test_descriptor_invalid(patch: dict[str, Any], field: str) -> None:
    obj = {**_GOOD, **patch}
    with pytest.raises(InvalidArgument) as exc:
        Descriptor.from_json(obj)
    assert f"invalid {field}:" in str(exc.value)


def test_descriptor_missing_size_named() -> None:
    obj = {k: v for k, v in _GOOD.items() if k != "size"}
    with pytest.raises(InvalidArgument, match=r"descriptor\.size"):
        Descriptor.from_json(obj)


def test_descriptor_not_an_object() -> None:
    with pytest.raises(InvalidArgument, match="invalid descriptor"):
        Descriptor.from_json(["x"])


def test_descriptor_direct_construction_validated() -> None:
    with pytest.raises(InvalidArgument):
        Descriptor("bad", Digest.of(b""), 0)
    with pytest.raises(InvalidArgument):
        Descriptor(mt.OCI_LAYER, Digest.of(b""), -1)


# --- real-shaped documents --------------------------------------------------------------------

DOCKER_MANIFEST_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG, "size": 1457, "digest": dg("config")},
    "layers": [
        {"mediaType": mt.DOCKER_LAYER_GZIP, "size": 2814446, "digest": dg("layer1")},
        {"mediaType": mt.DOCKER_LAYER_GZIP, "size": 3201, "digest": dg("layer2")},
        {
            "mediaType": mt.DOCKER_FOREIGN_LAYER_GZIP,
            "size": 1234,
            "digest": dg("foreign"),
            "urls": ["https://mcr.microsoft.com/layer"],
        },
    ],
}

OCI_MANIFEST_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "digest": dg("ociconfig"), "size": 581},
    "layers": [
        {"mediaType": mt.OCI_LAYER_GZIP, "digest": dg("a"), "size": 3623807},
        {"mediaType": mt.OCI_LAYER_ZSTD, "digest": dg("b"), "size": 100},
    ],
    "annotations": {
        "org.opencontainers.image.created": "2024-05-01T00:00:00Z",
        "org.opencontainers.image.source": "https://github.com/example/app",
    },
}

ARTIFACT_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "artifactType": "application/vnd.example.signature.v1",
    "config": {"mediaType": mt.OCI_EMPTY, "digest": dg("{}"), "size": 2},
    "layers": [{"mediaType": "application/vnd.example.sig", "digest": dg("sig"), "size": 88}],
    "subject": {"mediaType": mt.OCI_MANIFEST, "digest": dg("target"), "size": 1024},
}

OCI_INDEX_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": dg("amd64"),
            "size": 1016,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": dg("arm64"),
            "size": 1016,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": dg("armv7"),
            "size": 1016,
            "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": dg("att"),
            "size": 839,
            "annotations": {
                "vnd.docker.reference.digest": dg("amd64"),
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        },
    ],
}

DOCKER_LIST_DOC: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_LIST,
    "manifests": [
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "digest": dg("l-amd64"),
            "size": 528,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "digest": dg("l-armv6"),
            "size": 528,
            "platform": {"architecture": "arm", "os": "linux", "variant": "v6"},
        },
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "digest": dg("l-win"),
            "size": 1161,
            "platform": {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.5576",
            },
        },
    ],
}


@pytest.mark.parametrize("doc", [DOCKER_MANIFEST_DOC, OCI_MANIFEST_DOC, ARTIFACT_DOC])
@pytest.mark.parametrize("indent", [None, 3])
def test_manifest_round_trip(doc: dict[str, Any], indent: int | None) -> None:
    raw = json.dumps(doc, indent=indent).encode()
    m = parse_manifest(raw)
    assert isinstance(m, ImageManifest)
    assert m.raw == raw
    assert m.content == raw
    assert m.digest == Digest.of(raw)  # digest of the original bytes, whatever the formatting
    assert m.size == len(raw)
    assert m.to_json() == doc
    again = parse_manifest(m.to_bytes())
    assert again == m
    assert again.to_bytes() == m.to_bytes()
    assert b" " not in m.to_bytes()
    assert m.to_bytes() == json.dumps(m.to_json(), separators=(",", ":")).encode()


@pytest.mark.parametrize("doc", [OCI_INDEX_DOC, DOCKER_LIST_DOC])
@pytest.mark.parametrize("indent", [None, 2])
def test_index_round_trip(doc: dict[str, Any], indent: int | None) -> None:
    raw = json.dumps(doc, indent=indent).encode()
    idx = parse_manifest(raw)
    assert isinstance(idx, ImageIndex)
    assert idx.digest == Digest.of(raw)
    assert idx.to_json() == doc
    assert parse_manifest(idx.to_bytes()) == idx


def test_manifest_fields() -> None:
    m = ImageManifest.parse(json.dumps(DOCKER_MANIFEST_DOC).encode())
    assert m.media_type == mt.DOCKER_MANIFEST
    assert m.config.media_type == mt.DOCKER_CONFIG
    assert [layer.size for layer in m.layers] == [2814446, 3201, 1234]
    assert m.layers[2].urls == ("https://mcr.microsoft.com/layer",)
    art = ImageManifest.parse(json.dumps(ARTIFACT_DOC).encode())
    assert art.artifact_type == "application/vnd.example.signature.v1"
    assert art.subject is not None and art.subject.size == 1024


def test_index_select_platform() -> None:
    idx = ImageIndex.parse(json.dumps(OCI_INDEX_DOC).encode())
    assert select_manifest(idx.manifests, Platform.parse("linux/arm64")).digest == Digest.parse(
        dg("arm64")
    )
    lst = ImageIndex.parse(json.dumps(DOCKER_LIST_DOC).encode())
    chosen = select_manifest(lst.manifests, Platform.parse("linux/arm/v7"))
    assert chosen.digest == Digest.parse(dg("l-armv6"))


def test_descriptor_of_manifest_uses_raw_bytes() -> None:
    raw = json.dumps(OCI_MANIFEST_DOC, indent=4).encode()
    m = ImageManifest.parse(raw)
    d = m.descriptor(platform=Platform("linux", "amd64"))
    assert d.digest == Digest.of(raw) and d.size == len(raw)
    assert d.media_type == mt.OCI_MANIFEST
    assert d.digest != Digest.of(m.to_bytes())
    evolved = m.evolve(annotations={"x": "y"})
    assert evolved.raw is None
    assert evolved.digest == Digest.of(evolved.to_bytes())


def test_constructed_manifest_serialises_canonically() -> None:
    config = Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2)
    layer = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"l"), 1)
    m = ImageManifest(config=config, layers=[layer])  # type: ignore[arg-type]
    assert m.layers == (layer,)
    assert m.raw is None
    assert m.to_bytes() == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + str(Digest.of(b"{}")).encode()
        + b'","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
        b'"digest":"' + str(Digest.of(b"l")).encode() + b'","size":1}]}'
    )
    assert m.digest == Digest.of(m.to_bytes())
    idx = ImageIndex(manifests=(m.descriptor(platform=Platform("linux", "amd64")),))
    assert ImageIndex.parse(idx.to_bytes()) == idx


def test_raw_bytes_not_part_of_equality() -> None:
    a = parse_manifest(json.dumps(OCI_MANIFEST_DOC).encode())
    b = parse_manifest(json.dumps(OCI_MANIFEST_DOC, indent=2).encode())
    assert a == b
    assert a.digest != b.digest


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        ({k: v for k, v in OCI_MANIFEST_DOC.items() if k != "mediaType"}, ImageManifest),
        ({k: v for k, v in OCI_INDEX_DOC.items() if k != "mediaType"}, ImageIndex),
        ({"schemaVersion": 2, "manifests": []}, ImageIndex),
        ({"schemaVersion": 2, "config": OCI_MANIFEST_DOC["config"], "layers": []}, ImageManifest),
    ],
)
def test_kind_detected_from_content(doc: dict[str, Any], kind: type) -> None:
    parsed = parse_manifest(json.dumps(doc).encode())
    assert isinstance(parsed, kind)
    assert parsed.media_type is None
    assert parsed.effective_media_type in (mt.OCI_MANIFEST, mt.OCI_INDEX)
    assert "mediaType" not in parsed.to_json()


@pytest.mark.parametrize(
    ("doc", "hint", "kind"),
    [
        (DOCKER_MANIFEST_DOC, mt.DOCKER_MANIFEST, ImageManifest),
        (DOCKER_MANIFEST_DOC, "application/json", ImageManifest),
        (DOCKER_MANIFEST_DOC, f"{mt.DOCKER_MANIFEST}; charset=utf-8", ImageManifest),
        (OCI_INDEX_DOC, mt.OCI_INDEX, ImageIndex),
        ({k: v for k, v in OCI_INDEX_DOC.items() if k != "mediaType"}, mt.OCI_INDEX, ImageIndex),
    ],
)
def test_hint_accepted(doc: dict[str, Any], hint: str, kind: type) -> None:
    assert isinstance(parse_manifest(json.dumps(doc).encode(), hint), kind)


def _doc(base: dict[str, Any], **changes: Any) -> bytes:
    out = dict(base)
    for key, value in changes.items():
        key = {"schema_version": "schemaVersion", "media_type": "mediaType"}.get(key, key)
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return json.dumps(out).encode()


_DROP = object()
_BAD_LAYERS = [
    *OCI_MANIFEST_DOC["layers"],
    {"mediaType": mt.OCI_LAYER, "digest": "sha256:x", "size": 1},
]


@pytest.mark.parametrize(
    ("data", "hint", "message"),
    [
        (b"", None, "malformed JSON"),
        (b"{", None, "malformed JSON"),
        (b"not json", None, "malformed JSON"),
        (b"\xff\xfe\x00", None, "malformed JSON"),
        (b"[]", None, "must be a JSON object"),
        (b"null", None, "must be a JSON object"),
        (b'{"schemaVersion":2,"schemaVersion":2,"manifests":[]}', None, "duplicate key"),
        (_doc(OCI_MANIFEST_DOC, schema_version=_DROP), None, "schemaVersion"),
        (_doc(OCI_MANIFEST_DOC, schema_version=3), None, "schemaVersion"),
        (_doc(OCI_MANIFEST_DOC, schema_version="2"), None, "schemaVersion"),
        (_doc(OCI_MANIFEST_DOC, schema_version=True), None, "schemaVersion"),
        (_doc(OCI_MANIFEST_DOC, media_type=mt.OCI_INDEX), None, "mediaType"),
        (_doc(OCI_INDEX_DOC, media_type=mt.DOCKER_MANIFEST), None, "mediaType"),
        (_doc(OCI_MANIFEST_DOC, media_type="application/vnd.example+json"), None, "mediaType"),
        (_doc(OCI_MANIFEST_DOC, media_type=7), None, "mediaType"),
        (_doc(OCI_MANIFEST_DOC), mt.DOCKER_MANIFEST, "mediaType"),
        (_doc(OCI_MANIFEST_DOC), mt.OCI_INDEX, "mediaType"),
        (_doc(OCI_MANIFEST_DOC, media_type=_DROP), mt.OCI_INDEX, "index"),
        (_doc(OCI_MANIFEST_DOC), "application/vnd.example.other+json", "media type"),
        (_doc(OCI_MANIFEST_DOC, manifests=[]), None, "ambiguous"),
        (b'{"schemaVersion":2}', None, "cannot tell manifest from index"),
        (_doc(OCI_MANIFEST_DOC, config=_DROP), None, "manifest.config"),
        (_doc(OCI_MANIFEST_DOC, layers=_DROP), None, "manifest.layers"),
        (_doc(OCI_MANIFEST_DOC, layers={}), None, "manifest.layers"),
        (_doc(OCI_MANIFEST_DOC, layers=_BAD_LAYERS), None, "manifest.layers[2].digest"),
        (
            _doc(OCI_MANIFEST_DOC, config={"mediaType": mt.OCI_CONFIG}),
            None,
            "manifest.config.digest",
        ),
        (_doc(OCI_MANIFEST_DOC, annotations={"a": 1}), None, "manifest.annotations"),
        (_doc(OCI_MANIFEST_DOC, subject="x"), None, "manifest.subject"),
        (_doc(OCI_MANIFEST_DOC, artifactType=5), None, "manifest.artifactType"),
        (_doc(OCI_INDEX_DOC, manifests={}), None, "index.manifests"),
        (
            _doc(OCI_INDEX_DOC, manifests=[{"mediaType": mt.OCI_MANIFEST}]),
            None,
            "index.manifests[0]",
        ),
        (_doc(OCI_INDEX_DOC, layers=[]), None, "ambiguous"),
    ],
)
def test_parse_invalid(data: bytes, hint: str | None, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_manifest(data, hint)
    assert message in str(exc.value)


SCHEMA1 = json.dumps(
    {
        "schemaVersion": 1,
        "name": "library/busybox",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": dg("s1")}],
        "history": [{"v1Compatibility": "{}"}],
    }
).encode()


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (SCHEMA1, None),
        (SCHEMA1, mt.DOCKER_MANIFEST_V1),
        (SCHEMA1, mt.DOCKER_MANIFEST_V1_SIGNED),
        (b"{}", mt.DOCKER_MANIFEST_V1_SIGNED),
        (_doc(DOCKER_MANIFEST_DOC, media_type=mt.DOCKER_MANIFEST_V1), None),
    ],
)
def test_schema1_unsupported(data: bytes, hint: str | None) -> None:
    with pytest.raises(Unsupported) as exc:
        parse_manifest(data, hint)
    assert "schema 1" in str(exc.value)


def test_typed_parse_rejects_other_kind() -> None:
    with pytest.raises(InvalidArgument, match="expected an image manifest"):
        ImageManifest.parse(json.dumps(OCI_INDEX_DOC).encode())
    with pytest.raises(InvalidArgument, match="expected an image index"):
        ImageIndex.parse(json.dumps(OCI_MANIFEST_DOC).encode())


def test_models_hashable() -> None:
    m = parse_manifest(json.dumps(OCI_MANIFEST_DOC).encode())
    i = parse_manifest(json.dumps(OCI_INDEX_DOC).encode())
    assert len({m, i, m}) == 2
