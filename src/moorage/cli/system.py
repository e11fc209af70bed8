"""System commands: info, version, system df / prune / check / info."""

from __future__ import annotations

import platform
import sys

import click

from moorage import __version__
from moorage.cli.app import LazyGroup
from moorage.cli.common import confirm, echo_document, echo_pruned, engine
from moorage.format import format_list
from moorage.units import human_size

API_VERSION = "1.41"


def _version_doc() -> dict[str, object]:
    from moorage.oci.platform import host_platform

    plat = host_platform()
    part = {
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": plat.os,
        "Arch": plat.architecture,
    }
    return {
        "Client": dict(part),
        "Server": {**part, "Components": [{"Name": "moorage", "Version": __version__}]},
    }


@click.command("version")
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
def version_cmd(fmt: str | None) -> None:
    """Show the moorage version information."""
    doc = _version_doc()
    if fmt:
        echo_document(doc, fmt)
        return
    for side in ("Client", "Server"):
        d = doc[side]
        assert isinstance(d, dict)
        click.echo(f"{side}:" if side == "Client" else f"\n{side}: moorage")
        click.echo(f" Version:           {d['Version']}")
        click.echo(f" API version:       {d['ApiVersion']}")
        click.echo(f" Python version:    {d['PythonVersion']}")
        click.echo(f" OS/Arch:           {d['Os']}/{d['Arch']}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}GiB"


@click.command("info")
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
@click.pass_context
def info_cmd(ctx: click.Context, fmt: str | None) -> None:
    """Display system-wide information."""
    from moorage.engine.system import info

    doc = info(engine(ctx).images)
    if fmt:
        echo_document(doc, fmt)
        return
    lines = [
        "Server:",
        f" Containers: {doc['Containers']}",
        f"  Running: {doc['ContainersRunning']}",
        f"  Paused: {doc['ContainersPaused']}",
        f"  Stopped: {doc['ContainersStopped']}",
        f" Images: {doc['Images']}",
        f" Server Version: {doc['ServerVersion']}",
        f" Storage Driver: {doc['Driver']}",
        f"  Backing Filesystem: {doc['DriverStatus'][0][1]}",
        f" Logging Driver: {doc['LoggingDriver']}",
        f" Cgroup Driver: {doc['CgroupDriver']}",
        f" Cgroup Version: {doc['CgroupVersion']}",
        f" Runtimes: {doc['DefaultRuntime']}",
        f" Default Runtime: {doc['DefaultRuntime']}",
        f" Kernel Version: {doc['KernelVersion']}",
        f" Operating System: {doc['OperatingSystem']}",
        f" OSType: {doc['OSType']}",
        f" Architecture: {doc['Architecture']}",
        f" CPUs: {doc['NCPU']}",
        f" Total Memory: {_gib(int(doc['MemTotal']))}",
        f" Name: {doc['Name']}",
        f" ID: {doc['ID']}",
        f" Root Dir: {doc['DockerRootDir']}",
        f" Run Root: {doc['RunRoot']}",
        " Debug Mode: false",
    ]
    click.echo("\n".join(lines))


DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_HEADERS = {"TotalCount": "TOTAL"}


@click.command("df")
@click.option("--format", "fmt", help="Format: table, json, or a Go template.")
@click.option("-v", "--verbose", is_flag=True, help="Accepted for compatibility.")
@click.pass_context
def df_cmd(ctx: click.Context, fmt: str | None, verbose: bool) -> None:
    """Show disk usage, and what `system prune -a` would reclaim."""
    from moorage.engine.system import disk_usage

    rows = []
    for u in disk_usage(engine(ctx).images):
        pct = f" ({u.reclaimable * 100 // u.size}%)" if u.size else ""
        rows.append(
            {
                "Type": u.kind,
                "TotalCount": str(u.total),
                "Active": str(u.active),
                "Size": human_size(u.size),
                "Reclaimable": human_size(u.reclaimable) + pct,
            }
        )
    click.echo(format_list(rows, fmt, default_table=DF_TABLE, headers=DF_HEADERS), nl=False)


@click.command("prune")
@click.option("-a", "--all", "all_unused", is_flag=True, help="Remove all unused images.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes too.")
@click.option("--filter", "filters", multiple=True, help="Accepted: label=..., until=...")
@click.pass_context
def system_prune_cmd(
    ctx: click.Context, all_unused: bool, force: bool, volumes: bool, filters: tuple[str, ...]
) -> None:
    """Remove unused data: stopped containers, unused images, orphaned content."""
    from moorage.engine.system import prune

    items = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append(
        "all images without at least one container associated to them"
        if all_unused
        else "all dangling images"
    )
    items.append("all dangling build cache" if not all_unused else "all build cache")
    warning = "WARNING! This will remove:\n" + "\n".join(f"  - {i}" for i in items)
    if not confirm(warning, force):
        return
    report = prune(engine(ctx).images, all_unused=all_unused)
    if report.containers:
        click.echo("Deleted Containers:\n" + "\n".join(report.containers) + "\n")
    echo_pruned(report.deleted, report.reclaimed)


@click.command("check")
@click.option("--repair", is_flag=True, help="Remove damaged images and orphaned content.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@click.pass_context
def check_cmd(ctx: click.Context, repair: bool, quiet: bool) -> None:
    """Check the store for damage and, with --repair, fix it."""
    from moorage.engine.system import check

    report = check(engine(ctx).images, repair=repair)
    for p in report.problems:
        click.echo(p)
    if not repair and not quiet:
        for left in report.leftovers:
            click.echo(f"reclaimable: {left}")
    for r in report.repaired:
        click.echo(f"repaired: {r}")
    if not report.problems:
        if not quiet:
            click.echo("No problems found")
        return
    for u in report.unrepaired:
        click.echo(f"not repaired: {u}", err=True)
    if repair and not report.unrepaired:
        click.echo(f"{len(report.problems)} problems found and repaired")
        return
    if repair:
        sys.exit(1)
    click.echo(f"{len(report.problems)} problems found; run with --repair to fix them", err=True)
    sys.exit(1)


@click.command("warm")
@click.option(
    "--start", "action", flag_value="start", help="Start it now and wait until it listens."
)
@click.option("--stop", "action", flag_value="stop", help="Stop it (it also stops when idle).")
@click.pass_context
def warm_cmd(ctx: click.Context, action: str | None) -> None:
    """Show, start or stop the warm process that runs commands with moorage already loaded.

    moor starts one in the background when none runs (one per run root and installation);
    it exits after MOORAGE_WARM_IDLE seconds (default 300) without a command. MOORAGE_WARM=0
    turns warm start off.
    """
    import os
    import signal
    import time

    from moorage.cli import warm, warmclient

    runroot = str(ctx.find_root().params.get("runroot") or warmclient.runroot([]))
    path = warmclient.socket_path(runroot)
    pid = warm.status(path)
    if action == "stop" and pid is not None:
        if pid == os.getppid():  # run by that warm process: stop it, then still answer
            warm.outlive_parent()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while warm.status(path) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = warm.status(path)
    elif action == "start":
        if pid is None:
            warm.spawn(["--runroot", runroot])
        # one that has just started may still be importing: wait until it listens
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _listening(path):
            time.sleep(0.02)
        pid = warm.status(path)
    if pid is None:
        click.echo(f"warm process: not running ({path})")
    else:
        click.echo(f"warm process: running, pid {pid} ({path})")


def _listening(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


# operating commands live in cli/ops.py, loaded only when run
_OPS = {f: f"moorage.cli.ops:{f}_cmd" for f in ("events", "boot", "supervisor")}


@click.group("system", cls=LazyGroup, lazy=_OPS)
def system_group() -> None:
    """Manage moorage: disk usage, pruning, store checks, events, boot, the API service."""


system_group.add_command(df_cmd, "df")
system_group.add_command(system_prune_cmd, "prune")
system_group.add_command(check_cmd, "check")
system_group.add_command(info_cmd, "info")
system_group.add_command(warm_cmd, "warm")

from moorage.cli.service import service_cmd  # noqa: E402

system_group.add_command(service_cmd, "service")
