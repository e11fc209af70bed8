"""Network endpoints: list (with filters), inspect, create, remove, connect, disconnect,
prune, through the engine's network service. The default network (``moor`` on the command
line) is shown as Docker's ``bridge``; ``host`` and ``none`` are listed as Docker lists them."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.createspec import bad_type, get_field, str_map
from moorage.api.http import Route, filters, read_json
from moorage.engine.network import modes
from moorage.engine.network.backend import NetworkRecord
from moorage.errors import Conflict, InvalidArgument, MoorageError, NotFound

DEFAULT_NAME = "bridge"  # what Docker clients call the default network
PSEUDO = ("host", "none")
_LIST_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")


class Forbidden(MoorageError):
    """Docker's 403: an operation on a predefined network."""

    http_status = 403


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


def public_name(name: str) -> str:
    return DEFAULT_NAME if name == modes.DEFAULT_NETWORK else name


def pseudo_id(name: str) -> str:
    return hashlib.sha256(f"moorage-network-{name}".encode()).hexdigest()


def _pseudo_doc(name: str) -> dict[str, Any]:
    return {
        "Name": name, "Id": pseudo_id(name), "Created": "0001-01-01T00:00:00Z",
        "Scope": "local", "Driver": "null" if name == "none" else name, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
        "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {},
    }  # fmt: skip


def network_doc(ctx: Ctx, net: NetworkRecord, *, containers: bool = True) -> dict[str, Any]:
    doc = ctx.containers.networks.inspect(net)
    doc["Name"] = public_name(net.name)
    if net.name == modes.DEFAULT_NETWORK:
        doc["Options"] = {"com.docker.network.bridge.default_bridge": "true", **doc["Options"]}
    if not containers:
        doc["Containers"] = {}
    return doc


def _find(ctx: Ctx, ref: str) -> NetworkRecord | None:
    """The network a client names (by name, id or id prefix), or None for host/none."""
    nets = ctx.containers.networks
    if ref in PSEUDO or ref in (pseudo_id("host"), pseudo_id("none")):
        return None
    if ref == DEFAULT_NAME:
        return nets.default()
    try:
        return nets.get(ref)
    except NotFound:
        if _pseudo_name(ref):  # a short id of host or none
            return None
        raise NotFound(f"network {ref} not found") from None


def _pseudo_name(ref: str) -> str:
    """host or none for their name, id or id prefix; "" for anything else."""
    for n in PSEUDO:
        if ref == n or (len(ref) >= 3 and pseudo_id(n).startswith(ref)):
            return n
    return ""


def _all_docs(ctx: Ctx) -> list[dict[str, Any]]:
    nets = ctx.containers.networks
    records = nets.ls()
    if not any(n.name == modes.DEFAULT_NETWORK for n in records):
        records = [nets.default(), *records]
    docs = [network_doc(ctx, n, containers=False) for n in records]
    return docs + [_pseudo_doc(n) for n in PSEUDO]


def _matches(ctx: Ctx, doc: dict[str, Any], wanted: dict[str, list[str]]) -> bool:
    for key, values in wanted.items():
        if key == "name":
            ok = any(v in doc["Name"] for v in values)
        elif key == "id":
            ok = any(doc["Id"].startswith(v) for v in values)
        elif key == "driver":
            ok = doc["Driver"] in values
        elif key == "scope":
            ok = "local" in values
        elif key == "label":
            ok = all(_label(doc["Labels"], v) for v in values)
        elif key == "type":
            builtin = doc["Name"] in (DEFAULT_NAME, *PSEUDO)
            ok = any((v == "builtin") == builtin for v in values)
        else:  # dangling
            builtin = doc["Name"] in (DEFAULT_NAME, *PSEUDO)
            net = None if builtin else ctx.containers.networks.find(doc["Id"])
            unused = net is not None and not ctx.containers.networks.attached(net)
            ok = any((v in ("true", "1")) == unused for v in values)
        if not ok:
            return False
    return True


def _label(labels: dict[str, str], want: str) -> bool:
    k, sep, v = want.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _parse_filters(request: web.Request, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in filters(request):
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type" and value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{value}'")
        if key == "dangling" and value not in ("true", "false", "1", "0"):
            raise InvalidArgument(
                f"invalid filter 'dangling={value}': must be one of true, false, 1, 0"
            )
        out.setdefault(key, []).append(value)
    return out


async def list_networks(request: web.Request) -> web.StreamResponse:
    wanted = _parse_filters(request, _LIST_FILTERS)

    def run(ctx: Ctx) -> list[dict[str, Any]]:
        return [d for d in _all_docs(ctx) if _matches(ctx, d, wanted)]

    return web.json_response(await _backend(request).call(run))


async def inspect(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]

    def run(ctx: Ctx) -> dict[str, Any]:
        net = _find(ctx, ref)
        return _pseudo_doc(_pseudo_name(ref)) if net is None else network_doc(ctx, net)

    return web.json_response(await _backend(request).call(run))


def _ipam(body: dict[str, Any]) -> tuple[str, str, str]:
    """IPAM.Config's first entry: (subnet, gateway, ip range); moorage networks have one."""
    doc = get_field(body, "NetworkCreateRequest", "IPAM", dict, {})
    driver = get_field(doc, "IPAM", "Driver", str, "") or "default"
    if driver != "default":
        raise NotFound(f'plugin "{driver}" not found')
    configs = get_field(doc, "IPAM", "Config", list, [])
    if not configs:
        return "", "", ""
    if len(configs) > 1:
        raise InvalidArgument("only one IPAM config is supported (one IPv4 subnet a network)")
    cfg = configs[0]
    if not isinstance(cfg, dict):
        raise bad_type("IPAM", "Config", cfg, "network.IPAMConfig")
    subnet = get_field(cfg, "IPAMConfig", "Subnet", str, "")
    gateway = get_field(cfg, "IPAMConfig", "Gateway", str, "")
    ip_range = get_field(cfg, "IPAMConfig", "IPRange", str, "")
    if ":" in subnet:
        raise InvalidArgument(f"invalid subnet {subnet}: IPv6 networks are not supported")
    return subnet, gateway, ip_range


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    w = "NetworkCreateRequest"
    name = get_field(body, w, "Name", str, "")
    if not name:
        raise InvalidArgument("network name must not be empty")
    driver = get_field(body, w, "Driver", str, "") or "bridge"
    internal = get_field(body, w, "Internal", bool, False)
    if get_field(body, w, "EnableIPv6", bool, False):
        raise InvalidArgument("IPv6 networks are not supported")
    get_field(body, w, "CheckDuplicate", bool, False)  # type-checked; names are always unique
    get_field(body, w, "Attachable", bool, False)
    labels = str_map(body, w, "Labels")
    options = str_map(body, w, "Options")
    subnet, gateway, ip_range = _ipam(body)
    if name in (*modes.PREDEFINED, "default"):
        raise Forbidden(f"operation is not permitted on predefined {name} network")
    if driver in ("host", "null"):
        raise Forbidden(f'only one instance of "{driver}" network is allowed')
    if driver != "bridge":
        raise NotFound(f'plugin "{driver}" not found')

    def run(ctx: Ctx) -> NetworkRecord:
        nets = ctx.containers.networks
        if name == modes.DEFAULT_NETWORK:
            raise Conflict(f"network with name {name} already exists")
        rec: NetworkRecord = nets.create(
            name, driver=driver, subnet=subnet, gateway=gateway, ip_range=ip_range,
            internal=internal, labels=labels, options=options,
        )  # fmt: skip
        return rec

    rec = await _backend(request).call(run)
    return web.json_response({"Id": rec.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]

    def run(ctx: Ctx) -> None:
        net = _find(ctx, ref)
        if net is None or net.name == modes.DEFAULT_NETWORK:
            shown = _pseudo_name(ref) if net is None else DEFAULT_NAME
            raise Forbidden(f"{shown} is a pre-defined network and cannot be removed")
        ctx.containers.networks.remove(net.id)

    await _backend(request).call(run)
    return web.Response(status=204)


def _container_ref(body: dict[str, Any], where: str) -> str:
    ref = get_field(body, where, "Container", str, "")
    if not ref:
        raise InvalidArgument("no container specified")
    return str(ref)


async def connect(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    body = await read_json(request)
    w = "NetworkConnect"
    cref = _container_ref(body, w)
    ep = get_field(body, w, "EndpointConfig", dict, {})
    aliases = _string_list(ep, "EndpointSettings", "Aliases")
    ipam = get_field(ep, "EndpointSettings", "IPAMConfig", dict, {})
    ip = get_field(ipam, "EndpointIPAMConfig", "IPv4Address", str, "")
    _string_list(ep, "EndpointSettings", "Links")  # type-checked; links are per container

    def run(ctx: Ctx) -> None:
        net = _find(ctx, ref)
        rec = ctx.containers.get(cref)
        if net is None:
            raise Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                if ref in ("host", pseudo_id("host"))
                else f"container cannot be connected to network {_pseudo_name(ref)}"
            )
        if not modes.is_bridge_mode(rec.spec.network_mode):
            raise Forbidden(
                "container sharing network namespace with another container or host cannot be "
                "connected to any other network"
            )
        if any(n.id == net.id for _, n in ctx.containers.networks.endpoints(rec.id)):
            raise Forbidden(
                f"endpoint with name {rec.name} already exists in network {public_name(net.name)}"
            )
        if aliases and net.name == modes.DEFAULT_NETWORK:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        ctx.containers.networks.connect(net.id, rec, ctx.containers, aliases=tuple(aliases), ip=ip)

    await _backend(request).call(run)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    body = await read_json(request)
    w = "NetworkDisconnect"
    cref = _container_ref(body, w)
    force = get_field(body, w, "Force", bool, False)

    def run(ctx: Ctx) -> None:
        net = _find(ctx, ref)
        if net is None:
            raise Forbidden(
                "container cannot be disconnected from host network or connected to host network"
            )
        try:
            rec = ctx.containers.get(cref)
        except NotFound:
            if force:  # as Docker: nothing of it is left on the network to disconnect
                return
            raise
        if not any(n.id == net.id for _, n in ctx.containers.networks.endpoints(rec.id)):
            raise Forbidden(
                f"container {rec.id} is not connected to network {public_name(net.name)}"
            )
        ctx.containers.networks.disconnect(net.id, rec)

    await _backend(request).call(run)
    return web.Response(status=200)


async def prune(request: web.Request) -> web.StreamResponse:
    wanted = _parse_filters(request, ("until", "label", "label!"))

    def run(ctx: Ctx) -> list[str]:
        import time

        from moorage.engine.containers.logs import parse_until

        nets = ctx.containers.networks
        until = min((parse_until(v, time.time()) for v in wanted.get("until", [])), default=None)
        removed = []
        for net in nets.ls():
            if net.name == modes.DEFAULT_NETWORK or nets.attached(net):
                continue
            if until is not None and net.created > until:
                continue
            if not all(_label(net.labels, v) for v in wanted.get("label", [])):
                continue
            if any(_label(net.labels, v) for v in wanted.get("label!", [])):
                continue
            try:
                nets.remove(net.id)
            except (Conflict, NotFound):
                continue
            removed.append(net.name)
        return removed

    removed = await _backend(request).call(run)
    return web.json_response({"NetworksDeleted": removed or None})


def _string_list(doc: dict[str, Any], where: str, field: str) -> list[str]:
    v = doc.get(field)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise bad_type(where, field, v, "[]string")
    return list(v)


ROUTES: list[Route] = [
    ("GET", "/networks", list_networks),
    ("GET", "/networks/{id}", inspect),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("DELETE", "/networks/{id}", remove),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
]
