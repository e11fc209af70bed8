"""Build benchmarks: ``moor build`` against Docker's classic builder, in one run.

1. Fully cached rebuild of a context of 2,000 files with a COPY and a RUN (target: at most
   0.5x Docker's time).
2. Cold build of the same (``--no-cache``; target: at most Docker's time).
3. Context checksum throughput on a 1 GB context (target at least 300 MB/s): the checksum
   a COPY of the whole context needs, timed in-process without the persistent checksum
   cache (so every byte is read and hashed; a rebuild would hash only changed files).

Prints medians and ratios (moorage / docker; below 1.0 means moorage is faster). Docker is
skipped when it (or its bb:1 image) is missing. Needs root.

    python bench/build.py [--runs 5] [--big-mb 1024]
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
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
BB_TAR = Path("/tmp/moorage-anchors/bb-rootfs.tar")
DOCKERFILE = "FROM bb:1\nCOPY . /ctx/\nRUN ls /ctx | wc -l > /count\n"


def _moor() -> str:
    for cand in (Path(sys.executable).parent / "moor", REPO / ".venv" / "bin" / "moor"):
        if cand.exists():
            return str(cand)
    return shutil.which("moor") or "moor"


MOOR = _moor()


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def median(fn: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def docker_ok() -> bool:
    if DOCKER is None:
        return False
    r = subprocess.run([DOCKER, "image", "inspect", "bb:1"], capture_output=True)
    return r.returncode == 0


def report(name: str, ours: float, theirs: float | None, target: str) -> None:
    if theirs is None:
        print(f"{name:<44} moorage {ours:7.3f} s   docker   -        target {target}")
        return
    print(
        f"{name:<44} moorage {ours:7.3f} s   docker {theirs:7.3f} s   "
        f"ratio {ours / theirs:5.2f}   target {target}"
    )


def make_context(path: Path, files: int) -> None:
    path.mkdir(parents=True)
    for i in range(files):
        d = path / f"d{i % 20}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_bytes(os.urandom(512))
    (path / "Dockerfile").write_text(DOCKERFILE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-mb", type=int, default=1024)
    a = ap.parse_args()
    have_docker = docker_ok()
    denv = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with tempfile.TemporaryDirectory(prefix="mbench-build-") as tmp:
        t = Path(tmp)
        env = {**os.environ, "MOORAGE_ROOT": str(t / "root"), "MOORAGE_RUNROOT": str(t / "run")}
        sh(MOOR, "import", str(BB_TAR), "bb:1", env=env)
        ctx = t / "ctx"
        make_context(ctx, 2000)
        tag = f"mbench-build-{os.getpid()}"

        # 1. cold builds
        def moor_cold() -> None:
            sh(MOOR, "build", "--no-cache", "-t", tag, str(ctx), env=env)

        def docker_cold() -> None:
            sh(DOCKER or "docker", "build", "--no-cache", "-t", tag, str(ctx), env=denv)

        ours_cold = median(moor_cold, a.runs)
        theirs_cold = median(docker_cold, a.runs) if have_docker else None

        # 2. fully cached rebuilds
        sh(MOOR, "build", "-t", tag, str(ctx), env=env)
        if have_docker:
            sh(DOCKER or "docker", "build", "-t", tag, str(ctx), env=denv)

        def moor_cached() -> None:
            sh(MOOR, "build", "-t", tag, str(ctx), env=env)

        def docker_cached() -> None:
            sh(DOCKER or "docker", "build", "-t", tag, str(ctx), env=denv)

        ours_cached = median(moor_cached, a.runs * 2)
        theirs_cached = median(docker_cached, a.runs * 2) if have_docker else None
        print("moor build, 2,000-file context, COPY + RUN (medians)")
        report("fully cached rebuild", ours_cached, theirs_cached, "<= 0.5")
        report("cold build (--no-cache)", ours_cold, theirs_cold, "<= 1.0")

        # 3. checksum throughput on a big context, in-process and cold (no checksum cache)
        big = t / "big"
        big.mkdir()
        chunk = os.urandom(1 << 20)
        per_file = 64
        for i in range(a.big_mb // per_file):
            with open(big / f"blob{i}", "wb") as f:
                for _ in range(per_file):
                    f.write(chunk)
        sys.path.insert(0, str(REPO / "src"))
        from moorage.build.context import BuildContext

        def checksum() -> None:
            c = BuildContext.open(big, None)
            c.checksum(["."])

        secs = median(checksum, 3)
        mbps = a.big_mb / secs
        print(
            f"context checksum, {a.big_mb} MB in {a.big_mb // per_file} files: {secs:.2f} s = "
            f"{mbps:.0f} MB/s (target >= 300 MB/s)"
        )
        if have_docker:
            subprocess.run([DOCKER or "docker", "rmi", "-f", tag], capture_output=True)


if __name__ == "__main__":
    main()
