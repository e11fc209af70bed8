"""is_mounted: statx's mount-root attribute, checked against the mountinfo fallback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moorage.engine.containers import rootfs


@pytest.fixture
def tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    target = tmp_path / "m"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        rootfs.unmount(target)


def test_is_mounted_tells_a_mount_point_from_a_directory(tmpfs: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmpfs / "inside").mkdir()
    assert rootfs._statx_mount_root(tmpfs) is True
    assert rootfs.is_mounted(tmpfs)
    assert not rootfs.is_mounted(tmp_path / "plain")
    assert not rootfs.is_mounted(tmpfs / "inside")
    assert not rootfs.is_mounted(tmp_path / "missing")


def test_a_bind_mount_on_the_same_filesystem_is_seen(tmp_path: Path) -> None:
    # same device as its parent: only statx (or mountinfo) can tell
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(target)], check=True)
    try:
        assert rootfs.is_mounted(target)
    finally:
        rootfs.unmount(target)
    assert not rootfs.is_mounted(target)
