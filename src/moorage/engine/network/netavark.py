"""The netavark backend: Podman's network tool behind the same interface, driven through its
JSON interface (``netavark setup|teardown NETNS`` with the options on stdin). It makes the
bridge on the first setup and removes it after the last teardown; its firewall is iptables.
Names stay with moorage's own aardvark-dns (``dns_enabled`` is off here), so both backends
resolve the same way."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from moorage.engine.network.backend import Attachment, NetworkRecord
from moorage.errors import MoorageError
from moorage.store.locks import flocked

LOCK = Path("/run/lock/moorage-netavark.lock")
NETAVARK = ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")


def _binary() -> str:
    for p in NETAVARK:
        if os.access(p, os.X_OK):
            return p
    raise MoorageError("netavark is not installed (apt-get install netavark)")


class NetavarkBackend:
    name = "netavark"

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir

    def create_network(self, net: NetworkRecord) -> None:
        """Nothing to do ahead: netavark makes the bridge when a container joins."""

    def delete_network(self, net: NetworkRecord) -> None:
        from moorage.engine.network import bridge

        if bridge.exists(net.bridge):
            bridge.delete(net.bridge)

    def _options(self, cid: str, attachments: list[Attachment]) -> dict[str, Any]:
        networks, info, ports = {}, {}, []
        for a in attachments:
            n = a.network
            networks[n.name] = {"static_ips": [a.ip], "aliases": list(a.aliases),
                                "interface_name": a.ifname, "static_mac": a.mac}  # fmt: skip
            info[n.name] = {
                "name": n.name, "id": n.id, "driver": "bridge", "network_interface": n.bridge,
                "subnets": [{"subnet": n.subnet, "gateway": n.gateway}],
                "ipv6_enabled": False, "internal": n.internal, "dns_enabled": False,
                "ipam_options": {"driver": "host-local"},
            }  # fmt: skip
            for p in a.ports:
                ports.append({"host_ip": p["host_ip"], "container_port": p["container_port"],
                              "host_port": p["host_port"], "range": 1,
                              "protocol": p["proto"]})  # fmt: skip
        return {"container_id": cid, "container_name": cid[:12], "networks": networks,
                "network_info": info, "port_mappings": ports or None}  # fmt: skip

    def _run(self, verb: str, ns: Path, options: dict[str, Any]) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        # netavark edits iptables chains read-modify-write: one call at a time on the host
        # (as Podman serializes them), or two concurrent calls lose each other's rules
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with flocked(LOCK, exclusive=True):
            self._exec(verb, ns, options)

    def _exec(self, verb: str, ns: Path, options: dict[str, Any]) -> None:
        p = subprocess.run(
            [_binary(), "--config", str(self.config_dir), verb, str(ns)],
            input=json.dumps(options).encode(), capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        if p.returncode != 0:
            msg = p.stderr.decode(errors="replace").strip() or p.stdout.decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                msg = json.loads(msg).get("error", msg)
            raise MoorageError(f"netavark {verb}: {msg.strip()}")

    def setup(self, cid: str, ns: Path, attachments: list[Attachment]) -> None:
        from moorage.engine.network import bridge

        try:
            self._run("setup", ns, self._options(cid, attachments))
        except BaseException:
            self.teardown(cid, ns, attachments)
            raise
        for a in attachments:  # connections from 127.0.0.1 to a published port
            if a.ports:
                bridge._sysctl(f"net/ipv4/conf/{a.network.bridge}/route_localnet", "1")

    def teardown(
        self, cid: str, ns: Path, attachments: list[Attachment], *, namespace_going: bool = True
    ) -> None:
        if not attachments:
            return
        try:
            self._run("teardown", ns, self._options(cid, attachments))
        except MoorageError:
            if ns.exists():
                raise
