"""Registry benchmarks: `moor registry serve` against distribution 2.8, and moor push/pull
against docker push/pull, side by side in one run.

Prints each measure and its ratio. Throughput ratios are moorage / distribution (above 1.0
means moorage serves more); time ratios are moorage / reference (below 1.0 means faster).

1. wrk on loopback: manifest GET req/s, config-blob GET req/s, 200 MB blob GET throughput,
   moorage's registry vs distribution (targets >= 1.0x).
2. `docker push` of a 200 MB image (4 layers) to moorage's registry vs to distribution
   (target <= 1.1x); each push goes to a fresh, empty registry.
3. `moor push` vs `docker push`, and `moor pull` vs `docker pull`, of that image to the same
   (distribution) registry (targets <= 0.7x); moor starts from a store holding the layers
   uncompressed (as `moor load` leaves them), so its push includes the gzip.

Needs root, wrk, docker-registry and a Docker daemon (../shared/tools/start-anchors). Every
server it starts listens on a free loopback port and is stopped at the end; Docker images it
makes are tagged `mbench-registry-*` and removed.

    python bench/registry.py [--runs 3] [--push-runs 5] [--size-mb 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
MOOR = str(Path(sys.executable).parent / "moor")
if not os.path.exists(MOOR):
    MOOR = str(REPO / ".venv" / "bin" / "moor")
WRK = shutil.which("wrk")
DIST = shutil.which("docker-registry")
TAG = f"mbench-registry-{os.getpid()}"
MANIFEST_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)


def sh(*args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> str:
    p = subprocess.run(args, capture_output=True, env=env, input=input, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {p.stderr.decode()[-1500:]}")
    return p.stdout.decode()


def timed(*args: str, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    sh(*args, env=env)
    return time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20) -> None:
    import urllib.request

    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def distribution(root: Path) -> Iterator[str]:
    port = free_port()
    cfg = root / "registry.yml"
    root.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    assert DIST is not None
    proc = subprocess.Popen([DIST, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def moor_registry(root: Path, workers: int) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [MOOR, "registry", "serve", "--addr", f"127.0.0.1:{port}", "--root", str(root),
         "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def wrk(url: str, *, threads: int = 2, conns: int = 32, secs: int = 5) -> tuple[float, float]:
    """(requests/s, bytes/s) from wrk."""
    assert WRK is not None
    out = sh(WRK, f"-t{threads}", f"-c{conns}", f"-d{secs}s", "-H", f"Accept: {MANIFEST_ACCEPT}",
             url)  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    assert m is not None
    scale = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk {url}: {non2xx.group(1)} error responses")
    return rps, float(m.group(1)) * scale


def make_image(work: Path, size_mb: int) -> str:
    """A Docker image of busybox plus four layers of ``size_mb / 4`` MB of half-compressible
    data; returns its tag."""
    ctx = work / "ctx"
    ctx.mkdir()
    bb = work / "bb.tar"
    sh(str(REPO / "scripts" / "base-images"), "busybox", "--tar", str(bb),
       env={**os.environ, "MOOR": MOOR})  # fmt: skip
    base = f"{TAG}-base"
    sh(DOCKER or "docker", "import", str(bb), base)
    per = size_mb * 2**20 // 4
    lines = []
    for i in range(4):
        with open(ctx / f"data{i}", "wb") as f:
            left = per
            while left:
                n = min(left, 1 << 20)
                chunk = os.urandom(n // 2).hex().encode()[:n]  # hex: ~50% compressible
                f.write(chunk)
                left -= len(chunk)
        lines.append(f"COPY data{i} /data{i}")
    (ctx / "Dockerfile").write_text(f"FROM {base}\n" + "\n".join(lines) + "\n")
    tag = f"{TAG}:v1"
    sh(DOCKER or "docker", "build", "-q", "-t", tag, str(ctx),
       env={**os.environ, "DOCKER_BUILDKIT": "0"})  # fmt: skip
    return tag


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def line(name: str, ours: float, theirs: float, unit: str, target: str, higher: bool) -> str:
    ratio = ours / theirs if theirs else float("nan")
    ok = ratio >= float(target[2:]) if higher else ratio <= float(target[2:])
    return (f"{name:<42} moorage {ours:10.1f} {unit:<5} reference {theirs:10.1f} {unit:<5} "
            f"ratio {ratio:5.2f}  (target {target}) {'ok' if ok else 'MISSED'}")  # fmt: skip


def upload_blob(host: str, repo: str, path: Path) -> str:
    import http.client

    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    hostname, port = host.split(":")
    conn = http.client.HTTPConnection(hostname, int(port), timeout=120)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/")
    r = conn.getresponse()
    r.read()
    loc = r.getheader("Location") or ""
    loc = re.sub(r"^https?://[^/]+", "", loc)
    sep = "&" if "?" in loc else "?"
    with path.open("rb") as f:
        conn.request("PUT", f"{loc}{sep}digest={digest}", body=f,
                     headers={"Content-Length": str(path.stat().st_size),
                              "Content-Type": "application/octet-stream"})  # fmt: skip
        r = conn.getresponse()
        r.read()
    if r.status != 201:
        raise RuntimeError(f"blob upload to {host} failed: {r.status}")
    conn.close()
    return digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--push-runs", type=int, default=5, help="docker push runs per registry")
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2, help="moor registry serve --workers")
    ap.add_argument("--secs", type=int, default=5, help="seconds per wrk measure")
    ap.add_argument("--only", choices=["serve", "client"], help="run one half only")
    args = ap.parse_args()
    missing = [n for n, p in (("docker", DOCKER), ("wrk", WRK), ("docker-registry", DIST)) if not p]
    if missing:
        sys.exit(f"bench/registry.py needs {', '.join(missing)}")
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mbench-registry-") as tmp:
        work = Path(tmp)
        print(f"making a {args.size_mb} MB image...", file=sys.stderr)
        image = make_image(work, args.size_mb)
        try:
            if args.only != "client":
                results += serve_bench(work, image, args)
            if args.only != "serve":
                results += client_bench(work, image, args)
        finally:
            sh(DOCKER or "docker", "rmi", "-f", image, f"{TAG}-base")
    print()
    print("\n".join(results))


def serve_bench(work: Path, image: str, args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    blob = work / "blob200"
    with blob.open("wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(1 << 20))
    push_times: dict[str, list[float]] = {"moor": [], "dist": []}
    for run in range(args.push_runs):
        for kind in ("dist", "moor") if run % 2 == 0 else ("moor", "dist"):
            root = work / f"{kind}-push-{run}"
            cm = distribution(root) if kind == "dist" else moor_registry(root, args.workers)
            with cm as host:
                ref = f"{host}/bench/img:v1"
                sh(DOCKER or "docker", "tag", image, ref)
                try:
                    push_times[kind].append(timed(DOCKER or "docker", "push", ref))
                finally:
                    sh(DOCKER or "docker", "rmi", ref)
    print(f"docker push times: {push_times}", file=sys.stderr)
    rates: dict[str, dict[str, float]] = {}
    for kind in ("dist", "moor"):
        root = work / f"{kind}-serve"
        cm = distribution(root) if kind == "dist" else moor_registry(root, args.workers)
        with cm as host:
            ref = f"{host}/bench/img:v1"
            sh(DOCKER or "docker", "tag", image, ref)
            try:
                pushed = sh(DOCKER or "docker", "push", ref)
            finally:
                sh(DOCKER or "docker", "rmi", ref)
            assert "digest:" in pushed
            import json
            import urllib.request

            req = urllib.request.Request(f"http://{host}/v2/bench/img/manifests/v1",
                                         headers={"Accept": MANIFEST_ACCEPT})  # fmt: skip
            with urllib.request.urlopen(req) as resp:
                config = json.loads(resp.read())["config"]["digest"]
            big = upload_blob(host, "bench/img", blob)
            wrk(f"http://{host}/v2/bench/img/manifests/v1", secs=1)  # warm-up
            m_rps, _ = wrk(f"http://{host}/v2/bench/img/manifests/v1", secs=args.secs)
            c_rps, _ = wrk(f"http://{host}/v2/bench/img/blobs/{config}", secs=args.secs)
            _, b_bps = wrk(f"http://{host}/v2/bench/img/blobs/{big}", threads=2, conns=2,
                           secs=args.secs)  # fmt: skip
            rates[kind] = {"manifest": m_rps, "config": c_rps, "blob": b_bps / 2**30}
    d, m = rates["dist"], rates["moor"]
    out.append(
        line("manifest GET (wrk, req/s)", m["manifest"], d["manifest"], "req/s", ">=1.0", True)
    )
    out.append(
        line("config blob GET (wrk, req/s)", m["config"], d["config"], "req/s", ">=1.0", True)
    )
    out.append(
        line(
            f"{args.size_mb} MB blob GET (wrk, GiB/s)", m["blob"], d["blob"], "GiB/s", ">=1.0", True
        )
    )
    out.append(line(f"docker push {args.size_mb} MB image (s)", med(push_times["moor"]),
                    med(push_times["dist"]), "s", "<=1.1", False))  # fmt: skip
    return out


def client_bench(work: Path, image: str, args: argparse.Namespace) -> list[str]:
    archive = work / "image.tar"
    sh(DOCKER or "docker", "save", "-o", str(archive), image)
    times: dict[str, list[float]] = {"moor push": [], "docker push": [], "moor pull": [],
                                     "docker pull": []}  # fmt: skip
    for run in range(args.runs):
        root = work / f"client-{run}"
        with distribution(root / "dist") as host:
            ref = f"{host}/bench/client:v1"
            # docker: push to an empty registry, then pull after removing the image
            sh(DOCKER or "docker", "tag", image, ref)
            times["docker push"].append(timed(DOCKER or "docker", "push", ref))
            sh(DOCKER or "docker", "rmi", ref)
            # moor, into the same registry under another name (no blob is there for it yet:
            # distribution would mount only what this client pushed before, and it has not)
            env = {**os.environ, "MOORAGE_ROOT": str(root / "store"),
                   "MOORAGE_RUNROOT": str(root / "run")}  # fmt: skip
            sh(MOOR, "load", "-i", str(archive), env=env)
            mref = f"{host}/bench/moor:v1"
            sh(MOOR, "tag", image, mref, env=env)
            times["moor push"].append(timed(MOOR, "push", mref, env=env))
            sh(MOOR, "rmi", mref, image, env=env)
            times["moor pull"].append(timed(MOOR, "pull", mref, env=env))
            # docker pull of its own push: remove the image and its layers first
            sh(DOCKER or "docker", "rmi", "-f", image)
            times["docker pull"].append(timed(DOCKER or "docker", "pull", ref))
            sh(DOCKER or "docker", "tag", ref, image)
            sh(DOCKER or "docker", "rmi", ref)
            shutil.rmtree(root / "store", ignore_errors=True)
    print(f"client times: {times}", file=sys.stderr)
    return [
        line(f"moor push vs docker push {args.size_mb} MB (s)", med(times["moor push"]),
             med(times["docker push"]), "s", "<=0.7", False),
        line(f"moor pull vs docker pull {args.size_mb} MB (s)", med(times["moor pull"]),
             med(times["docker pull"]), "s", "<=0.7", False),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
