"""Helpers shared by the CLI modules: the engine from the context, errors, prompts, filters."""

from __future__ import annotations

import sys
from collections.abc import Iterable
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
