"""The nftables ruleset of one bridge network, and its per-container port elements.

Every network has a table of its own, ``inet moorage-<bridge>``, so creating or removing a
network is one transaction that touches nothing else on the host:

* ``prerouting``/``output`` (nat): traffic to a local address whose protocol and port are in
  the network's maps is DNAT'ed to the container (``output`` covers the host itself,
  127.0.0.1 included; ``route_localnet`` on the bridge lets such packets leave it);
* ``postrouting`` (nat): the subnet is masqueraded out (not for ``--internal``); DNAT'ed
  connections into the bridge are masqueraded too, so replies from loopback clients and from
  containers on the same bridge come back the way they went;
* ``forward`` (filter): connections to a published port pass; otherwise traffic from this
  bridge to any other moorage bridge is dropped (isolation between networks), and an
  ``--internal`` network exchanges nothing with anything but itself.

A container's published ports are elements of four maps (keyed by protocol and host port,
with or without the host address): adding or removing a container is one transaction of
element adds or deletes, with no rule handles to look up.
"""

from __future__ import annotations

from typing import Any

BRIDGE_PREFIX = "mr-"
FAMILY = "inet"


def table_name(bridge: str) -> str:
    return f"moorage-{bridge}"


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _dnat(key: list[Any], addr_map: str, port_map: str) -> dict[str, Any]:
    return {
        "dnat": {
            "family": "ip",
            "addr": {"map": {"key": {"concat": key}, "data": f"@{addr_map}"}},
            "port": {"map": {"key": {"concat": key}, "data": f"@{port_map}"}},
        }
    }


def network_commands(bridge: str, subnet: str, *, internal: bool) -> list[dict[str, Any]]:
    """The commands that create the network's table."""
    t = {"family": FAMILY, "table": table_name(bridge)}
    net, _, plen = subnet.partition("/")
    subnet_expr = {"prefix": {"addr": net, "len": int(plen)}}
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": t["table"]}}}]
    for suffix, key in (("ip", ["inet_proto", "ipv4_addr", "inet_service"]),
                        ("any", ["inet_proto", "inet_service"])):  # fmt: skip
        cmds.append({"add": {"map": {**t, "name": f"addr_{suffix}", "type": key,
                                     "map": "ipv4_addr"}}})  # fmt: skip
        cmds.append({"add": {"map": {**t, "name": f"port_{suffix}", "type": key,
                                     "map": "inet_service"}}})  # fmt: skip

    def chain(name: str, kind: str, hook: str, prio: int) -> None:
        cmds.append({"add": {"chain": {**t, "name": name, "type": kind, "hook": hook,
                                       "prio": prio, "policy": "accept"}}})  # fmt: skip

    def rule(chain_name: str, *expr: dict[str, Any]) -> None:
        cmds.append({"add": {"rule": {**t, "chain": chain_name, "expr": list(expr)}}})

    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    l4, dport, daddr = _meta("l4proto"), _payload("th", "dport"), _payload("ip", "daddr")
    for name, hook in (("prerouting", "prerouting"), ("output", "output")):
        chain(name, "nat", hook, -100)
        rule(name, local, _dnat([l4, daddr, dport], "addr_ip", "port_ip"))
        rule(name, local, _dnat([l4, dport], "addr_any", "port_any"))
    chain("postrouting", "nat", "postrouting", 100)
    oif, iif = _meta("oifname"), _meta("iifname")
    if not internal:
        rule("postrouting", _match(_payload("ip", "saddr"), subnet_expr),
             _match(oif, bridge, "!="), {"masquerade": None})  # fmt: skip
    rule("postrouting", _match(oif, bridge),
         _match({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None})  # fmt: skip
    chain("forward", "filter", "forward", -1)
    rule("forward", _match({"ct": {"key": "status"}}, "dnat", "in"), {"accept": None})
    if internal:
        rule("forward", _match(iif, bridge), _match(oif, bridge, "!="), {"drop": None})
        rule("forward", _match(oif, bridge), _match(iif, bridge, "!="), {"drop": None})
    else:
        rule("forward", _match(iif, bridge), _match(oif, BRIDGE_PREFIX + "*"),
             _match(oif, bridge, "!="), {"drop": None})  # fmt: skip
    return cmds


def delete_network_commands(bridge: str) -> list[dict[str, Any]]:
    return [{"delete": {"table": {"family": FAMILY, "name": table_name(bridge)}}}]


def port_commands(
    verb: str, bridge: str, ip: str, ports: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``add`` or ``delete`` the map elements that send ``ports`` (dicts with host_ip,
    host_port, container_port, proto) to the container at ``ip``."""
    t = {"family": FAMILY, "table": table_name(bridge)}
    cmds: list[dict[str, Any]] = []
    for p in ports:
        host_ip = p["host_ip"] or "0.0.0.0"
        if host_ip == "0.0.0.0":
            suffix, key = "any", {"concat": [p["proto"], p["host_port"]]}
        else:
            suffix, key = "ip", {"concat": [p["proto"], host_ip, p["host_port"]]}
        for name, value in ((f"addr_{suffix}", ip), (f"port_{suffix}", p["container_port"])):
            elem: Any = [key, value] if verb == "add" else key
            cmds.append({verb: {"element": {**t, "name": name, "elem": [elem]}}})
    return cmds
