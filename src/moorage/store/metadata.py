"""SQLite metadata: images, tags, layers, containers; WAL mode, numbered schema migrations.

Files are written before the row that points at them and removed after the row is gone, so a
crash at any point leaves a database whose every reference resolves, plus at worst orphan
files that garbage collection (or ``moor system check --repair``) removes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from moorage.errors import StoreError

# Each entry upgrades the schema from version i to i+1. Append only; never edit a shipped one.
MIGRATIONS: list[str] = [
    # 1: images, their tags and repo digests, layers (snapshots) and which image uses which.
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,              -- config digest, "sha256:<hex>" (Docker's image id)
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        created TEXT,                     -- from the image config (RFC 3339)
        added REAL NOT NULL,              -- when it entered this store (unix time)
        size INTEGER NOT NULL,            -- unpacked content bytes of all its layers
        os TEXT NOT NULL DEFAULT 'linux',
        architecture TEXT NOT NULL DEFAULT '',
        last_tag_time REAL
    );
    CREATE TABLE tags (
        name TEXT PRIMARY KEY,            -- normalised "docker.io/library/busybox:latest"
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        name TEXT NOT NULL,               -- "docker.io/library/busybox@sha256:..."
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (name, image_id)
    );
    CREATE TABLE layers (
        diff_id TEXT PRIMARY KEY,         -- sha256 of the uncompressed tar; names the snapshot
        blob_digest TEXT NOT NULL,        -- the blob it was unpacked from
        media_type TEXT NOT NULL,
        blob_size INTEGER NOT NULL,
        tar_size INTEGER NOT NULL,
        content_size INTEGER NOT NULL,    -- bytes of regular files in the snapshot
        created REAL NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        diff_id TEXT NOT NULL REFERENCES layers(diff_id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_diff ON image_layers(diff_id);
    -- how many images use each layer: the snapshot's reference count
    CREATE VIEW layer_refs AS
        SELECT l.diff_id, COUNT(il.image_id) AS refcount
        FROM layers l LEFT JOIN image_layers il ON il.diff_id = l.diff_id
        GROUP BY l.diff_id;
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL REFERENCES images(id),
        image_ref TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'created',
        spec TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX containers_image ON containers(image_id);
    """,
    # 2: what the runtime reports about a container, kept beside its spec.
    """
    ALTER TABLE containers ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN conmon_pid INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN exit_code INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN started_at REAL;
    ALTER TABLE containers ADD COLUMN finished_at REAL;
    ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN error TEXT NOT NULL DEFAULT '';
    ALTER TABLE containers ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: events (engine/events.py) and the last health-check results (engine/health.py).
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano INTEGER NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}'  -- JSON object of strings
    );
    CREATE INDEX events_time ON events(time_nano);
    CREATE TABLE health (
        container_id TEXT PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
        status TEXT NOT NULL DEFAULT 'starting',  -- starting | healthy | unhealthy
        failing_streak INTEGER NOT NULL DEFAULT 0,
        log TEXT NOT NULL DEFAULT '[]'            -- the last 5 results, Docker's shape
    );
    """,
]


class Metadata:
    """A connection to ``moorage.db``, migrated to the latest schema on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the metadata database {path}: {e}") from e
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == len(MIGRATIONS):
            return
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this moorage "
                f"understands ({len(MIGRATIONS)}); upgrade moorage"
            )
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
        with self.transaction():
            # re-read under the write lock: another command may have migrated meanwhile
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for i in range(version, len(MIGRATIONS)):
                try:
                    for statement in _split_sql(MIGRATIONS[i]):
                        self.conn.execute(statement)
                except sqlite3.Error as e:
                    raise StoreError(f"{self.path}: schema migration {i + 1} failed: {e}") from e
                self.conn.execute(f"PRAGMA user_version = {i + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    code = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    out: list[str] = []
    buf = ""
    for piece in code.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\n;"):
                out.append(buf.strip())
            buf = ""
    return out
