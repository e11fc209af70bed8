"""Compose benchmark: ``moor compose`` against docker-compose 1.29 on Docker 20.10.

One project of 10 services from an image already present (busybox ``bb:1``: each service
sleeps), on the project's default network. Measured side by side, alternating, median of
``--runs``: ``up -d`` from nothing, then ``down`` (containers and the network removed).
Prints the ratio moorage / docker-compose (target: at most 0.5 for each).

Needs root, Docker with ``bb:1`` and docker-compose (``../shared/tools/start-anchors``);
moorage uses a private store in a temporary directory. Every project is removed at the end.

    python bench/compose.py [--runs 5] [--services 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MOOR = str(Path(sys.executable).parent / "moor")
if not os.path.exists(MOOR):
    MOOR = str(REPO / ".venv" / "bin" / "moor")
COMPOSE = shutil.which("docker-compose")
BB_TAR = Path("/tmp/moorage-anchors/bb-rootfs.tar")


def project(n: int) -> str:
    lines = ["version: '3'", "services:"]
    for i in range(n):
        lines += [f"  s{i}:", "    image: bb:1", "    command: sleep 1000", "    stop_signal: KILL"]
    return "\n".join(lines) + "\n"


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=600, check=False)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.decode()[-600:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--services", type=int, default=10)
    a = ap.parse_args()
    if os.geteuid() != 0 or not BB_TAR.exists():
        print("compose benchmark: needs root and the anchors' busybox (start-anchors); skipped")
        return
    work = Path(tempfile.mkdtemp(prefix="mbench-compose-"))
    d = work / "proj"
    d.mkdir()
    (d / "docker-compose.yml").write_text(project(a.services))
    menv = {**os.environ, "MOORAGE_ROOT": str(work / "root"), "MOORAGE_RUNROOT": str(work / "run")}
    denv = dict(os.environ)
    name = f"mbench{os.getpid()}"
    moor = [MOOR, "compose", "-p", name]
    dc = [COMPOSE, "-p", name] if COMPOSE else None
    res: dict[str, dict[str, list[float]]] = {
        "moorage": {"up": [], "down": []},
        "docker-compose": {"up": [], "down": []},
    }
    try:
        subprocess.run([MOOR, "import", str(BB_TAR), "bb:1"], env=menv, capture_output=True,
                       check=True)  # fmt: skip
        for i in range(a.runs + 1):  # the first round warms up and is not counted
            tools: list[tuple[str, list[str], dict[str, str]]] = [("moorage", moor, menv)]
            if dc:
                tools.append(("docker-compose", dc, denv))
            for tool, cmd, env in tools:
                up = timed([*cmd, "up", "-d"], d, env)
                down = timed([*cmd, "down", "-t", "0"], d, env)
                if i:
                    res[tool]["up"].append(up)
                    res[tool]["down"].append(down)
    finally:
        subprocess.run([*moor, "down", "-t", "0"], cwd=d, env=menv, capture_output=True)
        if dc:
            subprocess.run([*dc, "down", "-t", "0"], cwd=d, env=denv, capture_output=True)
        subprocess.run([MOOR, "network", "teardown-host"], env=menv, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"== {a.services}-service project from a present image (median of {a.runs}) ==")
    for what in ("up", "down"):
        ours = statistics.median(res["moorage"][what])
        theirs = res["docker-compose"][what]
        if theirs:
            ref = statistics.median(theirs)
            print(f"compose {what:<5} moorage {ours:6.2f} s   docker-compose {ref:6.2f} s   "
                  f"ratio {ours / ref:5.2f}   (target <= 0.5)")  # fmt: skip
        else:
            print(f"compose {what:<5} moorage {ours:6.2f} s   (docker-compose not available)")


if __name__ == "__main__":
    main()
