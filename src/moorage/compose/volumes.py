"""A service's ``volumes``: the short syntax (``[SOURCE:]TARGET[:MODE]``) and the long one,
to one canonical mapping per mount (named volume, bind mount or tmpfs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from moorage.compose.schema import check_keys
from moorage.compose.values import (
    Loc,
    as_bool,
    as_int,
    as_mapping,
    as_size,
    as_str,
    expected,
)

TYPES = ("volume", "bind", "tmpfs", "npipe", "image", "cluster")
PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
_SELINUX = ("z", "Z")


def resolve_path(text: str, base_dir: Path) -> str:
    """A host path as compose resolves it: ``~`` is home, relative is under ``base_dir``."""
    if text.startswith("~"):
        text = os.path.expanduser(text)
    path = Path(text)
    if not path.is_absolute():
        path = base_dir / path
    return os.path.normpath(path)


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def parse_short_volume(text: str, loc: Loc, base_dir: Path) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) > 3:
        raise loc.error(f"invalid volume {text!r}: expected [SOURCE:]TARGET[:MODE]")
    if len(parts) == 1:
        target, source, mode = parts[0], "", ""
    elif len(parts) == 2:
        # SOURCE:TARGET, or TARGET:MODE for an anonymous volume with options
        if parts[1].startswith("/") or not parts[0].startswith("/"):
            source, target, mode = parts[0], parts[1], ""
        else:
            source, target, mode = "", parts[0], parts[1]
    else:
        source, target, mode = parts
    if not target.startswith("/"):
        raise loc.error(f"invalid volume {text!r}: the target {target!r} must be an absolute path")
    out: dict[str, Any]
    if not source:
        out = {"type": "volume", "target": target}
    elif _is_path(source):
        out = {
            "type": "bind",
            "source": resolve_path(source, base_dir),
            "target": target,
            "bind": {"create_host_path": True},
        }
    else:
        out = {"type": "volume", "source": source, "target": target}
    for option in mode.split(",") if mode else []:
        if option == "ro":
            out["read_only"] = True
        elif option == "rw":
            out.pop("read_only", None)
        elif option in _SELINUX and out["type"] == "bind":
            out["bind"]["selinux"] = option
        elif option in PROPAGATIONS and out["type"] == "bind":
            out["bind"]["propagation"] = option
        elif option == "nocopy" and out["type"] == "volume":
            out["volume"] = {"nocopy": True}
        else:
            raise loc.error(f"invalid mode {option!r} in volume {text!r}")
    return out


_LONG_KEYS = ("type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs")


def parse_long_volume(value: dict[str, Any], loc: Loc, base_dir: Path) -> dict[str, Any]:
    check_keys(value, _LONG_KEYS, loc)
    kind = as_str(value.get("type", ""), loc.child(value, "type"))
    if kind not in TYPES:
        raise loc.child(value, "type").error(
            f"invalid volume type {kind!r}: expected one of {', '.join(TYPES)}"
        )
    if "target" not in value:
        raise loc.error("a volume in the long syntax needs a target")
    out: dict[str, Any] = {"type": kind}
    source = value.get("source")
    if source is not None and source != "":
        text = as_str(source, loc.child(value, "source"))
        out["source"] = resolve_path(text, base_dir) if kind == "bind" else text
    elif kind == "bind":
        raise loc.error("a bind mount needs a source")
    target = as_str(value["target"], loc.child(value, "target"))
    if not target.startswith("/"):
        raise loc.child(value, "target").error(f"the target {target!r} must be an absolute path")
    out["target"] = target
    if "read_only" in value and as_bool(value["read_only"], loc.child(value, "read_only")):
        out["read_only"] = True
    if value.get("consistency") is not None:
        out["consistency"] = as_str(value["consistency"], loc.child(value, "consistency"))
    if value.get("bind") is not None:
        sub = loc.child(value, "bind")
        bind = as_mapping(value["bind"], sub)
        check_keys(bind, ("propagation", "create_host_path", "selinux"), sub)
        b: dict[str, Any] = {}
        if "propagation" in bind:
            p = as_str(bind["propagation"], sub.child(bind, "propagation"))
            if p not in PROPAGATIONS:
                raise sub.child(bind, "propagation").error(f"invalid propagation {p!r}")
            b["propagation"] = p
        if "create_host_path" in bind:
            b["create_host_path"] = as_bool(
                bind["create_host_path"], sub.child(bind, "create_host_path")
            )
        if "selinux" in bind:
            s = as_str(bind["selinux"], sub.child(bind, "selinux"))
            if s not in _SELINUX:
                raise sub.child(bind, "selinux").error(f"invalid selinux label {s!r}: use z or Z")
            b["selinux"] = s
        out["bind"] = b
    if value.get("volume") is not None:
        sub = loc.child(value, "volume")
        vol = as_mapping(value["volume"], sub)
        check_keys(vol, ("nocopy", "subpath"), sub)
        v: dict[str, Any] = {}
        if "nocopy" in vol:
            v["nocopy"] = as_bool(vol["nocopy"], sub.child(vol, "nocopy"))
        if "subpath" in vol:
            v["subpath"] = as_str(vol["subpath"], sub.child(vol, "subpath"))
        out["volume"] = v
    if value.get("tmpfs") is not None:
        sub = loc.child(value, "tmpfs")
        tmp = as_mapping(value["tmpfs"], sub)
        check_keys(tmp, ("size", "mode"), sub)
        t: dict[str, Any] = {}
        if "size" in tmp:
            t["size"] = as_size(tmp["size"], sub.child(tmp, "size"))
        if "mode" in tmp:
            t["mode"] = as_int(tmp["mode"], sub.child(tmp, "mode"))
        out["tmpfs"] = t
    return out


def parse_volumes(value: Any, loc: Loc, base_dir: Path) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise expected(loc, "a list of volumes", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        sub = loc.child(value, i)
        if isinstance(item, dict):
            out.append(parse_long_volume(item, sub, base_dir))
        elif isinstance(item, str):
            out.append(parse_short_volume(item, sub, base_dir))
        else:
            raise expected(sub, "a volume such as data:/var/lib/data or a mapping", item)
    return out
