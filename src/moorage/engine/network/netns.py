"""Network namespaces that outlive their creator: made with unshare(2) by the calling thread,
bind-mounted on a file under the run root, entered with setns(2), removed with umount2(2).

Python 3.11 has no os.unshare/os.setns and no mount(2), so these go through libc (ctypes).
unshare and setns change only the calling thread's namespace; every function here returns
the thread to the namespace it was in, even on error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from moorage.errors import MoorageError

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2


class NetnsError(MoorageError):
    """A network namespace could not be made, entered or removed."""


@cache
def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]  # fmt: skip
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise NetnsError(f"{what}: {os.strerror(err)}")


def setns(fd: int) -> None:
    _check(_libc().setns(fd, CLONE_NEWNET), "setns")


@contextlib.contextmanager
def created(path: Path) -> Iterator[None]:
    """Make a new network namespace bound at ``path`` and run the block inside it (open
    netlink sockets there); back in the caller's namespace afterwards. On error nothing is
    left at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    mounted = False
    try:
        _check(_libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            rc = _libc().mount(b"/proc/thread-self/ns/net", str(path).encode(), None, MS_BIND,
                               None)  # fmt: skip
            _check(rc, f"bind-mount a network namespace on {path}")
            mounted = True
            yield
        finally:
            setns(home)
    except BaseException:
        if mounted:
            _libc().umount2(str(path).encode(), MNT_DETACH)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    finally:
        os.close(home)


@contextlib.contextmanager
def entered(path: Path) -> Iterator[None]:
    """Run the block inside the namespace bound at ``path``."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def remove(path: Path) -> None:
    """Unmount and delete a bound namespace; nothing if it is not there."""
    if not path.exists():
        return
    if _libc().umount2(str(path).encode(), MNT_DETACH) != 0:
        import ctypes

        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point (a half-made one), ENOENT
            raise NetnsError(f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
