"""``moor registry``: run an OCI distribution registry (serve) and collect its garbage (gc)."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_REGISTRY_ROOT = Path("/var/lib/moorage-registry")


@click.group("registry")
def registry_group() -> None:
    """Run a private OCI registry (Docker registry API v2, OCI distribution v1.1)."""


@registry_group.command("serve")
@click.option("--addr", default="127.0.0.1:5000", show_default=True, help="HOST:PORT to listen on.")
@click.option(
    "--root",
    "root",
    type=click.Path(path_type=Path),
    default=DEFAULT_REGISTRY_ROOT,
    show_default=True,
    help="Registry storage directory (not moorage's image store).",
)
@click.option(
    "--htpasswd",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="bcrypt htpasswd file; without it the registry serves openly.",
)
@click.option(
    "--token-issuer",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Use the token flow; sign tokens with the key in this file (created if absent).",
)
@click.option(
    "--token-realm", help="Token endpoint URL to advertise (default: this server's /token)."
)
@click.option(
    "--acl",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Per-repository permissions: YAML/JSON {user: {repo-glob: [pull, push, delete]}}.",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM).",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The certificate's private key (PEM).",
)
@click.option("--read-only", is_flag=True, help="Refuse every write.")
@click.option("--delete", "delete", is_flag=True, help="Allow deleting manifests and blobs.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the socket.")  # fmt: skip
def serve_cmd(
    addr: str,
    root: Path,
    htpasswd: Path | None,
    token_issuer: Path | None,
    token_realm: str | None,
    acl: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    read_only: bool,
    delete: bool,
    workers: int,
) -> None:
    """Serve a registry until SIGTERM or Ctrl-C."""
    from moorage.registry.server import ServeOptions, serve

    serve(
        ServeOptions(
            addr=addr,
            root=root,
            htpasswd=htpasswd,
            token_issuer=token_issuer,
            token_realm=token_realm,
            acl=acl,
            tls_cert=tls_cert,
            tls_key=tls_key,
            read_only=read_only,
            delete=delete,
            workers=workers,
        )
    )


@registry_group.command("gc")
@click.option(
    "--root",
    "root",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=DEFAULT_REGISTRY_ROOT,
    show_default=True,
    help="Registry storage directory.",
)
@click.option("--dry-run", "-n", is_flag=True, help="Only print what would be removed.")
@click.option(
    "--grace",
    type=click.IntRange(0),
    default=3600,
    show_default=True,
    help="Keep unreferenced blobs and uploads used within this many seconds.",
)
def gc_cmd(root: Path, dry_run: bool, grace: int) -> None:
    """Remove blobs no manifest references (safe while the registry serves and takes pushes)."""
    from moorage.registry.gc import collect
    from moorage.units import human_size

    res = collect(root, dry_run=dry_run, grace=grace)
    verb = "would remove" if dry_run else "removed"
    for d in res.blobs:
        click.echo(f"{verb} blob {d}")
    for u in res.uploads:
        click.echo(f"{verb} upload {u}")
    click.echo(
        f"{len(res.blobs)} blobs and {len(res.uploads)} uploads {verb}, "
        f"{human_size(res.bytes_freed)} {'reclaimable' if dry_run else 'freed'}; "
        f"{res.kept} blobs kept"
    )
