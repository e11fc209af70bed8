"""SQLite metadata: images, tags, layers, containers; WAL mode, numbered schema migrations.

Files are written before the row that points at them and removed after the row is gone, so a
crash at any point leaves a database whose every reference resolves, plus at worst orphan
files that garbage collection (or ``moor system check --repair``) removes.
"""

from __future__ import annotations

import contextlib
import os
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
    # 3: registry transfer: compressed blobs made for a layer on push (the layer row keeps
    # the blob it was unpacked from), and which registry repositories are known to hold a
    # blob (the candidates for a cross-repository mount).
    """
    CREATE TABLE layer_blobs (
        diff_id TEXT NOT NULL,
        blob_digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (diff_id, media_type)
    );
    CREATE TABLE blob_sources (
        digest TEXT NOT NULL,
        registry TEXT NOT NULL,
        repository TEXT NOT NULL,
        PRIMARY KEY (digest, registry, repository)
    );
    """,
    # 4: the build cache (classic builder: step key -> the image it made), each image's
    # parent (intermediate images are hidden from `images`), and remembered file checksums.
    """
    ALTER TABLE images ADD COLUMN parent TEXT NOT NULL DEFAULT '';
    CREATE INDEX images_parent ON images(parent);
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,             -- sha256 of parent id, instruction, sources checksum
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created REAL NOT NULL
    );
    CREATE INDEX build_cache_image ON build_cache(image_id);
    CREATE TABLE build_checksums (
        path TEXT PRIMARY KEY,            -- absolute path of a context file
        stat_key TEXT NOT NULL,           -- dev:ino:size:mtime_ns:ctime_ns when hashed
        digest TEXT NOT NULL              -- sha256 hex of its content
    );
    """,
    # 5: networks and the containers attached to them (an endpoint holds its address while
    # the container runs; a static --ip or aliases stay with the attachment).
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL DEFAULT 'bridge',
        bridge TEXT NOT NULL UNIQUE,      -- the host bridge interface
        subnet TEXT NOT NULL,             -- "10.89.3.0/24"
        gateway TEXT NOT NULL,
        ip_range TEXT NOT NULL DEFAULT '',
        internal INTEGER NOT NULL DEFAULT 0,
        dns INTEGER NOT NULL DEFAULT 1,   -- names through aardvark-dns (not on the default)
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id TEXT NOT NULL REFERENCES networks(id),
        position INTEGER NOT NULL DEFAULT 0,  -- eth0, eth1, ...
        static_ip TEXT NOT NULL DEFAULT '',
        aliases TEXT NOT NULL DEFAULT '[]',
        ip TEXT,                              -- set while the container runs
        mac TEXT NOT NULL DEFAULT '',
        ports TEXT NOT NULL DEFAULT '[]',     -- host ports bound while it runs
        PRIMARY KEY (container_id, network_id),
        UNIQUE (network_id, ip)
    );
    CREATE INDEX endpoints_network ON endpoints(network_id);
    """,
    # 6: volumes (local driver) and every container's mounts, resolved at create.
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL DEFAULT 'local',
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0,
        seeded INTEGER NOT NULL DEFAULT 0,    -- the image's content was copied in (copy-up)
        created REAL NOT NULL
    );
    CREATE TABLE container_mounts (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        type TEXT NOT NULL,                   -- volume | bind | tmpfs
        source TEXT NOT NULL DEFAULT '',      -- volume name or host path
        destination TEXT NOT NULL,
        rw INTEGER NOT NULL DEFAULT 1,
        options TEXT NOT NULL DEFAULT '',     -- tmpfs options
        PRIMARY KEY (container_id, position)
    );
    CREATE INDEX container_mounts_source ON container_mounts(type, source);
    """,
    # 7: events (engine/events.py) and the last health-check results (engine/health.py).
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

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        try:
            # create=False: an existing database only (never a new one in a store being removed)
            self.conn = sqlite3.connect(
                path if create else f"file:{_uri_path(path)}?mode=rw",
                timeout=30.0, isolation_level=None, check_same_thread=False, uri=not create,
            )  # fmt: skip
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


def _uri_path(path: Path) -> str:
    """``path`` as the path of an SQLite ``file:`` URI (urllib.parse would cost every command
    ~1.5 ms of import)."""
    return str(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


# connections opened ahead of need (see ``prepare``), by database path
_prepared: dict[Path, tuple[Metadata, tuple[int, int]]] = {}


def prepare(path: Path) -> None:
    """Open an existing database now, for a command that will come (the warm process's spare
    child does this while it waits: opening and reading the schema takes ~2.5 ms)."""
    try:
        st = os.stat(path)
    except OSError:
        return  # no store yet: the command creates it
    if path not in _prepared:
        _prepared[path] = (Metadata(path, create=False), (st.st_dev, st.st_ino))


def take_prepared(path: Path) -> Metadata | None:
    """The connection ``prepare`` opened for ``path``, if it is still that file."""
    item = _prepared.pop(path, None)
    if item is None:
        return None
    meta, ident = item
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or (st.st_dev, st.st_ino) != ident:
        meta.close()  # removed or replaced meanwhile
        return None
    return meta


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
