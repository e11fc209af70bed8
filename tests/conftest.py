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

# Warm start (a background moor process per run root that runs commands with everything
# imported) would start one per test here: off unless a run asks for it (MOORAGE_WARM=1 runs
# the whole suite through it); tests/e2e/test_warm.py tests it on purpose.
os.environ.setdefault("MOORAGE_WARM", "0")
WARM = os.environ["MOORAGE_WARM"] not in ("0", "false", "no", "off", "")


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
    if WARM:
        m("system", "warm", "--stop", check=False)
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


@dataclass
class RegistryServer:
    """A `moor registry serve` process on a free loopback port."""

    proc: subprocess.Popen[bytes]
    root: Path
    port: int
    banner: str = ""

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_registry(root: Path, *args: str, port: int = 0) -> RegistryServer:
    import re
    import select

    def die_with_pytest() -> None:  # even when pytest itself is killed
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    proc = subprocess.Popen(
        [MOOR, "registry", "serve", "--addr", f"127.0.0.1:{port}", "--root", str(root), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=die_with_pytest,
    )
    assert proc.stderr is not None
    line = b""
    ready, _, _ = select.select([proc.stderr], [], [], 20)
    if ready:
        line = proc.stderr.readline()
    m = re.search(rb"https?://[^ ]*:(\d+)", line)
    if m is None:
        proc.kill()
        rest = proc.stderr.read().decode(errors="replace")
        raise AssertionError(f"registry did not start: {line!r} {rest}")
    return RegistryServer(proc, root, int(m.group(1)), line.decode(errors="replace"))


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def make(*args: str, root: Path | None = None, port: int = 0) -> RegistryServer:
        server = start_registry(root or tmp_path / f"registry{len(started)}", *args, port=port)
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    return registry_factory("--delete")
