"""The local store: content-addressed blobs, unpacked layer snapshots, SQLite metadata, locks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from moorage.errors import StoreError
from moorage.store.content import ContentStore
from moorage.store.locks import flocked
from moorage.store.metadata import Metadata, take_prepared
from moorage.store.snapshots import SnapshotStore

DEFAULT_ROOT = Path("/var/lib/moorage")
DEFAULT_RUNROOT = Path("/run/moorage")


class Store:
    """One store root: ``blobs/``, ``ingest/``, ``overlay/``, ``moorage.db`` and ``store.lock``.

    Opening a store also removes what a killed command left half-written (ingest files and
    snapshot temporaries whose writer no longer holds their lock).
    """

    def __init__(self, root: Path, runroot: Path) -> None:
        self.root = root
        self.runroot = runroot
        self.content = ContentStore(root)
        self.snapshots = SnapshotStore(root)
        self._db: Metadata | None = None
        self._lock_path = root / "store.lock"

    @classmethod
    def open(cls, root: Path, runroot: Path) -> Store:
        store = cls(root, runroot)
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            runroot.mkdir(parents=True, exist_ok=True, mode=0o700)
            store.content.init()
            store.snapshots.init()
        except OSError as e:
            raise StoreError(f"cannot use store root {root}: {e.strerror}") from e
        store.content.clean_ingest()
        store.snapshots.clean_incomplete()
        return store

    @property
    def db(self) -> Metadata:
        if self._db is None:
            path = self.root / "moorage.db"
            self._db = take_prepared(path) or Metadata(path)
        return self._db

    @contextlib.contextmanager
    def adding(self, *, keep_on_failure: bool = False) -> Iterator[None]:
        """Hold while writing content not yet recorded in the database (GC waits).

        If the operation fails, whatever it wrote and did not record is collected at once
        (when no other command is adding content), so a failed command leaves the store as
        it found it; ``keep_on_failure`` leaves it for the next GC instead (an interrupted
        pull keeps the layers it completed, so running it again resumes).
        """
        try:
            with flocked(self._lock_path, exclusive=False):
                yield
        except BaseException:
            if keep_on_failure:
                raise
            from moorage.store.gc import collect

            with self.collecting(blocking=False) as got:
                if got:
                    collect(self)
            raise

    @contextlib.contextmanager
    def collecting(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold while deleting unreferenced content; yields False if busy and not blocking."""
        with flocked(self._lock_path, exclusive=True, blocking=blocking) as got:
            yield got

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def default_root() -> Path:
    return Path(os.environ.get("MOORAGE_ROOT") or DEFAULT_ROOT)


def default_runroot() -> Path:
    return Path(os.environ.get("MOORAGE_RUNROOT") or DEFAULT_RUNROOT)
