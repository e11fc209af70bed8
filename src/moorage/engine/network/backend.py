"""The NetworkBackend interface: what a driver does for bridge networks and the containers on
them. The network service does IPAM, namespaces, DNS files and records; a backend only makes
the host's state (bridges, veths, addresses, routes, firewall) match."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class NetworkRecord:
    id: str
    name: str
    driver: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str
    internal: bool
    dns: bool
    labels: dict[str, str]
    options: dict[str, str]
    created: float

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.partition("/")[2])


@dataclass(frozen=True)
class Attachment:
    """One container on one network, as set up: its interface inside and out."""

    network: NetworkRecord
    ifname: str  # inside: eth0, eth1, ...
    host_ifname: str  # the veth end on the bridge
    ip: str
    mac: str
    aliases: tuple[str, ...] = ()
    ports: tuple[dict[str, Any], ...] = field(default=())
    position: int = 0  # ethN
    default_route: bool = False  # route out through this network's gateway


class NetworkBackend(Protocol):
    name: str

    def create_network(self, net: NetworkRecord) -> None:
        """Make the network's host state (idempotent: also re-made after a reboot)."""

    def delete_network(self, net: NetworkRecord) -> None:
        """Remove whatever create_network made; nothing if it is gone already."""

    def setup(self, cid: str, netns: Path, attachments: list[Attachment]) -> None:
        """Connect the namespace to its networks and publish its ports; on error, leave
        nothing behind."""

    def teardown(
        self, cid: str, netns: Path, attachments: list[Attachment], *, namespace_going: bool = True
    ) -> None:
        """Undo setup; idempotent, tolerant of a half-made or already removed state.
        ``namespace_going``: the caller removes the namespace next (not so on disconnect)."""


def backend_name() -> str:
    return os.environ.get("MOORAGE_NETWORK_BACKEND", "native")


def get_backend(runroot: Path, name: str = "") -> NetworkBackend:
    name = name or backend_name()
    if name == "native":
        from moorage.engine.network.native import NativeBackend

        return NativeBackend()
    if name == "netavark":
        from moorage.engine.network.netavark import NetavarkBackend

        return NetavarkBackend(runroot / "netavark")
    from moorage.errors import InvalidArgument

    raise InvalidArgument(f"unknown network backend {name!r} (MOORAGE_NETWORK_BACKEND): "
                          "use native or netavark")  # fmt: skip
