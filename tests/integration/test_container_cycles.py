"""Nothing leaks across many container lifecycles: mounts, conmon, runc state, dirs, rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from moorage.engine import Engine
from moorage.engine.containers.service import ContainerService
from moorage.engine.containers.spec import ContainerSpec

REPO = Path(__file__).resolve().parents[2]


def _overlay_mounts(under: Path) -> int:
    """Overlay mounts below this test's directory (other tests may run meanwhile)."""
    with open("/proc/mounts") as f:
        return sum(
            1 for line in f if " overlay " in line and line.split()[1].startswith(str(under))
        )


def _conmons(under: Path) -> int:
    """conmon processes working for containers in this test's store."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"/usr/bin/conmon") and str(under).encode() in cmdline:
            count += 1
    return count


def test_create_rm_1000_and_run_rm_100_cycles(tmp_path: Path, busybox_tar: Path) -> None:
    eng = Engine(tmp_path / "root", tmp_path / "run")
    subprocess.run(
        [str(Path(sys.executable).parent / "moor"), "--root", str(eng.root), "--runroot",
         str(eng.runroot), "import", "-c", 'CMD ["true"]', str(busybox_tar), "bb:1"],
        check=True, capture_output=True,
    )  # fmt: skip
    svc = ContainerService(eng.store, eng.images)
    try:
        _cycles(eng, svc, tmp_path)
    finally:
        svc.networks.teardown_all_networks()  # the default network's bridge and table


def _cycles(eng: Engine, svc: ContainerService, tmp_path: Path) -> None:
    mounts, conmons = _overlay_mounts(tmp_path), _conmons(tmp_path)
    for _ in range(1000):
        rec = svc.create(ContainerSpec(image="bb:1"))
        svc.remove(rec.id)
    runs = int(os.environ.get("MOORAGE_RUN_CYCLES", "100"))
    ran = []
    for _ in range(runs):
        rec = svc.create(ContainerSpec(image="bb:1", args=("true",)))
        ran.append(rec.id)
        svc.start(rec.id)
        assert svc.wait(rec.id) == 0
        svc.remove(rec.id, force=True)
    assert _overlay_mounts(tmp_path) == mounts
    deadline = time.monotonic() + 60
    while _conmons(tmp_path) > conmons and time.monotonic() < deadline:
        time.sleep(0.2)  # the last conmons are still running their exit commands
    assert _conmons(tmp_path) <= conmons
    assert eng.store.db.conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0] == 0
    assert list((eng.root / "containers").iterdir()) == []
    assert list((eng.runroot / "containers").iterdir()) == []
    assert [p.name for p in (eng.root / "overlay").iterdir() if not p.name.startswith(".")] == [
        r["diff_id"].split(":")[1] for r in eng.store.db.conn.execute("SELECT diff_id FROM layers")
    ]
    runc_state = eng.runroot / "runtime" / "runc"
    assert not runc_state.exists() or list(runc_state.iterdir()) == []
    cgroups = Path("/sys/fs/cgroup/pids/moorage")
    if cgroups.exists():
        # only this test's containers: other suites on the machine have theirs running
        leftover = [p for p in cgroups.iterdir() if p.is_dir() and p.name in set(ran)]
        assert leftover == []
    netns = eng.runroot / "netns"
    assert not netns.exists() or list(netns.iterdir()) == []
