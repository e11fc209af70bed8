"""Image endpoints of the Docker Engine API: ``moor system service`` against dockerd, side by
side, with the same docker CLI (classic builder, ``DOCKER_BUILDKIT=0``).

Prints medians and ratios (moorage / dockerd; below 1.0 means moorage is faster):

1. ``docker build --no-cache`` of a small busybox Dockerfile (COPY + one RUN + CMD).
2. ``docker push`` of bb:1 under a fresh repository name and ``docker pull`` of it after
   ``rmi``, against one ``moor registry serve`` on 127.0.0.1 started here. After the
   first round the registry has the layer (push mounts it from the previous repository)
   and the puller keeps it (bb:1 stays), so these measure the API and manifest round
   trips of each engine, not blob transfer (bench/registry.py measures that).

Needs root and a running dockerd with ``bb:1`` (../shared/tools/start-anchors). The service
and the registry are started here and ended by their PIDs; every image tagged in dockerd
here is removed (each build's image by its id).

    python bench/api_images.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import DOCKER, MOOR, docker_env, sh, start_service, stop_service, timed


def start_registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [MOOR, "registry", "serve", "--addr", "127.0.0.1:0", "--root", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 20)
    line = proc.stderr.readline() if ready else b""
    m = re.search(rb"https?://[^ ]*:(\d+)", line)
    if m is None:
        stop_service(proc)
        raise RuntimeError(f"registry did not start: {line!r}")
    return proc, f"127.0.0.1:{int(m.group(1))}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    if not DOCKER or subprocess.run([DOCKER, "image", "inspect", "bb:1"],
                                    capture_output=True).returncode != 0:  # fmt: skip
        sys.exit("needs a running dockerd with bb:1 (../shared/tools/start-anchors)")
    with tempfile.TemporaryDirectory(prefix="moorage-bench-api-images-") as tmp:
        work = Path(tmp)
        menv = {**os.environ, "MOORAGE_ROOT": str(work / "root"),
                "MOORAGE_RUNROOT": str(work / "run")}  # fmt: skip
        sh([DOCKER, "save", "-o", str(work / "bb.tar"), "bb:1"])
        sh([MOOR, "load", "-i", str(work / "bb.tar")], menv)
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "data").write_bytes(os.urandom(1 << 20))
        (ctx / "Dockerfile").write_text(
            'FROM bb:1\nCOPY data /data\nRUN wc -c /data > /size\nCMD ["cat", "/size"]\n'
        )
        sock = work / "api.sock"
        proc = start_service(menv, sock)
        registry, reg = start_registry(work / "registry")
        sides = {
            "moorage": {**docker_env(f"unix://{sock}", work), "DOCKER_BUILDKIT": "0"},
            "dockerd": {**docker_env("unix:///var/run/docker.sock", work), "DOCKER_BUILDKIT": "0"},
        }
        tag = f"mbench-build-{os.getpid()}:1"
        made: dict[str, list[str]] = {k: [] for k in sides}
        try:
            results: dict[str, dict[str, list[float]]] = {k: {} for k in sides}
            for i in range(a.runs + 1):  # the first round warms both
                for side, env in sides.items():
                    iid = work / f"iid-{side}-{i}"
                    build = [DOCKER, "build", "-q", "--no-cache", "--iidfile", str(iid),
                             "-t", tag, str(ctx)]  # fmt: skip
                    t_build = timed(build, env)
                    made[side] += [tag, iid.read_text().strip()]
                    name = f"{reg}/mbench-{side}-{os.getpid()}-{i}/bb:1"
                    sh([DOCKER, "tag", "bb:1", name], env)
                    made[side].append(name)
                    t_push = timed([DOCKER, "push", name], env)
                    sh([DOCKER, "rmi", name], env)
                    t_pull = timed([DOCKER, "pull", name], env)
                    if i == 0:
                        continue
                    for key, t in (("build", t_build), ("push", t_push), ("pull", t_pull)):
                        results[side].setdefault(key, []).append(t)
            print(f"{a.runs} runs, CLI {DOCKER}, registry moor registry serve on {reg}:")
            for key, what in (
                ("build", "docker build --no-cache (COPY 1 MB, RUN, CMD)"),
                ("push", "docker push bb:1 (new repo, layer mounted)"),
                ("pull", "docker pull bb:1 (after rmi, layer kept)"),
            ):
                ours = statistics.median(results["moorage"][key])
                theirs = statistics.median(results["dockerd"][key])
                print(f"  {what:48s} moorage {ours * 1000:7.1f} ms  dockerd "
                      f"{theirs * 1000:7.1f} ms  ratio {ours / theirs:.2f}")  # fmt: skip
        finally:
            for side, env in sides.items():
                for name in dict.fromkeys(made[side]):
                    subprocess.run([DOCKER, "rmi", "-f", name], env=env, capture_output=True)
            stop_service(registry)
            stop_service(proc)
            sh([MOOR, "network", "teardown-host"], menv)


if __name__ == "__main__":
    main()
