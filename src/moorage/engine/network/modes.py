"""Network modes of a container and the checks on its network flags (pure: no store)."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from moorage.errors import InvalidArgument

if TYPE_CHECKING:
    from moorage.engine.containers.spec import ContainerSpec

DEFAULT_NETWORK = "moor"
PREDEFINED = ("none", "host", "bridge")
_NET_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def is_bridge_mode(mode: str) -> bool:
    """Whether the container gets its own namespace on a moorage bridge network."""
    return mode not in ("none", "host") and not mode.startswith("container:")


def network_name(mode: str) -> str:
    """The network a bridge-mode container joins first (``bridge`` is the default one)."""
    return DEFAULT_NETWORK if mode in ("bridge", "default", "") else mode


def is_user_defined(mode: str) -> bool:
    return is_bridge_mode(mode) and network_name(mode) != DEFAULT_NETWORK


def check_network_name(name: str) -> None:
    if not _NET_NAME.match(name) or len(name) > 64:
        raise InvalidArgument(
            f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )


def parse_link(text: str) -> tuple[str, str]:
    """``NAME[:ALIAS]`` to (name, alias)."""
    name, _, alias = text.partition(":")
    name = name.removeprefix("/")
    if not name:
        raise InvalidArgument(f"invalid link {text!r}: expected NAME[:ALIAS]")
    return name, alias or name


def parse_extra_host(text: str) -> tuple[str, str]:
    """``HOST:IP`` (Docker also takes ``HOST=IP``) to (host, ip)."""
    sep = "=" if "=" in text else ":"
    host, _, ip = text.partition(sep)
    if not host or not ip:
        raise InvalidArgument(f"invalid argument {text!r} for --add-host: expected HOST:IP")
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
    return host, ip


def validate_network_options(spec: ContainerSpec) -> None:
    from moorage.engine.network.ports import parse_expose, parse_publish

    mode = spec.network_mode
    if mode.startswith("container:"):
        if not mode.removeprefix("container:"):
            raise InvalidArgument("invalid network mode: container: needs a container name")
    elif mode not in PREDEFINED:
        check_network_name(mode)
    for p in spec.publish:
        parse_publish(p)
    for e in spec.expose:
        parse_expose(e)
    if (spec.publish or spec.publish_all) and not is_bridge_mode(mode) and mode != "host":
        raise InvalidArgument("conflicting options: port publishing and the container type "
                              "network mode")  # fmt: skip
    if spec.ip:
        try:
            if not isinstance(ipaddress.ip_address(spec.ip), ipaddress.IPv4Address):
                raise ValueError
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {spec.ip}") from None
        if not is_user_defined(mode):
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")  # fmt: skip
    if spec.network_aliases and not is_user_defined(mode):
        raise InvalidArgument("network-scoped alias is supported only for containers in user "
                              "defined networks")  # fmt: skip
    for link in spec.links:
        parse_link(link)
    if spec.links and not is_bridge_mode(mode):
        raise InvalidArgument("conflicting options: links and the container type network mode")
    for h in spec.extra_hosts:
        parse_extra_host(h)
    for d in spec.dns:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise InvalidArgument(f"{d} is not an ip address") from None
    if mode.startswith("container:") and (spec.dns or spec.extra_hosts or spec.hostname):
        raise InvalidArgument("conflicting options: dns, add-host or hostname and the network "
                              "mode container")  # fmt: skip
