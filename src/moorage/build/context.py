"""The build context: a directory (or a tar read from stdin and unpacked into one), its
``.dockerignore``, and checksums of what COPY/ADD take from it.

Checksums hash each file in large reads and keep them in a persistent cache keyed by
(path, device, inode, size, mtime, ctime), so a rebuild hashes only the files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import tarfile

from moorage.build.ignore import Matcher, read_patterns
from moorage.errors import InvalidArgument, NotFound

_CHUNK = 1 << 20


def extract_tar(stream: BinaryIO, dest: Path, where: str) -> None:
    """Unpack a context tar (plain, gzip, bzip2 or xz) read from ``stream`` into ``dest``,
    keeping every path and hard link inside it. tarfile's ``tar`` filter also refuses writes
    through a symlink that leads outside (the API takes contexts from remote clients)."""
    import posixpath
    import tarfile

    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            for m in tf:
                name = posixpath.normpath(m.name.lstrip("/"))
                if name == "." or name == ".." or name.startswith("../"):
                    continue
                if m.islnk():
                    link = posixpath.normpath(m.linkname.lstrip("/"))
                    if link == ".." or link.startswith("../"):
                        raise InvalidArgument(f"invalid context tar: {m.name} links outside")
                    m.linkname = link
                m.name = name
                if hasattr(tarfile, "tar_filter"):
                    tf.extract(m, dest, set_attrs=True, filter="tar")
                else:  # Python 3.11.0-3.11.3 (Debian 12's 3.11.2): the same checks by hand
                    _tar_filter(m, dest, where)
                    tf.extract(m, dest, set_attrs=True)
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, ConnectionError):
            raise
        raise InvalidArgument(f"invalid build context {where}: {e}") from None


def _tar_filter(member: tarfile.TarInfo, dest: Path, where: str) -> None:
    """What tarfile's ``tar`` filter does (Python 3.11.4+), for interpreters without it:
    refuse a member whose path, after the symlinks already extracted, leads outside
    ``dest``; clear the setuid, setgid and sticky bits and group/other write."""
    root = os.path.realpath(dest)
    target = os.path.realpath(os.path.join(root, member.name))
    if os.path.commonpath([root, target]) != root:
        raise InvalidArgument(f"invalid build context {where}: {member.name} leads outside it")
    member.mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH)


@dataclass(frozen=True)
class Entry:
    rel: str  # "/"-separated path relative to the context root
    st: os.stat_result


class BuildContext:
    def __init__(self, root: Path, ignore: Matcher, checksums: ChecksumCache | None) -> None:
        self.root = root
        self.ignore = ignore
        self._cache = checksums
        self._entries: dict[str, Entry] | None = None
        self._digests: dict[str, str] = {}

    @classmethod
    def open(cls, root: Path, checksums: ChecksumCache | None = None) -> BuildContext:
        if not root.is_dir():
            raise NotFound(f"unable to prepare context: path {str(root)!r} not found")
        try:
            text = (root / ".dockerignore").read_text()
        except FileNotFoundError:
            text = ""
        except OSError as e:
            raise InvalidArgument(f"cannot read .dockerignore: {e.strerror}") from None
        return cls(root, Matcher(read_patterns(text)), checksums)

    # ---- listing ----------------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        """Every path in the context that .dockerignore lets through (parents first)."""
        if self._entries is None:
            out: dict[str, Entry] = {}
            self._walk(str(self.root), "", out)
            self._entries = out
        return self._entries

    def _walk(self, path: str, rel: str, out: dict[str, Entry]) -> None:
        try:
            it = os.scandir(path)
        except OSError as e:
            raise InvalidArgument(f"cannot read the build context at {path}: {e.strerror}") from e
        with it:
            items = sorted(it, key=lambda d: d.name)
        for d in items:
            child = f"{rel}/{d.name}" if rel else d.name
            st = d.stat(follow_symlinks=False)
            excluded = bool(self.ignore) and self.ignore.excluded(child)
            is_dir = stat.S_ISDIR(st.st_mode)
            if excluded and not (is_dir and self.ignore.may_include_below(child)):
                continue
            if not excluded:
                out[child] = Entry(child, st)
            if is_dir:
                self._walk(d.path, child, out)

    def exists(self, rel: str) -> bool:
        return rel in ("", ".") or rel in self.entries()

    def children(self, rel: str) -> Iterator[Entry]:
        """Entries under the directory ``rel`` (recursively), in path order."""
        prefix = "" if rel in ("", ".") else rel + "/"
        for k, e in self.entries().items():
            if k.startswith(prefix):
                yield e

    # ---- checksums --------------------------------------------------------------------------

    def file_digest(self, e: Entry) -> str:
        d = self._digests.get(e.rel)
        if d is not None:
            return d
        key = _stat_key(e.st)
        if self._cache is not None:
            d = self._cache.get(str(self.root / e.rel), key)
        if d is None:
            d = hash_file(self.root / e.rel)
            if self._cache is not None:
                self._cache.put(str(self.root / e.rel), key, d)
        self._digests[e.rel] = d
        return d

    def checksum(self, rels: list[str]) -> str:
        """One digest of the sources' content and metadata (not mtimes), for the cache key."""
        h = hashlib.sha256()
        for rel in rels:
            root_entry = None if rel in ("", ".") else self.entries().get(rel)
            if root_entry is not None and not stat.S_ISDIR(root_entry.st.st_mode):
                items = [root_entry]
                base = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
            else:
                items = list(self.children(rel))
                base = "" if rel in ("", ".") else rel + "/"
            h.update(f"source {rel}\n".encode())
            for e in items:
                h.update(self._describe(e, e.rel[len(base) :]).encode())
        if self._cache is not None:
            self._cache.flush()
        return "sha256:" + h.hexdigest()

    def _describe(self, e: Entry, name: str) -> str:
        st = e.st
        mode = st.st_mode
        extra = ""
        if stat.S_ISREG(mode):
            extra = self.file_digest(e)
        elif stat.S_ISLNK(mode):
            extra = os.readlink(self.root / e.rel)
        return (
            json.dumps(
                [
                    name,
                    stat.S_IFMT(mode),
                    stat.S_IMODE(mode),
                    st.st_uid,
                    st.st_gid,
                    st.st_size,
                    extra,
                ]
            )
            + "\n"
        )


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        buf = bytearray(_CHUNK * 4)
        view = memoryview(buf)
        while True:
            n = os.readv(fd, [view])
            if not n:
                break
            h.update(view[:n])
    finally:
        os.close(fd)
    return h.hexdigest()


class ChecksumCache:
    """File digests remembered across builds in the store's database."""

    def __init__(self, conn: object, root: Path) -> None:
        import sqlite3

        assert isinstance(conn, sqlite3.Connection)
        self.conn = conn
        self.prefix = str(root).rstrip("/") + "/"
        self._pending: list[tuple[str, str, str]] = []
        self._loaded: dict[str, tuple[str, str]] | None = None

    def _load(self) -> dict[str, tuple[str, str]]:
        if self._loaded is None:
            rows = self.conn.execute(
                "SELECT path, stat_key, digest FROM build_checksums WHERE path >= ? AND path < ?",
                (self.prefix, self.prefix[:-1] + "0"),
            )
            self._loaded = {r[0]: (r[1], r[2]) for r in rows}
        return self._loaded

    def get(self, path: str, key: str) -> str | None:
        hit = self._load().get(path)
        return hit[1] if hit is not None and hit[0] == key else None

    def put(self, path: str, key: str, digest: str) -> None:
        self._pending.append((path, key, digest))
        self._load()[path] = (key, digest)

    def flush(self) -> None:
        if not self._pending:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT OR REPLACE INTO build_checksums(path, stat_key, digest) VALUES (?, ?, ?)",
                self._pending,
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self._pending.clear()
