"""Snapshots: unpacked layers as overlay lower dirs under ``overlay/<diff-id-hex>/diff``.

A layer's directory is the same whatever layers lie below it (overlay stacks them at mount
time), so a snapshot is named by the layer's diff id and shared by every image that uses it.
A snapshot is built in ``overlay/.tmp-*`` (flocked by its builder), synced to disk, and only
then renamed into place: a directory named by a diff id is always complete. Temporary
directories whose builder died are removed by the next command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from moorage.oci.digest import Digest
from moorage.store.locks import remove_abandoned

R = TypeVar("R")
_TMP_PREFIX = ".tmp-"


def syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path``: one syscall instead of an fsync per file."""
    import ctypes  # only when a snapshot is written

    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # by name: find_library execs ldconfig
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "overlay"

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, diff_id: Digest) -> Path:
        return self.dir / diff_id.hex

    def diff_dir(self, diff_id: Digest) -> Path:
        return self.path(diff_id) / "diff"

    def exists(self, diff_id: Digest) -> bool:
        return self.path(diff_id).is_dir()

    def create(self, diff_id: Digest | None, fill: Callable[[Path], R]) -> tuple[Digest, R]:
        """Build a snapshot: ``fill(diff_dir)`` writes the files and returns a result whose
        ``diff_id`` attribute names the snapshot when ``diff_id`` is not known up front."""
        tmp = self.dir / f"{_TMP_PREFIX}{os.urandom(8).hex()}"
        tmp.mkdir(mode=0o700)
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            diff = tmp / "diff"
            diff.mkdir(mode=0o755)
            result = fill(diff)
            final_id: Digest = diff_id if diff_id is not None else result.diff_id  # type: ignore[attr-defined]
            syncfs(tmp)
            os.chmod(tmp, 0o700)
            try:
                os.rename(tmp, self.path(final_id))
            except OSError:
                # someone else completed the same snapshot first: theirs is identical
                if not self.exists(final_id):
                    raise
                _rmtree(tmp)
            return final_id, result
        except BaseException:
            _rmtree(tmp)
            raise
        finally:
            os.close(fd)

    def remove(self, diff_id: Digest) -> None:
        """Remove a snapshot; first renamed aside so a crash never leaves half of one."""
        p = self.path(diff_id)
        aside = self.dir / f"{_TMP_PREFIX}rm-{diff_id.hex[:16]}-{os.urandom(4).hex()}"
        try:
            os.rename(p, aside)
        except FileNotFoundError:
            return
        _rmtree(aside)

    def names(self) -> Iterator[str]:
        """Every complete entry (snapshot or container dir) under ``overlay/``."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir):
                if not name.startswith(_TMP_PREFIX):
                    yield name

    def clean_incomplete(self) -> int:
        """Remove temporary dirs whose builder died; returns how many."""
        return remove_abandoned(self.dir, _TMP_PREFIX)


def _rmtree(path: Path) -> None:
    # shutil.rmtree never follows symlinks (fd-based on Linux): safe on hostile layer content
    shutil.rmtree(path, ignore_errors=True)


def dir_usage(path: Path) -> int:
    """Bytes used by regular files and symlinks under ``path`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
