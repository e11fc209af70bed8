"""Side-by-side benchmarks: moorage against Docker (and Podman) where they are installed.

Prints medians and ratios (moorage time / reference time; below 1.0 means moorage is faster).
Not part of CI. Start the reference tools first with ../shared/tools/start-anchors.

    python bench/run.py [--only load_save|cli|containers|registry|network] [--runs N]
                         [--size-mb 200]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MOOR = shutil.which("moor") or str(Path(sys.executable).parent / "moor")
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")


def sh(*args: str, env: dict[str, str] | None = None, quiet: bool = True) -> str:
    p = subprocess.run(args, capture_output=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {p.stderr.decode()[-2000:]}")
    return p.stdout.decode()


def docker_ok() -> bool:
    if not DOCKER:
        return False
    return subprocess.run([DOCKER, "info"], capture_output=True, check=False).returncode == 0


def median_time(
    fn: Callable[[], object], runs: int, prepare: Callable[[], object] | None = None
) -> float:
    times = []
    for _ in range(runs):
        if prepare:
            prepare()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def report(name: str, ours: float, theirs: float | None, ref: str, target: str) -> None:
    if theirs:
        print(
            f"{name:<34} moorage {ours * 1000:8.1f} ms   {ref} {theirs * 1000:8.1f} ms   "
            f"ratio {ours / theirs:5.2f}   (target {target})"
        )
    else:
        print(f"{name:<34} moorage {ours * 1000:8.1f} ms   ({ref} not available; target {target})")


def make_rootfs(path: Path, size_mb: int) -> None:
    """A single-layer rootfs of ``size_mb`` MB of incompressible files (1 MB each)."""
    chunk = os.urandom(1 << 20)
    with tarfile.open(path, "w") as tf:
        for i in range(size_mb):
            ti = tarfile.TarInfo(f"data/{i // 50:02d}/file{i:04d}")
            ti.size = len(chunk)
            # vary each file so nothing deduplicates
            tf.addfile(ti, io.BytesIO(i.to_bytes(4, "big") + chunk[4:]))


def bench_load_save(runs: int, size_mb: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="moor-bench-"))
    env = {**os.environ, "MOORAGE_ROOT": str(work / "root"), "MOORAGE_RUNROOT": str(work / "run")}
    try:
        rootfs = work / "rootfs.tar"
        make_rootfs(rootfs, size_mb)
        sh(MOOR, "import", str(rootfs), "bench/big:1", env=env)
        archive = work / "image.tar"
        have_docker = docker_ok()
        if have_docker:
            assert DOCKER
            sh(DOCKER, "import", str(rootfs), "bench/big:1")
            sh(DOCKER, "save", "-o", str(archive), "bench/big:1")
        else:
            sh(MOOR, "save", "-o", str(archive), "bench/big:1", env=env)
        out = work / "saved.tar"

        def moor_rmi() -> None:
            subprocess.run([MOOR, "rmi", "bench/big:1"], env=env, capture_output=True, check=False)

        def docker_rmi() -> None:
            assert DOCKER
            subprocess.run([DOCKER, "rmi", "bench/big:1"], capture_output=True, check=False)

        drop = _drop_caches
        ours = median_time(
            lambda: sh(MOOR, "load", "-i", str(archive), env=env),
            runs,
            prepare=lambda: (moor_rmi(), drop()),
        )
        theirs = None
        if have_docker:
            assert DOCKER
            theirs = median_time(
                lambda: sh(DOCKER, "load", "-i", str(archive)),
                runs,
                prepare=lambda: (docker_rmi(), drop()),
            )
        report(f"load -i ({size_mb} MB, 1 layer)", ours, theirs, "docker", "<= 0.8")
        ours = median_time(
            lambda: sh(MOOR, "save", "-o", str(out), "bench/big:1", env=env), runs, prepare=drop
        )
        theirs = None
        if have_docker:
            assert DOCKER
            theirs = median_time(
                lambda: sh(DOCKER, "save", "-o", str(out), "bench/big:1"), runs, prepare=drop
            )
        report(f"save -o ({size_mb} MB, 1 layer)", ours, theirs, "docker", "<= 0.8")
        if have_docker:
            docker_rmi()
    finally:
        subprocess.run(
            [MOOR, "--root", str(work / "root"), "system", "prune", "-a", "-f"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)


def _drop_caches() -> None:
    """Start each timed run with the same (cold-ish) page cache, for both tools."""
    os.sync()


def bench_cli(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="moor-bench-"))
    env = {**os.environ, "MOORAGE_ROOT": str(work / "root"), "MOORAGE_RUNROOT": str(work / "run")}
    try:
        rootfs = work / "bb.tar"
        sh(str(REPO / "scripts" / "base-images"), "busybox", "--tar", str(rootfs))
        for i in range(100):
            sh(MOOR, "import", "-c", f"LABEL n={i}", str(rootfs), f"img{i}:v{i}", env=env)
        ours = median_time(lambda: sh(MOOR, "--version", env=env), runs)
        report("moor --version", ours, None, "-", "< 60 ms")
        ours = median_time(lambda: sh(MOOR, "images", env=env), runs)
        theirs = None
        if docker_ok():
            assert DOCKER
            theirs = median_time(lambda: sh(DOCKER, "images"), runs)
        report("images (100 images)", ours, theirs, "docker", "< 150 ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_containers(runs: int) -> None:
    """run --rm, 50 x run -d + rm -f, idle memory, run breakdown: see bench/containers.py."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import containers

    containers.main(runs)


def bench_network(runs: int) -> None:
    """run --rm with a published port and on the default bridge, 1 GiB through a published
    port, the native backend's setup + teardown: see bench/network.py."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import network

    sys.argv = [sys.argv[0], "--runs", str(runs)]
    network.main()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=["load_save", "cli", "containers", "registry", "network"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=200)
    args = ap.parse_args()
    if args.only in (None, "cli"):
        bench_cli(max(args.runs, 20))
    if args.only in (None, "load_save"):
        bench_load_save(args.runs, args.size_mb)
    if args.only in (None, "containers"):
        bench_containers(max(args.runs, 15))
    if args.only in (None, "registry"):
        # its own process: it starts servers and wants its own argument defaults
        subprocess.run(
            [sys.executable, str(HERE / "registry.py"), "--runs", str(min(args.runs, 3)),
             "--size-mb", str(args.size_mb)],
            check=False,
        )  # fmt: skip
    if args.only in (None, "network"):
        bench_network(max(args.runs, 15))


if __name__ == "__main__":
    main()
