"""Published ports: Docker's ``-p`` grammar, ``-P``, host ports chosen and checked free."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from moorage.errors import Conflict, InvalidArgument


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0  # 0: any free port, chosen at start
    host_port_end: int = 0  # a host range for one container port: the first free in it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


def _port(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {text}") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid {what}: {text}")
    return n


def _range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    a = _port(lo, what)
    b = _port(hi, what) if sep else a
    if b < a:
        raise InvalidArgument(f"invalid {what}: {text}")
    return a, b


def parse_publish(spec: str) -> list[PortBinding]:
    """``[[IP:][HOSTPORT[-END]]:]CPORT[-END][/tcp|udp]`` as Docker reads it."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp") or not rest:
        raise InvalidArgument(f"invalid port spec {spec!r}: protocol must be tcp or udp")
    host_ip = ""
    if rest.startswith("["):
        raise InvalidArgument(f"invalid port spec {spec!r}: IPv6 host addresses are not supported")
    parts = rest.split(":")
    if len(parts) == 1:
        host, cport = "", parts[0]
    elif len(parts) == 2:
        host, cport = parts
    elif len(parts) == 3:
        host_ip, host, cport = parts
        try:
            if not isinstance(ipaddress.ip_address(host_ip), ipaddress.IPv4Address):
                raise ValueError
        except ValueError:
            raise InvalidArgument(f"invalid IP address in port spec {spec!r}: {host_ip}") from None
    else:
        raise InvalidArgument(f"invalid port spec {spec!r}")
    c0, c1 = _range(cport, "containerPort")
    if not host:
        return [PortBinding(p, proto, host_ip) for p in range(c0, c1 + 1)]
    h0, h1 = _range(host, "hostPort")
    if c0 == c1 and h1 > h0:
        return [PortBinding(c0, proto, host_ip, h0, h1)]
    if h1 - h0 != c1 - c0:
        raise InvalidArgument(
            f"invalid ranges specified for container and host ports: {cport} and {host}"
        )
    return [PortBinding(c0 + i, proto, host_ip, h0 + i) for i in range(c1 - c0 + 1)]


def parse_expose(spec: str) -> list[str]:
    """``--expose PORT[-END][/proto]`` to ``["80/tcp", ...]``."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    a, b = _range(rest, "port")
    return [f"{p}/{proto}" for p in range(a, b + 1)]


def _bindable(host_ip: str, port: int, proto: str) -> bool:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip or "0.0.0.0", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(
                    f"cannot publish on {host_ip}:{port}: the host has no such address"
                ) from None
            raise
    return True


def _free_port(host_ip: str, proto: str) -> int:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host_ip or "0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


def assign(bindings: Iterable[PortBinding], taken: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Concrete host ports for ``bindings``: the requested ones checked free (on the host and
    among this store's running containers, in ``taken`` as (proto, port)), the others chosen.
    Raises before anything is set up, naming the port."""
    out: list[dict[str, Any]] = []
    mine: set[tuple[str, int]] = set()
    for b in bindings:
        ip = b.host_ip or "0.0.0.0"
        if b.host_port:
            chosen = 0
            for port in range(b.host_port, (b.host_port_end or b.host_port) + 1):
                busy = (b.proto, port) in taken or (b.proto, port) in mine
                if not busy and _bindable(b.host_ip, port, b.proto):
                    chosen = port
                    break
            if not chosen:
                where = f"{ip}:{b.host_port}"
                if b.host_port_end:
                    where += f"-{b.host_port_end}"
                raise Conflict(f"Bind for {where} failed: port is already allocated")
        else:
            for _ in range(20):
                chosen = _free_port(b.host_ip, b.proto)
                if (b.proto, chosen) not in taken and (b.proto, chosen) not in mine:
                    break
        mine.add((b.proto, chosen))
        out.append({"host_ip": b.host_ip, "host_port": chosen,
                    "container_port": b.container_port, "proto": b.proto})  # fmt: skip
    return out


def docker_ports(bound: list[dict[str, Any]], exposed: Iterable[str]) -> dict[str, Any]:
    """``NetworkSettings.Ports``: each exposed or published port with its host bindings."""
    ports: dict[str, Any] = {k: None for k in exposed}
    for p in bound:
        key = f"{p['container_port']}/{p['proto']}"
        ports.setdefault(key, None)
        binding = {"HostIp": p["host_ip"] or "0.0.0.0", "HostPort": str(p["host_port"])}
        ports[key] = [*(ports[key] or []), binding]
    return ports


def ps_ports(bound: list[dict[str, Any]], exposed: Iterable[str]) -> str:
    """The PORTS column of ``ps``: ``0.0.0.0:8080->80/tcp, 443/tcp``."""
    items = []
    done = set()
    for p in sorted(bound, key=lambda p: (p["container_port"], p["proto"])):
        ip = p["host_ip"] or "0.0.0.0"
        items.append(f"{ip}:{p['host_port']}->{p['container_port']}/{p['proto']}")
        done.add(f"{p['container_port']}/{p['proto']}")
    for k in sorted(set(exposed) - done, key=lambda k: (int(k.split("/")[0]), k)):
        items.append(k)
    return ", ".join(items)
