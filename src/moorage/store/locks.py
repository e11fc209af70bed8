"""File locks (flock) that keep concurrent ``moor`` commands safe.

The discipline: every command that adds content (load, import, pull, build) holds the store
lock *shared* for its whole duration; garbage collection holds it *exclusive*. So GC never
sees a blob or layer that an in-progress operation wrote but has not yet recorded in the
database. Metadata itself is guarded by SQLite's own locking (WAL mode, busy timeout).

In-progress files (``ingest/*``, ``overlay/.tmp-*``) are each held with an exclusive flock by
their writer; a later command that can take that lock knows the writer died and removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def flocked(path: Path, *, exclusive: bool, blocking: bool = True) -> Iterator[bool]:
    """Hold a flock on ``path`` (created if missing). Yields False if non-blocking and busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def try_lock_fd(fd: int) -> bool:
    """Take an exclusive non-blocking flock on an open fd; False if someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_abandoned(path: Path, grace: float = 5.0) -> bool:
    """True if nobody holds a flock on ``path`` (its writer is gone).

    Entries younger than ``grace`` seconds are never abandoned: that covers the instant
    between a writer creating its file and taking the lock on it.
    """
    try:
        if time.time() - path.lstat().st_mtime < grace:
            return False
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        return try_lock_fd(fd)
    finally:
        os.close(fd)


def remove_abandoned(directory: Path, prefix: str = "") -> int:
    """Remove the entries of ``directory`` (named ``prefix*``) that no writer holds any more:
    what a killed command left half-written. Returns how many were removed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        path = directory / name
        if not name.startswith(prefix) or not is_abandoned(path):
            continue
        if path.is_dir() and not path.is_symlink():
            import shutil  # rarely needed; it imports bz2 and lzma

            # rmtree never follows symlinks (fd-based on Linux): safe on hostile layer content
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed += 1
    return removed
