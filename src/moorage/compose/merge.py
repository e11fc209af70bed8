"""Merging canonical compose files (``-f a.yaml -f b.yaml``) and ``extends``, by the compose
specification's rules: mappings merge key by key, scalars are overridden, sequences append,
except ``command``/``entrypoint``/``healthcheck.test`` (overridden) and the unique resources
``ports`` (by IP, target, published, protocol), ``volumes`` (by target), ``secrets`` and
``configs`` (by target)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from moorage.compose.ports import port_key
from moorage.compose.yamlsrc import MDict

_OVERRIDE = {"command", "entrypoint"}


def _keep_marks(out: dict[str, Any], *sources: Any) -> dict[str, Any]:
    marked = MDict(out)
    for src in sources:
        if isinstance(src, MDict):
            marked.mark = marked.mark or src.mark
            for key, mark in src.key_marks.items():
                if key in out:
                    marked.key_marks[key] = mark
    return marked


def _by_key(base: list[Any], override: list[Any], key: Callable[[Any], Hashable]) -> list[Any]:
    """Entries of ``override`` replace those of ``base`` with the same key; new ones append."""
    out = list(base)
    index = {key(item): i for i, item in enumerate(out)}
    for item in override:
        k = key(item)
        if k in index:
            out[index[k]] = merge_values(out[index[k]], item, ())
        else:
            index[k] = len(out)
            out.append(item)
    return out


def _ref_key(ref: dict[str, Any]) -> Hashable:
    key: Hashable = ref.get("target") or ref["source"]
    return key


def _volume_key(vol: dict[str, Any]) -> Hashable:
    key: Hashable = vol["target"]
    return key


def _port_key(port: dict[str, Any]) -> Hashable:
    return port_key(port)


_UNIQUE: dict[str, Callable[[Any], Hashable]] = {
    "ports": _port_key,
    "volumes": _volume_key,
    "secrets": _ref_key,
    "configs": _ref_key,
}


def merge_values(base: Any, override: Any, path: tuple[str, ...]) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return merge_mappings(base, override, path)
    if isinstance(base, list) and isinstance(override, list):
        out = list(base)
        for item in override:
            if item not in out:
                out.append(item)
        return out
    return override


def merge_mappings(base: dict[str, Any], override: dict[str, Any], path: tuple[str, ...]) -> Any:
    out = dict(base)
    for key, value in override.items():
        if key not in out:
            out[key] = value
            continue
        sub = (*path, key)
        current = out[key]
        if _is_service_key(sub) and key in _OVERRIDE:
            out[key] = value
        elif _is_service_key(sub) and key in _UNIQUE and isinstance(value, list):
            out[key] = _by_key(current, value, _UNIQUE[key])
        elif _is_service_key(sub) and key == "healthcheck" and "test" in value:
            out[key] = {**merge_mappings(current, value, sub), "test": value["test"]}
        elif value is None or current is None:
            out[key] = value
        else:
            out[key] = merge_values(current, value, sub)
    return _keep_marks(out, base, override)


def _is_service_key(path: tuple[str, ...]) -> bool:
    """Whether ``path`` is ``(services, NAME, KEY)``: a service's own key."""
    return len(path) == 3 and path[0] == "services"


def merge_files(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Canonical files, in ``-f`` order, into one canonical project mapping."""
    out: dict[str, Any] = {}
    for data in files:
        out = merge_mappings(out, data, ())
    return out


def merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A service extended by another: ``override`` is the extending service's own keys."""
    merged: dict[str, Any] = merge_mappings(base, override, ("services", ""))
    return merged
