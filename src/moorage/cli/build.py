"""``moor build`` and ``moor builder prune``: Docker's classic builder on the command line."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from moorage.cli.common import engine
from moorage.errors import InvalidArgument, MoorageError


def _kv(values: tuple[str, ...], what: str, from_env: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {v!r}")
        if sep:
            out[key] = value
        elif from_env:
            out[key] = os.environ.get(key)
        else:
            out[key] = ""
    return out


@contextlib.contextmanager
def _context_dir(eng: Any, path: str) -> Iterator[tuple[Path | None, bytes | None]]:
    """(context dir, Dockerfile from stdin): a directory, or ``-`` (a tar, or a Dockerfile)."""
    if path != "-":
        p = Path(path)
        if not p.exists():
            raise InvalidArgument(f'unable to prepare context: path "{path}" not found')
        if not p.is_dir():
            raise InvalidArgument(f'unable to prepare context: path "{path}" is not a directory')
        yield p.resolve(), None
        return
    import shutil
    import tempfile

    data_head = sys.stdin.buffer.peek(512)[:512] if hasattr(sys.stdin.buffer, "peek") else b""
    from moorage.build.context import extract_tar
    from moorage.build.copy import _valid_tar_header

    compressed = (
        data_head[:2] == b"\x1f\x8b"
        or data_head[:3] in (b"BZh",)
        or (data_head[:6] == b"\xfd7zXZ\x00")
    )
    if not (compressed or _valid_tar_header(data_head)):
        yield None, sys.stdin.buffer.read()
        return
    store = eng.store
    base = store.root / "build"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix="ctx-", dir=base))
    try:
        extract_tar(sys.stdin.buffer, tmp, "on stdin")
        yield tmp, None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _BuildCommand(click.Command):
    """Takes Docker's ``--rm=false`` / ``--force-rm=true`` spellings of the boolean flags."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out = []
        for a in args:
            name, sep, value = a.partition("=")
            if sep and name in ("--rm", "--force-rm"):
                v = value.strip().lower()
                if v not in ("true", "false", "1", "0"):
                    raise click.BadParameter(f"invalid boolean {value!r}", param_hint=name)
                a = name if v in ("true", "1") else "--no-" + name[2:]
            out.append(a)
        return super().parse_args(ctx, out)


@click.command("build", cls=_BuildCommand)
@click.argument("path", metavar="PATH | -")
@click.option("-f", "--file", "file", help="Name of the Dockerfile (default: PATH/Dockerfile).")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag).")
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables.")
@click.option("--target", help="Set the target build stage to build.")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image.")
@click.option(
    "--network",
    default="default",
    show_default=True,
    help="Networking for RUN: default (the bridge, NAT out), host, none, or a network.",
)
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID.")
@click.option("--iidfile", help="Write the image ID to the file.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "tty"]),
    default="auto",
    help="Type of progress output (the classic builder's lines in every mode).",
)
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image.")
@click.option("--cache-from", "cache_from", multiple=True, help="Images to consider as cache.")
@click.option(
    "--rm/--no-rm",
    default=True,
    help="Remove intermediate containers after a successful build (--rm=false keeps them).",
)
@click.option("--force-rm/--no-force-rm", default=False, help="Always remove them.")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image.")
@click.option("--squash", is_flag=True, hidden=True)
@click.pass_context
def build_cmd(
    ctx: click.Context,
    path: str,
    file: str | None,
    tags: tuple[str, ...],
    build_args: tuple[str, ...],
    target: str | None,
    labels: tuple[str, ...],
    network: str,
    quiet: bool,
    iidfile: str | None,
    progress: str,
    no_cache: bool,
    cache_from: tuple[str, ...],
    rm: bool,
    force_rm: bool,
    pull: bool,
    squash: bool,
) -> None:
    """Build an image from a Dockerfile."""
    from moorage.build.builder import Builder, BuildOptions, Progress, stdio
    from moorage.build.context import BuildContext, ChecksumCache
    from moorage.build.frontend import parse
    from moorage.oci.reference import parse_reference

    del progress
    if squash:
        raise InvalidArgument("--squash is not supported")
    if network == "default":
        network = "bridge"
    refs = [str(parse_reference(t).with_default_tag()) for t in tags]
    for t in tags:
        if parse_reference(t).digest is not None:
            raise InvalidArgument(f"invalid reference format: {t} (a tag cannot be a digest)")
    epoch_s = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = None
    if epoch_s:
        if not epoch_s.isdigit():
            raise InvalidArgument(f"SOURCE_DATE_EPOCH={epoch_s!r} is not a number of seconds")
        epoch = int(epoch_s)
    options = BuildOptions(
        tags=refs,
        build_args=_kv(build_args, "--build-arg", from_env=True),
        target=target,
        labels={k: v or "" for k, v in _kv(labels, "--label", from_env=False).items()},
        network=network,
        no_cache=no_cache,
        cache_from=list(cache_from),
        quiet=quiet,
        pull=pull,
        rm=rm,
        force_rm=force_rm,
        source_date_epoch=epoch,
    )
    import signal

    def _interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # clean up (containers, mounts) as on Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    eng = engine(ctx)
    out = Progress(lambda line: click.echo(line), quiet)
    with _context_dir(eng, path) as (ctx_dir, stdin_dockerfile):
        if file == "-":
            if path == "-":
                raise InvalidArgument("cannot read both the Dockerfile and the context from stdin")
            text, name = sys.stdin.buffer.read(), "Dockerfile"
        elif stdin_dockerfile is not None:
            text, name = stdin_dockerfile, "Dockerfile"
        else:
            assert ctx_dir is not None
            df_path = Path(file) if file else ctx_dir / "Dockerfile"
            if file and path == "-":
                df_path = ctx_dir / file
            try:
                text = df_path.read_bytes()
            except FileNotFoundError:
                raise InvalidArgument(
                    f"Cannot locate specified Dockerfile: {file or 'Dockerfile'}"
                ) from None
            except OSError as e:
                raise InvalidArgument(f"cannot read {df_path}: {e.strerror}") from None
            name = file or "Dockerfile"
        dockerfile = parse(text.decode("utf-8", errors="replace"), name)
        build_ctx = None
        if ctx_dir is not None:
            cache = ChecksumCache(eng.store.db.conn, ctx_dir) if path != "-" else None
            build_ctx = BuildContext.open(ctx_dir, cache)
            if not quiet:
                from moorage.units import human_size

                # the size of the context as a tar, which is what Docker reports
                total = 1024 + sum(
                    512 + (e.st.st_size + 511) // 512 * 512 if stat.S_ISREG(e.st.st_mode) else 512
                    for e in build_ctx.entries().values()
                )
                click.echo(f"Sending build context to Docker daemon  {human_size(total, 4)}")
        builder = Builder(eng, dockerfile, build_ctx, options, out, stdio())
        try:
            image_id = builder.build()
        except MoorageError as e:
            from moorage.build.builder import BuildFailed

            if isinstance(e, BuildFailed):
                raise
            raise
    if tags:
        with eng.store.db.transaction() as conn:
            import time

            from moorage.engine.images.service import set_tag
            from moorage.oci.digest import Digest

            for ref in refs:
                set_tag(conn, ref, Digest.parse(image_id), time.time())
    if iidfile:
        Path(iidfile).write_text(image_id)
    if quiet:
        click.echo(image_id)
        return
    click.echo(f"Successfully built {image_id.removeprefix('sha256:')[:12]}")
    for t in tags:
        click.echo(f"Successfully tagged {parse_reference(t).with_default_tag().familiar()}")


@click.group("builder")
def builder_group() -> None:
    """Manage builds."""


@builder_group.command("prune")
@click.option("-a", "--all", "all_cache", is_flag=True, help="Remove all unused build cache.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def builder_prune_cmd(ctx: click.Context, all_cache: bool, force: bool) -> None:
    """Remove build cache."""
    from moorage.build.cache import prune
    from moorage.cli.common import confirm
    from moorage.units import human_size

    del all_cache
    if not confirm("WARNING! This will remove all dangling build cache.", force):
        return
    removed, freed = prune(engine(ctx))
    if removed:
        click.echo("Deleted build cache objects:")
        for r in removed:
            click.echo(r)
    click.echo(f"Total:\t{human_size(freed)}")
