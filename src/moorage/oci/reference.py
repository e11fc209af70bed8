"""Image references (``[domain/]path[:tag][@digest]``), parsed and normalised as Docker does.

The grammar is that of distribution/reference::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path-component ["/" path-component]*
    domain           := host [":" port]          host := domain-name | "[" IPv6 "]"
    domain-name      := domain-component ["." domain-component]*
    domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    path-component   := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex        (sha256 or sha512 only, see Digest)

Normalisation (Docker's ``ParseNormalizedNamed``): the first ``/``-separated component is a
domain when it contains ``.`` or ``:``, is ``localhost``, or has an upper-case letter;
otherwise the domain is ``docker.io``. ``index.docker.io`` becomes ``docker.io``, and a
one-component path on ``docker.io`` gets ``library/``. No tag is added by
:func:`parse_reference`; :meth:`Reference.with_default_tag` adds ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.errors import InvalidDigest, InvalidReference
from moorage.oci.digest import Digest

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "Reference",
    "looks_like_id",
    "parse_reference",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")
_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{12,64}")

_INVALID = "invalid reference format"


def _looks_like_domain(component: str) -> bool:
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference. ``str()`` is the full form, :meth:`familiar` Docker's short one."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        if not _DOMAIN_RE.fullmatch(self.domain):
            raise InvalidReference(f"{_INVALID}: invalid domain {self.domain!r}")
        if not _PATH_RE.fullmatch(self.path):
            raise InvalidReference(f"{_INVALID}: invalid repository path {self.path!r}")
        if len(self.domain) + 1 + len(self.path) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidReference(
                f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )
        if self.tag is not None and not _TAG_RE.fullmatch(self.tag):
            raise InvalidReference(f"{_INVALID}: invalid tag {self.tag!r}")
        if self.digest is not None and not isinstance(self.digest, Digest):
            raise InvalidReference(f"{_INVALID}: digest must be a Digest")

    # --- names ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``domain/path``, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Docker's short name: ``busybox``, ``user/app``, ``localhost:5000/x``.

        Unlike Docker, keeps ``docker.io/`` when dropping it would make the first path
        component look like a domain (``docker.io/foo.bar/x``), so the short name always
        parses back to the same reference.
        """
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX) :]:
            return path[len(OFFICIAL_PREFIX) :]
        first, slash, _ = path.partition("/")
        if slash and _looks_like_domain(first):
            return self.name
        return path

    @property
    def repository(self) -> str:
        """Alias of :attr:`familiar_name` (the REPOSITORY column of ``docker images``)."""
        return self.familiar_name

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag is not None else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """Docker's short form: ``busybox:latest``, ``user/app:1``, ``localhost:5000/x:1``."""
        return self.familiar_name + self._suffix()

    # --- derived references -------------------------------------------------------------------

    def with_default_tag(self) -> Reference:
        """Add the ``latest`` tag when the reference has neither a tag nor a digest."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` and no digest."""
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository pinned to ``digest`` (the tag is kept)."""
        return Reference(self.domain, self.path, self.tag, digest)

    def name_only(self) -> Reference:
        """The repository without tag or digest."""
        return Reference(self.domain, self.path)

    @property
    def is_docker_hub(self) -> bool:
        return self.domain == DEFAULT_DOMAIN


def parse_reference(s: str) -> Reference:
    """Parse and normalise ``s`` like Docker's ``ParseNormalizedNamed`` (no default tag).

    Raises InvalidReference with Docker's messages.
    """
    if not isinstance(s, str):
        raise InvalidReference(_INVALID)
    if _HEX64_RE.fullmatch(s):
        raise InvalidReference(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    if not s:
        raise InvalidReference(f"{_INVALID}: repository name must have at least one component")

    first, slash, rest = s.partition("/")
    if slash and _looks_like_domain(first):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, s
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder

    name_and_tag, at, digest_text = remainder.partition("@")
    path, colon, tag_text = name_and_tag.partition(":")
    if path.lower() != path:
        raise InvalidReference(f"{_INVALID}: repository name ({path}) must be lowercase")

    if not _DOMAIN_RE.fullmatch(domain) or not _PATH_RE.fullmatch(path):
        raise InvalidReference(_INVALID)
    if colon and not _TAG_RE.fullmatch(tag_text):
        raise InvalidReference(_INVALID)
    if at and not _DIGEST_RE.fullmatch(digest_text):
        raise InvalidReference(_INVALID)
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    digest: Digest | None = None
    if at:
        algorithm = digest_text.partition(":")[0]
        if algorithm not in ("sha256", "sha512"):
            raise InvalidReference(f"{_INVALID}: unsupported digest algorithm {algorithm!r}")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest:
            raise InvalidReference(
                f"{_INVALID}: invalid checksum digest format {digest_text!r}"
            ) from None
    return Reference(domain, path, tag_text if colon else None, digest)


def looks_like_id(s: str) -> bool:
    """Whether ``s`` reads as an image id: 12–64 lower-case hex digits, optionally ``sha256:``."""
    return bool(_ID_RE.fullmatch(s))
