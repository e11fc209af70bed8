"""Network commands: network create, ls, inspect, rm, prune, connect, disconnect."""

from __future__ import annotations

import hashlib
from typing import Any

import click

from moorage.cli.common import confirm, engine, error, key_values, parse_filters
from moorage.errors import InvalidArgument, MoorageError, NotFound

NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {"ID": "NETWORK ID"}
PSEUDO = ("host", "none")


def _services(ctx: click.Context) -> tuple[Any, Any]:
    from moorage.engine.containers.service import ContainerService

    eng = engine(ctx)
    containers = ContainerService(eng.store, eng.images)
    return containers.networks, containers


def _pseudo_id(name: str) -> str:
    return hashlib.sha256(f"moorage-network-{name}".encode()).hexdigest()


def _get(nets: Any, ref: str) -> Any:
    try:
        return nets.get(ref)
    except NotFound:
        raise NotFound(f"No such network: {ref}") from None


@click.command("create")
@click.option("-d", "--driver", default="bridge", help="Driver to manage the Network (bridge).")
@click.option("--subnet", default="", help="Subnet in CIDR format.")
@click.option("--gateway", default="", help="IPv4 gateway for the subnet.")
@click.option("--ip-range", default="", help="Allocate container IPs from a sub-range.")
@click.option("--internal", is_flag=True, help="Restrict external access to the network.")
@click.option("--label", multiple=True, help="Set metadata on a network.")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options.")
@click.argument("name")
@click.pass_context
def create_cmd(
    ctx: click.Context, driver: str, subnet: str, gateway: str, ip_range: str, internal: bool,
    label: tuple[str, ...], opt: tuple[str, ...], name: str,
) -> None:  # fmt: skip
    """Create a network."""
    nets, _ = _services(ctx)
    if name in PSEUDO:
        raise InvalidArgument(f"{name} is a pre-defined network and cannot be created")
    net = nets.create(
        name, driver=driver, subnet=subnet, gateway=gateway, ip_range=ip_range,
        internal=internal, labels=key_values(label, "label"), options=key_values(opt, "option"),
    )  # fmt: skip
    click.echo(net.id)


def _rows(nets: Any, no_trunc: bool) -> list[dict[str, Any]]:
    from moorage.units import go_time

    rows = []
    records = nets.ls()
    if not any(n.name == "moor" for n in records):
        records = [nets.default(), *records]
    for n in records:
        rows.append({
            "ID": n.id if no_trunc else n.id[:12], "Name": n.name, "Driver": n.driver,
            "Scope": "local", "IPv6": "false", "Internal": str(n.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in n.labels.items()),
            "CreatedAt": go_time(n.created), "_labels": n.labels,
        })  # fmt: skip
    for name in PSEUDO:
        pid = _pseudo_id(name)
        rows.append({"ID": pid if no_trunc else pid[:12], "Name": name, "Driver": name,
                     "Scope": "local", "IPv6": "false", "Internal": "false", "Labels": "",
                     "CreatedAt": "", "_labels": {}})  # fmt: skip
    return rows


def _match(row: dict[str, Any], filters: list[tuple[str, str]]) -> bool:
    for key, value in filters:
        if key == "name" and value not in row["Name"]:
            return False
        if key == "id" and not row["ID"].startswith(value):
            return False
        if key == "driver" and row["Driver"] != value:
            return False
        if key == "label":
            k, sep, v = value.partition("=")
            if k not in row["_labels"] or (sep and row["_labels"][k] != v):
                return False
        if key == "type":
            custom = row["Name"] not in (*PSEUDO, "moor")
            if (value == "custom") != custom:
                return False
    return True


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (name=, id=, label=...).")
@click.option("--format", "fmt", help="Format: table, json, or a Go template.")
@click.pass_context
def ls_cmd(
    ctx: click.Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str | None
) -> None:
    """List networks."""
    from moorage.format import format_list

    nets, _ = _services(ctx)
    parsed = parse_filters(filters)
    rows = [r for r in _rows(nets, no_trunc) if _match(r, parsed)]
    rows.sort(key=lambda r: r["Name"])
    for r in rows:
        r.pop("_labels")
    click.echo(format_list(rows, fmt, default_table=NETWORK_TABLE, quiet=quiet,
                           quiet_field="ID", headers=NETWORK_HEADERS), nl=False)  # fmt: skip


def inspect_networks(nets: Any, names: tuple[str, ...]) -> tuple[list[dict[str, Any]], bool]:
    docs, failed = [], False
    for name in names:
        try:
            docs.append(nets.inspect(_get(nets, name)))
        except MoorageError as e:
            error(str(e))
            failed = True
    return docs, failed


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
@click.option("-v", "--verbose", is_flag=True, help="Accepted for compatibility.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, fmt: str | None, verbose: bool, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    from moorage.format import format_inspect

    nets, _ = _services(ctx)
    docs, failed = inspect_networks(nets, names)
    click.echo(format_inspect(docs, fmt), nl=False)
    if failed:
        raise SystemExit(1)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    nets, _ = _services(ctx)
    failed = False
    for name in names:
        try:
            if name in PSEUDO:
                raise InvalidArgument(f"{name} is a pre-defined network and cannot be removed")
            if name not in ("bridge", "moor"):
                _get(nets, name)
            nets.remove(name)
        except NotFound as e:
            if not force:
                error(str(e))
                failed = True
            continue
        except MoorageError as e:
            error(str(e))
            failed = True
            continue
        click.echo(name)
    if failed:
        raise SystemExit(1)


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Accepted for compatibility.")
@click.pass_context
def prune_cmd(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused networks."""
    if not confirm(
        "WARNING! This will remove all custom networks not used by at least one container.",
        force,
    ):
        return
    nets, _ = _services(ctx)
    removed = nets.prune()
    if removed:
        click.echo("Deleted Networks:\n" + "\n".join(removed) + "\n")


@click.command("connect")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container.")
@click.option("--ip", default="", help="IPv4 address (e.g., 10.91.0.5).")
@click.argument("network")
@click.argument("container")
@click.pass_context
def connect_cmd(
    ctx: click.Context, alias: tuple[str, ...], ip: str, network: str, container: str
) -> None:
    """Connect a container to a network."""
    nets, containers = _services(ctx)
    net = _get(nets, network)
    rec = containers.get(container)
    nets.connect(net.id, rec, containers, aliases=alias, ip=ip)


@click.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect.")
@click.argument("network")
@click.argument("container")
@click.pass_context
def disconnect_cmd(ctx: click.Context, force: bool, network: str, container: str) -> None:
    """Disconnect a container from a network."""
    nets, containers = _services(ctx)
    net = _get(nets, network)
    rec = containers.get(container)
    nets.disconnect(net.id, rec)


@click.command("teardown-host", hidden=True)
@click.pass_context
def teardown_host_cmd(ctx: click.Context) -> None:
    """Remove this store's bridges, firewall tables and DNS server from the host, keeping
    the records (they come back on next use): for tests and before deleting a store."""
    nets, _ = _services(ctx)
    nets.teardown_all_networks()


@click.group("network")
def network_group() -> None:
    """Manage networks."""


network_group.add_command(create_cmd, "create")
network_group.add_command(ls_cmd, "ls")
network_group.add_command(ls_cmd, "list")
network_group.add_command(inspect_cmd, "inspect")
network_group.add_command(rm_cmd, "rm")
network_group.add_command(rm_cmd, "remove")
network_group.add_command(prune_cmd, "prune")
network_group.add_command(connect_cmd, "connect")
network_group.add_command(disconnect_cmd, "disconnect")
network_group.add_command(teardown_host_cmd, "teardown-host")
