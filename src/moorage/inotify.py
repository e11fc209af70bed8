"""inotify(7) through ctypes on libc (no dependency): recursive watches on directory trees.
Used by ``compose watch`` (what changed under a service's paths) and the warm process (has
the code it imported changed on disk)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import struct

from moorage.errors import MoorageError

# inotify(7)
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
         | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then the name, NUL-padded)


class Inotify:
    """Recursive inotify watches on directory trees (ctypes on libc: no dependency)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise MoorageError(f"inotify_init1: {os.strerror(err)}")
        self._dirs: dict[int, str] = {}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _add(self, directory: str) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (2, 20):  # ENOENT, ENOTDIR: gone meanwhile
                return
            raise MoorageError(f"inotify_add_watch {directory}: {os.strerror(err)}")
        self._dirs[wd] = directory

    def watch_tree(self, path: str, skip: tuple[str, ...] = ()) -> list[str]:
        """Watch ``path`` (a directory and everything below it but directories named in
        ``skip``, or a file through its directory); the files found below a directory, for a
        first sync of a new one."""
        if not os.path.isdir(path):
            self._add(os.path.dirname(path) or ".")
            return [path] if os.path.lexists(path) else []
        found: list[str] = []
        for dirpath, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d not in skip]
            self._add(dirpath)
            found += [os.path.join(dirpath, n) for n in files]
            found += [os.path.join(dirpath, d) for d in dirs
                      if os.path.islink(os.path.join(dirpath, d))]  # fmt: skip
        return found

    def read(self, timeout: float) -> list[str]:
        """The paths changed (created, written, moved, deleted) within ``timeout``; files
        of a directory created meanwhile are reported (and it is watched from now on)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out: list[str] = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                continue
            if mask & IN_Q_OVERFLOW:
                raise MoorageError("inotify queue overflow: too many changes at once")
            base = self._dirs.get(wd)
            if base is None:
                continue
            name = os.fsdecode(raw.rstrip(b"\0"))
            path = os.path.join(base, name) if name else base
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                out += self.watch_tree(path)
            out.append(path)
        return out
