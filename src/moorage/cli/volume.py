"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

from typing import Any

import click

from moorage.cli.common import confirm, each, engine, error, key_values, parse_filters
from moorage.errors import MoorageError

VOLUME_TABLE = "table {{.Driver}}\t{{.Name}}"
VOLUME_HEADERS = {"Name": "VOLUME NAME"}


def _service(ctx: click.Context) -> Any:
    from moorage.engine.volumes.service import VolumeService

    return VolumeService(engine(ctx).store)


@click.command("create")
@click.option("-d", "--driver", default="local", help="Specify volume driver name (local).")
@click.option("--label", multiple=True, help="Set metadata for a volume.")
@click.option("-o", "--opt", multiple=True, help="Driver options: type=tmpfs|none, device, o.")
@click.argument("name", required=False, default="")
@click.pass_context
def create_cmd(
    ctx: click.Context, driver: str, label: tuple[str, ...], opt: tuple[str, ...], name: str
) -> None:
    """Create a volume."""
    vol = _service(ctx).create(
        name, driver=driver, labels=key_values(label, "label"), options=key_values(opt, "option")
    )
    click.echo(vol.name)


def _matches(svc: Any, v: Any, key: str, value: str) -> bool:
    if key == "name":
        return value in v.name
    if key == "dangling":
        return (value in ("true", "1")) != bool(svc.users(v.name))
    if key == "label":
        k, sep, val = value.partition("=")
        return k in v.labels and (not sep or v.labels[k] == val)
    return True


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=, name=, label=.")
@click.option("--format", "fmt", help="Format: table, json, or a Go template.")
@click.pass_context
def ls_cmd(ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes."""
    from moorage.format import format_list

    svc = _service(ctx)
    parsed = parse_filters(filters)
    rows = []
    for v in svc.ls():
        if all(_matches(svc, v, key, value) for key, value in parsed):
            rows.append({"Driver": v.driver, "Name": v.name, "Scope": "local",
                         "Mountpoint": str(svc.mountpoint(v.name)),
                         "Labels": ",".join(f"{k}={x}" for k, x in v.labels.items())})  # fmt: skip
    click.echo(format_list(rows, fmt, default_table=VOLUME_TABLE, quiet=quiet,
                           quiet_field="Name", headers=VOLUME_HEADERS), nl=False)  # fmt: skip


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    from moorage.format import format_inspect

    svc = _service(ctx)
    docs, failed = [], False
    for name in names:
        try:
            docs.append(svc.inspect(svc.get(name)))
        except MoorageError as e:
            error(str(e))
            failed = True
    click.echo(format_inspect(docs, fmt), nl=False)
    if failed:
        raise SystemExit(1)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not error if the volume does not exist.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes (not one in use)."""
    svc = _service(ctx)
    each(names, lambda name: svc.remove(name, force=force))


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Accepted for compatibility.")
@click.pass_context
def prune_cmd(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused local volumes."""
    if not confirm("WARNING! This will remove all local volumes not used by at least one "
                   "container.", force):  # fmt: skip
        return
    svc = _service(ctx)
    removed = svc.prune()
    if removed:
        click.echo("Deleted Volumes:\n" + "\n".join(removed) + "\n")
    click.echo("Total reclaimed space: 0B")


@click.group("volume")
def volume_group() -> None:
    """Manage volumes."""


volume_group.add_command(create_cmd, "create")
volume_group.add_command(ls_cmd, "ls")
volume_group.add_command(ls_cmd, "list")
volume_group.add_command(inspect_cmd, "inspect")
volume_group.add_command(rm_cmd, "rm")
volume_group.add_command(rm_cmd, "remove")
volume_group.add_command(prune_cmd, "prune")
