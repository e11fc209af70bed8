"""The native backend: rtnetlink for the veth pairs (hand-packed, see rtnl.py), pyroute2 for
the bridges, one libnftables JSON transaction per operation for NAT, ports and isolation."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from moorage.engine.network import netns
from moorage.engine.network.backend import Attachment, NetworkRecord
from moorage.engine.network.rtnl import NetlinkError, Rtnl
from moorage.errors import MoorageError


class NativeBackend:
    name = "native"

    def create_network(self, net: NetworkRecord) -> None:
        from moorage.engine.network import bridge, firewall, nft

        bridge.create(net.bridge, net.gateway, net.prefixlen)
        cmds = firewall.network_commands(net.bridge, net.subnet, internal=net.internal)
        if nft.table_exists(firewall.FAMILY, firewall.table_name(net.bridge)):
            cmds = firewall.delete_network_commands(net.bridge) + cmds  # re-made from scratch
        nft.run(cmds)

    def delete_network(self, net: NetworkRecord) -> None:
        from moorage.engine.network import bridge, firewall, nft

        with contextlib.suppress(nft.NftError):
            nft.run(firewall.delete_network_commands(net.bridge))
        bridge.delete(net.bridge)

    def setup(self, cid: str, ns: Path, attachments: list[Attachment]) -> None:
        try:
            self._setup(ns, attachments)
        except BaseException:
            self.teardown(cid, ns, attachments, namespace_going=False)
            raise

    def _setup(self, ns: Path, attachments: list[Attachment]) -> None:
        with netns.entered(ns):
            inside = Rtnl()
        try:
            if any(a.position == 0 for a in attachments):
                inside.link_up(1)  # lo, on the first setup of this namespace
            nsfd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                with Rtnl() as host:
                    for a in attachments:
                        master = _ifindex(a.network.bridge)
                        try:
                            host.add_veth(a.host_ifname, a.ifname, nsfd, master=master,
                                          peer_mac=a.mac)  # fmt: skip
                        except NetlinkError as e:
                            raise MoorageError(
                                f"cannot connect to network {a.network.name}: veth "
                                f"{a.host_ifname}: {e.strerror}"
                            ) from None
            finally:
                os.close(nsfd)
            for a in attachments:
                # in a fresh namespace lo is 1 and the first veth 2: no lookup needed
                index = 2 if a.position == 0 else inside.index_of(a.ifname)
                inside.link_up(index)
                inside.add_address(index, a.ip, a.network.prefixlen)
                if a.default_route:
                    inside.add_default_route(a.network.gateway, index)
        finally:
            inside.close()
        self._ports("add", attachments)

    def _ports(self, verb: str, attachments: list[Attachment]) -> None:
        from moorage.engine.network import firewall

        cmds = []
        for a in attachments:
            if a.ports:
                cmds += firewall.port_commands(verb, a.network.bridge, a.ip, list(a.ports))
        if cmds:
            from moorage.engine.network import nft

            nft.run(cmds)

    def teardown(
        self, cid: str, ns: Path, attachments: list[Attachment], *, namespace_going: bool = True
    ) -> None:
        from moorage.engine.network import nft

        errors = []
        try:
            self._ports("delete", attachments)
        except nft.NftError:
            # some were never added (a setup that failed half-way): remove one by one
            for a in attachments:
                for p in a.ports:
                    with contextlib.suppress(nft.NftError):
                        self._ports("delete", [dataclasses.replace(a, ports=(p,))])
        if not namespace_going:
            # the namespace stays (disconnect): the pair must go now. Otherwise removing the
            # namespace takes its veths with it in the kernel's own time: deleting a link
            # here waits ~25 ms for an RCU grace period, most of the teardown budget
            # (by its end inside: the host end's name is not kept)
            with contextlib.ExitStack() as stack:
                if ns.exists():
                    stack.enter_context(netns.entered(ns))
                    inside = stack.enter_context(Rtnl())
                for a in attachments:
                    try:
                        if ns.exists():
                            inside.delete_link(a.ifname)
                    except NetlinkError as e:
                        errors.append(f"{a.ifname}: {e.strerror}")
        if errors:
            raise MoorageError("network teardown: " + "; ".join(errors))


def _ifindex(name: str) -> int:
    try:
        with open(f"/sys/class/net/{name}/ifindex") as f:
            return int(f.read())
    except OSError:
        raise MoorageError(f"bridge {name} is missing") from None
