"""A step's scratch root filesystem for COPY/ADD/WORKDIR: an overlay of the parent's layers
with a fresh upper dir, under ``<root>/build/tmp-*`` (flocked by its builder, so what a
killed build leaves is unmounted and removed by the next one)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from moorage.engine.containers.rootfs import is_mounted, mount_overlay, unmount
from moorage.store.locks import is_abandoned

_PREFIX = "tmp-"


def build_dir(store_root: Path) -> Path:
    return store_root / "build"


def clean_abandoned(store_root: Path) -> None:
    """Unmount and remove the scratch dirs of builds that died."""
    base = build_dir(store_root)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return
    for name in names:
        path = base / name
        if not name.startswith(_PREFIX) or not is_abandoned(path / "lock", grace=0):
            continue
        with contextlib.suppress(Exception):
            unmount(path / "merged")
        if not is_mounted(path / "merged"):
            shutil.rmtree(path, ignore_errors=True)


_MAX_OPTIONS = 4000  # mount(2) copies its options into one page


def _mount(lowers: list[Path], upper: Path, work: Path, merged: Path, links: Path) -> None:
    """Mount the overlay; with many layers, through short relative links to them (the
    options of mount(2) must fit in a page), as Docker's overlay2 driver does."""
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    if len(opts) <= _MAX_OPTIONS:
        mount_overlay(lowers, upper, work, merged)
        return
    links.mkdir()
    for i, lower in enumerate(lowers):
        os.symlink(lower, links / f"{i:x}")
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:
        os.chdir(links)  # the kernel resolves relative lowerdirs from the caller's cwd
        mount_overlay([Path(f"{i:x}") for i in range(len(lowers))], upper, work, merged)
    finally:
        os.fchdir(cwd)
        os.close(cwd)


@contextlib.contextmanager
def scratch_root(
    store_root: Path, lowers: Sequence[Path], upper_dir: Path | None = None
) -> Iterator[tuple[Path, Path]]:
    """Yields (merged, upper): ``merged`` mounted, ``upper`` collecting the changes (our own
    temporary one, or ``upper_dir``: a snapshot being made, on the same filesystem)."""
    base = build_dir(store_root)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = base / f"{_PREFIX}{os.urandom(8).hex()}"
    path.mkdir(mode=0o700)
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        upper, work, merged, empty = (path / n for n in ("upper", "work", "merged", "empty"))
        for d in (work, merged, empty):
            d.mkdir()
        if upper_dir is None:
            upper.mkdir()
        else:
            upper = upper_dir
        os.chmod(upper, 0o755)
        _mount(list(lowers) or [empty], upper, work, merged, path / "l")
        try:
            yield merged, upper
        finally:
            unmount(merged)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
