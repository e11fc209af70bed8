"""Filesystem operations on a container's root that are safe against a hostile container.

``docker cp`` (both directions), ``docker diff`` and ``docker export`` work on the merged root
filesystem of a container whose processes may be running and may race to replace any path
component with a symlink (to ``/``, say) while we work.  Two rules keep every operation inside
the root:

* a path *given by the user* (``CTR:/some/path``) is resolved as if the root were ``/``:
  :func:`resolve_in_root` uses ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (or, without
  openat2, an equivalent component-by-component walk), so absolute symlinks and ``..`` are
  clamped to the root;
* everything *below* that point is reached relative to an already open directory fd, one
  component at a time, with ``O_NOFOLLOW``: a symlink met while walking is archived as a link,
  never followed.  Copying *into* a container follows a symlink met among an entry's parent
  directories the way Docker's chrooted extraction does, by resolving that directory with
  :func:`resolve_in_root` again; the entry itself is always created with ``O_NOFOLLOW`` /
  ``O_EXCL`` relative to its parent's fd.  Regular files are opened as ``O_PATH`` first,
  checked with ``fstat`` and re-opened through ``/proc/self/fd``, so a container cannot swap in
  a device node between the check and the read.

A file descriptor keeps pointing at the inode it was opened on, whatever the container renames
afterwards, and a container can only move things around inside its own filesystem: once an fd
is inside the root, everything reached from it without following symlinks is too.

The host-side helpers (:func:`host_to_tar`, :func:`tar_to_host`, :func:`plan_copy`,
:func:`host_destination`) implement the CLI half of ``docker cp`` with Docker's path rules.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import os
import platform
import posixpath
import stat
import tarfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, TypedDict, cast

from moorage.errors import InvalidArgument, NotFound
from moorage.store.dirfds import DirFdCache

__all__ = [
    "CopyPlan",
    "PathStat",
    "container_destination",
    "copy_from_container",
    "copy_to_container",
    "diff",
    "export_rootfs",
    "host_destination",
    "host_to_tar",
    "plan_copy",
    "resolve_in_root",
    "stat_path",
    "tar_to_host",
]

# --------------------------------------------------------------------------------------------
# openat2 and the in-root resolver
# --------------------------------------------------------------------------------------------

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# openat2 got the same number on every architecture that uses the generic syscall table
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437}.get(platform.machine())
_MAX_SYMLINKS = 40  # the kernel's limit (MAXSYMLINKS)
_EAGAIN_RETRIES = 64  # openat2 answers EAGAIN when a rename raced with a ".." lookup

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)

# True until openat2 is found missing (ENOSYS); tests set it to False to force the fallback.
_openat2_usable: bool = _SYS_OPENAT2 is not None


def _openat2(dirfd: int, path: bytes, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = int(
        _libc.syscall(
            ctypes.c_long(cast(int, _SYS_OPENAT2)),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _resolve_error(e: OSError, path: str) -> Exception:
    if e.errno == errno.ENOENT:
        return NotFound(f"no such file or directory: {path}")
    if e.errno == errno.ENOTDIR:
        return NotFound(f"not a directory: {path}")
    if e.errno == errno.ELOOP:
        return InvalidArgument(f"too many levels of symbolic links: {path}")
    return e


def _walk_in_root(root_fd: int, path: str, follow_final: bool) -> int:
    """openat2(RESOLVE_IN_ROOT) done by hand: one component at a time with O_NOFOLLOW.

    ``stack`` holds the directories walked through (``stack[0]`` is the root); ``..`` pops
    it and never goes above the root; a symlink's target is spliced into the remaining
    components, an absolute one after unwinding to the root.
    """
    raw_last = path.rsplit("/", 1)[-1]
    must_dir = raw_last in ("", ".", "..")  # "dir/", "dir/.": follow and require a directory
    parts = deque(c for c in path.split("/") if c not in ("", "."))
    stack = [os.open(".", _PATH_FLAGS, dir_fd=root_fd)]
    hops = 0
    try:
        while parts:
            name = parts.popleft()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not parts
            fd = os.open(name, _PATH_FLAGS, dir_fd=stack[-1])
            try:
                st = os.fstat(fd)
                follow = stat.S_ISLNK(st.st_mode) and (not last or follow_final or must_dir)
                # readlinkat(fd, ""): the body of this very link, whatever is at `name` now
                target = os.readlink("", dir_fd=fd) if follow else None
            except BaseException:
                os.close(fd)
                raise
            if target is None:
                if not last and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                stack.append(fd)
                continue
            os.close(fd)
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            if target.startswith("/"):
                while len(stack) > 1:
                    os.close(stack.pop())
            if last and target.rsplit("/", 1)[-1] in ("", ".", ".."):
                must_dir = True
            parts.extendleft(reversed([c for c in target.split("/") if c not in ("", ".")]))
        if must_dir and not stat.S_ISDIR(os.fstat(stack[-1]).st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def resolve_in_root(root_fd: int, path: str, *, follow_final: bool = True) -> int:
    """An ``O_PATH`` fd of ``path`` resolved as if ``root_fd`` were ``/``.

    Absolute symlinks resolve relative to the root and ``..`` cannot climb above it; magic
    links (``/proc/*/fd``-style) are refused.  With ``follow_final=False`` a symlink in the
    last component is opened itself (unless the path ends with ``/``).  The caller closes
    the fd.  Raises :class:`NotFound` (missing path, or a non-directory used as one) and
    :class:`InvalidArgument` (symlink loop, NUL byte).
    """
    global _openat2_usable
    if "\0" in path:
        raise InvalidArgument(f"invalid path {path!r}: NUL byte")
    rel = path or "/"
    try:
        if _openat2_usable:
            flags = os.O_PATH | os.O_CLOEXEC | (0 if follow_final else os.O_NOFOLLOW)
            bpath = os.fsencode(rel)
            for _ in range(_EAGAIN_RETRIES):
                try:
                    return _openat2(root_fd, bpath, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
                except OSError as e:
                    if e.errno == errno.EAGAIN:
                        continue
                    if e.errno != errno.ENOSYS:
                        raise
                    _openat2_usable = False
                    break
            # no openat2 (or a storm of EAGAINs): the walk is just as safe
        return _walk_in_root(root_fd, rel, follow_final)
    except OSError as e:
        raise _resolve_error(e, path) from None


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_HAVE_PROC: bool | None = None


def _have_proc() -> bool:
    global _HAVE_PROC
    if _HAVE_PROC is None:
        _HAVE_PROC = os.path.isdir("/proc/self/fd")
    return _HAVE_PROC


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _container_path(root_real: str, fd: int) -> str | None:
    """The in-root absolute path of the open ``fd``, from its /proc link; None if unknown."""
    try:
        p = os.readlink(_fd_path(fd))
    except OSError:
        return None
    if p == root_real:
        return "/"
    prefix = root_real.rstrip("/") + "/"
    if p.startswith(prefix):
        return "/" + p[len(prefix) :]
    return None


def _normalize(path: str) -> tuple[str, bool, bool]:
    """(clean absolute path, ends with ``/.``, ends with ``/``) of a container path."""
    if "\0" in path:
        raise InvalidArgument(f"invalid path {path!r}: NUL byte")
    dot = path == "." or path.endswith("/.")
    slash = path.endswith("/")
    clean = posixpath.normpath("/" + path.lstrip("/"))
    return clean, dot, slash


def _go_mode(mode: int) -> int:
    """A st_mode as Go's os.FileMode bits (what Docker's path-stat header carries)."""
    m = mode & 0o777
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFDIR:
        m |= 1 << 31
    elif fmt == stat.S_IFLNK:
        m |= 1 << 27
    elif fmt == stat.S_IFBLK:
        m |= 1 << 26
    elif fmt == stat.S_IFCHR:
        m |= (1 << 26) | (1 << 21)
    elif fmt == stat.S_IFIFO:
        m |= 1 << 25
    elif fmt == stat.S_IFSOCK:
        m |= 1 << 24
    if mode & stat.S_ISUID:
        m |= 1 << 23
    if mode & stat.S_ISGID:
        m |= 1 << 22
    if mode & stat.S_ISVTX:
        m |= 1 << 20
    return m


def _rfc3339(ns: int) -> str:
    """Go's RFC3339Nano rendering of a UTC time (trailing zeros of the fraction dropped)."""
    sec, frac = divmod(ns, 1_000_000_000)
    try:
        dt = datetime.datetime.fromtimestamp(sec, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        dt = datetime.datetime.fromtimestamp(0, tz=datetime.UTC)
        frac = 0
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += "." + f"{frac:09d}".rstrip("0")
    return s + "Z"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# --------------------------------------------------------------------------------------------
# Writing tar streams from a directory tree (fd-relative, never following symlinks)
# --------------------------------------------------------------------------------------------

_CHUNK = 1 << 20
_MAX_DEPTH = 512  # directory levels held open at once while walking
_XATTRS_ARCHIVED = ("security.capability",)  # what Docker puts in its archives


class _TarWriter:
    """Archives entries opened as O_PATH fds; directories are walked fd by fd.

    Headers come from :meth:`tarfile.TarInfo.tobuf` (PAX records only where ustar cannot
    hold a field); file data is copied straight from the file to ``out``.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._links: dict[tuple[int, int], str] = {}
        self._dirs_seen: set[tuple[int, int]] = set()

    def close(self) -> None:
        """Write the end-of-archive marker (only after a complete, successful walk)."""
        self._out.write(bytes(2 * tarfile.BLOCKSIZE))

    def _put(self, ti: tarfile.TarInfo) -> None:
        self._out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _put_data(self, fd: int, size: int) -> None:
        """Exactly ``size`` bytes of ``fd``, whatever the file does meanwhile.

        A file that shrinks while we read it is padded with NULs and one that grows is cut,
        so the stream stays well formed (the header already promised ``size`` bytes).
        """
        left = size
        while left:
            data = os.read(fd, min(left, _CHUNK))
            if not data:
                break
            self._out.write(data)
            left -= len(data)
        self._out.write(bytes(left + (-size % tarfile.BLOCKSIZE)))

    def _open_data(self, fd: int, st: os.stat_result, pfd: int, name: str) -> int | None:
        """A readable fd on exactly the regular file ``fd`` (O_PATH) refers to."""
        if _have_proc():
            return os.open(_fd_path(fd), os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            dfd = os.open(name, flags, dir_fd=pfd)
        except OSError:
            return None
        st2 = os.fstat(dfd)
        if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(st2.st_mode):
            os.close(dfd)  # swapped under us: skip it
            return None
        return dfd

    def _one(
        self,
        fd: int,
        st: os.stat_result,
        arcname: str,
        include: bool,
        pfd: int,
        name: str,
    ) -> tuple[int, list[str]] | None:
        """Archive one entry; for a directory return an open fd on it and its sorted names."""
        mode = st.st_mode
        ti = tarfile.TarInfo(arcname)
        ti.mode = mode & 0o7777
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = st.st_mtime_ns // 1_000_000_000  # whole seconds, as Docker writes them
        if stat.S_ISDIR(mode):
            key = (st.st_dev, st.st_ino)
            if key in self._dirs_seen:
                return None  # moved under us and met again: do not walk it twice
            self._dirs_seen.add(key)
            ti.type = tarfile.DIRTYPE
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                names = sorted(os.listdir(dfd), key=os.fsencode)
                if include:
                    self._put(ti)
            except BaseException:
                os.close(dfd)
                raise
            return dfd, names
        if stat.S_ISSOCK(mode) or not include:
            return None  # tar has no sockets; Docker skips them too
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first
                self._put(ti)
                return None
            self._links[key] = arcname
        if stat.S_ISREG(mode):
            datafd = self._open_data(fd, st, pfd, name)
            if datafd is None:
                return None
            try:
                pax: dict[str, str] = {}
                for xname in _XATTRS_ARCHIVED:
                    with contextlib.suppress(OSError):
                        value = os.getxattr(datafd, xname)
                        pax["SCHILY.xattr." + xname] = value.decode("utf-8", "surrogateescape")
                ti.pax_headers = pax
                ti.type = tarfile.REGTYPE
                ti.size = st.st_size
                self._put(ti)
                self._put_data(datafd, st.st_size)
            finally:
                os.close(datafd)
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): this very link
            self._put(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._put(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            self._put(ti)
        return None

    def add(
        self,
        fd: int,
        st: os.stat_result,
        arcname: str,
        child_prefix: str,
        *,
        include_top: bool = True,
        pfd: int = -1,
        name: str = "",
    ) -> None:
        """Archive the entry open as O_PATH ``fd`` and, for a directory, all below it.

        The top entry is named ``arcname`` (left out with ``include_top=False``); entries
        below it are named ``child_prefix`` + their path relative to it.
        """
        stack: list[tuple[int, Iterator[str], str]] = []
        try:
            sub = self._one(fd, st, arcname, include_top, pfd, name)
            if sub is not None:
                stack.append((sub[0], iter(sub[1]), child_prefix))
            while stack:
                dfd, names, prefix = stack[-1]
                child = next(names, None)
                if child is None:
                    stack.pop()
                    os.close(dfd)
                    continue
                try:
                    cfd = os.open(child, _PATH_FLAGS, dir_fd=dfd)
                except FileNotFoundError:
                    continue  # removed while we walk
                try:
                    sub = self._one(cfd, os.fstat(cfd), prefix + child, True, dfd, child)
                finally:
                    os.close(cfd)
                if sub is not None:
                    if len(stack) >= _MAX_DEPTH:
                        os.close(sub[0])
                        raise InvalidArgument(
                            f"directory tree too deep (more than {_MAX_DEPTH} levels) at "
                            f"{prefix + child!r}"
                        )
                    stack.append((sub[0], iter(sub[1]), prefix + child + "/"))
        finally:
            for dfd, _, _ in stack:
                os.close(dfd)


# --------------------------------------------------------------------------------------------
# Extracting tar streams into a directory fd (never following symlinks)
# --------------------------------------------------------------------------------------------

_Comps = tuple[str, ...]
_MAX_DIR_CACHE = 64
_CREATE_ATTEMPTS = 8


def _clean_rel(name: str, what: str) -> _Comps:
    """A tar name as components relative to the destination (Go's filepath.Clean rules).

    ``a/../b`` is ``b``; a name that climbs above the destination is refused.
    """
    if "\0" in name:
        raise InvalidArgument(f"invalid {what} {name!r} in archive: NUL byte")
    parts: list[str] = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if not parts:
                raise InvalidArgument(
                    f"invalid {what} {name!r} in archive: it points outside the destination"
                )
            parts.pop()
        else:
            parts.append(c)
    return tuple(parts)


def _is_dot_name(name: str) -> bool:
    raw = name.lstrip("/")
    return raw in ("", ".") or raw.startswith("./")


class _Prefixed:
    """A stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._stream.read(n)


class _Extractor:
    """Creates tar entries under ``dest_fd`` with ``docker cp``'s untar rules.

    Every path is walked from ``dest_fd`` one component at a time with O_NOFOLLOW; a
    directory is never replaced by a non-directory or vice versa (Docker's
    NoOverwriteDirNonDir); files are created with O_EXCL, so nothing the container prepared
    (a fifo, a hard link to something precious) is ever written through.

    A symlink among an entry's parent directories is refused, unless ``in_root`` gives the
    container's root fd and the in-root path of ``dest_fd``: then it is followed as Docker's
    chrooted extraction does, by resolving the directory's in-root path with
    :func:`resolve_in_root` (absolute targets start at the root, ``..`` stops there), so it
    always leads to a directory inside the root; one that leads nowhere (a missing directory,
    a non-directory, a loop) is refused.  The last component of an entry is never followed.
    """

    def __init__(
        self,
        dest_fd: int,
        *,
        chown: bool,
        ids: tuple[int, int],
        keep_tar_ids: bool,
        rename_to: str | None,
        display: str,
        in_root: tuple[int, str] | None = None,
    ) -> None:
        self._dest = dest_fd
        self._in_root = in_root
        self._chown = chown
        self._ids = ids
        self._keep_ids = keep_tar_ids
        self._rename = rename_to
        self._display = display.rstrip("/")
        self._fds: DirFdCache[str] = DirFdCache(dest_fd)
        self._dirs: dict[_Comps, tuple[int, int]] = {}  # deferred (mode, mtime_ns)

    def close(self) -> None:
        self._fds.close()

    def _show(self, comps: _Comps) -> str:
        return repr(self._display + "/" + "/".join(comps))

    def _comps(self, name: str, what: str) -> _Comps:
        comps = _clean_rel(name, what)
        if self._rename is not None:
            if _is_dot_name(name):
                comps = (self._rename, *comps)
            elif comps:
                comps = (self._rename, *comps[1:])
        return comps

    # -- walking ------------------------------------------------------------------------------

    def _dir(self, comps: _Comps, create: bool, *, follow_last: bool = True) -> int:
        """An fd of the directory ``comps`` under the destination, created if asked.

        Symlinks among ``comps`` are followed in the root when extracting into a container
        (see the class docstring); ``follow_last=False`` refuses one as the last component.
        """
        if len(self._fds) >= _MAX_DIR_CACHE:
            self.close()
        last = len(comps)
        return self._fds.walk(
            comps,
            lambda pfd, prefix: self._open_child_dir(
                pfd, prefix, create, follow_last or len(prefix) < last
            ),
        )

    def _open_child_dir(self, pfd: int, comps: _Comps, create: bool, follow: bool) -> int:
        name = comps[-1]
        created = False
        for _ in range(_CREATE_ATTEMPTS):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            except FileNotFoundError:
                if not create:
                    raise InvalidArgument(f"no such directory: {self._show(comps)}") from None
                with contextlib.suppress(FileExistsError):  # else: open whatever is there
                    os.mkdir(name, 0o755, dir_fd=pfd)
                    created = True
                continue
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if follow and self._in_root is not None and self._is_symlink(pfd, name):
                    return self._follow(comps)
                raise InvalidArgument(
                    f"{self._show(comps)} is a symlink or not a directory; refusing to follow it"
                ) from None
            if created:
                try:
                    if self._chown:
                        os.fchown(fd, *self._ids)
                    os.fchmod(fd, 0o755)
                except BaseException:
                    os.close(fd)
                    raise
            return fd
        raise InvalidArgument(f"cannot create directory {self._show(comps)}: it keeps changing")

    @staticmethod
    def _is_symlink(pfd: int, name: str) -> bool:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISLNK(st.st_mode)

    def _follow(self, comps: _Comps) -> int:
        """The directory ``comps`` (whose last component is a symlink), resolved in the root.

        The whole in-root path is resolved again rather than the link alone: a relative
        target is relative to its parent and ``..`` must stop at the root, and
        :func:`resolve_in_root` does both safely however the container changes things
        meanwhile.  Docker's MkdirAll does not create missing directories through a symlink
        either: a link to nothing is refused.
        """
        assert self._in_root is not None
        root_fd, base = self._in_root
        path = base.rstrip("/") + "/" + "/".join(comps)
        try:
            pathfd = resolve_in_root(root_fd, path, follow_final=True)
        except (NotFound, InvalidArgument) as e:
            raise InvalidArgument(
                f"{self._show(comps)} is a symlink that does not lead to a directory "
                f"in the container: {e}"
            ) from None
        try:
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pathfd)
        except NotADirectoryError:
            raise InvalidArgument(
                f"{self._show(comps)} is a symlink that does not lead to a directory"
            ) from None
        finally:
            os.close(pathfd)

    def _make_room(self, pfd: int, comps: _Comps, is_dir: bool) -> None:
        """Remove a non-directory in the way; refuse to mix up directories and the rest."""
        try:
            st = os.stat(comps[-1], dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not is_dir:
                raise InvalidArgument(
                    f"cannot overwrite directory {self._show(comps)} with non-directory"
                )
            return
        if is_dir:
            raise InvalidArgument(
                f"cannot overwrite non-directory {self._show(comps)} with directory"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(comps[-1], dir_fd=pfd)

    # -- metadata -----------------------------------------------------------------------------

    def _owner(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return (m.uid, m.gid) if self._keep_ids else self._ids

    @staticmethod
    def _set_xattrs(fd: int, m: tarfile.TarInfo) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            xname = key[len("SCHILY.xattr.") :]
            if not xname or xname.startswith("trusted.") or "\0" in xname:
                continue
            try:
                os.setxattr(fd, xname, value.encode("utf-8", "surrogateescape"))
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EINVAL):
                    raise

    @staticmethod
    def _mtime_ns(m: tarfile.TarInfo) -> int:
        return int(m.mtime * 1_000_000_000)

    # -- entries ------------------------------------------------------------------------------

    def apply(self, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        comps = self._comps(m.name, "name")
        if not comps:
            if m.isdir():
                return  # "." itself: the destination directory is left alone, as Docker does
            raise InvalidArgument(f"invalid entry {m.name!r} in archive: empty name")
        if m.isdir():
            self._directory(m, comps)
            return
        pfd = self._dir(comps[:-1], create=True)
        if m.isreg():
            self._regular(m, tf, pfd, comps)
        elif m.issym():
            self._symlink(m, pfd, comps)
        elif m.islnk():
            self._hardlink(m, pfd, comps)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._node(m, pfd, comps)
        # anything else (GNU volume headers...) carries nothing to extract

    def _regular(self, m: tarfile.TarInfo, tf: tarfile.TarFile, pfd: int, comps: _Comps) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(_CREATE_ATTEMPTS):
            self._make_room(pfd, comps, is_dir=False)
            try:
                fd = os.open(comps[-1], flags, 0o600, dir_fd=pfd)
                break
            except FileExistsError:
                continue
        else:
            raise InvalidArgument(f"cannot create {self._show(comps)}: it keeps changing")
        try:
            src = tf.extractfile(m)
            if src is not None:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            if self._chown:
                os.fchown(fd, *self._owner(m))
            os.fchmod(fd, m.mode & 0o7777)
            self._set_xattrs(fd, m)
            ns = self._mtime_ns(m)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)

    def _directory(self, m: tarfile.TarInfo, comps: _Comps) -> None:
        pfd = self._dir(comps[:-1], create=True)
        self._make_room(pfd, comps, is_dir=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(comps[-1], 0o700, dir_fd=pfd)
        fd = self._dir(comps, create=False, follow_last=False)
        if self._chown:
            os.fchown(fd, *self._owner(m))
        self._set_xattrs(fd, m)
        self._dirs[comps] = (m.mode & 0o7777, self._mtime_ns(m))  # once children exist

    def _symlink(self, m: tarfile.TarInfo, pfd: int, comps: _Comps) -> None:
        if not m.linkname or "\0" in m.linkname:
            raise InvalidArgument(f"invalid symlink target for {m.name!r} in archive")
        base = comps[-1]
        for _ in range(_CREATE_ATTEMPTS):
            self._make_room(pfd, comps, is_dir=False)
            try:
                os.symlink(m.linkname, base, dir_fd=pfd)
                break
            except FileExistsError:
                continue
        else:
            raise InvalidArgument(f"cannot create {self._show(comps)}: it keeps changing")
        # the *at calls below never follow a symlink, whatever now sits at `base`
        if self._chown:
            os.chown(base, *self._owner(m), dir_fd=pfd, follow_symlinks=False)
        ns = self._mtime_ns(m)
        os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, comps: _Comps) -> None:
        target = self._comps(m.linkname, "hard link target")
        if not target:
            raise InvalidArgument(f"invalid hard link target for {m.name!r} in archive")
        if target == comps:
            return
        tfd = self._dir(target[:-1], create=False)
        for _ in range(_CREATE_ATTEMPTS):
            self._make_room(pfd, comps, is_dir=False)
            try:
                os.link(
                    target[-1], comps[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False
                )
                return
            except FileExistsError:
                continue
            except FileNotFoundError:
                raise InvalidArgument(
                    f"hard link {m.name!r} points at {m.linkname!r}, which does not exist"
                ) from None
            except PermissionError:
                raise InvalidArgument(
                    f"hard link {m.name!r} points at {m.linkname!r}, which is a directory"
                ) from None
        raise InvalidArgument(f"cannot create {self._show(comps)}: it keeps changing")

    def _node(self, m: tarfile.TarInfo, pfd: int, comps: _Comps) -> None:
        if m.isfifo():
            kind, dev = stat.S_IFIFO, 0
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
        base = comps[-1]
        for _ in range(_CREATE_ATTEMPTS):
            self._make_room(pfd, comps, is_dir=False)
            try:
                os.mknod(base, kind | 0o600, dev, dir_fd=pfd)
                break
            except FileExistsError:
                continue
        else:
            raise InvalidArgument(f"cannot create {self._show(comps)}: it keeps changing")
        ns = self._mtime_ns(m)
        pf = os.open(base, _PATH_FLAGS, dir_fd=pfd)
        try:
            st = os.fstat(pf)
            if stat.S_IFMT(st.st_mode) != kind or (kind != stat.S_IFIFO and st.st_rdev != dev):
                raise InvalidArgument(f"{self._show(comps)} was replaced while extracting it")
            if _have_proc():
                # the magic link names exactly the node we checked: chmod/chown/utime act on
                # the inode and never open the device
                p = _fd_path(pf)
                if self._chown:
                    os.chown(p, *self._owner(m))
                os.chmod(p, m.mode & 0o7777)
                os.utime(p, ns=(ns, ns))
            else:
                if self._chown:
                    os.chown(base, *self._owner(m), dir_fd=pfd, follow_symlinks=False)
                with contextlib.suppress(NotImplementedError, OSError):
                    os.chmod(base, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
                os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pf)

    def finish(self) -> None:
        """Apply directory modes and mtimes, now that no more children will be added."""
        for comps, (mode, ns) in self._dirs.items():
            try:
                fd = self._dir(comps, create=False, follow_last=False)
            except (InvalidArgument, OSError):
                continue  # changed by the container meanwhile
            os.fchmod(fd, mode)
            os.utime(fd, ns=(ns, ns))


def _extract(tar_stream: BinaryIO, extractor: _Extractor) -> None:
    head = tar_stream.read(tarfile.BLOCKSIZE)
    if not head:
        return  # an empty stream is an empty archive (Go's tar reader agrees)
    try:
        with tarfile.open(
            fileobj=cast(IO[bytes], _Prefixed(head, tar_stream)),
            mode="r|*",
            encoding="utf-8",
            errors="surrogateescape",
        ) as tf:
            while (m := tf.next()) is not None:
                members = getattr(tf, "members", None)
                if isinstance(members, list):
                    members.clear()  # streaming: keep no memory of past entries
                extractor.apply(m, tf)
        extractor.finish()
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid tar archive: {e}") from None
    except EOFError:
        raise InvalidArgument("invalid tar archive: unexpected end of data") from None
    finally:
        extractor.close()


# --------------------------------------------------------------------------------------------
# The container side of docker cp
# --------------------------------------------------------------------------------------------


class PathStat(TypedDict):
    """What Docker sends in the ``X-Docker-Container-Path-Stat`` header (base64 JSON)."""

    name: str
    size: int
    mode: int  # Go os.FileMode bits
    mtime: str  # RFC3339 (nanoseconds, UTC)
    linkTarget: str  # for a symlink: its fully resolved in-container path


@dataclass
class _Source:
    fd: int  # O_PATH fd of the entry itself
    st: os.stat_result
    pfd: int  # O_PATH fd of its parent (or -1)
    name: str  # its name in the parent
    stat: PathStat
    arcname: str
    child_prefix: str

    def close(self) -> None:
        os.close(self.fd)
        if self.pfd >= 0:
            os.close(self.pfd)


def _open_root(root: Path) -> int:
    try:
        return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"container root {root} does not exist") from None


def _link_target(root_fd: int, clean: str, fd: int) -> str:
    """Docker's linkTarget: the symlink ``clean`` resolved in the scope of the root."""
    try:
        rfd = resolve_in_root(root_fd, clean, follow_final=True)
    except (NotFound, InvalidArgument):
        rfd = -1
    if rfd >= 0:
        try:
            root_real = os.readlink(_fd_path(root_fd)) if _have_proc() else ""
            resolved = _container_path(root_real, rfd) if root_real else None
        finally:
            os.close(rfd)
        if resolved is not None:
            return resolved
    # dangling (or no /proc): resolve the link body lexically, as FollowSymlinkInScope does
    body = os.readlink("", dir_fd=fd)
    return posixpath.normpath(posixpath.join(posixpath.dirname(clean), body))


def _open_source(root_fd: int, path: str) -> _Source:
    clean, dot, slash = _normalize(path)
    pfd = -1
    try:
        if dot or slash or clean == "/":
            fd = resolve_in_root(root_fd, clean, follow_final=True)
            name = "."
        else:
            parent, name = posixpath.split(clean)
            pfd = resolve_in_root(root_fd, parent, follow_final=True)
            try:
                fd = os.open(name, _PATH_FLAGS, dir_fd=pfd)
            except OSError as e:
                raise _resolve_error(e, path) from None
    except NotFound:
        if pfd >= 0:
            os.close(pfd)
        raise NotFound(f"no such file or directory: {path}") from None
    except BaseException:
        if pfd >= 0:
            os.close(pfd)
        raise
    try:
        st = os.fstat(fd)
        if (dot or slash) and not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"not a directory: {path}")
        link = _link_target(root_fd, clean, fd) if stat.S_ISLNK(st.st_mode) else ""
    except BaseException:
        os.close(fd)
        if pfd >= 0:
            os.close(pfd)
        raise
    if dot:
        display, arcname, prefix = ".", ".", "./"
    elif clean == "/":
        display, arcname, prefix = "/", ".", "./"
    else:
        base = posixpath.basename(clean)
        display, arcname, prefix = base, base, base + "/"
    info = PathStat(
        name=display,
        size=st.st_size,
        mode=_go_mode(st.st_mode),
        mtime=_rfc3339(st.st_mtime_ns),
        linkTarget=link,
    )
    return _Source(fd, st, pfd, name, info, arcname, prefix)


def stat_path(root: Path, path: str) -> PathStat:
    """``HEAD /containers/{id}/archive``: the stat of ``path`` (a final symlink not followed)."""
    root_fd = _open_root(root)
    try:
        src = _open_source(root_fd, path)
        src.close()
        return src.stat
    finally:
        os.close(root_fd)


def copy_from_container(root: Path, src_path: str, out: BinaryIO) -> PathStat:
    """``docker cp CTR:SRC -``: write a tar stream of ``src_path`` to ``out``.

    A directory's entries are rooted at its basename (``dir/``, ``dir/file``); ``SRC/.`` (and
    ``/``) gives its contents (``./``, ``./file``).  A symlink as the last component of SRC is
    archived as a link, as are symlinks inside the tree; hard links inside the tree become
    tar hard links.  Returns the stat Docker sends in ``X-Docker-Container-Path-Stat``.
    Raises :class:`NotFound` when SRC does not exist.  On any error ``out`` holds a truncated
    stream without an end-of-archive marker.
    """
    root_fd = _open_root(root)
    try:
        src = _open_source(root_fd, src_path)
        try:
            w = _TarWriter(out)
            w.add(src.fd, src.st, src.arcname, src.child_prefix, pfd=src.pfd, name=src.name)
            w.close()
        finally:
            src.close()
        return src.stat
    finally:
        os.close(root_fd)


def copy_to_container(
    root: Path,
    dest_path: str,
    tar_stream: BinaryIO,
    *,
    copy_uid_gid: bool = False,
    uid: int = 0,
    gid: int = 0,
) -> None:
    """``docker cp - CTR:DEST``: extract ``tar_stream`` into the directory ``dest_path``.

    DEST is resolved in the root, following symlinks (an absolute one resolves inside the
    root) and must be an existing directory.  Entries are created relative to it as Docker's
    chrooted extraction does: a symlink among an entry's parent directories (already in the
    container, or extracted from the archive) is followed within the root (``lib/foo`` with
    ``/lib -> usr/lib`` lands in ``/usr/lib/foo``; ``/etc2 -> /../../host`` means the
    container's ``/host``); one leading to no directory there is refused with
    :class:`InvalidArgument`, as are names climbing above DEST.  The entry itself never
    follows a symlink: a non-directory in its place is replaced.  Entries are owned by
    ``uid:gid`` (the container's root) unless ``copy_uid_gid`` keeps the archive's owners
    (``docker cp -a``); new parent directories get ``uid:gid``.
    """
    clean, _, _ = _normalize(dest_path)
    root_fd = _open_root(root)
    try:
        try:
            pfd = resolve_in_root(root_fd, clean, follow_final=True)
        except NotFound:
            raise NotFound(f"no such directory: {dest_path}") from None
        try:
            if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                raise InvalidArgument(f"extraction point is not a directory: {dest_path}")
            dest_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            os.close(pfd)
        try:
            ex = _Extractor(
                dest_fd,
                chown=True,
                ids=(uid, gid),
                keep_tar_ids=copy_uid_gid,
                rename_to=None,
                display=clean,
                in_root=(root_fd, clean),
            )
            _extract(tar_stream, ex)
        finally:
            os.close(dest_fd)
    finally:
        os.close(root_fd)


# --------------------------------------------------------------------------------------------
# docker cp's path rules and the host side
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyPlan:
    """Where to extract an archive of SRC so that it ends up at DEST (``docker cp`` rules).

    ``into_parent=False``: extract into DEST itself (an existing directory), entry names
    unchanged.  ``into_parent=True``: extract into DEST's parent directory, renaming the
    archive's top entry to DEST's basename (``rename=True``): DEST is created, or an
    existing file at DEST is overwritten.
    """

    into_parent: bool
    rename: bool


def plan_copy(
    src_is_dir: bool,
    src_ends_with_dot: bool,
    dest_exists: bool,
    dest_is_dir: bool,
    dest_ends_with_slash: bool,
) -> CopyPlan:
    """``docker cp``'s rule table (SRC file/dir × DEST file/dir/missing/ends with ``/``).

    * SRC is a file: DEST missing → the file is saved as DEST; DEST missing and ending with
      ``/`` → error; DEST a file → overwritten; DEST a directory → the file is copied into it.
    * SRC is a directory: DEST missing → created as a directory with SRC's contents; DEST a
      file → error; DEST a directory → SRC is copied into it (``SRC/.``: SRC's contents are).
    """
    if src_ends_with_dot and not src_is_dir:
        raise InvalidArgument("source is not a directory")
    if dest_exists and dest_is_dir:
        return CopyPlan(into_parent=False, rename=False)
    if dest_exists:
        if dest_ends_with_slash:
            raise InvalidArgument("destination is not a directory")
        if src_is_dir:
            raise InvalidArgument("cannot copy a directory to a file")
        return CopyPlan(into_parent=True, rename=True)
    if src_is_dir:
        return CopyPlan(into_parent=True, rename=True)
    if dest_ends_with_slash:
        raise NotFound("destination directory does not exist")
    return CopyPlan(into_parent=True, rename=True)


def _src_flags(src: str) -> tuple[bool, bool]:
    return src == "." or src.endswith("/."), src.endswith("/")


def host_destination(
    dest: str | os.PathLike[str], *, src_is_dir: bool, src_ends_with_dot: bool
) -> tuple[Path, str | None]:
    """Apply :func:`plan_copy` to a host DEST: ``(directory to extract into, rename_to)``.

    A symlink at DEST is followed (as the docker CLI does); when DEST is to be created, its
    parent must be an existing directory.  Pass DEST as a ``str`` to keep a trailing ``/``.
    """
    d = os.fspath(dest)
    slash = d.endswith("/")
    target = os.path.realpath(d) if os.path.islink(d.rstrip("/") or "/") else d
    try:
        st = os.stat(target)
        exists, is_dir = True, stat.S_ISDIR(st.st_mode)
    except FileNotFoundError:
        exists, is_dir = False, False
    except NotADirectoryError:
        exists, is_dir = True, False
    plan = plan_copy(src_is_dir, src_ends_with_dot, exists, is_dir, slash)
    if not plan.into_parent:
        return Path(target), None
    parent, base = os.path.split(os.path.normpath(target))
    parent = parent or "."
    if not os.path.isdir(parent):
        raise NotFound(f"destination directory does not exist: {parent}")
    return Path(parent), base


def container_destination(
    root: Path, dest: str, *, src_is_dir: bool, src_ends_with_dot: bool
) -> tuple[str, str | None]:
    """Apply :func:`plan_copy` to a container DEST: ``(in-container dir, rename_to)``.

    A symlink at DEST is followed within the root (docker CLI: stat, then stat its
    linkTarget).  Use the result as ``host_to_tar(..., rename_to=rename_to)`` piped into
    ``copy_to_container(root, dir, ...)``.
    """
    clean, _, slash = _normalize(dest)
    target = clean
    exists = is_dir = False
    root_fd = _open_root(root)
    try:
        try:
            src = _open_source(root_fd, dest)
        except NotFound:
            pass
        except InvalidArgument:
            exists = True  # "file/": exists, but is no directory
        else:
            src.close()
            exists = True
            is_dir = stat.S_ISDIR(src.st.st_mode)
            if stat.S_ISLNK(src.st.st_mode):
                target = src.stat["linkTarget"]
                try:
                    fd = resolve_in_root(root_fd, target, follow_final=True)
                except NotFound:
                    exists = False
                else:
                    is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                    os.close(fd)
    finally:
        os.close(root_fd)
    plan = plan_copy(src_is_dir, src_ends_with_dot, exists, is_dir, slash)
    if not plan.into_parent:
        return target, None
    parent, base = posixpath.split(target)
    return parent or "/", base


def host_to_tar(
    src: str | os.PathLike[str],
    out: BinaryIO,
    *,
    follow_link: bool = False,
    rename_to: str | None = None,
) -> None:
    """A tar stream of a host file or directory, as ``docker cp HOSTPATH CTR:DEST`` sends it.

    Entries are rooted at SRC's basename (``dir/``, ``dir/a``), or are SRC's contents for
    ``SRC/.`` (``./``, ``./a``); ``rename_to`` names the top entry instead.  A symlink at
    SRC is archived as a link unless ``follow_link`` (``docker cp -L``).  Pass SRC as a
    ``str`` to keep a trailing ``/.`` (:class:`Path` drops it).
    """
    s = os.fspath(src)
    dot, slash = _src_flags(s)
    clean = os.path.normpath(s)
    pfd = -1
    try:
        if dot or slash or clean == "/":
            fd = os.open(s, os.O_PATH | os.O_CLOEXEC)
            name = "."
        else:
            # -L: archive what the link points at, under the link's name
            parent, name = os.path.split(os.path.realpath(clean) if follow_link else clean)
            pfd = os.open(parent or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fd = os.open(name, _PATH_FLAGS, dir_fd=pfd)
    except (FileNotFoundError, NotADirectoryError) as e:
        if pfd >= 0:
            os.close(pfd)
        raise NotFound(f"no such file or directory: {s}") from e
    try:
        st = os.fstat(fd)
        if (dot or slash) and not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"not a directory: {s}")
        if rename_to is not None:
            arcname, prefix = rename_to, rename_to + "/"
        elif dot or clean == "/":
            arcname, prefix = ".", "./"
        else:
            base = os.path.basename(clean)
            arcname, prefix = base, base + "/"
        w = _TarWriter(out)
        w.add(fd, st, arcname, prefix, pfd=pfd, name=name)
        w.close()
    finally:
        os.close(fd)
        if pfd >= 0:
            os.close(pfd)


def tar_to_host(tar_stream: BinaryIO, dest: Path | str, *, rename_to: str | None = None) -> None:
    """Extract a ``docker cp`` tar stream into the existing host directory ``dest``.

    ``rename_to`` renames the archive's top entry (what :func:`plan_copy` /
    :func:`host_destination` ask for when DEST is a new name or a file to overwrite: extract
    into DEST's parent with ``rename_to`` = DEST's basename).  The archive comes from a
    container and is treated as hostile: nothing is created outside ``dest`` and no symlink
    is followed.  Owners are not copied (the files belong to the caller), as the docker CLI
    does.
    """
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no such directory: {dest}") from None
    except NotADirectoryError:
        raise InvalidArgument(f"not a directory: {dest}") from None
    try:
        ex = _Extractor(
            fd,
            chown=False,
            ids=(os.getuid(), os.getgid()),
            keep_tar_ids=False,
            rename_to=rename_to,
            display=os.fspath(dest),
        )
        _extract(tar_stream, ex)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# docker diff
# --------------------------------------------------------------------------------------------

_OPAQUE_XATTR = "trusted.overlay.opaque"


def _opaque(target: int | str) -> bool:
    try:
        if isinstance(target, int):
            return os.getxattr(target, _OPAQUE_XATTR) == b"y"
        return os.getxattr(target, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


_FOUND, _ABSENT, _HIDDEN = "found", "absent", "hidden"


class _Lower:
    """The merged view of the image layers (overlay lower dirs, top-most first)."""

    def __init__(self, layers: Sequence[Path]) -> None:
        self._layers = [os.fspath(p) for p in layers]

    @staticmethod
    def _probe(layer: str, comps: _Comps) -> tuple[str, os.stat_result | None]:
        """What ``layer`` says about ``comps``; every ancestor is checked to be a real dir."""
        opaque_above = False
        p = layer
        for k, c in enumerate(comps):
            p = os.path.join(p, c)
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                return (_HIDDEN if opaque_above else _ABSENT), None
            if k == len(comps) - 1:
                return (_HIDDEN, None) if _is_whiteout(st) else (_FOUND, st)
            if not stat.S_ISDIR(st.st_mode):
                return _HIDDEN, None  # a whiteout, file or symlink hides all below it
            if _opaque(p):
                opaque_above = True
        return _FOUND, os.lstat(layer)

    def lookup(self, comps: _Comps) -> os.stat_result | None:
        for layer in self._layers:
            state, st = self._probe(layer, comps)
            if state == _FOUND:
                return st
            if state == _HIDDEN:
                return None
        return None

    def listdir(self, comps: _Comps) -> set[str]:
        seen: set[str] = set()
        visible: set[str] = set()
        for layer in self._layers:
            state, st = self._probe(layer, comps)
            if state == _HIDDEN:
                break
            if state == _ABSENT:
                continue
            if st is None or not stat.S_ISDIR(st.st_mode):
                break
            p = os.path.join(layer, *comps)
            for name in os.listdir(p):
                if name in seen:
                    continue
                seen.add(name)
                if not _is_whiteout(os.lstat(os.path.join(p, name))):
                    visible.add(name)
            if _opaque(p):
                break
        return visible


def _same_dir_meta(a: os.stat_result, b: os.stat_result) -> bool:
    if a.st_size != b.st_size or a.st_mode != b.st_mode:
        return False
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return (sa, na) == (sb, nb) or (sa == sb and (na == 0 or nb == 0))


def diff(upper: Path, lower_dirs: Sequence[Path]) -> list[tuple[str, str]]:
    """``docker diff``: the changes in an overlay upper dir relative to its lower dirs.

    ``lower_dirs`` are the image layers top-most first (overlayfs ``lowerdir=`` order).
    Returns ``(kind, path)`` pairs, kind ``A`` (added), ``C`` (changed) or ``D`` (deleted):
    a whiteout (char device 0/0) is a deletion; an opaque directory that exists below is a
    change and the entries below it that were not re-created are deletions; an entry that
    exists below is a change, otherwise an addition; a directory whose metadata equals the
    one below is not a change by itself; every ancestor of a change is a change.  Sorted by
    path component by component (the order ``docker diff`` prints).  ``upper`` belongs to the
    container and is walked fd by fd without following symlinks.
    """
    lower = _Lower(lower_dirs)
    changes: dict[_Comps, str] = {}
    top = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[int, Iterator[str], _Comps]] = []
    try:
        stack.append((top, iter(sorted(os.listdir(top), key=os.fsencode)), ()))
        while stack:
            dfd, names, prefix = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(dfd)
                continue
            comps = (*prefix, name)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _is_whiteout(st):
                changes[comps] = "D"
                continue
            below = lower.lookup(comps)
            if not stat.S_ISDIR(st.st_mode):
                changes[comps] = "A" if below is None else "C"
                continue
            try:
                cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError:
                continue  # replaced while we walk
            try:
                children = sorted(os.listdir(cfd), key=os.fsencode)
                if below is None:
                    changes[comps] = "A"
                elif not stat.S_ISDIR(below.st_mode):
                    changes[comps] = "C"
                elif _opaque(cfd):
                    changes[comps] = "C"
                    present = set(children)
                    for gone in lower.listdir(comps) - present:
                        changes[(*comps, gone)] = "D"
                elif not _same_dir_meta(os.fstat(cfd), below):
                    changes[comps] = "C"
                if len(stack) >= _MAX_DEPTH:
                    raise InvalidArgument(f"directory tree too deep at {'/'.join(comps)!r}")
            except BaseException:
                os.close(cfd)
                raise
            stack.append((cfd, iter(children), comps))
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)
    for comps in list(changes):
        for k in range(1, len(comps)):
            changes.setdefault(comps[:k], "C")
    ordered = sorted(changes.items(), key=lambda kv: [os.fsencode(c) for c in kv[0]])
    return [(kind, "/" + "/".join(comps)) for comps, kind in ordered]


# --------------------------------------------------------------------------------------------
# docker export
# --------------------------------------------------------------------------------------------


def export_rootfs(root: Path, out: BinaryIO) -> None:
    """``docker export``: a tar of the whole merged root filesystem.

    Entries are named relative to the root without a ``./`` prefix (``bin/``, ``bin/sh``)
    and keep modes, owners, mtimes, symlinks (as links), hard links and device nodes.
    """
    root_fd = _open_root(root)
    try:
        w = _TarWriter(out)
        w.add(root_fd, os.fstat(root_fd), "", "", include_top=False)
        w.close()
    finally:
        os.close(root_fd)
