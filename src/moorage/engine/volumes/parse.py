"""Docker's mount grammar: ``-v``, ``--mount``, volume names (pure: no store)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.errors import InvalidArgument

_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class MountRequest:
    type: str  # volume | bind | tmpfs
    source: str  # volume name ("" = anonymous) or host path
    destination: str
    rw: bool = True
    options: str = ""  # tmpfs: size=...,mode=...


def check_volume_name(name: str) -> None:
    if not _VOLUME_NAME.match(name):
        raise InvalidArgument(
            f'"{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )


def _destination(path: str, spec: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount config: mount path must be absolute: {spec}")
    if path == "/":
        raise InvalidArgument(f"invalid mount config: destination can't be '/': {spec}")
    return path.rstrip("/") or "/"


def parse_volume(spec: str) -> MountRequest:
    """``-v [SOURCE:]DEST[:ro|rw]``: an anonymous volume, a named one, or a host path."""
    parts = spec.split(":")
    mode = ""
    if len(parts) in (2, 3) and parts[-1] in ("ro", "rw", "z", "Z", "ro,z", "rw,z"):
        mode = parts.pop()
    if len(parts) == 1:
        return MountRequest("volume", "", _destination(parts[0], spec), rw="ro" not in mode)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    source, dest = parts
    if source.startswith("/"):
        return MountRequest("bind", source, _destination(dest, spec), rw="ro" not in mode)
    check_volume_name(source)
    return MountRequest("volume", source, _destination(dest, spec), rw="ro" not in mode)


def parse_mount(spec: str) -> MountRequest:
    """``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]``."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        fields[key] = value if sep else "true"
    kind = fields.pop("type", "volume")
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    readonly = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("true", "1", "")
    if not target:
        raise InvalidArgument(f"invalid argument {spec!r} for --mount: target is required")
    dest = _destination(target, spec)
    if kind == "bind":
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: "
                                  f"'{source}' mount path must be absolute")  # fmt: skip
        return MountRequest("bind", source, dest, rw=not readonly)
    if kind == "volume":
        if source:
            check_volume_name(source)
        return MountRequest("volume", source, dest, rw=not readonly)
    if kind == "tmpfs":
        if source:
            raise InvalidArgument('invalid mount config for type "tmpfs": source is not allowed')
        opts = []
        if "tmpfs-size" in fields:
            opts.append(f"size={fields.pop('tmpfs-size')}")
        if "tmpfs-mode" in fields:
            opts.append(f"mode={fields.pop('tmpfs-mode')}")
        return MountRequest("tmpfs", "", dest, rw=not readonly, options=",".join(opts))
    raise InvalidArgument(f"invalid mount type {kind!r}: use bind, volume or tmpfs")


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``CONTAINER[:ro|rw]`` to (container, mode)."""
    name, _, mode = spec.partition(":")
    if mode not in ("", "ro", "rw") or not name:
        raise InvalidArgument(f"invalid --volumes-from {spec!r}: expected CONTAINER[:ro|rw]")
    return name, mode
