"""Docker Engine API benchmarks: ``moor system service`` against dockerd, side by side.

Prints medians and ratios (moorage / dockerd; below 1.0 means moorage is faster):

1. ``docker run --rm bb:1 true`` with the same docker CLI, through moorage's socket and
   through dockerd's (default network, and ``--network none`` as moorage has no bridge yet).
   Target: at most 1/2 of dockerd's time.
2. 200 concurrent ``GET /containers/json`` from one client on loopback (aiohttp, one
   connection each), with 5 containers present: errors, p50, p99 and max latency.

Needs root and a running dockerd with ``bb:1`` (../shared/tools/start-anchors); moorage
gets bb:1 from ``docker save`` into a private store. The service is started here and ended
by its PID; every container made here is removed.

    python bench/api.py [--runs 15] [--concurrent 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
DOCKERD_SOCK = "/var/run/docker.sock"
MOOR = next(
    (str(p) for p in (Path(sys.executable).parent / "moor", REPO / ".venv" / "bin" / "moor")
     if p.exists()),
    "moor",
)  # fmt: skip


def sh(args: list[str], env: dict[str, str] | None = None) -> str:
    p = subprocess.run(args, capture_output=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {p.stderr.decode()[-2000:]}")
    return p.stdout.decode()


def timed(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    sh(args, env)
    return time.perf_counter() - t


def docker_env(host: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_CONFIG=str(home / "docker-config"))
    return env


def start_service(env: dict[str, str], sock: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [MOOR, "system", "service", "--host", f"unix://{sock}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("moor system service did not start")
        time.sleep(0.05)
    return proc


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


async def concurrent_list(sock: str, n: int) -> tuple[int, list[float]]:
    import aiohttp

    errors = 0
    latencies: list[float] = []

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        t = time.perf_counter()
        try:
            async with session.get("http://localhost/v1.41/containers/json?all=1") as r:
                await r.read()
                if r.status != 200:
                    errors += 1
        except aiohttp.ClientError:
            errors += 1
        latencies.append(time.perf_counter() - t)

    conn = aiohttp.UnixConnector(path=sock, limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(one(session) for _ in range(n)))
    return errors, latencies


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--concurrent", type=int, default=200)
    a = ap.parse_args()
    if not DOCKER or subprocess.run([DOCKER, "image", "inspect", "bb:1"],
                                    capture_output=True).returncode != 0:  # fmt: skip
        sys.exit("needs a running dockerd with bb:1 (../shared/tools/start-anchors)")
    with tempfile.TemporaryDirectory(prefix="moorage-bench-api-") as tmp:
        work = Path(tmp)
        menv = {**os.environ, "MOORAGE_WARM": "0", "MOORAGE_ROOT": str(work / "root"),
                "MOORAGE_RUNROOT": str(work / "run")}  # fmt: skip
        sh([DOCKER, "save", "-o", str(work / "bb.tar"), "bb:1"])
        sh([MOOR, "load", "-i", str(work / "bb.tar")], menv)
        sock = work / "api.sock"
        proc = start_service(menv, sock)
        ours = docker_env(f"unix://{sock}", work)
        theirs = docker_env(f"unix://{DOCKERD_SOCK}", work)
        made: list[str] = []
        try:
            run = [DOCKER, "run", "--rm", "bb:1", "true"]
            run_none = [DOCKER, "run", "--rm", "--network", "none", "bb:1", "true"]
            for _ in range(2):  # warm both
                timed(run, ours)
                timed(run, theirs)
            t_ours, t_d, t_dn = [], [], []
            for _ in range(a.runs):
                t_ours.append(timed(run, ours))
                t_d.append(timed(run, theirs))
                t_dn.append(timed(run_none, theirs))
            m_ours, m_d, m_dn = (statistics.median(x) for x in (t_ours, t_d, t_dn))
            print(f"docker run --rm bb:1 true ({a.runs} runs, CLI {DOCKER}):")
            print(f"  via moorage          {m_ours * 1000:7.1f} ms")
            print(f"  via dockerd          {m_d * 1000:7.1f} ms   ratio {m_ours / m_d:.2f}"
                  "  (target <= 0.50)")  # fmt: skip
            print(f"  via dockerd, --network none {m_dn * 1000:7.1f} ms   "
                  f"ratio {m_ours / m_dn:.2f}")  # fmt: skip

            for i in range(5):
                made.append(sh([DOCKER, "create", "--name", f"mbench-api-{os.getpid()}-{i}",
                                "bb:1", "true"], ours).strip())  # fmt: skip
            for label, path in (("moorage", str(sock)), ("dockerd", DOCKERD_SOCK)):
                asyncio.run(concurrent_list(path, a.concurrent))  # warm: pool threads open
                t = time.perf_counter()
                errors, lat = asyncio.run(concurrent_list(path, a.concurrent))
                wall = time.perf_counter() - t
                print(
                    f"{a.concurrent} concurrent GET /containers/json via {label}: "
                    f"errors {errors}, p50 {pct(lat, 50) * 1000:.1f} ms, "
                    f"p99 {pct(lat, 99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms, "
                    f"wall {wall * 1000:.0f} ms"
                )
        finally:
            for cid in made:
                subprocess.run([DOCKER, "rm", "-f", cid], env=ours, capture_output=True)
            stop_service(proc)
            # its bridge, firewall table and DNS server go with the store
            subprocess.run([MOOR, "network", "teardown-host"], env=menv, capture_output=True)


if __name__ == "__main__":
    main()
