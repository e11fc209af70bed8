"""Two or more `moor` commands at once on one store stay safe."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Moor


def test_parallel_loads_imports_and_prunes(
    moor: Moor, bb: str, busybox_tar: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "bb.tar"
    moor("save", "-o", str(archive), "bb:1")
    moor("rmi", "bb:1")
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(3):
        procs.append(
            moor.popen("load", "-i", str(archive), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
        procs.append(
            moor.popen(
                "import",
                str(busybox_tar),
                f"imp:{i}",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        procs.append(
            moor.popen("image", "prune", "-f", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    tags = set(moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())
    assert tags == {"bb:1", "imp:0", "imp:1", "imp:2"}
    assert moor("system", "check").stdout.strip() == "No problems found"
    # every image still runs off a complete snapshot
    for t in tags:
        doc = moor("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", t).stdout.strip()
        assert (Path(doc) / "bin" / "busybox").exists()
