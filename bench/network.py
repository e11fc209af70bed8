"""Network benchmarks: moorage against Docker, side by side in one run.

Prints medians and ratios (moorage / docker; below 1.0 means moorage is faster):

1. ``run --rm -p 127.0.0.1:X:80 bb:1 true`` (a fresh free port X each time);
2. ``run --rm bb:1 true`` on the default bridge;
3. throughput through a published port on loopback: a container serves a 1 GiB file from
   tmpfs (busybox httpd, sendfile), the host GETs it from 127.0.0.1:X (higher is better;
   the ratio printed is moorage / docker; best of three);
4. the native backend's own setup + teardown of one container's network, in process
   (namespace, veth, address, route, port map elements, DNS file; then all undone), and
   how long importing the network modules takes.

Needs root and the busybox image made by ``../shared/tools/start-anchors`` (docker's
``bb:1``, and /tmp/moorage-anchors/bb-rootfs.tar for moorage's private store). Traffic goes
only to 127.0.0.1 and to the containers made here; everything is removed at the end.

    python bench/network.py [--runs 15] [--gib 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
BB_TAR = Path("/tmp/moorage-anchors/bb-rootfs.tar")
MOOR = str(Path(sys.executable).parent / "moor")
if not os.path.exists(MOOR):
    MOOR = str(REPO / ".venv" / "bin" / "moor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    p = subprocess.run(args, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.decode()[-500:]}")
    return p.stdout.decode()


def median_time(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def report(name: str, ours: float, theirs: float | None, target: str, unit: str = "ms") -> None:
    scale = 1000 if unit == "ms" else 1
    if theirs:
        print(f"{name:<44} moorage {ours * scale:8.1f} {unit}   docker {theirs * scale:8.1f} "
              f"{unit}   ratio {ours / theirs:5.2f}   (target {target})")  # fmt: skip
    else:
        print(f"{name:<44} moorage {ours * scale:8.1f} {unit}   (docker not available)")


def read_all(port: int, timeout: float = 60) -> tuple[int, float]:
    """GET /f from 127.0.0.1:port (retrying until the server listens); read to EOF."""
    deadline = time.monotonic() + timeout
    buf = bytearray(1 << 20)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.settimeout(60)
            t = time.perf_counter()
            s.sendall(b"GET /f HTTP/1.0\r\n\r\n")
            total = 0
            while True:
                n = s.recv_into(buf)
                if not n:
                    break
                total += n
            dt = time.perf_counter() - t
            s.close()
            if total > 1 << 20:
                return total, dt
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing came from 127.0.0.1:{port}")
        time.sleep(0.05)


def throughput(cli: list[str], image: str, env: dict[str, str] | None, gib: int) -> float:
    """Bytes per second of the best of three 1 GiB transfers out of a container."""
    best = 0.0
    for _ in range(3):
        port = free_port()
        # busybox httpd sends a file from tmpfs with sendfile(2)
        cid = run([*cli, "run", "-d", "-p", f"127.0.0.1:{port}:80",
                   "--tmpfs", f"/srv:size={gib * 1024 + 64}m", image, "sh", "-c",
                   f"dd if=/dev/zero of=/srv/f bs=1M count={gib * 1024} 2>/dev/null && "
                   "exec httpd -f -p 80 -h /srv"], env).strip()  # fmt: skip
        try:
            total, dt = read_all(port)
            if total < gib << 30:
                raise RuntimeError(f"short transfer: {total} bytes")
            best = max(best, total / dt)
        finally:
            subprocess.run([*cli, "rm", "-f", cid], env=env, capture_output=True)
    return best


def in_process(env: dict[str, str], runs: int) -> None:
    """The native backend's setup + teardown of one container's network, timed in process."""
    code = f"""
import os, statistics, time
from pathlib import Path
import moorage.engine.containers.service
t = time.perf_counter()
import moorage.engine.network.service, moorage.engine.network.native, moorage.engine.network.ports
imports = time.perf_counter() - t
from moorage.engine import Engine
from moorage.engine.containers.service import ContainerService
from moorage.engine.containers.spec import ContainerSpec
eng = Engine(Path(os.environ["MOORAGE_ROOT"]), Path(os.environ["MOORAGE_RUNROOT"]))
svc = ContainerService(eng.store, eng.images)
rec = svc.create(ContainerSpec(image="bb:1", publish=("127.0.0.1:{free_port()}:80",)))
svc.networks.setup(rec, {{}}, svc); svc.networks.teardown(rec.id)
up, down = [], []
for _ in range({runs}):
    t0 = time.perf_counter(); svc.networks.setup(rec, {{}}, svc)
    t1 = time.perf_counter(); svc.networks.teardown(rec.id); down.append(time.perf_counter() - t1)
    up.append(t1 - t0)
svc.remove(rec.id)
print(statistics.median(up), statistics.median(down), imports)
"""
    out = run([sys.executable, "-c", code], env).split()
    up, down, imports = (float(x) for x in out)
    print(f"{'native setup + teardown, in process':<44} {(up + down) * 1000:6.1f} ms "
          f"(setup {up * 1000:.1f}, teardown {down * 1000:.1f}; target <= 30 ms)")  # fmt: skip
    print(f"{'import of the network modules (run path)':<44} {imports * 1000:6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--gib", type=int, default=1)
    args = ap.parse_args()
    if not BB_TAR.exists():
        print(f"network benchmark: {BB_TAR} missing (start the anchors first); skipped")
        return
    docker_ok = bool(DOCKER) and subprocess.run(
        [DOCKER or "docker", "image", "inspect", "bb:1"], capture_output=True
    ).returncode == 0  # fmt: skip
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    with tempfile.TemporaryDirectory(prefix="mbench-net-") as work:
        env = {**os.environ, "MOORAGE_ROOT": f"{work}/root", "MOORAGE_RUNROOT": f"{work}/run"}
        env.setdefault("MOORAGE_WARM", "1")
        cold_env = {**env, "MOORAGE_WARM": "0"}  # every command pays for Python's start
        moor = [MOOR]
        docker = [DOCKER or "docker"]
        try:
            run([*moor, "import", "-c", 'CMD ["sh"]', str(BB_TAR), "bb:1"], env)
            run([*moor, "system", "warm", "--start"], env)
            for name, extra in (("run --rm -p 127.0.0.1:X:80 bb:1 true", True),
                                ("run --rm bb:1 true (default bridge)", False)):  # fmt: skip

                def once(cli: list[str], e: dict[str, str] | None, extra: bool = extra) -> None:
                    ports = ["-p", f"127.0.0.1:{free_port()}:80"] if extra else []
                    run([*cli, "run", "--rm", *ports, "bb:1", "true"], e)

                ours = median_time(lambda: once(moor, env), args.runs)
                theirs = median_time(lambda: once(docker, None), args.runs) if docker_ok else None
                report(name, ours, theirs, "<= 0.33")
                cold = median_time(lambda: once(moor, cold_env), args.runs)
                report(f"{name.partition(' bb:1')[0]}, MOORAGE_WARM=0", cold, theirs, "<= 0.33")
            ours_bps = throughput(moor, "bb:1", env, args.gib)
            theirs_bps = throughput(docker, "bb:1", None, args.gib) if docker_ok else None
            if theirs_bps:
                print(f"{'1 GiB through 127.0.0.1:X (published port)':<44} moorage "
                      f"{ours_bps / 1e9:6.2f} GB/s   docker {theirs_bps / 1e9:6.2f} GB/s   "
                      f"ratio {ours_bps / theirs_bps:5.2f}   (target >= 0.9)")  # fmt: skip
            else:
                print(f"1 GiB through a published port: moorage {ours_bps / 1e9:.2f} GB/s")
            in_process(env, args.runs)
        finally:
            subprocess.run([*moor, "network", "teardown-host"], env=env, capture_output=True)
            subprocess.run([*moor, "system", "warm", "--stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
