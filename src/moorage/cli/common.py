"""Helpers shared by the CLI modules: the engine from the context, errors, prompts, filters."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import click

from moorage.errors import InvalidArgument

if TYPE_CHECKING:
    from moorage.engine import Engine


def engine(ctx: click.Context) -> Engine:
    e: Engine = ctx.find_root().obj.engine
    return e


def error(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


def key_values(values: Iterable[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` flags (``--label``, ``-o``) as a mapping; a bare ``KEY`` is empty."""
    out = {}
    for v in values:
        k, _, val = v.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what} {v!r}: expected KEY=VALUE")
        out[k] = val
    return out


def each(names: Iterable[str], action: Callable[[str], object], echo: bool = True) -> None:
    """Docker's way with several names: act on each, echo the name when it worked, one
    ``Error:`` line for each that failed, and exit 1 at the end if any did."""
    from moorage.errors import MoorageError

    failed = False
    for name in names:
        try:
            action(name)
        except MoorageError as e:
            error(str(e))
            failed = True
            continue
        if echo:
            click.echo(name)
    if failed:
        sys.exit(1)


def parse_filters(values: Iterable[str]) -> list[tuple[str, str]]:
    """``--filter key=value`` (repeatable) to pairs, rejecting a filter without ``=``."""
    out = []
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {v!r}")
        out.append((key.strip().lower(), value))
    return out


def confirm(prompt: str, force: bool) -> bool:
    """Docker's ``[y/N]`` prompt; ``--force`` skips it, EOF on stdin means no."""
    if force:
        return True
    click.echo(f"{prompt}\nAre you sure you want to continue? [y/N] ", nl=False)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def echo_document(doc: object, fmt: str) -> None:
    """``--format`` for a single document (info, version): compact JSON or a Go template."""
    if fmt == "json":
        import json

        click.echo(json.dumps(doc, separators=(",", ":")))
    else:
        from moorage.format import format_inspect

        click.echo(format_inspect([doc], fmt), nl=False)


def echo_pruned(deleted: Iterable[tuple[str, str]], reclaimed: int) -> None:
    """Docker's prune report: ``Deleted Images:`` lines, then the space given back."""
    from moorage.units import human_size

    lines = [f"{kind}: {value}" for kind, value in deleted]
    if lines:
        click.echo("Deleted Images:\n" + "\n".join(lines) + "\n")
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")
