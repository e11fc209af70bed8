"""Digest parsing: strict algorithm, length and case."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from moorage.errors import InvalidArgument, InvalidDigest
from moorage.oci.digest import Digest

HEX64 = hashlib.sha256(b"moorage").hexdigest()
HEX128 = hashlib.sha512(b"moorage").hexdigest()


@pytest.mark.parametrize(
    ("text", "algorithm", "hex_"),
    [
        (f"sha256:{HEX64}", "sha256", HEX64),
        (f"sha512:{HEX128}", "sha512", HEX128),
        ("sha256:" + "0" * 64, "sha256", "0" * 64),
        ("sha256:" + "f" * 64, "sha256", "f" * 64),
    ],
)
def test_parse_valid(text: str, algorithm: str, hex_: str) -> None:
    d = Digest.parse(text)
    assert (d.algorithm, d.hex) == (algorithm, hex_)
    assert str(d) == text
    assert Digest.parse(str(d)) == d


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        HEX64,
        f"sha256:{HEX64[:-1]}",
        f"sha256:{HEX64}0",
        f"sha256:{HEX64.upper()}",
        f"SHA256:{HEX64}",
        f"md5:{HEX64[:32]}",
        f"sha384:{HEX128[:96]}",
        f"sha512:{HEX64}",
        f"sha256:{HEX128}",
        f" sha256:{HEX64}",
        f"sha256:{HEX64[:-1]}g",
        f"sha256:../../{HEX64[:58]}",
        f"sha256+b64u:{HEX64}",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_parse_rejects_trailing_newline() -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(f"sha256:{HEX64}\n")


def test_invalid_digest_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        Digest.parse("nope")


@pytest.mark.parametrize(
    "data",
    [b"", b"moorage", b"\x00" * 1024, "ünïcødé".encode()],
)
def test_of_matches_hashlib(data: bytes) -> None:
    d = Digest.of(data)
    assert d.algorithm == "sha256"
    assert d.hex == hashlib.sha256(data).hexdigest()
    assert d == Digest.sha256(hashlib.sha256(data).hexdigest())


def test_empty_sha256_well_known() -> None:
    assert str(Digest.of(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_short_is_12_hex() -> None:
    d = Digest.parse(f"sha256:{HEX64}")
    assert d.short == HEX64[:12]
    assert len(d.short) == 12


def test_direct_construction_validated() -> None:
    with pytest.raises(InvalidDigest):
        Digest("sha256", "abc")
    with pytest.raises(InvalidDigest):
        Digest("sha1", HEX64[:40])


def test_frozen_hashable_and_equal() -> None:
    a = Digest.parse(f"sha256:{HEX64}")
    b = Digest.sha256(HEX64)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.hex = "0" * 64  # type: ignore[misc]
