"""The byte-level storage driver interface the registry's storage service is built on.

Keys are ``/``-separated relative paths made only by the storage service (never from raw
request text). A driver stores opaque bytes; content addressing and verification happen in
the service above it, so an object-store driver needs only these few operations.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol


class DriverNotFound(KeyError):
    """The key does not exist."""


class DriverBusy(Exception):
    """Another writer is appending to the object."""


class Appender(Protocol):
    """An append-only object being written (an upload in progress)."""

    size: int

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None: ...


class StorageDriver(Protocol):
    def get(self, key: str) -> bytes:
        """The whole object; DriverNotFound if absent."""

    def put(self, key: str, data: bytes) -> None:
        """Write the object atomically (readers see the old or the new bytes, never a mix)."""

    def size(self, key: str) -> int:
        """The object's size in bytes; DriverNotFound if absent."""

    def mtime(self, key: str) -> float:
        """When the object was last written or touched; DriverNotFound if absent."""

    def touch(self, key: str) -> None:
        """Mark the object as used now (the GC keeps recently touched objects)."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (no recursion); [] if there is none."""

    def delete(self, key: str) -> None:
        """Remove the object or the whole subtree at ``key``; no error if absent."""

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        """A reader positioned at ``offset``; DriverNotFound if absent."""

    def appender(self, key: str) -> Appender:
        """Append to the object (created empty if absent); DriverBusy if another appender
        is writing it."""

    def move(self, src: str, dst: str) -> None:
        """Atomically make ``dst`` hold what ``src`` held (durably), and drop ``src``."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to serve the object from with sendfile, when there is one."""

    def in_use(self, key: str) -> bool:
        """Whether an appender is writing the object now (the GC keeps it)."""
