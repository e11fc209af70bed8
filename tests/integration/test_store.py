"""The store against the real filesystem and SQLite: blobs, snapshots, metadata, locks, GC."""

from __future__ import annotations

import io
import multiprocessing
import os
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest

from moorage.engine import Engine
from moorage.errors import DigestMismatch, StoreError
from moorage.oci.digest import Digest
from moorage.store import Store
from moorage.store.gc import collect
from moorage.store.metadata import MIGRATIONS, Metadata


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "root", tmp_path / "run")


def test_put_verifies_and_is_idempotent(store: Store) -> None:
    d = store.content.put(b"hello")
    assert d == Digest.of(b"hello")
    assert store.content.read(d) == b"hello"
    assert store.content.put(b"hello") == d
    with pytest.raises(DigestMismatch):
        store.content.put(b"hello", Digest.of(b"other"))
    assert os.listdir(store.content.ingest_dir) == []


def test_writer_size_mismatch_leaves_nothing(store: Store) -> None:
    w = store.content.writer()
    w.write(b"abc")
    with pytest.raises(DigestMismatch, match="size mismatch"):
        w.commit(expected_size=4)
    assert os.listdir(store.content.ingest_dir) == []
    assert list(store.content.list()) == []


def _write_same_blob(root: str, n: int) -> str:
    s = Store.open(Path(root), Path(root) / "run")
    data = bytes([n % 7]) * 0 + b"x" * (4 << 20)
    with s.content.writer() as w:
        for i in range(0, len(data), 65536):
            w.write(data[i : i + 65536])
        return str(w.commit())


def test_concurrent_writers_of_one_blob(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Store.open(root, tmp_path / "run")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        digests = pool.starmap(_write_same_blob, [(str(root), i) for i in range(8)])
    assert len(set(digests)) == 1
    s = Store.open(root, tmp_path / "run")
    d = Digest.parse(digests[0])
    assert s.content.verify(d)
    assert os.listdir(s.content.ingest_dir) == []


def test_abandoned_ingest_is_cleaned_live_one_kept(store: Store) -> None:
    live = store.content.writer()
    dead = store.content.ingest_dir / "blob-dead"
    dead.write_bytes(b"partial")
    old = time.time() - 60
    os.utime(dead, (old, old))
    os.utime(live.path, (old, old))
    assert store.content.clean_ingest() == 1
    assert live.path.exists() and not dead.exists()
    live.abort()


def test_wal_mode_and_migrations(tmp_path: Path) -> None:
    db = Metadata(tmp_path / "m.db")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
    # reopening does not migrate twice
    db = Metadata(tmp_path / "m.db")
    db.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this moorage"):
        Metadata(tmp_path / "m.db")


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "moorage.store.metadata.MIGRATIONS", [*MIGRATIONS, "CREATE TABLE x (a); SELEKT broken;"]
    )
    with pytest.raises(StoreError, match=f"schema migration {len(MIGRATIONS) + 1} failed"):
        Metadata(tmp_path / "m.db")
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "images" not in tables and "x" not in tables


def _rootfs(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_snapshots_are_shared_and_refcounted(tmp_path: Path) -> None:
    from moorage.engine.images.importer import import_rootfs

    eng = Engine(tmp_path / "root", tmp_path / "run")
    a = import_rootfs(eng.store, _rootfs({"f": b"1"}), reference="a:1")
    b = import_rootfs(eng.store, _rootfs({"f": b"1"}), reference="b:1", changes=["CMD x"])
    assert a != b
    refs = eng.store.db.conn.execute("SELECT refcount FROM layer_refs").fetchall()
    assert [r[0] for r in refs] == [2]
    eng.images.remove("a:1")
    assert [r[0] for r in eng.store.db.conn.execute("SELECT refcount FROM layer_refs")] == [1]
    snaps = list(eng.store.snapshots.names())
    assert (
        len(snaps) == 1 and (eng.store.snapshots.dir / snaps[0] / "diff" / "f").read_bytes() == b"1"
    )
    eng.images.remove("b:1")
    assert list(eng.store.snapshots.names()) == []
    assert list(eng.store.content.list()) == []


def test_gc_waits_for_an_operation_in_progress(tmp_path: Path) -> None:
    eng = Engine(tmp_path / "root", tmp_path / "run")
    store = eng.store
    with store.adding():
        d = store.content.put(b"not yet recorded")
        with store.collecting(blocking=False) as got:
            assert got is False  # GC cannot start while content is being added
    with store.collecting() as got:
        assert got
        result = collect(store)
    assert d in result.blobs_removed


def test_gc_keeps_what_images_and_containers_use(tmp_path: Path) -> None:
    from moorage.engine.images.importer import import_rootfs

    eng = Engine(tmp_path / "root", tmp_path / "run")
    iid = import_rootfs(eng.store, _rootfs({"keep": b"me"}), reference="k:1")
    cdir = eng.store.snapshots.dir / ("c" * 64)
    cdir.mkdir()
    eng.store.db.conn.execute(
        "INSERT INTO containers(id, name, image_id, created) VALUES (?, 'c', ?, 0)",
        ("c" * 64, str(iid)),
    )
    junk = eng.store.content.put(b"junk")
    (eng.store.snapshots.dir / ("d" * 64)).mkdir()
    with eng.store.collecting():
        result = collect(eng.store)
    assert result.blobs_removed == [junk]
    assert result.snapshots_removed == ["d" * 64]
    assert cdir.exists()
    assert eng.images.resolve("k:1").id == iid
    assert eng.store.content.verify(iid)


def test_store_root_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot use store root"):
        Store.open(tmp_path / "file" / "root", tmp_path / "run")


def test_incomplete_snapshot_is_removed_by_the_next_command(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "root", tmp_path / "run")
    stale = store.snapshots.dir / ".tmp-deadbeef"
    (stale / "diff" / "half").mkdir(parents=True)
    old = time.time() - 60
    os.utime(stale, (old, old))
    Store.open(tmp_path / "root", tmp_path / "run")  # what every command does first
    assert not stale.exists()


def test_df_reclaimable_is_exactly_what_system_prune_frees(tmp_path: Path) -> None:
    from moorage.engine.containers.service import ContainerService
    from moorage.engine.containers.spec import ContainerSpec
    from moorage.engine.images.importer import import_rootfs
    from moorage.engine.system import disk_usage, prune

    eng = Engine(tmp_path / "root", tmp_path / "run")
    import_rootfs(eng.store, _rootfs({"a": b"1" * 5000}), reference="keep:1")
    import_rootfs(eng.store, _rootfs({"b": b"2" * 7000}), reference="drop:1")
    import_rootfs(eng.store, _rootfs({"c": b"3" * 900}))  # dangling
    svc = ContainerService(eng.store, eng.images)
    rec = svc.create(ContainerSpec(image="drop:1", args=("true",)))
    (svc.overlay(rec.id) / "diff" / "written").write_bytes(b"x" * 4000)
    orphan = eng.store.content.put(b"o" * 1234)
    expected = sum(row.reclaimable for row in disk_usage(eng.images))
    report = prune(eng.images, all_unused=True)
    assert report.reclaimed == expected
    assert report.containers == [rec.id]
    assert not eng.store.content.exists(orphan)
    assert sum(row.size for row in disk_usage(eng.images)) == 0


def test_gc_removes_a_dead_creates_container_dir(tmp_path: Path) -> None:
    eng = Engine(tmp_path / "root", tmp_path / "run")
    eng.store.db  # noqa: B018  (creates the database)
    stray = eng.root / "containers" / ("e" * 64)
    stray.mkdir(parents=True)
    (stray / "hosts").write_text("x")
    with eng.store.collecting():
        result = collect(eng.store)
    assert f"containers/{'e' * 64}" in result.snapshots_removed
    assert not stray.exists()


def test_a_prepared_database_is_used_once_and_only_if_still_the_same_file(
    tmp_path: Path,
) -> None:
    from moorage.store.metadata import prepare, take_prepared

    Store.open(tmp_path / "s", tmp_path / "run").db.close()  # a store with its database
    path = tmp_path / "s" / "moorage.db"
    prepare(path)
    first = Store.open(tmp_path / "s", tmp_path / "run")
    prepared = first.db
    assert take_prepared(path) is None  # taken
    assert prepared.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    first.close()

    prepare(path)
    os.replace(path, tmp_path / "old.db")  # a new database where the prepared one was
    Metadata(path).close()
    assert take_prepared(path) is None  # not the file it opened: closed, not handed out

    prepare(tmp_path / "nothing" / "moorage.db")  # no store there: nothing is created
    assert not (tmp_path / "nothing").exists()


def test_metadata_without_create_never_makes_a_database(tmp_path: Path) -> None:
    (tmp_path / "odd dir?#%").mkdir()
    missing = tmp_path / "odd dir?#%" / "moorage.db"
    with pytest.raises(StoreError, match="cannot open the metadata database"):
        Metadata(missing, create=False)
    assert list(missing.parent.iterdir()) == []
    Metadata(missing).close()  # made by a command
    meta = Metadata(missing, create=False)  # then opened, special characters and all
    assert meta.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    meta.close()
