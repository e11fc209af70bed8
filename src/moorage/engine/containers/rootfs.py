"""A container's root filesystem: an overlay of its image's layers and its own upper dir."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from moorage.errors import MoorageError

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # find_library would exec ldconfig
_MNT_DETACH = 2


class MountError(MoorageError):
    pass


# mount(2) copies its options into one page: longer ones fail with EINVAL
_MAX_OPTIONS = 4000


def mount_overlay(
    lower: Sequence[Path], upper: Path, work: Path, target: Path, *, links: Path | None = None
) -> None:
    """Mount ``lower`` (top layer first) + ``upper`` on ``target``, unless already mounted.

    The options must fit in a page, which long layer paths fill after ~40 layers. Then the
    layers are named through short symlinks in ``links`` (as Docker's overlay2 does with its
    ``l/`` directory), relative to it: an image may have Docker's 127 layers and more."""
    if is_mounted(target):
        return
    opts = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work}"
    if len(opts) <= _MAX_OPTIONS or links is None:
        _mount(target, opts)
        return
    names = [_short_link(links, p) for p in lower]
    opts = f"lowerdir={':'.join(names)},upperdir={upper},workdir={work}"
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:
        os.chdir(links)  # the kernel resolves relative lowerdirs from the caller's cwd
        _mount(target, opts)
    finally:
        os.fchdir(cwd)
        os.close(cwd)


def _mount(target: Path, opts: str) -> None:
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise MountError(f"mounting the container's root filesystem failed: {os.strerror(err)}")


def _short_link(links: Path, layer: Path) -> str:
    """A short name in ``links`` for ``layer`` (a symlink to it), made if missing."""
    import hashlib

    name = hashlib.sha256(str(layer).encode()).hexdigest()[:12]
    link = links / name
    try:
        if os.readlink(link) == str(layer):
            return name
        os.unlink(link)
    except FileNotFoundError:
        links.mkdir(parents=True, exist_ok=True)
    except OSError:
        os.unlink(link)
    tmp = links / f".{name}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(layer, tmp)
    os.replace(tmp, link)  # atomic: a concurrent mount sees the old link or the new one
    return name


def unmount(target: Path) -> None:
    """Lazily unmount ``target`` (every mount stacked on it) if it is a mount point; a no-op
    otherwise. The kernel says when nothing is left (EINVAL: not a mount point), which is
    cheaper than reading mountinfo to ask."""
    path = str(target).encode()
    while _libc.umount2(path, _MNT_DETACH) == 0:
        pass
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT):
        raise MountError(f"unmounting {target} failed: {os.strerror(err)}")


def is_mounted(target: Path) -> bool:
    """Whether ``target`` is a mount point: statx's STATX_ATTR_MOUNT_ROOT (Linux 5.8+), else
    a different device than its parent's, else mountinfo (which is read whole: ~1 ms on a
    host with a few hundred mounts)."""
    answer = _statx_mount_root(target)
    if answer is not None:
        return answer
    try:
        st = os.stat(target)
        parent = os.stat(target.parent)
    except FileNotFoundError:
        return False
    if st.st_dev != parent.st_dev:
        return True
    t = str(target)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == t for line in f)


_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_ATTR_MOUNT_ROOT = 0x2000


def _statx_mount_root(target: Path) -> bool | None:
    """STATX_ATTR_MOUNT_ROOT of ``target`` (False if it does not exist), or None where the
    kernel or libc cannot tell."""
    statx = getattr(_libc, "statx", None)
    if statx is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statx
    if statx(_AT_FDCWD, os.fsencode(target), _AT_SYMLINK_NOFOLLOW, 0, buf) != 0:
        err = ctypes.get_errno()
        return False if err in (errno.ENOENT, errno.ENOTDIR) else None
    attributes = int.from_bytes(buf.raw[8:16], sys.byteorder)
    known = int.from_bytes(buf.raw[56:64], sys.byteorder)
    if not known & _STATX_ATTR_MOUNT_ROOT:
        return None
    return bool(attributes & _STATX_ATTR_MOUNT_ROOT)
