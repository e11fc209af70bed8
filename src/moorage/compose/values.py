"""Typed readers for compose values: strings, booleans, integers, lists, ``KEY=VALUE``
mappings, durations (``1m30s``) and sizes (``512m``); each error names the key path."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from moorage.compose.errors import ComposeError, Mark
from moorage.compose.yamlsrc import mark_of

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Loc:
    """Where a value sits: its key path and, when known, its file position."""

    path: Path = ()
    mark: Mark | None = None

    def child(self, container: Any, key: str | int) -> Loc:
        return Loc((*self.path, key), mark_of(container, key) or self.mark)

    def error(self, message: str) -> ComposeError:
        return ComposeError(message, self.path, self.mark)


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def expected(loc: Loc, what: str, got: Any) -> ComposeError:
    return loc.error(f"expected {what}, got {type_name(got)}" + _shown(got))


def _shown(v: Any) -> str:
    return f" ({v!r})" if isinstance(v, str | int | float) and not isinstance(v, bool) else ""


def as_str(v: Any, loc: Loc) -> str:
    """A string; numbers are taken as their text (``user: 1000``)."""
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return _num_text(v)
    raise expected(loc, "a string", v)


def _num_text(v: int | float) -> str:
    if isinstance(v, float) and v.is_integer() and not math.isinf(v):
        return str(int(v))
    return str(v)


def scalar_text(v: Any, loc: Loc) -> str:
    """An environment/label value: strings, numbers and booleans (``true``) as text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return as_str(v, loc)


_TRUE = {"y", "yes", "true", "on", "1"}
_FALSE = {"n", "no", "false", "off", "0"}


def as_bool(v: Any, loc: Loc) -> bool:
    """A boolean; strings as compose casts interpolated values (``true``, ``yes``, ``off``…)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise expected(loc, "a boolean", v)


def as_int(v: Any, loc: Loc, minimum: int | None = None) -> int:
    """An integer, from a number or its text (``${REPLICAS:-2}``)."""
    n: int | None = None
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif (isinstance(v, float) and v.is_integer()) or (
        isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d+\s*", v)
    ):
        n = int(v)
    if n is None:
        raise expected(loc, "an integer", v)
    if minimum is not None and n < minimum:
        raise loc.error(f"must be at least {minimum}, got {n}")
    return n


def as_number(v: Any, loc: Loc) -> float:
    """A number (``cpus: 0.5`` or ``"1.5"``)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise expected(loc, "a number", v)


def as_mapping(v: Any, loc: Loc) -> dict[Any, Any]:
    if not isinstance(v, dict):
        raise expected(loc, "a mapping", v)
    return v


def as_list(v: Any, loc: Loc) -> list[Any]:
    if not isinstance(v, list):
        raise expected(loc, "a list", v)
    return v


def str_list(v: Any, loc: Loc, single: bool = False) -> list[str]:
    """A list of strings; with ``single``, one string is a list of one."""
    if single and isinstance(v, str | int) and not isinstance(v, bool):
        return [as_str(v, loc)]
    items = as_list(v, loc) if not single or isinstance(v, list) else None
    if items is None:
        raise expected(loc, "a string or a list of strings", v)
    return [as_str(item, loc.child(v, i)) for i, item in enumerate(items)]


def unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def kv_mapping(v: Any, loc: Loc, allow_none: bool = True) -> dict[str, str | None]:
    """``environment``/``labels``/``args``: a mapping or a list of ``KEY=VALUE`` (a bare
    ``KEY`` is None: "take it from the environment", or an empty label)."""
    out: dict[str, str | None] = {}
    if isinstance(v, dict):
        for key, value in v.items():
            sub = loc.child(v, key)
            name = as_str(key, sub)
            if value is None:
                out[name] = None if allow_none else ""
            elif isinstance(value, dict | list):
                raise expected(sub, "a string, number or boolean", value)
            else:
                out[name] = scalar_text(value, sub)
        return out
    if isinstance(v, list):
        for i, item in enumerate(v):
            sub = loc.child(v, i)
            text = as_str(item, sub)
            key, sep, value = text.partition("=")
            if not key:
                raise sub.error(f"invalid entry {text!r}: expected KEY=VALUE")
            out[key] = value if sep else (None if allow_none else "")
        return out
    raise expected(loc, "a mapping or a list of KEY=VALUE strings", v)


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration (``1m30s``, ``1.5h``, ``300ms``, ``0``) in seconds; ValueError if not."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if not s:
        raise ValueError(text)
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(text)
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def as_duration(v: Any, loc: Loc) -> float:
    """A duration in seconds, from a Go duration string (numbers are seconds)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            seconds = parse_duration(v)
        except ValueError:
            pass
        else:
            if seconds < 0:
                raise loc.error(f"a duration cannot be negative: {v!r}")
            return seconds
    raise expected(loc, "a duration such as 10s, 1m30s or 500ms", v)


def format_duration(seconds: float) -> str:
    """Seconds as Go prints a duration: ``1m30s``, ``500ms``, ``1h0m0s``, ``0s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9) + "s"
    if h:
        return f"{sign}{h}h{m}m{secs}"
    if m:
        return f"{sign}{m}m{secs}"
    return sign + secs


def _trim(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def as_size(v: Any, loc: Loc) -> int:
    """A size in bytes: a number of bytes or ``512m``, ``1.5g``, ``64kb``…"""
    from moorage.engine.containers.parse import parse_bytes
    from moorage.errors import InvalidArgument

    if isinstance(v, int) and not isinstance(v, bool):
        if v < 0:
            raise loc.error(f"a size cannot be negative: {v}")
        return v
    if isinstance(v, str):
        try:
            return parse_bytes(v.strip())
        except InvalidArgument:
            pass
    raise expected(loc, "a size such as 512m, 1g or a number of bytes", v)
