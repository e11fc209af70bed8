"""Registry commands: pull, push, login, logout, search."""

from __future__ import annotations

import sys

import click

from moorage.cli.common import engine
from moorage.errors import InvalidArgument

_TLS_HELP = "Require HTTPS and verify certificates (default: true, false for loopback registries)."


def _tls(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"invalid --tls-verify value {value!r}: expected true or false")


@click.command("pull")
@click.argument("name")
@click.option("--platform", help="Pick this platform (os/arch[/variant]) from an index.")
@click.option("--quiet", "-q", is_flag=True, help="Suppress verbose output.")
@click.option("--tls-verify", "tls_verify", metavar="BOOL", help=_TLS_HELP)
@click.option("--disable-content-trust", is_flag=True, default=True, hidden=True)
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    name: str,
    platform: str | None,
    quiet: bool,
    tls_verify: str | None,
    disable_content_trust: bool,
) -> None:
    """Download an image from a registry."""
    from moorage.cli.progress import reporter
    from moorage.engine.images.transfer import pull
    from moorage.oci.platform import Platform
    from moorage.oci.reference import parse_reference

    want = Platform.parse(platform) if platform else None
    rep = reporter(quiet)
    res = pull(engine(ctx).images, name, platform=want, tls_verify=_tls(tls_verify), reporter=rep)
    ref = parse_reference(res.reference)
    if quiet:
        click.echo(str(ref))
        return
    click.echo(f"Digest: {res.digest}")
    if res.downloaded:
        click.echo(f"Status: Downloaded newer image for {ref.familiar()}")
    else:
        click.echo(f"Status: Image is up to date for {ref.familiar()}")
    click.echo(str(ref))


@click.command("push")
@click.argument("name")
@click.option("--all-tags", "-a", is_flag=True, help="Push all tags of the repository.")
@click.option("--quiet", "-q", is_flag=True, help="Suppress verbose output.")
@click.option("--tls-verify", "tls_verify", metavar="BOOL", help=_TLS_HELP)
@click.option("--disable-content-trust", is_flag=True, default=True, hidden=True)
@click.pass_context
def push_cmd(
    ctx: click.Context,
    name: str,
    all_tags: bool,
    quiet: bool,
    tls_verify: str | None,
    disable_content_trust: bool,
) -> None:
    """Upload an image to a registry."""
    from moorage.cli.progress import reporter
    from moorage.engine.images.transfer import push

    rep = reporter(quiet)
    res = push(
        engine(ctx).images, name, all_tags=all_tags, tls_verify=_tls(tls_verify), reporter=rep
    )
    if quiet:
        for t in res.tags:
            click.echo(f"{res.repository}:{t.tag}")


def _server_domain(server: str | None) -> str:
    from moorage.distribution.credentials import registry_domain

    return registry_domain(server)


@click.command("login")
@click.argument("server", required=False)
@click.option("--username", "-u", help="Username.")
@click.option("--password", "-p", help="Password.")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
@click.option("--tls-verify", "tls_verify", metavar="BOOL", help=_TLS_HELP)
def login_cmd(
    server: str | None,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    tls_verify: str | None,
) -> None:
    """Log in to a registry (credentials go to Docker's config.json)."""
    from moorage.distribution import credentials
    from moorage.distribution.client import RegistryClient

    domain = _server_domain(server)
    if password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    if password and not password_stdin:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
                   err=True)  # fmt: skip
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise InvalidArgument("Error: Non-null Username and Password Required")
    client = RegistryClient(domain, tls_verify=_tls(tls_verify), credentials=(username, password))
    try:
        client.login()
    finally:
        client.close()
    path = credentials.store(domain, username, password)
    click.echo(f"WARNING! Your password will be stored unencrypted in {path}.", err=True)
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("server", required=False)
def logout_cmd(server: str | None) -> None:
    """Log out from a registry."""
    from moorage.distribution import credentials

    domain = _server_domain(server)
    key = credentials.auth_key(domain)
    if credentials.remove(domain):
        click.echo(f"Removing login credentials for {key}")
    else:
        click.echo(f"Not logged in to {key}")


@click.command("search")
@click.argument("term")
@click.option("--limit", type=click.IntRange(1, 100), default=25, show_default=True)
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", help="Pretty-print search using a Go template.")
@click.option("--tls-verify", "tls_verify", metavar="BOOL", help=_TLS_HELP)
def search_cmd(
    term: str, limit: int, no_trunc: bool, fmt: str | None, tls_verify: str | None
) -> None:
    """Search a registry's catalog for repositories (TERM: [REGISTRY/]WORDS)."""
    from moorage.distribution.search import search
    from moorage.format import format_list

    rows = [
        {
            "Name": r.name,
            "Description": r.description,
            "StarCount": str(r.star_count),
            "IsOfficial": "[OK]" if r.is_official else "",
            "IsAutomated": "[OK]" if r.is_automated else "",
        }
        for r in search(term, limit, tls_verify=_tls(tls_verify))
    ]
    if not no_trunc:
        for row in rows:
            d = row["Description"]
            row["Description"] = d if len(d) <= 45 else d[:44] + "…"
    table = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}\t{{.IsAutomated}}"
    headers = {"StarCount": "STARS", "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED"}
    click.echo(format_list(rows, fmt, default_table=table, headers=headers), nl=False)
