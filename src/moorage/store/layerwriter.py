"""Turning an overlay upper directory into an OCI layer tar (commit, and later build).

Overlay's whiteouts become OCI's: a 0/0 character device ``x`` is written as ``.wh.x``, an
opaque directory (xattr ``trusted.overlay.opaque=y``) gets a ``.wh..wh..opq`` entry. Entries
are sorted and, with ``clamp_mtime``, timestamps are clamped, so equal trees give equal
digests. The walk goes by directory fds and never follows a symlink, so a container that
swaps a directory for a symlink while its upper dir is read cannot make us read the host.
"""

from __future__ import annotations

import os
import stat
import tarfile
from typing import BinaryIO

_OPAQUE = "trusted.overlay.opaque"
_KEEP_XATTRS = ("security.capability",)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _xattr(dir_fd: int, name: str, key: str) -> bytes | None:
    try:  # through the open directory: its magic link cannot be swapped under us
        return os.getxattr(f"/proc/self/fd/{dir_fd}/{name}", key, follow_symlinks=False)
    except OSError:
        return None


def write_layer(
    upper: os.PathLike[str] | str, out: BinaryIO, *, clamp_mtime: int | None = None
) -> None:
    """Write the directory ``upper`` as a layer tar to ``out``."""
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(dir_fd: int, name: str, rel: str) -> int | None:
            """Add one entry; returns an fd of it when it is a directory to descend into."""
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            mtime = (
                min(int(st.st_mtime), clamp_mtime) if clamp_mtime is not None else int(st.st_mtime)
            )
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                head, base = os.path.split(rel)
                wh = tarfile.TarInfo(os.path.join(head, f".wh.{base}"))
                wh.mtime = mtime
                tf.addfile(wh)
                return None
            ti = tarfile.TarInfo(rel + ("/" if stat.S_ISDIR(st.st_mode) else ""))
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.uname = ti.gname = ""
            ti.mtime = mtime
            caps = {
                f"SCHILY.xattr.{k}": v.decode("latin-1")
                for k in _KEEP_XATTRS
                if (v := _xattr(dir_fd, name, k)) is not None
            }
            ti.pax_headers = caps
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1 and key in seen_inodes:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = seen_inodes[key]
                    tf.addfile(ti)
                    return None
                seen_inodes[key] = rel
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                with os.fdopen(fd, "rb") as f:
                    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                        return None  # swapped while we looked: skip it
                    ti.size = os.fstat(f.fileno()).st_size
                    tf.addfile(ti, f)
                return None
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                tf.addfile(ti)
                if _xattr(dir_fd, name, _OPAQUE) == b"y":
                    wh = tarfile.TarInfo(os.path.join(rel, ".wh..wh..opq"))
                    wh.mtime = mtime
                    tf.addfile(wh)
                return child
            if stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(name, dir_fd=dir_fd)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            else:
                return None  # sockets have no place in a layer
            tf.addfile(ti)
            return None

        def walk(dir_fd: int, rel: str) -> None:
            for name in sorted(os.listdir(dir_fd)):
                child_rel = f"{rel}/{name}" if rel else name
                try:
                    child = add(dir_fd, name, child_rel)
                except FileNotFoundError:
                    continue  # removed while we walked
                if child is not None:
                    try:
                        walk(child, child_rel)
                    finally:
                        os.close(child)

        top = os.open(upper, _DIR_FLAGS)
        try:
            walk(top, "")
        finally:
            os.close(top)
