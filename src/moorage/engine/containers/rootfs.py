"""A container's root filesystem: an overlay of its image's layers and its own upper dir."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from moorage.errors import MoorageError

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # find_library would exec ldconfig
_MNT_DETACH = 2


class MountError(MoorageError):
    pass


def mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount ``lower`` (top layer first) + ``upper`` on ``target``, unless already mounted."""
    if is_mounted(target):
        return
    opts = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise MountError(f"mounting the container's root filesystem failed: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Lazily unmount ``target`` if it is a mount point; a no-op otherwise."""
    while is_mounted(target):
        if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return
            raise MountError(f"unmounting {target} failed: {os.strerror(err)}")


def is_mounted(target: Path) -> bool:
    try:
        st = os.stat(target)
        parent = os.stat(target.parent)
    except FileNotFoundError:
        return False
    if st.st_dev != parent.st_dev:
        return True
    # an overlay over a dir on the same device still shows a new st_dev; check mountinfo anyway
    t = str(target)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == t for line in f)
