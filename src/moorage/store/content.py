"""Content store: blobs under ``blobs/sha256/<hex>``, written through ``ingest/`` and verified.

A blob is written to a private file in ``ingest/`` (held with a flock while in progress),
hashed as it is written, fsynced, checked against the expected digest and size, and renamed
into place. Two writers of the same blob are safe: both write their own ingest file, and the
rename of identical content is atomic; the second simply replaces the first with equal bytes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

from moorage.errors import DigestMismatch, InvalidDigest, NotFound
from moorage.oci.digest import Digest
from moorage.store.locks import remove_abandoned

_CHUNK = 1 << 20


class BlobWriter:
    """An in-progress blob. ``write`` it, then ``commit`` (verify + rename) or ``abort``."""

    def __init__(self, store: ContentStore, *, hashing: bool = True) -> None:
        self._store = store
        fd, path = _mkstemp(store.ingest_dir)
        self.path = Path(path)
        self._fd = fd
        # hashing=False: the caller hashes the same bytes itself (e.g. the layer unpacker
        # reading through a tee) and must pass that digest to commit()
        import hashlib  # OpenSSL's start-up only for commands that write blobs

        self._hash = hashlib.sha256() if hashing else None
        self.size = 0
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        if self._hash is not None:
            self._hash.update(view)
        n = len(view)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += n
        return n

    def copy_from(self, src: IO[bytes], limit: int | None = None) -> int:
        """Copy ``src`` (until EOF, or ``limit`` bytes) into the blob; returns bytes copied."""
        total = 0
        buf = bytearray(_CHUNK)
        mv = memoryview(buf)
        while limit is None or total < limit:
            want = _CHUNK if limit is None else min(_CHUNK, limit - total)
            n = src.readinto(mv[:want])  # type: ignore[attr-defined]
            if not n:
                break
            self.write(mv[:n])
            total += n
        return total

    @property
    def digest(self) -> Digest:
        if self._hash is None:
            raise ValueError("this blob writer does not hash: its caller knows the digest")
        return Digest.sha256(self._hash.hexdigest())

    def commit(self, expected: Digest | None = None, expected_size: int | None = None) -> Digest:
        """Verify, fsync and move the blob into place; returns its digest."""
        if self._hash is None:
            if expected is None:
                raise ValueError("a blob written without hashing needs its digest to commit")
            digest = expected
        else:
            digest = self.digest
        try:
            if expected is not None and expected != digest:
                raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
            if expected_size is not None and expected_size != self.size:
                raise DigestMismatch(
                    f"size mismatch for {digest}: expected {expected_size} bytes, got {self.size}"
                )
            os.fsync(self._fd)
            target = self._store.path_of(digest)
            if not target.exists():
                os.rename(self.path, target)
        finally:
            self.abort()
        return digest

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _mkstemp(directory: Path) -> tuple[int, str]:
    import fcntl
    import tempfile

    fd, path = tempfile.mkstemp(dir=directory, prefix="blob-")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, path


class ContentStore:
    """Blobs by digest. Only sha256 is stored; any digest is parsed before it becomes a path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"

    def init(self) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, digest: Digest) -> Path:
        if digest.algorithm != "sha256":
            raise NotFound(f"blob {digest}: only sha256 content is stored")
        return self.blobs_dir / digest.hex

    def exists(self, digest: Digest) -> bool:
        return self.path_of(digest).exists()

    def size(self, digest: Digest) -> int:
        try:
            return self.path_of(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: Digest) -> bytes:
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        return data

    def read_verified(self, digest: Digest) -> bytes:
        data = self.read(digest)
        got = Digest.of(data)
        if got != digest:
            raise DigestMismatch(f"blob {digest} is corrupt: its content hashes to {got}")
        return data

    def open(self, digest: Digest) -> BinaryIO:
        try:
            return self.path_of(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def opener(self, digest: Digest) -> Callable[[], BinaryIO]:
        """A function opening the blob (for retried and resumed uploads)."""
        return lambda: self.open(digest)

    def writer(self, *, hashing: bool = True) -> BlobWriter:
        return BlobWriter(self, hashing=hashing)

    def put(self, data: bytes, expected: Digest | None = None) -> Digest:
        digest = Digest.of(data)
        if expected is not None and expected != digest:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        if self.path_of(digest).exists():
            return digest
        with self.writer() as w:
            w.write(data)
            return w.commit(digest)

    def verify(self, digest: Digest) -> bool:
        import hashlib

        h = hashlib.sha256()
        try:
            with self.open(digest) as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except NotFound:
            return False
        return h.hexdigest() == digest.hex

    def delete(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_of(digest))

    def list(self) -> Iterator[Digest]:
        for name in os.listdir(self.blobs_dir):
            try:
                yield Digest.sha256(name)
            except InvalidDigest:  # an odd name in blobs/ is not ours; skip it
                continue

    def clean_ingest(self) -> int:
        """Remove ingest files whose writer died (no flock held); returns how many."""
        return remove_abandoned(self.ingest_dir)
