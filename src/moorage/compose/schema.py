"""What every part of a compose file's canonicalisation shares: the file's context,
the check for unknown keys, and keeping the marks of a mapping on its canonical form."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.compose.values import Loc


@dataclass(frozen=True)
class FileContext:
    """What canonicalising needs to know about the file: where relative paths start, and
    whether it is a 2014 fig / v1 file (services at the top level)."""

    base_dir: Path
    v1: bool = False


def marked(out: dict[str, Any], src: Any) -> dict[str, Any]:
    """``out`` as an MDict carrying the marks ``src`` has for the same keys."""
    from moorage.compose.yamlsrc import MDict

    marked = MDict(out, mark=getattr(src, "mark", None))
    for key, mark in getattr(src, "key_marks", {}).items():
        if key in out:
            marked.key_marks[key] = mark
    return marked


def check_keys(value: dict[str, Any], allowed: Iterable[str], loc: Loc) -> None:
    """Reject a key that is neither in ``allowed`` nor an ``x-`` extension."""
    allowed = tuple(allowed)
    for key in value:
        if isinstance(key, str) and (key in allowed or key.startswith("x-")):
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise loc.child(value, key).error(f"unknown key {key!r}{hint}")
