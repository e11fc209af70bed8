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
