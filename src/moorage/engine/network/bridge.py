"""Host bridges and the host's routes, through pyroute2 (off the hot path: a network is made
once, and pyroute2's import alone costs ~100 ms)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
from typing import Any

from moorage.errors import MoorageError


def _iproute() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def host_routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination in the host's main routing table (its subnets and those of
    other engines). Read from /proc/net/route: the first container of a store passes here,
    and importing pyroute2 for one dump would cost more than the rest of its start."""
    out: list[ipaddress.IPv4Network] = []
    try:
        with open("/proc/net/route") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dst = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = int(fields[7], 16).to_bytes(4, "little")
        plen = bin(int.from_bytes(mask, "big")).count("1")
        if plen:
            out.append(ipaddress.IPv4Network(f"{dst}/{plen}", strict=False))
    return out


def exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def create(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge with the gateway address, up; ``route_localnet`` so that connections from
    127.0.0.1 DNAT'ed to a container can leave through it."""
    try:
        with _iproute() as ipr:
            if not ipr.link_lookup(ifname=name):
                # a MAC of its own: a bridge without one takes its lowest port's, and changes
                # it when that port goes, leaving every container's ARP entry for the
                # gateway pointing nowhere (DNS and the way out stop for ~30 s)
                ipr.link("add", ifname=name, kind="bridge", address=gateway_mac(gateway))
            idx = ipr.link_lookup(ifname=name)[0]
            with contextlib.suppress(Exception):  # already there (re-creation after a crash)
                ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
    except Exception as e:
        raise MoorageError(f"cannot create bridge {name}: {e}") from None
    _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
    _sysctl("net/ipv4/ip_forward", "1")
    allow_forward(name, True)


def gateway_mac(gateway: str) -> str:
    """02:42 and the gateway's address, as containers' MACs are made from theirs (no
    container has the gateway's address, so none has this MAC)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in gateway.split("."))


def delete(name: str) -> None:
    from moorage.engine.network.rtnl import Rtnl

    allow_forward(name, False)
    # one netlink message of our own: importing pyroute2 costs ~170 ms, twice the rest of
    # a network's removal
    with Rtnl() as rtnl:
        rtnl.delete_link(name)


def _sysctl(key: str, value: str) -> None:
    path = f"/proc/sys/{key}"
    with contextlib.suppress(OSError), open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)


def allow_forward(bridge: str, add: bool) -> None:
    """Let the bridge's traffic through a foreign ``ip filter FORWARD`` chain whose policy
    is drop (Docker sets one; with br_netfilter it even drops traffic between two containers
    on one bridge). A drop in any base chain is final, so our own table cannot undo it: the
    only way through is an accept in that chain, added with iptables itself (the table is
    iptables-nft's, and a rule written by nft there would break iptables) and removed with
    the bridge. Nothing is done where no such chain exists."""
    from moorage.engine.network import nft

    if shutil.which("iptables") is None:
        return
    try:
        out = nft.run([{"list": {"chain": {"family": "ip", "table": "filter", "name": "FORWARD"}}}])
    except nft.NftError:
        return
    chains = [i["chain"] for i in out.get("nftables", []) if "chain" in i]
    if add and (not chains or chains[0].get("policy") != "drop"):
        return
    for flag in ("-i", "-o"):
        rule = ["FORWARD", flag, bridge, "-j", "ACCEPT", "-m", "comment", "--comment", "moorage"]
        present = subprocess.run(["iptables", "-w", "-C", *rule], capture_output=True)
        if add and present.returncode != 0:
            subprocess.run(["iptables", "-w", "-I", *rule], capture_output=True, check=False)
        elif not add and present.returncode == 0:
            subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True, check=False)
