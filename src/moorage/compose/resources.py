"""The top-level ``networks``, ``volumes``, ``secrets`` and ``configs`` of a compose file,
checked and brought to their canonical form."""

from __future__ import annotations

from typing import Any

from moorage.compose.schema import FileContext, check_keys
from moorage.compose.values import Loc, as_bool, as_mapping, as_str, expected, kv_mapping
from moorage.compose.volumes import resolve_path


def _external(value: Any, loc: Loc) -> tuple[bool, str | None]:
    """``external: true`` or the legacy ``external: {name: x}``."""
    if isinstance(value, dict):
        check_keys(value, ("name",), loc)
        name = value.get("name")
        return True, as_str(name, loc.child(value, "name")) if name is not None else None
    return as_bool(value, loc), None


_RESOURCE_KEYS = {
    "networks": (
        "name",
        "driver",
        "driver_opts",
        "external",
        "internal",
        "attachable",
        "enable_ipv4",
        "enable_ipv6",
        "ipam",
        "labels",
    ),
    "volumes": ("name", "driver", "driver_opts", "external", "labels"),
    "secrets": ("name", "file", "environment", "external", "labels", "driver", "driver_opts"),
    "configs": ("name", "file", "environment", "content", "external", "labels"),
}


def _ipam(value: Any, loc: Loc) -> dict[str, Any]:
    ipam = as_mapping(value, loc)
    check_keys(ipam, ("driver", "config", "options"), loc)
    out: dict[str, Any] = {}
    if ipam.get("driver") is not None:
        out["driver"] = as_str(ipam["driver"], loc.child(ipam, "driver"))
    if ipam.get("options") is not None:
        out["options"] = kv_mapping(ipam["options"], loc.child(ipam, "options"), allow_none=False)
    if ipam.get("config") is not None:
        sub = loc.child(ipam, "config")
        pools = []
        for i, pool in enumerate(_as_list(ipam["config"], sub)):
            ps = sub.child(ipam["config"], i)
            pool = as_mapping(pool, ps)
            check_keys(pool, ("subnet", "gateway", "ip_range", "aux_addresses"), ps)
            entry: dict[str, Any] = {}
            for key, raw in pool.items():
                if key == "aux_addresses":
                    entry[key] = kv_mapping(raw, ps.child(pool, key), allow_none=False)
                else:
                    entry[key] = as_str(raw, ps.child(pool, key))
            pools.append(entry)
        out["config"] = pools
    return out


def _as_list(value: Any, loc: Loc) -> list[Any]:
    if not isinstance(value, list):
        raise expected(loc, "a list", value)
    return value


def canonical_resource(kind: str, raw: Any, loc: Loc, ctx: FileContext) -> dict[str, Any]:
    """One entry of the top-level ``networks``/``volumes``/``secrets``/``configs``."""
    if raw is None:
        return {}
    body = as_mapping(raw, loc)
    check_keys(body, _RESOURCE_KEYS[kind], loc)
    out: dict[str, Any] = {}
    for key, value in body.items():
        sub = loc.child(body, key)
        if key.startswith("x-"):
            out[key] = value
        elif key == "external":
            external, legacy_name = _external(value, sub)
            if external:
                out["external"] = True
            if legacy_name:
                out["name"] = legacy_name
        elif key in ("driver_opts", "labels"):
            out[key] = kv_mapping(value, sub, allow_none=False)
        elif key in ("internal", "attachable", "enable_ipv4", "enable_ipv6"):
            out[key] = as_bool(value, sub)
        elif key == "ipam":
            out[key] = _ipam(value, sub)
        elif key == "file":
            out[key] = resolve_path(as_str(value, sub), ctx.base_dir)
        elif value is not None:
            out.setdefault(key, as_str(value, sub))
    if kind in ("secrets", "configs") and not out.get("external"):
        sources = [k for k in ("file", "environment", "content") if k in out]
        if len(sources) != 1:
            raise loc.error(
                f"a {kind[:-1]} needs exactly one of file, environment"
                + (" or content" if kind == "configs" else "")
                + " (or external: true)"
            )
    if out.get("external"):
        extra = sorted(k for k in out if k not in ("external", "name") and not k.startswith("x-"))
        if extra:
            raise loc.error(f"an external {kind[:-1]} cannot also set {', '.join(extra)}")
    return out
