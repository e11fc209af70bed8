"""``moor system service``: serve the Docker Engine API (aiohttp is imported only here)."""

from __future__ import annotations

import click


@click.command("service")
@click.option(
    "-H",
    "--host",
    "hosts",
    multiple=True,
    help="Where to listen: unix:///PATH (default RUNROOT/moorage.sock) or tcp://HOST:PORT "
    "(loopback only, unless --tls-verify; repeatable).",
)
@click.option("--tls", "tls", is_flag=True, help="Serve TCP hosts over TLS.")
@click.option(
    "--tls-verify",
    "--tlsverify",
    "tls_verify",
    is_flag=True,
    help="Use TLS and require client certificates signed by --tls-ca (needed for a TCP "
    "address other than loopback).",
)
@click.option("--tls-cert", "--tlscert", "tls_cert", metavar="FILE", help="Server certificate.")
@click.option("--tls-key", "--tlskey", "tls_key", metavar="FILE", help="Server key (PEM).")
@click.option(
    "--tls-ca", "--tlscacert", "tls_ca", metavar="FILE", help="CA that signs client certificates."
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
def service_cmd(
    ctx: click.Context,
    hosts: tuple[str, ...],
    tls: bool,
    tls_verify: bool,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    idle: int,
) -> None:
    """Serve the Docker Engine API, for the docker CLI, docker-py and compose.

    Also GET /metrics: the containers' resource usage in Prometheus text format (as
    moor stats --format prometheus)."""
    from moorage.api.server import TLSConfig, run

    config = TLSConfig.from_flags(tls=tls, verify=tls_verify, cert=tls_cert, key=tls_key, ca=tls_ca)
    obj = ctx.find_root().obj
    run(list(hosts), obj.root, obj.runroot, idle, config)
