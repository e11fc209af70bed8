"""``moor system service``: serve the Docker Engine API (aiohttp is imported only here)."""

from __future__ import annotations

import click


@click.command("service")
@click.option(
    "-H",
    "--host",
    "hosts",
    multiple=True,
    help="Where to listen: unix:///PATH (default RUNROOT/moorage.sock) or "
    "tcp://127.0.0.1:PORT (loopback only; repeatable).",
)
@click.option(
    "-t",
    "--time",
    "idle",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Exit after this many idle seconds (0: never).",
)
@click.pass_context
def service_cmd(ctx: click.Context, hosts: tuple[str, ...], idle: int) -> None:
    """Serve the Docker Engine API, for the docker CLI, docker-py and compose.

    Also GET /metrics: the containers' resource usage in Prometheus text format (as
    moor stats --format prometheus)."""
    from moorage.api.server import run

    obj = ctx.find_root().obj
    run(list(hosts), obj.root, obj.runroot, idle)
