"""The network service: networks (create, list, remove, connect), IPAM records, and each
container's network setup at start and teardown at exit (namespace, addresses, ports, DNS,
/etc/hosts and /etc/resolv.conf)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from moorage.engine.network import modes
from moorage.engine.network.backend import Attachment, NetworkBackend, NetworkRecord
from moorage.errors import AlreadyExists, Conflict, InvalidArgument, MoorageError, NotFound
from moorage.store import Store
from moorage.store.locks import flocked

# one host-wide lock: choosing a subnet and making its bridge (so that its route is there for
# the next chooser) must not interleave between two stores
HOST_LOCK = Path("/run/lock/moorage-network.lock")
HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


@dataclass(frozen=True)
class NetSetup:
    """What the container's OCI config needs from its network setup."""

    netns_path: str | None
    extra_env: tuple[str, ...] = ()


def _net(row: sqlite3.Row) -> NetworkRecord:
    return NetworkRecord(
        id=row["id"], name=row["name"], driver=row["driver"], bridge=row["bridge"],
        subnet=row["subnet"], gateway=row["gateway"], ip_range=row["ip_range"],
        internal=bool(row["internal"]), dns=bool(row["dns"]),
        labels=json.loads(row["labels"]), options=json.loads(row["options"]),
        created=row["created"],
    )  # fmt: skip


class NetworkService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.run_dir = store.runroot / "network"
        self.netns_dir = store.runroot / "netns"

    @cached_property
    def backend(self) -> NetworkBackend:
        from moorage.engine.network.backend import get_backend

        return get_backend(self.store.runroot)

    @cached_property
    def dns(self) -> Any:
        from moorage.engine.network.dns import Aardvark

        return Aardvark(self.run_dir / "aardvark")

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.db.conn

    def netns_path(self, cid: str) -> Path:
        return self.netns_dir / cid

    def _backend_file(self, cid: str) -> Path:
        return self.run_dir / "setup" / cid

    def backend_of(self, cid: str) -> NetworkBackend:
        """The backend that set the container up: teardown may run in another environment
        (conmon's exit command gets a minimal one), so the choice is recorded at setup."""
        from moorage.engine.network.backend import get_backend

        try:
            name = self._backend_file(cid).read_text().strip()
        except OSError:
            return self.backend
        return self.backend if name == self.backend.name else get_backend(self.store.runroot, name)

    @contextlib.contextmanager
    def host_lock(self) -> Iterator[None]:
        HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with flocked(HOST_LOCK, exclusive=True):
            yield

    # ---- networks ------------------------------------------------------------------------

    def ls(self) -> list[NetworkRecord]:
        return [_net(r) for r in self.conn.execute("SELECT * FROM networks ORDER BY created")]

    def find(self, ref: str) -> NetworkRecord | None:
        row = self.conn.execute(
            "SELECT * FROM networks WHERE name = ? OR id = ?", (ref, ref)
        ).fetchone()
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.conn.execute(
                "SELECT * FROM networks WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "g")
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches found)")
            row = rows[0] if rows else None
        return _net(row) if row is not None else None

    def get(self, ref: str) -> NetworkRecord:
        if ref in ("bridge", modes.DEFAULT_NETWORK):
            return self.default()
        net = self.find(ref)
        if net is None:
            raise NotFound(f"network {ref} not found")
        return net

    def default(self) -> NetworkRecord:
        """The default network (Docker's ``bridge``), made on first use."""
        net = self.find(modes.DEFAULT_NETWORK)
        if net is not None:
            return net
        try:
            # only its record: the bridge comes with the first container that runs on it
            return self.create(modes.DEFAULT_NETWORK, dns=False, predefined=True, bring_up=False)
        except AlreadyExists:
            return self.get(modes.DEFAULT_NETWORK)

    def create(
        self,
        name: str,
        *,
        driver: str = "bridge",
        subnet: str = "",
        gateway: str = "",
        ip_range: str = "",
        internal: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        dns: bool = True,
        predefined: bool = False,
        bring_up: bool = True,
    ) -> NetworkRecord:
        from moorage.engine.network import bridge, ipam

        modes.check_network_name(name)
        if not predefined and name in (*modes.PREDEFINED, modes.DEFAULT_NETWORK):
            raise Conflict(f"{name} is a pre-defined network and cannot be created")
        if driver != "bridge":
            raise InvalidArgument(f"plugin {driver!r} not found: only the bridge driver exists")
        if gateway and not subnet:
            raise InvalidArgument("a gateway needs a --subnet")
        if ip_range and not subnet:
            raise InvalidArgument("an --ip-range needs a --subnet")
        if self.find(name) is not None:
            raise AlreadyExists(f"network with name {name} already exists")
        with self.host_lock():
            taken = [ipaddress.IPv4Network(n.subnet) for n in self.ls()]
            routed = bridge.host_routes()
            if subnet:
                net = ipam.parse_subnet(subnet)
                ipam.check_free(net, taken, routed)
            else:
                net = ipam.next_subnet(taken, routed)
            gw = ipam.gateway_of(net)
            if gateway:
                try:
                    gw = ipaddress.IPv4Address(gateway)
                except ValueError:
                    raise InvalidArgument(f"invalid gateway address {gateway!r}") from None
                if gw not in net:
                    raise InvalidArgument(f"gateway {gateway} is not in subnet {net}")
            rng = ""
            if ip_range:
                r = ipam.parse_subnet(ip_range)
                if not r.subnet_of(net):
                    raise InvalidArgument(f"ip-range {ip_range} is not within subnet {net}")
                rng = str(r)
            nid = os.urandom(32).hex()
            rec = NetworkRecord(
                id=nid, name=name, driver=driver, bridge=f"mr-{nid[:12]}", subnet=str(net),
                gateway=str(gw), ip_range=rng, internal=internal, dns=dns,
                labels=dict(labels or {}), options=dict(options or {}), created=time.time(),
            )  # fmt: skip
            try:
                with self.store.db.transaction() as conn:
                    conn.execute(
                        "INSERT INTO networks(id, name, driver, bridge, subnet, gateway, ip_range,"
                        " internal, dns, labels, options, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (rec.id, rec.name, rec.driver, rec.bridge, rec.subnet, rec.gateway,
                         rec.ip_range, int(rec.internal), int(rec.dns), json.dumps(rec.labels),
                         json.dumps(rec.options), rec.created),
                    )  # fmt: skip
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"network with name {name} already exists") from None
            if not bring_up:
                return rec
            try:
                self._bring_up(rec)
            except BaseException:
                with contextlib.suppress(MoorageError, OSError):
                    self.backend.delete_network(rec)
                with self.store.db.transaction() as conn:
                    conn.execute("DELETE FROM networks WHERE id = ?", (rec.id,))
                raise
        self._event("create", rec)
        return rec

    def _event(self, action: str, net: NetworkRecord, **extra: str) -> None:
        from moorage.engine.events import record_event

        record_event(self.store, "network", action, net.id,
                     {"name": net.name, "type": net.driver, **extra})  # fmt: skip

    def _marker(self, net: NetworkRecord) -> Path:
        return self.run_dir / "up" / net.id

    def _bring_up(self, net: NetworkRecord) -> None:
        self.backend.create_network(net)
        self._marker(net).parent.mkdir(parents=True, exist_ok=True)
        self._marker(net).touch()

    def ensure_up(self, net: NetworkRecord) -> NetworkRecord:
        """The network's host state exists (it goes with a reboot; the marker is in the
        run root, which goes with it). The default network's subnet, chosen when its record
        was made, is chosen again if the host has routed it meanwhile."""
        # the marker says it was made; the bridge, that nobody removed it since (a stat)
        present = os.path.exists(f"/sys/class/net/{net.bridge}")
        if present and self._marker(net).exists():
            return net
        from moorage.engine.network import bridge, ipam

        with self.host_lock():
            if self._marker(net).exists() and bridge.exists(net.bridge):
                return net
            if not bridge.exists(net.bridge):
                mine = ipaddress.IPv4Network(net.subnet)
                routed = bridge.host_routes()
                if any(mine.overlaps(r) for r in routed if r.prefixlen):
                    if net.name != modes.DEFAULT_NETWORK:
                        raise Conflict(f"network {net.name}: its subnet {net.subnet} is now "
                                       "routed on the host by something else")  # fmt: skip
                    taken = [ipaddress.IPv4Network(n.subnet) for n in self.ls() if n.id != net.id]
                    new = ipam.next_subnet(taken, routed)
                    with self.store.db.transaction() as conn:
                        conn.execute("UPDATE networks SET subnet = ?, gateway = ? WHERE id = ?",
                                     (str(new), str(ipam.gateway_of(new)), net.id))  # fmt: skip
                    net = self.get(net.id)
            self._bring_up(net)
        return net

    def attached(self, net: NetworkRecord) -> list[str]:
        rows = self.conn.execute(
            "SELECT container_id FROM endpoints WHERE network_id = ?", (net.id,)
        ).fetchall()
        return [r[0] for r in rows]

    def remove(self, ref: str) -> NetworkRecord:
        if ref in modes.PREDEFINED or ref == modes.DEFAULT_NETWORK:
            raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
        net = self.get(ref)
        if net.name == modes.DEFAULT_NETWORK:
            raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
        with self.host_lock():
            try:
                with self.store.db.transaction() as conn:
                    users = conn.execute(
                        "SELECT COUNT(*) FROM endpoints WHERE network_id = ?", (net.id,)
                    ).fetchone()[0]
                    if users:
                        raise Conflict(
                            f"error while removing network: network {net.name} id {net.id} "
                            "has active endpoints"
                        )
                    conn.execute("DELETE FROM networks WHERE id = ?", (net.id,))
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"error while removing network: network {net.name} id {net.id} has "
                    "active endpoints"
                ) from None
            self.backend.delete_network(net)
            with contextlib.suppress(FileNotFoundError):
                self._marker(net).unlink()
            if net.dns:
                self.dns.remove(net.name)
                self.dns.reload()
        self._event("destroy", net)
        return net

    def prune(self) -> list[str]:
        removed = []
        for net in self.ls():
            if net.name == modes.DEFAULT_NETWORK or self.attached(net):
                continue
            with contextlib.suppress(Conflict, NotFound):
                self.remove(net.id)
                removed.append(net.name)
        return removed

    def teardown_all_networks(self) -> None:
        """Remove every network's host state (not its record): for system reset and tests."""
        for net in self.ls():
            with contextlib.suppress(MoorageError, OSError):
                self.backend.delete_network(net)
            with contextlib.suppress(FileNotFoundError):
                self._marker(net).unlink()
        self.dns.stop()

    # ---- a container's attachments -------------------------------------------------------

    def check_spec(self, spec: Any) -> None:
        """At create: the networks named exist (the default is made if needed)."""
        mode = spec.network_mode
        if modes.is_bridge_mode(mode):
            net = self.get(modes.network_name(mode))
            if spec.ip:
                ip = ipaddress.IPv4Address(spec.ip)
                if ip not in ipaddress.IPv4Network(net.subnet):
                    raise InvalidArgument(
                        f"no configured subnet contains IP address {spec.ip} on network {net.name}"
                    )

    def record_endpoint(self, conn: sqlite3.Connection, cid: str, spec: Any) -> None:
        """At create, inside its transaction: the container's first network."""
        mode = spec.network_mode
        if not modes.is_bridge_mode(mode):
            return
        net = self.get(modes.network_name(mode))
        conn.execute(
            "INSERT INTO endpoints(container_id, network_id, position, static_ip, aliases)"
            " VALUES (?, ?, 0, ?, ?)",
            (cid, net.id, spec.ip, json.dumps(list(spec.network_aliases))),
        )

    def endpoints(self, cid: str) -> list[tuple[sqlite3.Row, NetworkRecord]]:
        rows = self.conn.execute(
            "SELECT e.*, n.* FROM endpoints e JOIN networks n ON n.id = e.network_id"
            " WHERE e.container_id = ? ORDER BY e.position",
            (cid,),
        ).fetchall()
        return [(r, _net(r)) for r in rows]

    def _taken_ports(self, cid: str) -> set[tuple[str, int]]:
        taken = set()
        for (ports,) in self.conn.execute(
            "SELECT ports FROM endpoints WHERE ip IS NOT NULL AND container_id != ?", (cid,)
        ):
            for p in json.loads(ports):
                taken.add((p["proto"], int(p["host_port"])))
        return taken

    def _attachment(self, cid: str, row: sqlite3.Row, net: NetworkRecord) -> Attachment:
        return Attachment(
            network=net, ifname=f"eth{row['position']}",
            # unique per setup: a torn-down pair may linger while the kernel destroys its
            # namespace, and a restart must not collide with it
            host_ifname=f"mv{cid[:6]}{os.urandom(3).hex()}{row['position']}"[:15],
            ip=row["ip"] or "",
            mac=row["mac"], aliases=tuple(json.loads(row["aliases"])),
            ports=tuple(json.loads(row["ports"])), position=row["position"],
        )  # fmt: skip

    # ---- start / stop --------------------------------------------------------------------

    def setup(self, rec: Any, image_config: dict[str, Any], containers: Any) -> NetSetup:
        """Before the runtime creates the container: its namespace, addresses, ports, names
        and /etc files. On error nothing of it is left."""
        spec = rec.spec
        mode = spec.network_mode
        ud = containers.userdata(rec.id)
        hostname = spec.hostname or rec.id[:12]
        if mode == "host":
            _write(ud / "hosts", _host_file("/etc/hosts") or HOSTS_BASE)
            _write(ud / "resolv.conf", resolv_conf(spec, gateway=None, host_mode=True))
            return NetSetup(None)
        if mode == "none":
            _write(ud / "hosts", hosts_file(spec, hostname, "", []))
            _write(ud / "resolv.conf", resolv_conf(spec, gateway=None))
            return NetSetup(None)
        if mode.startswith("container:"):
            target = containers.get(mode.removeprefix("container:"))
            if not target.running:
                raise Conflict(f"cannot join network of a non running container: {target.id}")
            path = self.netns_path(target.id)
            if not path.exists():
                path = Path(f"/proc/{target.pid}/ns/net")
            tud = containers.userdata(target.id)
            for f in ("hosts", "resolv.conf"):
                with contextlib.suppress(OSError):
                    _write(ud / f, (tud / f).read_text())
            return NetSetup(str(path))
        try:
            return self._setup_bridge(rec, image_config, containers, ud, hostname)
        except BaseException:
            with contextlib.suppress(MoorageError, OSError):
                self.teardown(rec.id)
            raise

    def _setup_bridge(
        self, rec: Any, image_config: dict[str, Any], containers: Any, ud: Path, hostname: str
    ) -> NetSetup:
        from moorage.engine.network import ipam, netns
        from moorage.engine.network.ports import assign

        spec = rec.spec
        eps = self.endpoints(rec.id)
        if not eps:  # made before networks existed, or its network was re-created
            with self.store.db.transaction() as conn:
                self.record_endpoint(conn, rec.id, spec)
            eps = self.endpoints(rec.id)
        eps = [(row, self.ensure_up(net)) for row, net in eps]
        bindings = publish_bindings(spec, image_config)
        ports = assign(bindings, self._taken_ports(rec.id)) if bindings else []
        atts: list[Attachment] = []
        with self.store.db.transaction() as conn:
            routed = False
            for row, net in eps:
                used = {r[0] for r in conn.execute(
                    "SELECT ip FROM endpoints WHERE network_id = ? AND ip IS NOT NULL"
                    " AND container_id != ?", (net.id, rec.id))}  # fmt: skip
                ip = row["static_ip"]
                if ip and ip in used:
                    raise Conflict(f"Address already in use: {ip} on network {net.name}")
                if not ip:
                    rng = ipaddress.IPv4Network(net.ip_range) if net.ip_range else None
                    ip = ipam.allocate(ipaddress.IPv4Network(net.subnet), rng,
                                       ipaddress.IPv4Address(net.gateway), used)  # fmt: skip
                mine = ports if row["position"] == eps[0][0]["position"] else []
                conn.execute(
                    "UPDATE endpoints SET ip = ?, mac = ?, ports = ? WHERE container_id = ?"
                    " AND network_id = ?",
                    (ip, ipam.mac_for(ip), json.dumps(mine), rec.id, net.id),
                )
                att = self._attachment(rec.id, row, net)
                default_route = not routed and not net.internal
                routed = routed or default_route
                atts.append(dataclasses_replace(
                    att, ip=ip, mac=ipam.mac_for(ip), ports=tuple(mine),
                    default_route=default_route))  # fmt: skip
        ns = self.netns_path(rec.id)
        netns.remove(ns)  # a leftover of a crash
        record = self._backend_file(rec.id)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(self.backend.name)
        with netns.created(ns):
            pass
        self.backend.setup(rec.id, ns, atts)
        for a in atts:
            self._event("connect", a.network, container=rec.id)
        self._update_dns({a.network.id for a in atts if a.network.dns})
        extra_env: list[str] = []
        link_hosts: list[str] = []
        for link in spec.links:
            lines, env = self._link(rec, link, atts[0], containers)
            link_hosts += lines
            extra_env += env
        _write(ud / "hosts", hosts_file(spec, hostname, atts[0].ip, link_hosts,
                                        gateway=atts[0].network.gateway))  # fmt: skip
        dns_gw = next((a.network.gateway for a in atts if a.network.dns), None)
        _write(ud / "resolv.conf", resolv_conf(spec, gateway=dns_gw))
        return NetSetup(str(ns), tuple(extra_env))

    def _link(
        self, rec: Any, link: str, att: Attachment, containers: Any
    ) -> tuple[list[str], list[str]]:
        """Docker's legacy link: a hosts line and ``ALIAS_PORT_*``/``ALIAS_ENV_*``."""
        from moorage.engine.containers.parse import merge_env

        name, alias = modes.parse_link(link)
        target = containers.find(name)
        if target is None:
            raise NotFound(f"could not get container for {name}")
        if not target.running:
            raise Conflict(f"Cannot link to a non running container: /{target.name} AS "
                           f"/{rec.name}/{alias}")  # fmt: skip
        row = self.conn.execute(
            "SELECT ip FROM endpoints WHERE container_id = ? AND network_id = ?",
            (target.id, att.network.id),
        ).fetchone()
        if row is None or not row["ip"]:
            raise Conflict(f"Cannot link to /{target.name}, as it does not belong to the "
                           f"network {att.network.name}")  # fmt: skip
        ip = row["ip"]
        names = [alias] + ([target.id[:12], target.name] if alias != target.name
                           else [target.id[:12]])  # fmt: skip
        hosts = [f"{ip}\t{' '.join(names)}"]
        tconfig = containers.images.config(containers.image_of(target)).get("config") or {}
        exposed = exposed_ports(target.spec, tconfig)
        prefix = alias.upper().replace("-", "_").replace(".", "_")
        env = [f"{prefix}_NAME=/{rec.name}/{alias}"]
        ordered = sorted(exposed, key=lambda k: (int(k.split("/")[0]), k))
        if ordered:
            first_port, first_proto = ordered[0].split("/")
            env.append(f"{prefix}_PORT={first_proto}://{ip}:{first_port}")
        for k in ordered:
            port, proto = k.split("/")
            p = f"{prefix}_PORT_{port}_{proto.upper()}"
            env += [f"{p}={proto}://{ip}:{port}", f"{p}_ADDR={ip}", f"{p}_PORT={port}",
                    f"{p}_PROTO={proto}"]  # fmt: skip
        for e in merge_env(tconfig.get("Env") or [], list(target.spec.env)):
            k, sep, v = e.partition("=")
            if sep and k not in ("HOME", "PATH"):
                env.append(f"{prefix}_ENV_{k}={v}")
        return hosts, env

    def teardown(self, cid: str) -> None:
        """Undo setup: idempotent, and safe on a half-made setup or a vanished container."""
        from moorage.engine.network import netns

        ns = self.netns_path(cid)
        eps = [(r, n) for r, n in self.endpoints(cid) if r["ip"]]
        if not eps and not ns.exists():
            with contextlib.suppress(FileNotFoundError):
                self._backend_file(cid).unlink()
            return
        atts = [self._attachment(cid, r, n) for r, n in eps]
        try:
            self.backend_of(cid).teardown(cid, ns, atts)
        finally:
            netns.remove(ns)
            with contextlib.suppress(FileNotFoundError):
                self._backend_file(cid).unlink()
            with contextlib.suppress(FileNotFoundError):
                self._hidden_file(cid).unlink()
            if eps:
                with self.store.db.transaction() as conn:
                    conn.execute(
                        "UPDATE endpoints SET ip = NULL, ports = '[]' WHERE container_id = ?",
                        (cid,),
                    )
                self._update_dns({n.id for _, n in eps if n.dns})
            for _, n in eps:
                self._event("disconnect", n, container=cid)

    def _hidden_file(self, cid: str) -> Path:
        return self.run_dir / "dns-hidden" / cid

    def hide_names(self, cid: str, hidden: bool = True) -> None:
        """Withhold the container's names and aliases from DNS (it keeps its addresses), or
        publish them again. A rolling update hides a new container until it is ready and an
        old one before it is stopped, so lookups only ever give an address that answers.
        Hidden lasts until published again or until the container's network is torn down
        (stop, remove); a hidden container's start keeps it out of DNS."""
        marker = self._hidden_file(cid)
        if hidden:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        self._update_dns({n.id for r, n in self.endpoints(cid) if r["ip"] and n.dns})

    def _update_dns(self, network_ids: set[str]) -> None:
        if not network_ids:
            return
        from moorage.engine.network.dns import DnsEntry

        changed = False
        for nid in network_ids:
            net = self.find(nid)
            if net is None:
                continue
            rows = self.conn.execute(
                "SELECT e.container_id, e.ip, e.aliases, c.name FROM endpoints e"
                " JOIN containers c ON c.id = e.container_id"
                " WHERE e.network_id = ? AND e.ip IS NOT NULL ORDER BY e.container_id",
                (nid,),
            ).fetchall()
            entries = [
                DnsEntry(r["container_id"][:12], r["ip"],
                         (r["name"], r["container_id"][:12], *json.loads(r["aliases"])))
                for r in rows if not self._hidden_file(r["container_id"]).exists()
            ]  # fmt: skip
            if entries:
                changed |= self.dns.write(net.name, net.gateway, entries)
            else:
                changed |= self.dns.remove(net.name)
        if changed or not self.dns.pid():
            self.dns.reload()

    # ---- connect / disconnect ------------------------------------------------------------

    def connect(
        self, network: str, container: Any, containers: Any, *, aliases: tuple[str, ...] = (),
        ip: str = "",
    ) -> None:  # fmt: skip
        from moorage.engine.network import ipam

        net = self.get(network)
        spec = container.spec
        if not modes.is_bridge_mode(spec.network_mode):
            raise Conflict(f"container cannot be connected to network {net.name}: its network "
                           f"mode is {spec.network_mode}")  # fmt: skip
        if ip and ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network(net.subnet):
            raise InvalidArgument(f"no configured subnet contains IP address {ip}")
        try:
            with self.store.db.transaction() as conn:
                pos = conn.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM endpoints WHERE container_id = ?",
                    (container.id,),
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO endpoints(container_id, network_id, position, static_ip, aliases)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (container.id, net.id, pos, ip, json.dumps(list(aliases))),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"endpoint with name {container.name} already exists in network "
                           f"{net.name}") from None  # fmt: skip
        if not container.running:
            return
        try:
            net = self.ensure_up(net)
            row = next(r for r, n in self.endpoints(container.id) if n.id == net.id)
            with self.store.db.transaction() as conn:
                used = {r[0] for r in conn.execute(
                    "SELECT ip FROM endpoints WHERE network_id = ? AND ip IS NOT NULL",
                    (net.id,))}  # fmt: skip
                addr = ip or ipam.allocate(
                    ipaddress.IPv4Network(net.subnet),
                    ipaddress.IPv4Network(net.ip_range) if net.ip_range else None,
                    ipaddress.IPv4Address(net.gateway), used)  # fmt: skip
                conn.execute(
                    "UPDATE endpoints SET ip = ?, mac = ?"
                    " WHERE container_id = ? AND network_id = ?",
                    (addr, ipam.mac_for(addr), container.id, net.id),
                )
            att = dataclasses_replace(self._attachment(container.id, row, net), ip=addr,
                                      mac=ipam.mac_for(addr))  # fmt: skip
            self.backend_of(container.id).setup(container.id, self.netns_path(container.id), [att])
        except BaseException:
            with self.store.db.transaction() as conn:
                conn.execute("DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                             (container.id, net.id))  # fmt: skip
            raise
        if net.dns:
            self._update_dns({net.id})
            others = [n for _, n in self.endpoints(container.id) if n.dns and n.id != net.id]
            if not others:  # its first network with names: resolve through it from now on
                _write(containers.userdata(container.id) / "resolv.conf",
                       resolv_conf(spec, gateway=net.gateway))  # fmt: skip

    def disconnect(self, network: str, container: Any) -> None:
        net = self.get(network)
        found = [(r, n) for r, n in self.endpoints(container.id) if n.id == net.id]
        if not found:
            raise NotFound(f"container {container.id} is not connected to network {net.name}")
        row, _ = found[0]
        if row["ip"]:
            att = self._attachment(container.id, row, net)
            self.backend_of(container.id).teardown(container.id, self.netns_path(container.id),
                                                   [att], namespace_going=False)  # fmt: skip
        with self.store.db.transaction() as conn:
            conn.execute("DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                         (container.id, net.id))  # fmt: skip
        self._update_dns({net.id} if net.dns else set())

    # ---- views ---------------------------------------------------------------------------

    def bound_ports(self, cid: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (ports,) in self.conn.execute(
            "SELECT ports FROM endpoints WHERE container_id = ? AND ip IS NOT NULL", (cid,)
        ):
            out += json.loads(ports)
        return out

    def inspect(self, net: NetworkRecord) -> dict[str, Any]:
        from moorage.units import go_time

        containers = {}
        for r in self.conn.execute(
            "SELECT e.*, c.name FROM endpoints e JOIN containers c ON c.id = e.container_id"
            " WHERE e.network_id = ? AND e.ip IS NOT NULL",
            (net.id,),
        ):
            containers[r["container_id"]] = {
                "Name": r["name"],
                "EndpointID": endpoint_id(r["container_id"], net.id),
                "MacAddress": r["mac"],
                "IPv4Address": f"{r['ip']}/{net.prefixlen}",
                "IPv6Address": "",
            }
        ipam_config: dict[str, str] = {"Subnet": net.subnet, "Gateway": net.gateway}
        if net.ip_range:
            ipam_config["IPRange"] = net.ip_range
        return {
            "Name": net.name,
            "Id": net.id,
            "Created": go_time(net.created),
            "Scope": "local",
            "Driver": net.driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [ipam_config]},
            "Internal": net.internal,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": net.bridge, **net.options},
            "Labels": net.labels,
        }

    def settings(self, rec: Any, image_config: dict[str, Any]) -> dict[str, Any]:
        """``NetworkSettings`` of ``container inspect``, as Docker."""
        spec = rec.spec
        bound = self.bound_ports(rec.id)
        from moorage.engine.network.ports import docker_ports

        networks: dict[str, Any] = {}
        top = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "",
               "EndpointID": ""}  # fmt: skip
        if modes.is_bridge_mode(spec.network_mode):
            for row, net in self.endpoints(rec.id):
                running = bool(row["ip"])
                entry = {
                    "IPAMConfig": {"IPv4Address": row["static_ip"]} if row["static_ip"] else None,
                    "Links": list(spec.links) or None if row["position"] == 0 else None,
                    "Aliases": [*json.loads(row["aliases"]), rec.id[:12]]
                    if net.name != modes.DEFAULT_NETWORK
                    else None,
                    "NetworkID": net.id,
                    "EndpointID": endpoint_id(rec.id, net.id) if running else "",
                    "Gateway": net.gateway if running else "",
                    "IPAddress": row["ip"] or "",
                    "IPPrefixLen": net.prefixlen if running else 0,
                    "IPv6Gateway": "",
                    "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0,
                    "MacAddress": row["mac"] if running else "",
                    "DriverOpts": None,
                }
                networks[net.name] = entry
                if net.name == modes.DEFAULT_NETWORK:
                    top = {k: entry[k] for k in top}
        elif not spec.network_mode.startswith("container:"):
            networks[spec.network_mode] = {"NetworkID": "", "EndpointID": "", "Gateway": "",
                                           "IPAddress": "", "MacAddress": ""}  # fmt: skip
        ns = self.netns_path(rec.id)
        return {
            "Bridge": "",
            "SandboxID": rec.id if ns.exists() else "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": docker_ports(bound, exposed_ports(spec, image_config)),
            "SandboxKey": str(ns) if ns.exists() else "",
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            **top,
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPv6Gateway": "",
            "Networks": networks,
        }


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def endpoint_id(cid: str, nid: str) -> str:
    import hashlib

    return hashlib.sha256(f"{cid}/{nid}".encode()).hexdigest()


def exposed_ports(spec: Any, image_config: dict[str, Any]) -> list[str]:
    from moorage.engine.network.ports import parse_expose, parse_publish

    keys = dict.fromkeys(image_config.get("ExposedPorts") or {})
    for e in spec.expose:
        keys.update(dict.fromkeys(parse_expose(e)))
    for p in spec.publish:
        keys.update(dict.fromkeys(b.key for b in parse_publish(p)))
    return list(keys)


def publish_bindings(spec: Any, image_config: dict[str, Any]) -> list[Any]:
    from moorage.engine.network.ports import PortBinding, parse_publish

    out = [b for p in spec.publish for b in parse_publish(p)]
    if spec.publish_all:
        done = {b.key for b in out}
        for key in exposed_ports(spec, image_config):
            if key not in done:
                port, _, proto = key.partition("/")
                out.append(PortBinding(int(port), proto or "tcp"))
    return out


def _write(path: Path, text: str) -> None:
    # in place: a running container's bind mount of the file must see the new content
    with open(path, "w") as f:
        f.write(text)


def _host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def hosts_file(spec: Any, hostname: str, ip: str, links: list[str], gateway: str = "") -> str:
    lines = [HOSTS_BASE.rstrip("\n")]
    for h in spec.extra_hosts:
        host, addr = modes.parse_extra_host(h)
        if addr == "host-gateway":
            addr = gateway or "127.0.0.1"
        lines.append(f"{addr}\t{host}")
    lines += links
    if ip:
        lines.append(f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf(spec: Any, *, gateway: str | None, host_mode: bool = False) -> str:
    """Docker's rules: the host's resolvers without loopback ones (unreachable from the
    container), Google's if none is left; on a user network with names, its DNS server."""
    nameservers, search, options, other = [], [], [], []
    for line in _host_file("/etc/resolv.conf").splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
        else:
            other.append(line)
    if not host_mode:
        nameservers = [n for n in nameservers if not _loopback(n)]
    if spec.dns:
        nameservers = list(spec.dns)
    if gateway:
        nameservers = [gateway, *([d for d in spec.dns] if spec.dns else [])]
    elif not nameservers:
        nameservers = ["8.8.8.8", "8.8.4.4"]
    if spec.dns_search:
        search = [] if list(spec.dns_search) == ["."] else list(spec.dns_search)
    if spec.dns_options:
        options = list(spec.dns_options)
    out = [f"nameserver {n}" for n in nameservers]
    if search:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


def _loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False
