"""Platforms (``os/arch[/variant]``): parsing, normalisation, matching and index selection.

Normalisation follows containerd's ``platforms.Normalize`` with one deliberate difference:
``arm64`` gets the explicit variant ``v8`` (containerd uses the empty string), so
``linux/arm64`` and ``linux/arm64/v8`` normalise to the same value and format the same way.

Matching follows containerd's ``platforms.Only`` preference vector, except that ``amd64``
never falls back to ``386`` (Docker's behaviour for ``docker pull``):

* ``arm/vN`` accepts ``arm/vN``, then ``arm/vN-1`` … down to ``arm/v5``;
* ``arm64/v8.N`` accepts ``arm64/v8.N`` … ``arm64/v8``; ``arm64/v9.N`` accepts ``arm64/v9.N`` …
  ``arm64/v9``, then ``arm64/v8.N+5`` … ``arm64/v8``; after every ``arm64`` variant, 32-bit
  ``arm/v8`` … ``arm/v5`` (an arm64 kernel runs 32-bit arm binaries);
* ``amd64/vN`` accepts ``amd64/vN`` … ``amd64/v2``, then plain ``amd64``.
"""

from __future__ import annotations

import platform as _stdlib_platform
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moorage.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from moorage.oci.descriptor import Descriptor

__all__ = [
    "Platform",
    "host_platform",
    "matches",
    "normalize",
    "platform_preference",
    "select_manifest",
]

_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_OS_VERSION_RE = re.compile(r"^([A-Za-z0-9_.-]+)\(([A-Za-z0-9_.-]+)\)$")

# Operating systems Go knows (GOOS); a lone specifier naming one of these is an OS, not an arch.
_KNOWN_OS = frozenset(
    {
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "illumos",
        "ios",
        "js",
        "linux",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
    }
)


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform. Values are kept as given; use :func:`normalize` before comparing."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.os_features, tuple):
            object.__setattr__(self, "os_features", tuple(self.os_features))

    @classmethod
    def parse(cls, specifier: str) -> Platform:
        """Parse ``os[(os.version)][/arch[/variant]]`` or a lone ``arch``; the result is normalised.

        ``linux`` alone means the host's architecture on Linux; ``arm64`` alone means
        ``linux/arm64/v8``.
        """
        if not isinstance(specifier, str) or not specifier.strip():
            raise InvalidArgument("invalid platform '': expected os/arch[/variant]")
        parts = specifier.strip().split("/")
        if len(parts) > 3:
            raise InvalidArgument(
                f"invalid platform {specifier!r}: expected os/arch[/variant], too many components"
            )
        os_version: str | None = None
        m = _OS_VERSION_RE.match(parts[0])
        if m is not None:
            parts[0], os_version = m.group(1), m.group(2)
        for part in parts:
            if not _COMPONENT_RE.match(part):
                raise InvalidArgument(
                    f"invalid platform {specifier!r}: component {part!r} is empty or has "
                    "characters other than letters, digits, '_', '.' and '-'"
                )
        if len(parts) == 1:
            if parts[0].lower() in _KNOWN_OS:
                host = host_platform()
                p = cls(parts[0], host.architecture, host.variant, os_version)
            elif os_version is not None:
                raise InvalidArgument(
                    f"invalid platform {specifier!r}: unknown operating system {parts[0]!r}"
                )
            else:
                p = cls("linux", parts[0])
        elif len(parts) == 2:
            p = cls(parts[0], parts[1], None, os_version)
        else:
            p = cls(parts[0], parts[1], parts[2], os_version)
        return normalize(p)

    @classmethod
    def from_json(cls, obj: Any, where: str = "platform") -> Platform:
        """Strictly parse an OCI ``platform`` object; errors name ``where`` and the bad key."""
        if not isinstance(obj, Mapping):
            raise InvalidArgument(f"invalid {where}: must be a JSON object")
        values: dict[str, str | None] = {}
        for key in ("architecture", "os", "os.version", "variant"):
            v = obj.get(key)
            if v is not None and not isinstance(v, str):
                raise InvalidArgument(f"invalid {where}.{key}: must be a string")
            values[key] = v
        for key in ("architecture", "os"):
            if not values[key]:
                raise InvalidArgument(
                    f"invalid {where}.{key}: required, must be a non-empty string"
                )
        features = obj.get("os.features")
        if features is None:
            features = []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidArgument(f"invalid {where}.os.features: must be a list of strings")
        return cls(
            os=values["os"] or "",
            architecture=values["architecture"] or "",
            variant=values["variant"] or None,
            os_version=values["os.version"] or None,
            os_features=tuple(features),
        )

    def to_json(self) -> dict[str, Any]:
        """OCI JSON (``architecture``, ``os``, ``os.version``, ``os.features``, ``variant``)."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        """``os/arch[/variant]`` as Docker and containerd print it."""
        parts = [self.os or "unknown", self.architecture or "unknown"]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


def _normalize_os(os_name: str) -> str:
    os_name = os_name.lower()
    return "darwin" if os_name == "macos" else os_name


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch = arch.lower()
    var = (variant or "").lower()
    if arch in ("i386", "386", "i486", "i586", "i686", "x86"):
        return "386", None
    if arch in ("x86_64", "x86-64", "amd64"):
        if var in ("", "v1", "1"):
            return "amd64", None
        return "amd64", var if var.startswith("v") else "v" + var
    if arch in ("aarch64", "arm64"):
        if var in ("", "8", "v8", "v8.0", "8.0"):
            return "arm64", "v8"
        if var in ("9", "v9", "9.0", "v9.0"):
            return "arm64", "v9"
        return "arm64", var if var.startswith("v") else "v" + var
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if var in ("", "7"):
            return "arm", "v7"
        if var.isdigit():
            return "arm", "v" + var
        return "arm", var
    return arch, var or None


def normalize(p: Platform) -> Platform:
    """Canonical spelling of ``p`` (see the module docstring); idempotent."""
    arch, variant = _normalize_arch(p.architecture, p.variant)
    return Platform(
        os=_normalize_os(p.os),
        architecture=arch,
        variant=variant,
        os_version=p.os_version,
        os_features=p.os_features,
    )


def host_platform(machine: str | None = None, system: str | None = None) -> Platform:
    """The platform of this machine (``machine``/``system`` override ``uname`` for tests)."""
    if machine is None:
        machine = _stdlib_platform.machine()
    if system is None:
        system = sys.platform
    system = system.lower()
    if system.startswith("linux"):
        os_name = "linux"
    elif system in ("win32", "cygwin", "windows"):
        os_name = "windows"
    elif system.startswith("freebsd"):
        os_name = "freebsd"
    else:
        os_name = system
    m = machine.lower()
    arch: str
    variant: str | None = None
    if m in ("x86_64", "amd64", "x64"):
        arch = "amd64"
    elif m in ("aarch64", "arm64", "armv8b"):
        arch, variant = "arm64", "v8"
    elif m.startswith("armv") and len(m) > 4 and m[4].isdigit():
        arch, variant = "arm", "v" + m[4]
    elif m in ("i386", "i486", "i586", "i686", "x86"):
        arch = "386"
    elif m in ("ppc64le", "ppc64el"):
        arch = "ppc64le"
    elif m == "loongarch64":
        arch = "loong64"
    else:
        arch = m  # s390x, riscv64, mips64, ppc64 … share Go's spelling
    return normalize(Platform(os_name, arch, variant))


def _variant_number(variant: str | None) -> tuple[int, int] | None:
    """``v8.2`` -> (8, 2); ``v7`` -> (7, 0); anything else -> None."""
    if not variant or not variant.startswith("v"):
        return None
    major, _, minor = variant[1:].partition(".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        return None
    return int(major), int(minor or 0)


def _arm64_variant(major: int, minor: int) -> str:
    return f"v{major}" if minor == 0 else f"v{major}.{minor}"


def _preference(want: Platform) -> list[tuple[str, str | None]]:
    """(architecture, variant) pairs ``want`` accepts, most preferred first (normalised)."""
    arch, variant = want.architecture, want.variant
    vector: list[tuple[str, str | None]] = [(arch, variant)]
    num = _variant_number(variant)
    if arch == "amd64" and num is not None:
        vector += [("amd64", f"v{n}") for n in range(num[0] - 1, 1, -1)]
        vector.append(("amd64", None))
    elif arch == "arm" and num is not None:
        vector += [("arm", f"v{n}") for n in range(num[0] - 1, 4, -1)]
    elif arch == "arm64" and num is not None and num[0] >= 8:
        major, minor = num
        if major == 9:
            vector += [("arm64", _arm64_variant(9, n)) for n in range(minor - 1, -1, -1)]
            major, minor = 8, minor + 5
            vector.append(("arm64", _arm64_variant(8, minor)))
        if major == 8:
            vector += [("arm64", _arm64_variant(8, n)) for n in range(minor - 1, -1, -1)]
        vector += [("arm", f"v{n}") for n in range(8, 4, -1)]
    return list(dict.fromkeys(vector))


def _os_version_ok(want: Platform, have: Platform) -> bool:
    if not want.os_version or not have.os_version:
        return True
    return want.os_version.split(".")[:3] == have.os_version.split(".")[:3]


def platform_preference(want: Platform, have: Platform) -> int | None:
    """Rank of ``have`` for a host that wants ``want`` (0 = exact), or None if incompatible."""
    w, h = normalize(want), normalize(have)
    if w.os != h.os or not _os_version_ok(w, h):
        return None
    try:
        return _preference(w).index((h.architecture, h.variant))
    except ValueError:
        return None


def matches(want: Platform, have: Platform) -> bool:
    """Whether content built for ``have`` runs on a host that wants ``want``."""
    return platform_preference(want, have) is not None


def select_manifest(index_descriptors: Iterable[Descriptor], want: Platform) -> Descriptor:
    """The best entry of an index for ``want``: exact match first, then compatible variants.

    Entries without a platform are skipped; among equally good entries the first wins.
    Raises NotFound when nothing matches.
    """
    best: Descriptor | None = None
    best_rank: int | None = None
    for desc in index_descriptors:
        if desc.platform is None:
            continue
        rank = platform_preference(want, desc.platform)
        if rank is not None and (best_rank is None or rank < best_rank):
            best, best_rank = desc, rank
            if rank == 0:
                break
    if best is None:
        raise NotFound(f"no matching manifest for {normalize(want)} in the manifest list entries")
    return best
