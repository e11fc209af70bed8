"""Image commands: images, import, load, save, tag, rmi, history, inspect, image prune."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from moorage.cli.common import confirm, echo_pruned, engine, error, parse_filters
from moorage.errors import InvalidArgument, MoorageError, NotFound, Unsupported
from moorage.format import format_list
from moorage.units import human_size, parse_time, since

IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_TABLE_DIGESTS = (
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
)
IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "VirtualSize": "SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"}


def _created_at(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts))


def image_rows(
    ctx: click.Context, filters: list[tuple[str, str]], no_trunc: bool, show_all: bool = True
) -> list[Any]:
    from moorage.oci.reference import parse_reference

    images = engine(ctx).images
    rows: list[dict[str, Any]] = []
    now = time.time()
    hidden: set[str] = set()
    if not show_all:  # a build's intermediate images, as Docker hides them without -a
        from moorage.build.cache import intermediate_ids

        hidden = intermediate_ids(images.store.db.conn)
    for rec in images.ls(filters=filters):
        if str(rec.id) in hidden:
            continue
        created = parse_time(rec.created) or rec.added
        digests: dict[str, str] = {}
        for d in rec.repo_digests:
            ref = parse_reference(d)
            digests[ref.familiar_name] = str(ref.digest)
        base = {
            "ID": str(rec.id) if no_trunc else rec.short_id,
            "CreatedSince": since(created, now),
            "CreatedAt": _created_at(created),
            "Size": human_size(rec.size, 3),
            "VirtualSize": human_size(rec.size, 3),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": "N/A",
        }
        names: list[tuple[str, str]] = []
        for t in rec.tags:
            ref = parse_reference(t)
            names.append((ref.familiar_name, ref.tag or "<none>"))
        if not names:
            names = [(repo, "<none>") for repo in digests] or [("<none>", "<none>")]
        for repo, tag in names:
            rows.append(
                {
                    "Repository": repo,
                    "Tag": tag,
                    "Digest": digests.get(repo, "<none>"),
                    **base,
                }
            )
    return rows


@click.command("images")
@click.argument("repository", required=False)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all images (incl. intermediate).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (key=value).")
@click.option("--format", "fmt", help="Format: table, json, or a Go template.")
@click.pass_context
def images_cmd(
    ctx: click.Context,
    repository: str | None,
    show_all: bool,
    quiet: bool,
    digests: bool,
    no_trunc: bool,
    filters: tuple[str, ...],
    fmt: str | None,
) -> None:
    """List images."""
    parsed = parse_filters(filters)
    if repository:
        parsed.append(("reference", repository))
    rows = image_rows(ctx, parsed, no_trunc, show_all)
    table = IMAGES_TABLE_DIGESTS if digests else IMAGES_TABLE
    click.echo(
        format_list(
            rows, fmt, default_table=table, quiet=quiet, quiet_field="ID", headers=IMAGE_HEADERS
        ),
        nl=False,
    )


@click.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction.")
@click.option("-m", "--message", default="", help="Commit message for the imported image.")
@click.option("--platform", default=None, help="Set the platform (only the host's is stored).")
@click.pass_context
def import_cmd(
    ctx: click.Context,
    source: str,
    reference: str | None,
    changes: tuple[str, ...],
    message: str,
    platform: str | None,
) -> None:
    """Import a root filesystem tarball (file or - for stdin) as an image."""
    from moorage.engine.images.importer import import_rootfs

    if source.startswith(("http://", "https://")):
        raise Unsupported(f"importing from a URL is not supported: {source}")
    store = engine(ctx).store
    with _open_input(source) as stream:
        # as Docker: the CLI streams a file as the request body, so the comment says "-"
        image_id = import_rootfs(
            store, stream, reference=reference, changes=changes, message=message, source="-"
        )
    click.echo(str(image_id))


@contextlib.contextmanager
def _open_input(source: str | None) -> Any:
    if source in (None, "-"):
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        yield sys.stdin.buffer
        return
    try:
        f = open(source, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise NotFound(f"open {source}: no such file or directory") from None
    except IsADirectoryError:
        raise InvalidArgument(f"open {source}: is a directory") from None
    with f:
        yield f


@click.command("load")
@click.option("-i", "--input", "input_path", help="Read from a tar archive file, not stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@click.pass_context
def load_cmd(ctx: click.Context, input_path: str | None, quiet: bool) -> None:
    """Load images from a docker-archive or OCI-layout tar (file or stdin)."""
    from moorage.engine.images.archive import load

    images = engine(ctx).images
    with _open_input(input_path) as stream:
        result = load(images, stream)
    if quiet:
        return
    for tag, old in result.renamed:
        from moorage.engine.images.service import familiar

        click.echo(
            f"The image {familiar(tag)} already exists, renaming the old one with ID {old} "
            "to empty string"
        )
    for name in result.loaded:
        if name.startswith("sha256:"):
            click.echo(f"Loaded image ID: {name}")
        else:
            click.echo(f"Loaded image: {name}")


@click.command("save")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", help="Write to a file, not stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker-archive", "oci-archive"]),
    default="docker-archive",
    show_default=True,
    help="Archive format.",
)
@click.pass_context
def save_cmd(ctx: click.Context, images: tuple[str, ...], output: str | None, fmt: str) -> None:
    """Save one or more images to a tar archive (streamed to stdout by default)."""
    from moorage.engine.images.archive import save

    svc = engine(ctx).images
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            )
        save(svc, images, sys.stdout.buffer, fmt=fmt)
        return
    target = Path(output)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent if str(target.parent) else ".", prefix=".moor-save-"
    )
    try:
        with os.fdopen(fd, "wb") as out:
            save(svc, images, out, fmt=fmt)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag_cmd(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    engine(ctx).images.tag(source, target)


@click.command("rmi")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.option("--no-prune", is_flag=True, help="Accepted for compatibility.")
@click.pass_context
def rmi_cmd(ctx: click.Context, images: tuple[str, ...], force: bool, no_prune: bool) -> None:
    """Remove one or more images."""
    svc = engine(ctx).images
    failed = False
    for name in images:
        try:
            events = svc.remove(name, force=force, collect=False)
        except MoorageError as e:
            error(str(e))
            failed = True
            continue
        for ev in events:
            click.echo(f"{ev.kind.capitalize()}: {ev.value}")
    svc.collect_garbage(blocking=False)  # once for all the images named
    if failed:
        sys.exit(1)


@click.command("history")
@click.argument("image")
@click.option("-H", "--human", type=bool, default=True, help="Human-readable sizes and dates.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--format", "fmt", help="Format: table, json, or a Go template.")
@click.pass_context
def history_cmd(
    ctx: click.Context, image: str, human: bool, no_trunc: bool, quiet: bool, fmt: str | None
) -> None:
    """Show the history of an image."""
    svc = engine(ctx).images
    rec = svc.resolve(image)
    now = time.time()
    rows = []
    for h in svc.history(rec):
        created = parse_time(h["Created"])
        created_by = h["CreatedBy"] or ""
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        hid = h["Id"]
        if hid != "<missing>" and not no_trunc:
            hid = hid.removeprefix("sha256:")[:12]
        rows.append(
            {
                "ID": hid,
                "CreatedSince": since(created, now) if human and created else (h["Created"] or ""),
                "CreatedAt": h["Created"] or "",
                "CreatedBy": created_by,
                "Size": human_size(h["Size"], 3) if human else str(h["Size"]),
                "Comment": h["Comment"] or "",
            }
        )
    click.echo(
        format_list(
            rows,
            fmt,
            default_table=HISTORY_TABLE,
            quiet=quiet,
            quiet_field="ID",
            headers=HISTORY_HEADERS,
        ),
        nl=False,
    )


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
@click.pass_context
def image_inspect_cmd(ctx: click.Context, names: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more images."""
    from moorage.cli.container import inspect_containers

    inspect_containers(ctx, names, fmt, "image")


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["container", "image", "volume", "network"]),
    help="Only this kind of object.",
)
@click.option("-s", "--size", is_flag=True, help="Accepted for compatibility.")
@click.pass_context
def inspect_any_cmd(
    ctx: click.Context, names: tuple[str, ...], fmt: str | None, kind: str | None, size: bool
) -> None:
    """Display detailed information on containers or images."""
    from moorage.cli.container import inspect_containers

    inspect_containers(ctx, names, fmt, kind)


@click.command("prune")
@click.option("-a", "--all", "all_unused", is_flag=True, help="Remove all unused images.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Accepted: label=..., until=...")
@click.pass_context
def prune_cmd(ctx: click.Context, all_unused: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images."""
    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if all_unused
        else "WARNING! This will remove all dangling images."
    )
    if not confirm(warning, force):
        return
    events, reclaimed = engine(ctx).images.prune(all_unused=all_unused)
    echo_pruned(((ev.kind, ev.value) for ev in events), reclaimed)


@click.group("image")
def image_group() -> None:
    """Manage images."""


image_group.add_command(images_cmd, "ls")
image_group.add_command(images_cmd, "list")
image_group.add_command(image_inspect_cmd, "inspect")
image_group.add_command(import_cmd, "import")
image_group.add_command(load_cmd, "load")
image_group.add_command(save_cmd, "save")
image_group.add_command(tag_cmd, "tag")
image_group.add_command(rmi_cmd, "rm")
image_group.add_command(history_cmd, "history")
image_group.add_command(prune_cmd, "prune")
