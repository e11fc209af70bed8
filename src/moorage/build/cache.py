"""The build cache: step keys -> intermediate images, and ``moor builder prune``."""

from __future__ import annotations

from typing import Any


def prune(engine: Any) -> tuple[list[str], int]:
    """Forget the build cache and remove the intermediate images only it kept (untagged,
    used by no container); returns (removed image ids, bytes freed)."""
    store = engine.store
    conn = store.db.conn
    with store.adding():
        candidates = [
            r["image_id"]
            for r in conn.execute(
                "SELECT DISTINCT b.image_id FROM build_cache b"
                " WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = b.image_id)"
                " AND NOT EXISTS (SELECT 1 FROM containers c WHERE c.image_id = b.image_id)"
            )
        ]
        freed = engine.images.exclusive_bytes(candidates)
        with store.db.transaction() as tx:
            tx.execute("DELETE FROM build_cache")
            tx.execute("DELETE FROM build_checksums")
            tx.executemany(
                "DELETE FROM images WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = images.id)"
                " AND NOT EXISTS (SELECT 1 FROM containers c WHERE c.image_id = images.id)",
                [(i,) for i in candidates],
            )
    engine.images.collect_garbage(blocking=True)
    freed += _remove_cache_mounts(store)
    return candidates, freed


def _remove_cache_mounts(store: Any) -> int:
    """Delete the ``RUN --mount=type=cache`` directories (no build runs meanwhile: builds
    hold the store lock shared, this takes it exclusively)."""
    import shutil

    from moorage.store.snapshots import dir_usage

    cache = store.root / "build" / "cache"
    if not cache.is_dir():
        return 0
    with store.collecting(blocking=True):
        freed = dir_usage(cache)
        shutil.rmtree(cache, ignore_errors=True)
    return freed


def intermediate_ids(conn: Any) -> set[str]:
    """Untagged images that are the parent of another image: hidden from ``images``."""
    rows = conn.execute(
        "SELECT DISTINCT p.id FROM images p JOIN images c ON c.parent = p.id"
        " WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = p.id)"
    )
    return {r[0] for r in rows}
