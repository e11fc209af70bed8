"""``ports`` and ``expose``: the short syntax (``[IP:][HOST:]CONTAINER[/PROTO]``, ranges
included) and the long syntax, both to one canonical form per published port."""

from __future__ import annotations

import re
from typing import Any

from moorage.compose.schema import check_keys
from moorage.compose.values import Loc, as_int, as_mapping, as_str, expected

PROTOCOLS = ("tcp", "udp", "sctp")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def _port_range(text: str, loc: Loc, what: str) -> tuple[int, int]:
    m = _RANGE.fullmatch(text)
    if not m:
        raise loc.error(f"invalid {what} port {text!r}: expected a number 1-65535 or a range")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    for n in (lo, hi):
        if not 1 <= n <= 65535:
            raise loc.error(f"invalid {what} port {n}: port numbers are 1-65535")
    if hi < lo:
        raise loc.error(f"invalid {what} port range {text!r}: the end is before the start")
    return lo, hi


def _split_ip(text: str, loc: Loc) -> tuple[str, str]:
    """``IP:rest`` with an optional bracketed IPv6 address -> (ip, rest)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise loc.error(f"invalid port {text!r}: unterminated IPv6 address")
        return text[1:end], text[end + 2 :]
    return "", text


def _check_ip(ip: str, loc: Loc) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise loc.error(f"invalid host IP {ip!r}") from None


def parse_short_port(value: Any, loc: Loc) -> list[dict[str, Any]]:
    """One short-syntax entry -> canonical ports (a range of pairs is one per pair)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise expected(loc, "a port such as 8080, 8080:80 or 127.0.0.1:8080:80/udp", value)
    text = value.strip()
    spec, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise loc.error(f"invalid protocol {protocol!r} in port {text!r}: use tcp, udp or sctp")
    ip, rest = _split_ip(spec, loc)
    parts = rest.split(":")
    if ip:
        if len(parts) != 2:
            raise loc.error(f"invalid port {text!r}: expected [IP:]HOST:CONTAINER")
        host, container = parts
    elif len(parts) == 1:
        host, container = "", parts[0]
    elif len(parts) == 2:
        host, container = parts
    elif len(parts) == 3:
        ip, host, container = parts
    else:
        raise loc.error(f"invalid port {text!r}: expected [IP:][HOST:]CONTAINER[/PROTOCOL]")
    if ip:
        _check_ip(ip, loc)
    c_lo, c_hi = _port_range(container, loc, "container")
    out: list[dict[str, Any]] = []
    if not host:
        for target in range(c_lo, c_hi + 1):
            out.append(_canonical(target, None, ip, protocol))
        return out
    h_lo, h_hi = _port_range(host, loc, "host")
    if c_lo == c_hi:
        published = str(h_lo) if h_lo == h_hi else f"{h_lo}-{h_hi}"
        return [_canonical(c_lo, published, ip, protocol)]
    if h_hi - h_lo != c_hi - c_lo:
        raise loc.error(
            f"invalid port {text!r}: the host range and the container range differ in size"
        )
    for offset in range(c_hi - c_lo + 1):
        out.append(_canonical(c_lo + offset, str(h_lo + offset), ip, protocol))
    return out


def _canonical(target: int, published: str | None, ip: str, protocol: str) -> dict[str, Any]:
    port: dict[str, Any] = {"mode": "ingress", "target": target}
    if published is not None:
        port["published"] = published
    if ip:
        port["host_ip"] = ip
    port["protocol"] = protocol
    return port


_LONG_KEYS = ("name", "target", "published", "host_ip", "protocol", "app_protocol", "mode")


def parse_long_port(value: dict[str, Any], loc: Loc) -> dict[str, Any]:
    as_mapping(value, loc)
    check_keys(value, _LONG_KEYS, loc)
    if "target" not in value:
        raise loc.error("a port in the long syntax needs a target")
    target = as_int(value["target"], loc.child(value, "target"))
    if not 1 <= target <= 65535:
        raise loc.child(value, "target").error(f"invalid port {target}: port numbers are 1-65535")
    out: dict[str, Any] = {"mode": "ingress", "target": target}
    if value.get("published") is not None:
        sub = loc.child(value, "published")
        text = as_str(value["published"], sub)
        lo, hi = _port_range(text, sub, "published")
        out["published"] = str(lo) if lo == hi else f"{lo}-{hi}"
    if value.get("host_ip"):
        sub = loc.child(value, "host_ip")
        out["host_ip"] = as_str(value["host_ip"], sub)
        _check_ip(out["host_ip"], sub)
    protocol = as_str(value.get("protocol") or "tcp", loc.child(value, "protocol"))
    if protocol not in PROTOCOLS:
        raise loc.child(value, "protocol").error(
            f"invalid protocol {protocol!r}: use tcp, udp or sctp"
        )
    out["protocol"] = protocol
    mode = as_str(value.get("mode") or "ingress", loc.child(value, "mode"))
    if mode not in ("host", "ingress"):
        raise loc.child(value, "mode").error(f"invalid mode {mode!r}: use host or ingress")
    out["mode"] = mode
    for key in ("name", "app_protocol"):
        if value.get(key) is not None:
            out[key] = as_str(value[key], loc.child(value, key))
    return out


def parse_ports(value: Any, loc: Loc) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise expected(loc, "a list of ports", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        sub = loc.child(value, i)
        if isinstance(item, dict):
            out.append(parse_long_port(item, sub))
        else:
            out.extend(parse_short_port(item, sub))
    return out


def parse_expose(value: Any, loc: Loc) -> list[str]:
    """``expose``: ``3000``, ``"8000-8010"``, ``"53/udp"`` -> their text, checked."""
    if not isinstance(value, list):
        raise expected(loc, "a list of ports", value)
    out: list[str] = []
    for i, item in enumerate(value):
        sub = loc.child(value, i)
        text = as_str(item, sub)
        port, _, protocol = text.partition("/")
        _port_range(port, sub, "exposed")
        if protocol and protocol not in PROTOCOLS:
            raise sub.error(f"invalid protocol {protocol!r} in {text!r}: use tcp, udp or sctp")
        if text not in out:
            out.append(text)
    return out


def port_key(port: dict[str, Any]) -> tuple[str, int, str, str]:
    """What makes a port unique when files are merged: (IP, target, published, protocol)."""
    return (
        port.get("host_ip", ""),
        port["target"],
        port.get("published") or "",
        port.get("protocol", "tcp"),
    )


def published_range(published: str | None) -> range:
    """The host ports of ``published`` (``"8080"``, ``"8080-8081"``, None)."""
    if not published:
        return range(0)
    lo, _, hi = published.partition("-")
    return range(int(lo), int(hi or lo) + 1)
