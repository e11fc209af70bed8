"""The supervisor process on its own: a store that is gone, one instance per run root."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from moorage.engine import health, supervisor


def test_no_store_means_no_supervisor(tmp_path: Path) -> None:
    root, runroot = tmp_path / "root", tmp_path / "run"
    assert supervisor.main(root, runroot) == 0
    assert not root.exists() and not runroot.exists()  # nothing recreated


def test_second_instance_exits_at_once(tmp_path: Path) -> None:
    from moorage.store.metadata import Metadata

    root, runroot = tmp_path / "root", tmp_path / "run"
    root.mkdir()
    runroot.mkdir()
    Metadata(root / "moorage.db").close()
    lock = health.supervisor_lock(runroot)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert health.supervisor_running(runroot)
        assert supervisor.main(root, runroot) == 0  # another holds the lock
    finally:
        os.close(fd)
    assert not health.supervisor_running(runroot)
    assert not supervisor.ended_marker(runroot).exists()  # it never took over


def test_results_build_on_what_another_process_wrote(tmp_path: Path) -> None:
    """The supervisor writes a result without reading its row first only while no other
    process wrote to the database (``moor healthcheck run``, a restart's reset, a removal)."""
    import sqlite3
    import time

    from moorage.store.metadata import Metadata

    root, runroot = tmp_path / "root", tmp_path / "run"
    root.mkdir()
    runroot.mkdir()
    Metadata(root / "moorage.db").close()
    other = sqlite3.connect(root / "moorage.db", isolation_level=None)
    other.execute(
        "INSERT INTO containers(id, name, image_id, created, state) VALUES ('c1', 'n', 'i', 0, "
        "'running')"
    )
    sup = supervisor.Supervisor(root, runroot)
    cfg = health.HealthConfig(test=("CMD", "x"), retries=1)
    t = supervisor._Target(cid="c1", name="n", image="i", labels={}, cfg=cfg, started_at=1.0,
                           pid=1, runtime="runc", run_dir=runroot, due=0.0)  # fmt: skip

    def result(code: int) -> dict[str, object]:
        return {"Start": "s", "End": "e", "ExitCode": code, "Output": str(code)}

    def probed(code: int) -> dict[str, object] | None:
        sup.finish(t, result(code), time.time())
        sup.record()
        return health.state(other, "c1")

    assert (probed(0) or {})["Status"] == "healthy"
    assert (probed(0) or {})["Log"] == [result(0), result(0)]
    # another process: one failing check (retries=1: unhealthy)
    other.execute("BEGIN")
    health.apply_result(other, "c1", cfg, 1.0, result(1))
    other.execute("COMMIT")
    st = probed(1)
    assert st is not None and st["Status"] == "unhealthy" and st["FailingStreak"] == 2
    assert [e["ExitCode"] for e in st["Log"]] == [0, 0, 1, 1]
    events = other.execute("SELECT action FROM events ORDER BY seq").fetchall()
    assert events == [("health_status: healthy",)]  # the other writer records its own
    other.execute("PRAGMA foreign_keys = ON")
    other.execute("DELETE FROM containers WHERE id = 'c1'")  # removed: results dropped
    assert probed(0) is None
    sup.db.close()
    other.close()
