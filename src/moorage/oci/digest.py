"""Content digests (``sha256:<hex>``), parsed strictly before they ever become a path or URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.errors import InvalidDigest

_HEX_LEN = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    """An OCI digest. Only registered algorithms with lower-case hex of the exact length."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if _HEX_LEN.get(self.algorithm) != len(self.hex) or not _DIGEST_RE.fullmatch(str(self)):
            raise InvalidDigest(f"invalid digest: {self.algorithm}:{self.hex!r}")

    @classmethod
    def parse(cls, value: str) -> Digest:
        m = _DIGEST_RE.fullmatch(value)
        if m is None or _HEX_LEN[m.group(1)] != len(m.group(2)):
            raise InvalidDigest(f"invalid digest {value!r}: expected sha256:<64 hex digits>")
        return cls(m.group(1), m.group(2))

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The sha256 digest of ``data``."""
        import hashlib  # here, not at the top: OpenSSL's start-up is paid only when hashing

        return cls("sha256", hashlib.sha256(data).hexdigest())

    @classmethod
    def sha256(cls, hexdigest: str) -> Digest:
        return cls("sha256", hexdigest)

    @property
    def short(self) -> str:
        """The 12-hex-digit id Docker prints."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
