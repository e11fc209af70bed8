"""Platform parsing, normalisation, matching and selection from a multi-arch index."""

from __future__ import annotations

import pytest

from moorage.errors import InvalidArgument, NotFound
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest
from moorage.oci.platform import (
    Platform,
    host_platform,
    matches,
    normalize,
    platform_preference,
    select_manifest,
)


def P(spec: str) -> Platform:
    """Build an un-normalised platform from os/arch[/variant]."""
    parts = spec.split("/")
    return Platform(parts[0], parts[1], parts[2] if len(parts) > 2 else None)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm64/v9.0", "linux/arm64/v9"),
        ("linux/arm64/v8.2", "linux/arm64/v8.2"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm/5", "linux/arm/v5"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/386", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/s390x", "linux/s390x"),
        ("linux/riscv64", "linux/riscv64"),
        ("windows/amd64", "windows/amd64"),
        ("macos/arm64", "darwin/arm64/v8"),
        ("arm64", "linux/arm64/v8"),
        ("amd64", "linux/amd64"),
    ],
)
def test_parse_normalises(spec: str, expected: str) -> None:
    p = Platform.parse(spec)
    assert str(p) == expected
    assert normalize(p) == p
    assert Platform.parse(str(p)) == p


def test_parse_os_only_uses_host_architecture() -> None:
    p = Platform.parse("linux")
    host = host_platform()
    assert (p.os, p.architecture, p.variant) == ("linux", host.architecture, host.variant)


def test_parse_os_version() -> None:
    p = Platform.parse("windows(10.0.17763)/amd64")
    assert (p.os, p.os_version, p.architecture) == ("windows", "10.0.17763", "amd64")


@pytest.mark.parametrize(
    "spec",
    ["", " ", "/", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64", "linux/amd64/", "a,b"],
)
def test_parse_invalid(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        Platform.parse(spec)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Platform("LINUX", "x86_64"), Platform("linux", "amd64")),
        (Platform("linux", "aarch64"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "arm64", "V8"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "armhf"), Platform("linux", "arm", "v7")),
        (Platform("linux", "armel"), Platform("linux", "arm", "v6")),
        (Platform("linux", "i686"), Platform("linux", "386")),
        (Platform("linux", "386", "sse"), Platform("linux", "386")),
        (Platform("linux", "mips64le"), Platform("linux", "mips64le")),
        (
            Platform("windows", "amd64", None, "10.0.20348.1", ("win32k",)),
            Platform("windows", "amd64", None, "10.0.20348.1", ("win32k",)),
        ),
    ],
)
def test_normalize(raw: Platform, expected: Platform) -> None:
    assert normalize(raw) == expected
    assert normalize(normalize(raw)) == expected


@pytest.mark.parametrize(
    ("machine", "system", "expected"),
    [
        ("x86_64", "linux", "linux/amd64"),
        ("AMD64", "win32", "windows/amd64"),
        ("aarch64", "linux", "linux/arm64/v8"),
        ("arm64", "darwin", "darwin/arm64/v8"),
        ("armv7l", "linux", "linux/arm/v7"),
        ("armv6l", "linux", "linux/arm/v6"),
        ("i686", "linux", "linux/386"),
        ("i386", "linux", "linux/386"),
        ("ppc64le", "linux", "linux/ppc64le"),
        ("s390x", "linux", "linux/s390x"),
        ("riscv64", "linux", "linux/riscv64"),
        ("loongarch64", "linux", "linux/loong64"),
    ],
)
def test_host_platform_mapping(machine: str, system: str, expected: str) -> None:
    assert str(host_platform(machine, system)) == expected


def test_host_platform_default_is_normalised() -> None:
    host = host_platform()
    assert normalize(host) == host
    assert host.os and host.architecture


@pytest.mark.parametrize(
    ("want", "have", "expected"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/386", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64/v3", "linux/amd64/v2", True),
        ("linux/amd64/v3", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v3", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/aarch64", True),
        ("linux/arm64/v8", "linux/arm/v7", True),
        ("linux/arm64/v8", "linux/arm/v5", True),
        ("linux/arm64/v8", "linux/arm64/v9", False),
        ("linux/arm64/v9", "linux/arm64/v8", True),
        ("linux/arm64/v8.2", "linux/arm64/v8.1", True),
        ("linux/arm64/v8.1", "linux/arm64/v8.2", False),
        ("linux/arm/v8", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v7", "linux/arm/v8", False),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v7", "linux/arm64", False),
        ("linux/arm", "linux/armhf", True),
        ("linux/arm/v6", "linux/armel", True),
        ("linux/386", "linux/amd64", False),
        ("LINUX/amd64", "linux/AMD64", True),
    ],
)
def test_matches(want: str, have: str, expected: bool) -> None:
    assert matches(P(want), P(have)) is expected


def test_preference_order_for_arm64() -> None:
    want = Platform.parse("linux/arm64")
    candidates = ["linux/arm/v5", "linux/arm/v7", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v8"]
    ranked = sorted(candidates, key=lambda c: platform_preference(want, P(c)) or 0)
    assert ranked == [
        "linux/arm64/v8",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]


def test_windows_os_version_must_agree_on_build() -> None:
    want = Platform("windows", "amd64", os_version="10.0.17763.5000")
    assert matches(want, Platform("windows", "amd64", os_version="10.0.17763.1"))
    assert not matches(want, Platform("windows", "amd64", os_version="10.0.20348.1"))
    assert matches(want, Platform("windows", "amd64"))


# --- selection from a multi-arch index ---------------------------------------------------------


def _entry(platform: Platform | None, name: str, media_type: str = mt.OCI_MANIFEST) -> Descriptor:
    return Descriptor(media_type, Digest.of(name.encode()), 500 + len(name), platform=platform)


AMD64 = _entry(Platform("linux", "amd64"), "amd64")
ARM64 = _entry(Platform("linux", "arm64", "v8"), "arm64")
ARM_V7 = _entry(Platform("linux", "arm", "v7"), "armv7")
ARM_V6 = _entry(Platform("linux", "arm", "v6"), "armv6")
ARM_V5 = _entry(Platform("linux", "arm", "v5"), "armv5")
I386 = _entry(Platform("linux", "386"), "386")
PPC = _entry(Platform("linux", "ppc64le"), "ppc64le")
WINDOWS = _entry(Platform("windows", "amd64", os_version="10.0.17763.5576"), "windows")
ATTESTATION = _entry(Platform("unknown", "unknown"), "attestation")
NO_PLATFORM = _entry(None, "noplatform")

FULL_INDEX = [ATTESTATION, NO_PLATFORM, ARM_V5, ARM_V6, ARM_V7, ARM64, I386, PPC, WINDOWS, AMD64]


@pytest.mark.parametrize(
    ("index", "want", "expected"),
    [
        (FULL_INDEX, "linux/amd64", AMD64),
        (FULL_INDEX, "linux/x86_64", AMD64),
        (FULL_INDEX, "linux/arm64", ARM64),
        (FULL_INDEX, "linux/arm64/v8", ARM64),
        (FULL_INDEX, "linux/aarch64", ARM64),
        (FULL_INDEX, "linux/arm/v7", ARM_V7),
        (FULL_INDEX, "linux/arm", ARM_V7),
        (FULL_INDEX, "linux/arm/v6", ARM_V6),
        (FULL_INDEX, "linux/arm/v5", ARM_V5),
        (FULL_INDEX, "linux/386", I386),
        (FULL_INDEX, "linux/ppc64le", PPC),
        (FULL_INDEX, "windows/amd64", WINDOWS),
        # fallbacks: lower arm variants, best first
        ([ARM_V5, ARM_V6, AMD64], "linux/arm/v7", ARM_V6),
        ([ARM_V5, AMD64], "linux/arm/v7", ARM_V5),
        ([ARM_V6, ARM_V7, ARM_V5], "linux/arm/v8", ARM_V7),
        ([ARM_V6, ARM_V7, AMD64], "linux/arm64", ARM_V7),
        ([ARM_V5, ARM_V6], "linux/arm64/v8", ARM_V6),
        ([ARM_V7, ARM64], "linux/arm64", ARM64),
        # amd64 variants
        ([AMD64], "linux/amd64/v3", AMD64),
        ([AMD64, _entry(Platform("linux", "amd64", "v2"), "v2")], "linux/amd64/v3", None),
        # unnormalised index entries
        ([_entry(Platform("linux", "aarch64"), "odd")], "linux/arm64", None),
        ([_entry(Platform("Linux", "x86_64"), "odd2")], "linux/amd64", None),
    ],
)
def test_select_manifest(index: list[Descriptor], want: str, expected: Descriptor | None) -> None:
    chosen = select_manifest(index, Platform.parse(want))
    if expected is None:  # the only compatible entry, or the best non-default one
        assert chosen.platform is not None
        assert matches(Platform.parse(want), chosen.platform)
        if len(index) == 2:
            assert chosen.platform.variant == "v2"
    else:
        assert chosen == expected


def test_select_first_of_equal_entries() -> None:
    first = _entry(Platform("linux", "amd64"), "first")
    second = _entry(Platform("linux", "amd64"), "second")
    assert select_manifest([first, second], Platform.parse("linux/amd64")) is first


def test_select_accepts_docker_manifest_list_entries() -> None:
    entry = _entry(Platform("linux", "arm", "v7"), "docker", mt.DOCKER_MANIFEST)
    assert select_manifest(iter([entry]), Platform.parse("linux/arm/v7")) is entry


@pytest.mark.parametrize(
    ("index", "want", "message"),
    [
        (
            [I386, ARM64],
            "linux/amd64",
            "no matching manifest for linux/amd64 in the manifest list entries",
        ),
        (
            [AMD64],
            "linux/arm64",
            "no matching manifest for linux/arm64/v8 in the manifest list entries",
        ),
        (
            [ARM_V7],
            "linux/arm/v6",
            "no matching manifest for linux/arm/v6 in the manifest list entries",
        ),
        (
            [AMD64, ARM64],
            "windows/amd64",
            "no matching manifest for windows/amd64 in the manifest list entries",
        ),
        (
            [NO_PLATFORM, ATTESTATION],
            "linux/amd64",
            "no matching manifest for linux/amd64 in the manifest list entries",
        ),
        ([], "linux/amd64", "no matching manifest for linux/amd64 in the manifest list entries"),
    ],
)
def test_select_manifest_not_found(index: list[Descriptor], want: str, message: str) -> None:
    with pytest.raises(NotFound) as exc:
        select_manifest(index, Platform.parse(want))
    assert str(exc.value) == message


# --- JSON -------------------------------------------------------------------------------------


def test_platform_json_round_trip() -> None:
    obj = {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.5576",
        "os.features": ["win32k"],
        "variant": "v2",
    }
    p = Platform.from_json(obj)
    assert p == Platform("windows", "amd64", "v2", "10.0.17763.5576", ("win32k",))
    assert p.to_json() == obj
    assert Platform("linux", "amd64").to_json() == {"architecture": "amd64", "os": "linux"}


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ([], "platform"),
        ({"os": "linux"}, "platform.architecture"),
        ({"architecture": "amd64"}, "platform.os"),
        ({"architecture": 1, "os": "linux"}, "platform.architecture"),
        ({"architecture": "arm", "os": "linux", "variant": 7}, "platform.variant"),
        ({"architecture": "arm", "os": "linux", "os.features": "x"}, "platform.os.features"),
        ({"architecture": "arm", "os": "linux", "os.version": ["1"]}, "platform.os.version"),
    ],
)
def test_platform_json_invalid(obj: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Platform.from_json(obj)
    assert f"invalid {field}" in str(exc.value)


def test_platform_is_hashable() -> None:
    assert len({Platform.parse("linux/arm64"), Platform.parse("linux/aarch64")}) == 1
