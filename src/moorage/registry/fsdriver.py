"""The filesystem storage driver: objects are files under one root, written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from moorage.registry.driver import DriverBusy, DriverNotFound


class _FileAppender:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:  # held while writing: the GC leaves an upload in progress alone
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise DriverBusy(str(path)) from None
        self.size = os.fstat(self._fd).st_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self.size += n
            view = view[n:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FilesystemDriver:
    """Every key is a file under ``root``; ``put`` and ``move`` fsync and rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._tmp = root / "_tmp"
        self._tmp.mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad storage key {key!r}")
        return self.root.joinpath(*parts)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise DriverNotFound(key) from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.rename(tmp, path)
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _stat(self, key: str) -> os.stat_result:
        try:
            return os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise DriverNotFound(key) from None

    def size(self, key: str) -> int:
        return self._stat(key).st_size

    def mtime(self, key: str) -> float:
        return self._stat(key).st_mtime

    def touch(self, key: str) -> None:
        try:
            os.utime(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise DriverNotFound(key) from None

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def list(self, prefix: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            # rename first so readers never see a half-deleted tree
            fd, tmp = tempfile.mkstemp(dir=self._tmp)
            os.close(fd)
            os.unlink(tmp)
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        try:
            f = self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise DriverNotFound(key) from None
        if offset:
            f.seek(offset)
        return f

    def appender(self, key: str) -> _FileAppender:
        return _FileAppender(self._path(key))

    def move(self, src: str, dst: str) -> None:
        s, d = self._path(src), self._path(dst)
        try:
            fd = os.open(s, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DriverNotFound(src) from None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        d.parent.mkdir(parents=True, exist_ok=True)
        os.rename(s, d)
        dir_fd = os.open(d.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def in_use(self, key: str) -> bool:
        """Whether an appender is writing ``key`` now (in any process)."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
