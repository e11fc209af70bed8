"""Human-readable sizes and durations, as Docker prints them (go-units)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 4) -> str:
    """``1234567`` -> ``1.235MB`` (decimal units, ``precision`` significant digits)."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_DECIMAL[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: ``Less than a second``, ``About a minute``, ``3 weeks``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(ts: float, now: float | None = None) -> str:
    return human_duration((time.time() if now is None else now) - ts) + " ago"


def parse_time(value: str | None) -> float | None:
    """RFC 3339 (with nanoseconds, as Go writes) to unix time; None if absent or unparsable."""
    if not value:
        return None
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    # Python takes at most 6 fractional digits
    if "." in v:
        head, _, rest = v.partition(".")
        frac = ""
        while rest and rest[0].isdigit():
            frac += rest[0]
            rest = rest[1:]
        v = f"{head}.{frac[:6]}{rest}" if frac else head + rest
    try:
        return datetime.fromisoformat(v).timestamp()
    except ValueError:
        return None


def rfc3339(ts: float) -> str:
    """Unix time to RFC 3339 with nanosecond precision and ``Z``, as Docker prints."""
    # isoformat: as strftime("%Y-%m-%dT%H:%M:%S.%f"), in a third less time (the health
    # supervisor writes two per probe)
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")[:26] + "000Z"


def go_time(ts: float | None) -> str:
    """RFC 3339, or Go's zero time for "never" (as Docker's JSON shows unset times)."""
    return rfc3339(ts) if ts else "0001-01-01T00:00:00Z"
