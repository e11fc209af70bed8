"""One compose file, checked key by key and brought to its canonical (long) form.

Every short syntax becomes the long one (``ports``, ``volumes``, ``environment`` lists,
``depends_on`` lists, ``build: .``…) so that files merge key by key, and every error names
its key path and place. Relative host paths are resolved against the context's ``base_dir``.
Services are in :mod:`service_keys`, top-level resources in :mod:`resources`.
"""

from __future__ import annotations

import re
from typing import Any

from moorage.compose.resources import canonical_resource
from moorage.compose.schema import FileContext, check_keys, marked
from moorage.compose.service_keys import canonical_service
from moorage.compose.values import Loc, as_mapping, as_str, expected

__all__ = ["FileContext", "canonical_file", "canonical_service", "check_keys", "is_v1"]

SERVICE_NAME = re.compile(r"[a-zA-Z0-9._-]+")


TOP_LEVEL_KEYS = ("version", "name", "services", "networks", "volumes", "secrets", "configs")


def canonical_file(data: Any, file: str, ctx: FileContext) -> dict[str, Any]:
    """A whole file (after interpolation) -> its canonical mapping.

    A file without ``services`` (nor ``version``) whose entries look like services is the
    2014 fig format: every top-level key is a service.
    """
    from moorage.compose.yamlsrc import mark_of

    root = Loc((), mark_of(data))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise expected(root, "a mapping at the top of the file", data)
    if "include" in data:
        raise root.child(data, "include").error("include is not supported yet")
    v1 = is_v1(data)
    ctx = FileContext(ctx.base_dir, v1)
    out: dict[str, Any] = {}
    if v1:
        services = {k: v for k, v in data.items() if not str(k).startswith("x-")}
        out["services"] = _services(services, root, data, ctx, top=True)
        return marked(out, data)
    check_keys(data, TOP_LEVEL_KEYS, root)
    for key, value in data.items():
        sub = root.child(data, key)
        if key.startswith("x-"):
            out[key] = value
        elif key == "version":
            out["version"] = as_str(value, sub) if value is not None else ""
        elif key == "name":
            out["name"] = as_str(value, sub)
        elif key == "services":
            if value is not None:
                out["services"] = _services(as_mapping(value, sub), sub, value, ctx)
        elif value is not None:
            section = as_mapping(value, sub)
            out[key] = {
                as_str(name, sub.child(section, name)): canonical_resource(
                    key, body, sub.child(section, name), ctx
                )
                for name, body in section.items()
            }
    return marked(out, data)


def _services(
    services: dict[str, Any], loc: Loc, container: Any, ctx: FileContext, top: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, body in services.items():
        sub = Loc(
            (*loc.path, name) if not top else ("services", name), loc.child(container, name).mark
        )
        text = as_str(name, sub)
        if not SERVICE_NAME.fullmatch(text):
            raise sub.error(f"invalid service name {text!r}: only [a-zA-Z0-9._-] allowed")
        if body is None:
            body = {}
        out[text] = canonical_service(body, sub, ctx)
    return marked(out, container)


def is_v1(data: dict[str, Any]) -> bool:
    """The fig / v1 layout: no ``services`` and no ``version``, and every entry a mapping."""
    if "services" in data or "version" in data:
        return False
    entries = [v for k, v in data.items() if not str(k).startswith("x-")]
    top_level_only = {"name", "networks", "volumes", "secrets", "configs"}
    if entries and all(isinstance(v, dict) for v in entries):
        return not all(k in top_level_only for k in data if not str(k).startswith("x-"))
    return False
