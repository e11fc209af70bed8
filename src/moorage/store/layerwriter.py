"""Turning an overlay upper directory into an OCI layer tar (commit, and later build).

Overlay's whiteouts become OCI's: a 0/0 character device ``x`` is written as ``.wh.x``, an
opaque directory (xattr ``trusted.overlay.opaque=y``) gets a ``.wh..wh..opq`` entry. Entries
are sorted and, with ``clamp_mtime``, timestamps are clamped, so equal trees give equal
digests. Nothing is followed: symlinks are stored as links.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

_OPAQUE = "trusted.overlay.opaque"
_KEEP_XATTRS = ("security.capability",)


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _KEEP_XATTRS:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out[f"SCHILY.xattr.{name}"] = value.decode("latin-1")
    return out


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def write_layer(upper: Path, out: BinaryIO, *, clamp_mtime: int | None = None) -> None:
    """Write ``upper`` as a layer tar to ``out``."""
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(rel: str, full: str) -> None:
            st = os.lstat(full)
            name = rel + ("/" if stat.S_ISDIR(st.st_mode) else "")
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                head, base = os.path.split(rel)
                ti = tarfile.TarInfo(os.path.join(head, f".wh.{base}"))
                ti.mtime = _mtime(st.st_mtime, clamp_mtime)
                tf.addfile(ti)
                return
            ti = tarfile.TarInfo(name)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.uname = ti.gname = ""
            ti.mtime = _mtime(st.st_mtime, clamp_mtime)
            ti.pax_headers = _xattrs(full)
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in seen_inodes:
                ti.type = tarfile.LNKTYPE
                ti.linkname = seen_inodes[key]
                tf.addfile(ti)
                return
            if stat.S_ISREG(st.st_mode):
                seen_inodes[key] = rel
                ti.size = st.st_size
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as f:
                    tf.addfile(ti, f)
                return
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            else:
                return  # sockets have no place in a layer
            tf.addfile(ti)
            if stat.S_ISDIR(st.st_mode) and _is_opaque(full):
                wh = tarfile.TarInfo(os.path.join(rel, ".wh..wh..opq"))
                wh.mtime = ti.mtime
                tf.addfile(wh)

        def walk(rel: str, full: str) -> None:
            for entry in sorted(os.listdir(full)):
                r = os.path.join(rel, entry) if rel else entry
                f = os.path.join(full, entry)
                add(r, f)
                if os.path.isdir(f) and not os.path.islink(f):
                    walk(r, f)

        walk("", str(upper))


def _mtime(mtime: float, clamp: int | None) -> int:
    t = int(mtime)
    return min(t, clamp) if clamp is not None else t
