"""The shared suite every registry storage driver must pass (only the filesystem one so far)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.registry.driver import DriverNotFound, StorageDriver
from moorage.registry.fsdriver import FilesystemDriver

DRIVERS: dict[str, Callable[[Path], StorageDriver]] = {"filesystem": FilesystemDriver}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    return DRIVERS[request.param](tmp_path / "store")


def test_put_get_size(driver: StorageDriver) -> None:
    driver.put("a/b/c", b"hello")
    assert driver.get("a/b/c") == b"hello"
    assert driver.size("a/b/c") == 5
    assert driver.exists("a/b/c")
    driver.put("a/b/c", b"bye")
    assert driver.get("a/b/c") == b"bye"


def test_missing_keys_raise_not_found(driver: StorageDriver) -> None:
    for op in (driver.get, driver.size, driver.mtime, driver.touch, driver.open):
        with pytest.raises(DriverNotFound):
            op("nope/x")  # type: ignore[operator]
    assert not driver.exists("nope/x")
    assert driver.list("nope") == []
    driver.delete("nope/x")  # no error


@pytest.mark.parametrize("key", ["", "../x", "a/../../x", "a//b", "/abs", "a/./b"])
def test_keys_cannot_escape(driver: StorageDriver, key: str) -> None:
    with pytest.raises(ValueError):
        driver.put(key, b"x")


def test_list_is_one_level_and_sorted(driver: StorageDriver) -> None:
    for k in ("d/b", "d/a", "d/c/x"):
        driver.put(k, b"")
    assert driver.list("d") == ["a", "b", "c"]


def test_delete_subtree(driver: StorageDriver) -> None:
    driver.put("t/1/x", b"1")
    driver.put("t/2", b"2")
    driver.delete("t")
    assert not driver.exists("t/1/x") and driver.list("t") == []


def test_appender_and_open_at_offset(driver: StorageDriver) -> None:
    w = driver.appender("up/data")
    w.write(b"abc")
    w.close()
    w = driver.appender("up/data")
    assert w.size == 3
    w.write(memoryview(b"defg"))
    w.close()
    with driver.open("up/data", 2) as f:
        assert f.read() == b"cdefg"


def test_move_replaces_atomically(driver: StorageDriver) -> None:
    driver.put("src", b"new")
    driver.put("dst/x", b"old")
    driver.move("src", "dst/x")
    assert driver.get("dst/x") == b"new"
    assert not driver.exists("src")
    with pytest.raises(DriverNotFound):
        driver.move("src", "dst/y")


def test_touch_updates_mtime(driver: StorageDriver) -> None:
    import os
    import time

    driver.put("m", b"")
    path = driver.local_path("m")
    if path is not None:
        os.utime(path, (1, 1))
    assert driver.mtime("m") < 10
    driver.touch("m")
    assert driver.mtime("m") > time.time() - 60


def test_concurrent_puts_leave_one_whole_value(driver: StorageDriver) -> None:
    values = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=driver.put, args=("same", v)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert driver.get("same") in values
