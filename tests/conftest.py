"""Shared fixtures: a private store per test, the real `moor` command, a busybox base image."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MOOR = str(Path(sys.executable).parent / "moor")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


@dataclass
class Moor:
    """Runs the installed `moor` command against a private store."""

    root: Path
    runroot: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MOORAGE_ROOT"] = str(self.root)
        env["MOORAGE_RUNROOT"] = str(self.runroot)
        return env

    def __call__(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120
    ) -> Result:
        p = subprocess.run(
            [MOOR, *args],
            input=input if input is not None else b"",
            capture_output=True,
            env=self.env,
            timeout=timeout,
        )
        res = Result(
            p.returncode,
            p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace"),
            p.stdout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"moor {' '.join(args)} exited {p.returncode}\nstdout: {res.stdout}\n"
                f"stderr: {res.stderr}"
            )
        return res

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen([MOOR, *args], env=self.env, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def moor(tmp_path: Path) -> Iterator[Moor]:
    m = Moor(tmp_path / "root", tmp_path / "run")
    yield m
    # whatever a failing test left: its containers, then any mount under its store
    if (m.root / "moorage.db").exists():
        ids = m("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if ids:
            m("rm", "-f", *ids, check=False)
        # its bridges, nftables tables and DNS server (the store goes, so they would stay)
        m("network", "teardown-host", check=False)
    with open("/proc/mounts") as f:
        leftover = [line.split()[1] for line in f if line.split()[1].startswith(str(tmp_path))]
    for mountpoint in reversed(leftover):
        subprocess.run(["umount", "-l", mountpoint], check=False)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root filesystem tarball, made once per test run."""
    out = tmp_path_factory.mktemp("base") / "busybox-rootfs.tar"
    subprocess.run(
        [str(REPO / "scripts" / "base-images"), "busybox", "--tar", str(out)],
        check=True,
        env={**os.environ, "MOOR": MOOR},
    )
    return out


@pytest.fixture
def bb(moor: Moor, busybox_tar: Path) -> str:
    """bb:1, the busybox image, imported into this test's store; returns its id."""
    return moor("import", "--change", 'CMD ["sh"]', str(busybox_tar), "bb:1").stdout.strip()


def store_state(root: Path) -> dict[str, object]:
    """Everything that makes up a store: file tree (names, sizes) and every DB row."""
    import sqlite3

    files: dict[str, int] = {}
    for dirpath, dirs, names in os.walk(root):
        for n in names + dirs:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if rel.startswith("moorage.db") or rel == "store.lock":
                continue
            files[rel] = p.lstat().st_size if p.is_file() and not p.is_symlink() else -1
    rows: dict[str, list[tuple[object, ...]]] = {}
    db = root / "moorage.db"
    if db.exists():
        conn = sqlite3.connect(db)
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows[table] = sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {table}"))
        conn.close()
    return {"files": files, "rows": rows}


StoreState = Callable[[Path], dict[str, object]]


@pytest.fixture
def snapshot_store() -> Iterator[StoreState]:
    yield store_state
