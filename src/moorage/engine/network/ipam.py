"""Addresses: subnets for new networks from a pool (skipping every subnet the host already
routes or another network holds) and container addresses within a network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from moorage.errors import Conflict, InvalidArgument

# 10.89/16 is Podman's pool for named networks; 10.90-10.95 are ours, /24 each
POOL = ipaddress.IPv4Network("10.90.0.0/15")
POOL_PREFIX = 24


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(
            f"invalid subnet {text!r}: expected CIDR, e.g. 10.91.0.0/24"
        ) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"IPv6 subnets are not supported yet: {text}")
    if str(net) != text.strip() and ipaddress.ip_interface(text).ip != net.network_address:
        raise InvalidArgument(f"invalid subnet {text}: it has host bits set (use {net})")
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {text} is too small for a network")
    return net


def check_free(
    net: ipaddress.IPv4Network,
    taken: Iterable[ipaddress.IPv4Network],
    routed: Iterable[ipaddress.IPv4Network],
) -> None:
    for other in taken:
        if net.overlaps(other):
            raise Conflict(
                "invalid pool request: Pool overlaps with other one on this address space "
                f"({net} overlaps {other})"
            )
    for other in routed:
        if net.overlaps(other) and other.prefixlen > 0:
            raise Conflict(f"subnet {net} overlaps {other}, which the host already routes")


def next_subnet(
    taken: Iterable[ipaddress.IPv4Network], routed: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    busy = [n for n in (*taken, *routed) if n.prefixlen > 0]
    for cand in POOL.subnets(new_prefix=POOL_PREFIX):
        if not any(cand.overlaps(b) for b in busy):
            return cand
    raise Conflict(
        "could not find an available, non-overlapping IPv4 address pool among the defaults "
        "to assign to the network"
    )


def gateway_of(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return net.network_address + 1


def allocate(
    net: ipaddress.IPv4Network,
    ip_range: ipaddress.IPv4Network | None,
    gateway: ipaddress.IPv4Address,
    used: set[str],
) -> str:
    """The lowest free host address (in ``ip_range`` if given)."""
    space = ip_range or net
    for host in space.hosts():
        if host == gateway or str(host) in used or host not in net:
            continue
        if host == net.broadcast_address:
            continue
        return str(host)
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {net}")


def mac_for(ip: str) -> str:
    """Docker's MAC for an address: 02:42 and the four address bytes."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)
