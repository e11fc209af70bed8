"""The normalised project as ``moor compose config`` prints it (YAML or JSON)."""

from __future__ import annotations

import json
from typing import Any

from moorage.compose.model import Project
from moorage.compose.values import format_duration
from moorage.compose.yamlsrc import plain_is_string

_DURATIONS = {
    ("healthcheck", "interval"),
    ("healthcheck", "timeout"),
    ("healthcheck", "start_period"),
    ("healthcheck", "start_interval"),
    ("restart_policy", "delay"),
    ("restart_policy", "window"),
}


def _plain(value: Any, parent: str = "") -> Any:
    """MDict/MList to dict/list, durations as Go prints them, keys sorted, ``$`` escaped."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            v = value[key]
            if (parent, key) in _DURATIONS or key == "stop_grace_period":
                out[key] = format_duration(v)
            else:
                out[key] = _plain(v, str(key))
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, parent) for v in value]
    if isinstance(value, str):
        # the output is itself a compose file: a literal $ is written $$ there
        return value.replace("$", "$$")
    return value


def project_document(project: Project) -> dict[str, Any]:
    """``name``, ``services``, then the top-level resources, as compose v2 orders them."""
    doc: dict[str, Any] = {"name": project.name}
    doc["services"] = {
        name: _plain(project.services[name].config) for name in sorted(project.services)
    }
    for kind in ("networks", "volumes", "secrets", "configs"):
        if project.config.get(kind):
            doc[kind] = _plain(project.config[kind])
    return doc


def _escaped(c: str) -> bool:
    o = ord(c)
    return (o < 0x20 and c != "\n") or 0x7F <= o <= 0x9F or c in "\u2028\u2029\ufeff"


def to_yaml(doc: dict[str, Any]) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        # quote what our YAML 1.2 reading would take for a number, boolean or null
        # ("0o17"), which PyYAML's YAML 1.1 writer leaves plain
        style: str | None
        if any(_escaped(c) for c in data):
            style = '"'  # control characters and Unicode line breaks (NEL, LS, PS) only
            # survive a round trip escaped
        elif "\n" in data:
            style = "|"
        else:
            style = None if plain_is_string(data) else "'"
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Dumper.add_representer(str, _str)
    text: str = yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
        width=1 << 16,
    )  # fmt: skip
    return text


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)
