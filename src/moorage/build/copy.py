"""COPY and ADD into a step's root filesystem, with the classic builder's rules.

Sources come from the build context (or another stage's / image's root filesystem); a
directory source copies its content, a file goes into a destination ending in ``/`` (or an
existing directory) under its own name; copied entries are owned by 0:0 unless ``--chown``;
directories the copy creates get 0755 and the ``--chown`` owner. The destination is resolved
inside the root (symlinks cannot lead out of it).
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moorage.errors import InvalidArgument

_MAX_LINKS = 40


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


def in_root(root: Path, path: str, *, follow_final: bool = True) -> Path:
    """The host path of ``path`` in ``root``, symlinks resolved as if ``root`` were ``/``.
    Missing components are kept as they are (the result may not exist)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, name)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            done.append(name)
            done.extend(parts)
            return root.joinpath(*done)
        if stat.S_ISLNK(st.st_mode) and (parts or follow_final):
            hops += 1
            if hops > _MAX_LINKS:
                raise InvalidArgument(f"too many levels of symbolic links: {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(name)
    return root.joinpath(*done)


def mkdirs(root: Path, path: str, owner: Owner | None, mode: int = 0o755) -> Path:
    """Create ``path`` (and missing parents) inside ``root``; new dirs get ``owner``."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    cur = "/"
    host = root
    for p in parts:
        cur = posixpath.join(cur, p)
        host = in_root(root, cur)
        try:
            st = os.stat(host)
        except FileNotFoundError:
            os.mkdir(host, mode)
            os.chmod(host, mode)
            o = owner or Owner(0, 0)
            os.lchown(host, o.uid, o.gid)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"cannot create directory {cur}: a file is in the way")
    return host


def _remove_existing(dest: Path, keep_dir: bool) -> None:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        shutil.rmtree(dest)
    else:
        os.unlink(dest)


def copy_entry(
    src: Path,
    st: os.stat_result,
    dest: Path,
    owner: Owner | None,
    chmod: int | None,
) -> None:
    """Copy one file, link, or directory entry (not its content) to ``dest``."""
    o = owner or Owner(0, 0)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        _remove_existing(dest, keep_dir=True)
        if not os.path.isdir(dest) or os.path.islink(dest):
            os.mkdir(dest)
        os.chmod(dest, chmod if chmod is not None else mode)
        os.lchown(dest, o.uid, o.gid)
        return
    _remove_existing(dest, keep_dir=False)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dest)
        os.lchown(dest, o.uid, o.gid)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dest, follow_symlinks=False)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dest)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        os.mknod(dest, st.st_mode, st.st_rdev)
    else:
        return  # sockets are not copied
    os.chmod(dest, chmod if chmod is not None else mode)
    os.lchown(dest, o.uid, o.gid)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree(
    src_root: Path,
    rels: list[tuple[str, os.stat_result]],
    dest_dir: Path,
    owner: Owner | None,
    chmod: int | None,
) -> None:
    """Copy the entries ``rels`` (paths relative to ``src_root``, parents first) into
    ``dest_dir``; directories' modes are set after their content is in."""
    dirs: list[tuple[Path, os.stat_result]] = []
    for rel, st in rels:
        target = dest_dir / rel
        parent = target.parent
        if not parent.is_dir():  # an excluded directory whose content an exception keeps
            parent.mkdir(parents=True, mode=0o755)
            o = owner or Owner(0, 0)
            os.lchown(parent, o.uid, o.gid)
        copy_entry(src_root / rel, st, target, owner, chmod)
        if stat.S_ISDIR(st.st_mode):
            dirs.append((target, st))
    for target, st in reversed(dirs):
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def walk_dir(top: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry under ``top`` (relative paths, parents first, sorted), no symlink followed."""
    out: list[tuple[str, os.stat_result]] = []

    def rec(path: Path, rel: str) -> None:
        with os.scandir(path) as it:
            items = sorted(it, key=lambda d: d.name)
        for d in items:
            child = f"{rel}/{d.name}" if rel else d.name
            st = d.stat(follow_symlinks=False)
            out.append((child, st))
            if stat.S_ISDIR(st.st_mode):
                rec(Path(d.path), child)

    rec(top, "")
    return out


def is_archive(path: Path) -> bool:
    """Whether ADD extracts this local file: a tar, plain or gzip/bzip2/xz compressed."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        try:
            with tarfile.open(path, "r:*") as tf:
                tf.next()
            return True
        except (tarfile.TarError, OSError, EOFError):
            return False
    return (len(head) == 512 and head[257:262] == b"ustar") or _valid_tar_header(head)


def _valid_tar_header(head: bytes) -> bool:
    if len(head) < 512 or head[:100].strip(b"\0") == b"":
        return False
    try:
        chk = int(head[148:156].strip(b"\0 ") or b"-1", 8)
    except ValueError:
        return False
    total = sum(head[:148]) + 8 * 32 + sum(head[156:512])
    return chk == total


def extract_archive(path: Path, root: Path, dest: str) -> None:
    """Unpack a local tar into ``dest`` inside ``root`` (ADD's auto-extraction): owners and
    modes as in the archive, no member may leave the destination."""
    dest_host = mkdirs(root, dest, None)
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            name = posixpath.normpath(m.name.lstrip("/"))
            if name in (".", "") or name.startswith("../") or name == "..":
                continue
            target = in_root(root, posixpath.join(dest, name), follow_final=False)
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                mkdirs(root, posixpath.dirname(posixpath.join(dest, name)), None)
            if m.isdir():
                if not os.path.isdir(target):
                    _remove_existing(Path(target), keep_dir=False)
                    os.mkdir(target)
            elif m.isreg():
                _remove_existing(Path(target), keep_dir=False)
                src = tf.extractfile(m)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            elif m.issym():
                _remove_existing(Path(target), keep_dir=False)
                os.symlink(m.linkname, target)
            elif m.islnk():
                _remove_existing(Path(target), keep_dir=False)
                link_src = in_root(
                    root, posixpath.join(dest, m.linkname.lstrip("/")), follow_final=False
                )
                os.link(link_src, target)
            elif m.isfifo():
                _remove_existing(Path(target), keep_dir=False)
                os.mkfifo(target)
            elif m.ischr() or m.isblk():
                _remove_existing(Path(target), keep_dir=False)
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(target, kind | m.mode, os.makedev(m.devmajor, m.devminor))
            else:
                continue
            os.lchown(target, m.uid, m.gid)
            if not m.issym():
                os.chmod(target, m.mode & 0o7777)
                os.utime(target, (m.mtime, m.mtime))
    del dest_host


def resolve_owner(spec: str, read_file: Callable[[str], bytes | None]) -> Owner:
    """``--chown=user[:group]`` resolved in the destination's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")

    def lookup(name: str, file: str, what: str) -> int:
        if name.isdigit():
            return int(name)
        data = read_file(file)
        for line in (data or b"").decode(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                              f"can't find {what} for {what} name {name}")  # fmt: skip

    uid = lookup(user, "/etc/passwd", "uid")
    if not group:
        return Owner(uid, uid)  # Docker: a user alone means the same number as group
    return Owner(uid, lookup(group, "/etc/group", "gid"))


def read_in_root(root: Path) -> Callable[[str], bytes | None]:
    def read(path: str) -> bytes | None:
        try:
            return in_root(root, path).read_bytes()
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
                return None
            raise

    return read
