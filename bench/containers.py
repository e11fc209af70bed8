"""Container lifecycle benchmarks: moorage against Docker, Podman and a bare ``runc run``.

Prints medians and ratios (moorage / reference; below 1.0 means moorage is faster):

1. ``run --rm --network none bb:1 true``: moorage, docker, podman, and bare ``runc run`` of
   two prepared bundles over the same busybox rootfs, running ``/bin/true`` with no terminal
   in a new netns: the equivalent one (``runc*``: the config.json moorage itself writes for
   this container, with Docker's seccomp profile, masked paths and mounts; the target's
   reference) and ``runc spec``'s default (no seccomp filter: cheaper for runc to set up).
   Every timed command starts after the same pause (``PAUSE``): on this VM a ``runc run``
   that directly follows another one is ~25% faster (the memory the first freed is still
   backed by the host: free page reporting), which the reference used to get and the tools
   did not. ``runc*`` run again right after itself is printed beside, for comparison.
2. 50 ``run -d ... sleep 300`` one after another, then one ``rm -f`` with all 50 ids
   (podman gets ``rm -f -t 0``: its ``rm -f`` first waits 10 s for SIGTERM, Docker's kills).
3. Idle memory per running container of the per-container helper processes (conmon for
   moorage and podman, containerd-shim-runc-v2 for docker): PSS from /proc/PID/smaps_rollup.
4. Where moorage's ``run --rm true`` time goes (in-process timers, ``-X importtime``).

A tool that is missing (or lacks the image) is skipped. Needs root. Every container gets a
``mbench-<pid>-`` name and is removed at the end; moorage uses a private store in a tmp dir.

    python bench/containers.py [--runs 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
PODMAN = shutil.which("podman")
PODMAN_GLOBAL = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
RUNC = shutil.which("runc") or next(
    (p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.path.exists(p)), None
)
BB_TAR = Path("/tmp/moorage-anchors/bb-rootfs.tar")
PREFIX = f"mbench-{os.getpid()}-"
BATCH = 50  # containers in the start/remove benchmark
IDLE = 10  # containers in the memory benchmark
TIMEOUT = 180
PAUSE = 0.25  # s of quiet before each timed `run --rm true` (see bench_run_rm)


def _moor() -> str:
    for cand in (Path(sys.executable).parent / "moor", REPO / ".venv" / "bin" / "moor"):
        if cand.exists():
            return str(cand)
    return shutil.which("moor") or "moor"


MOOR = _moor()


def _moor_python() -> str:
    """The interpreter moorage is installed in (the ``moor`` script's shebang)."""
    try:
        first = Path(MOOR).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return sys.executable
    # pip's script names the interpreter; moorage's launcher adds -S after it
    return first[2:].split()[0] if first.startswith("#!") else sys.executable


# ---- helpers ----------------------------------------------------------------------------------


def sh(args: Sequence[str], env: dict[str, str] | None = None) -> str:
    p = subprocess.run(
        list(args), capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=TIMEOUT
    )
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.decode()[-800:]}")
    return p.stdout.decode()


def timed(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    out = sh(args, env)
    return time.perf_counter() - t, out


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(name: str, ours: float, theirs: float | None, ref: str, target: str) -> None:
    """One line in bench/run.py's style; times in seconds."""
    if theirs:
        print(
            f"{name:<34} moorage {ours * 1000:8.1f} ms   {ref} {theirs * 1000:8.1f} ms   "
            f"ratio {ours / theirs:5.2f}   (target {target})"
        )
    else:
        print(f"{name:<34} moorage {ours * 1000:8.1f} ms   ({ref} not available; target {target})")


def _cmdlines() -> dict[int, str]:
    out = {}
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                out[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return out


def procs_matching(markers: Sequence[str]) -> dict[int, str]:
    procs = _cmdlines()
    # moorage's warm process and the child it forks ahead for the next command stay on
    # purpose (until idle; both in /); a child running a command (in its client's working
    # directory, as this benchmark's is not /) is the command's own work and does count
    warm = {p for p, c in procs.items() if "moorage.cli.warm" in c and _cwd(p) == "/"}
    return {p: c for p, c in procs.items() if p not in warm and any(m in c for m in markers if m)}


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def settle(markers: Sequence[str], timeout: float = 15.0) -> float:
    """Wait until no process mentions any marker (a container id, a private store path):
    the tool's background work for a container is over. Returns how long that took."""
    t = time.perf_counter()
    while procs_matching(markers):
        if time.perf_counter() - t > timeout:
            break
        time.sleep(0.005)
    return time.perf_counter() - t


def _mem_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in kB."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _exe_name(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


# ---- the tools ----------------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    argv: list[str]
    image: str
    helper: str  # executable name of the per-container helper process
    env: dict[str, str] | None = None
    markers: list[str] = field(default_factory=list)  # always-present settle markers
    uses_cidfile: bool = True
    rm_extra: list[str] = field(default_factory=list)
    counter: int = 0

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    def fresh_name(self, tag: str) -> str:
        self.counter += 1
        return f"{PREFIX}{self.name[:1]}{tag}{self.counter}"

    def run_rm_true(self, work: Path) -> tuple[float, list[str]]:
        """Time one ``run --rm --network none IMAGE true``; returns (seconds, settle markers)."""
        extra: list[str] = []
        cidfile = work / f"{self.name}.cid"
        if self.uses_cidfile:
            cidfile.unlink(missing_ok=True)
            extra = ["--cidfile", str(cidfile)]
        args = self.cmd(
            "run", "--rm", "--name", self.fresh_name("r"), *extra,
            "--network", "none", self.image, "true",
        )  # fmt: skip
        dt, _ = timed(args, self.env)
        markers = list(self.markers)
        if self.uses_cidfile:
            with contextlib.suppress(OSError):
                markers.append(cidfile.read_text().strip())
        return dt, markers

    def run_detached(self, tag: str) -> str:
        out = sh(
            self.cmd(
                "run", "-d", "--name", self.fresh_name(tag), "--network", "none",
                self.image, "sleep", "300",
            ),
            self.env,
        )  # fmt: skip
        return out.strip().splitlines()[-1]

    def rm_f(self, ids: Sequence[str]) -> None:
        sh(self.cmd("rm", "-f", *self.rm_extra, *ids), self.env)

    def leftovers(self) -> list[str]:
        if self.name.startswith("moorage"):
            out = sh(self.cmd("ps", "-aq", "--no-trunc"), self.env)
        else:
            out = sh(self.cmd("ps", "-aq", "--no-trunc", "--filter", f"name={PREFIX}"), self.env)
        return out.split()


def _docker_tool() -> tuple[Tool | None, str]:
    if not DOCKER:
        return None, "not installed"
    if subprocess.run([DOCKER, "info"], capture_output=True).returncode != 0:
        return None, "daemon not running"
    if subprocess.run([DOCKER, "image", "inspect", "bb:1"], capture_output=True).returncode:
        return None, "no bb:1 image"
    return Tool("docker", [DOCKER], "bb:1", "containerd-shim-runc-v2"), ""


def _podman_tool() -> tuple[Tool | None, str]:
    if not PODMAN:
        return None, "not installed"
    argv = [PODMAN, *PODMAN_GLOBAL]
    p = subprocess.run([*argv, "image", "exists", "localhost/bb:1"], capture_output=True)
    if p.returncode != 0:
        return None, "no localhost/bb:1 image (or podman broken)"
    return Tool("podman", argv, "localhost/bb:1", "conmon", rm_extra=["-t", "0"]), ""


def _moorage_tool(work: Path, warm: bool = True) -> Tool:
    """moorage as installed (warm start on, its warm process started first), or with warm
    start off (``MOORAGE_WARM=0``: every command pays for Python and its imports)."""
    env = {
        **os.environ,
        "MOORAGE_ROOT": str(work / "root"),
        "MOORAGE_RUNROOT": str(work / "run"),
        "MOORAGE_WARM": "1" if warm else "0",
        "MOORAGE_WARM_IDLE": "600",
    }
    name = "moorage" if warm else "moorage-cold"
    tool = Tool(name, [MOOR], "bb:1", "conmon", env=env, uses_cidfile=False)
    # no --cidfile in moorage: everything it leaves running mentions the private store paths
    tool.markers = [str(work)]
    if warm:
        sh(tool.cmd("import", "-c", 'CMD ["sh"]', str(BB_TAR), "bb:1"), env)
        sh(tool.cmd("system", "warm", "--start"), env)
    return tool


def _cleanup_tool(tool: Tool) -> None:
    try:
        ids = tool.leftovers()
        if ids:
            subprocess.run(
                tool.cmd("rm", "-f", *tool.rm_extra, *ids),
                env=tool.env, capture_output=True, timeout=TIMEOUT,
            )  # fmt: skip
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"  (cleanup of {tool.name} containers failed: {e})")


def _cleanup_moorage_store(work: Path) -> None:
    root = str(work)
    env = {**os.environ, "MOORAGE_RUNROOT": str(work / "run"), "MOORAGE_WARM": "0"}
    subprocess.run([MOOR, "system", "warm", "--stop"], env=env, capture_output=True)
    settle([root], timeout=10)
    # anything still running from our private store was started by us: end it by pid
    for pid in procs_matching([root]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(root)]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


# ---- bare runc -------------------------------------------------------------------------------


def _runc_bundle(work: Path) -> Path:
    bundle = work / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    sh(["tar", "-C", str(rootfs), "-xf", str(BB_TAR)])
    assert RUNC
    sh([RUNC, "spec", "--bundle", str(bundle)])
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    ns = cfg["linux"].setdefault("namespaces", [])
    if not any(n.get("type") == "network" and not n.get("path") for n in ns):
        ns.append({"type": "network"})
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    return bundle


def _moorage_bundle(tool: Tool, work: Path, rootfs: Path) -> Path | None:
    """A bundle with the config.json moorage itself writes for ``run bb:1`` (seccomp profile,
    default capabilities, its mounts), over the same plain rootfs: what runc alone costs
    for moorage's container."""
    try:
        cid = tool.run_detached("c")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"  (no moorage config.json for bare runc: {e})")
        return None
    bundle = work / "bundle-moorage"
    bundle.mkdir()
    try:
        userdata = work / "root" / "containers" / cid
        cfg = json.loads((userdata / "config.json").read_text())
        for m in cfg.get("mounts", []):
            src = Path(m.get("source", ""))
            if src.parent == userdata and src.is_file():  # /etc/hosts, hostname, resolv.conf
                shutil.copy(src, bundle / src.name)
                m["source"] = str(bundle / src.name)
    finally:
        tool.rm_f([cid])
        settle([*tool.markers, cid])
    cfg["root"] = {"path": str(rootfs), "readonly": False}
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg["linux"].pop("cgroupsPath", None)  # runc then uses /<container id>
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    return bundle


class BareRunc:
    def __init__(self, work: Path) -> None:
        self.state = work / "runc-state"
        self.bundle = _runc_bundle(work)
        self.rootfs = self.bundle / "rootfs"
        self.n = 0

    def run_true(self, bundle: Path | None = None) -> float:
        assert RUNC
        self.n += 1
        args = [RUNC, "--root", str(self.state), "run", "-b", str(bundle or self.bundle)]
        dt, _ = timed([*args, f"{PREFIX}x{self.n}"])
        return dt

    def cleanup(self) -> None:
        if not RUNC or not self.state.exists():
            return
        p = subprocess.run([RUNC, "--root", str(self.state), "list", "-q"], capture_output=True)
        for cid in p.stdout.decode().split():
            subprocess.run(
                [RUNC, "--root", str(self.state), "delete", "--force", cid], capture_output=True
            )


# ---- 1. run --rm true ----------------------------------------------------------------------------


def bench_run_rm(tools: list[Tool], runc: BareRunc | None, runs: int, work: Path) -> None:
    times: dict[str, list[float]] = {t.name: [] for t in tools}
    tails: dict[str, list[float]] = {t.name: [] for t in tools}
    runc_times: list[float] = []
    runc_moor_times: list[float] = []
    runc_again_times: list[float] = []  # runc* right after another runc* run
    moor_bundle = _moorage_bundle(tools[0], work, runc.rootfs) if runc else None
    failed: set[str] = set()
    for i in range(runs + 1):  # the first round warms caches and is not counted
        for tool in tools:
            if tool.name in failed:
                continue
            settle(tool.markers)
            time.sleep(PAUSE)
            try:
                dt, markers = tool.run_rm_true(work)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"  {tool.name}: run --rm failed, dropping it: {e}")
                failed.add(tool.name)
                continue
            tail = settle(markers)
            if i:
                times[tool.name].append(dt)
                tails[tool.name].append(tail)
        if runc is not None:
            time.sleep(PAUSE)
            dt = runc.run_true()
            if i:
                runc_times.append(dt)
            if moor_bundle is not None:
                time.sleep(PAUSE)
                dt = runc.run_true(moor_bundle)
                again = runc.run_true(moor_bundle)  # no pause: the state the old bench had
                if i:
                    runc_moor_times.append(dt)
                    runc_again_times.append(again)
    print(f"\n== run --rm --network none bb:1 true (median of {runs}) ==")
    ours = med(times["moorage"])
    ref = {n: med(v) for n, v in times.items() if n != "moorage" and v}
    # the "equivalent prepared bundle": the config.json moorage writes for this
    # container (Docker's seccomp profile, capabilities, masked paths, mounts, cgroup), over
    # the same rootfs; `runc spec`'s default (no seccomp, fewer mounts) is printed beside it
    same = med(runc_moor_times) if runc_moor_times else None
    spec = med(runc_times) if runc_times else None
    report("run --rm true", ours, same, "runc* ", "<= 2.0")
    report("run --rm true", ours, spec, "runc  ", "-")
    again = med(runc_again_times) if runc_again_times else None
    report("run --rm true", ours, again, "runc*²", "-")
    report("run --rm true", ours, ref.get("docker"), "docker", "<= 0.33")
    report("run --rm true", ours, ref.get("podman"), "podman", "-")
    if times.get("moorage-cold"):
        cold = med(times["moorage-cold"])
        report("run --rm true, MOORAGE_WARM=0", cold, ref.get("docker"), "docker", "<= 0.33")
        report("run --rm true, MOORAGE_WARM=0", cold, same, "runc* ", "<= 2.0")
    print(
        "  runc*: bare `runc run` of a bundle with moorage's own config.json for this container"
        " (the equivalent bundle); runc: of `runc spec`'s default config (no seccomp filter);"
        f" each after {PAUSE * 1000:.0f} ms of quiet, as every tool; runc*²: runc* right after"
        " another runc* run (faster here: see the module's docstring)"
    )
    print(
        "  background work after the command returned (median): "
        + "   ".join(f"{n} {med(v) * 1000:.1f} ms" for n, v in tails.items() if v)
    )


# ---- 2. 50 x run -d, then rm -f -----------------------------------------------------------------


def bench_batch(tools: list[Tool], reps: int) -> None:
    res: dict[str, dict[str, list[float]]] = {
        t.name: {"start": [], "rm": [], "tail": []} for t in tools
    }
    failed: set[str] = set()
    for _ in range(reps):  # tools take turns, so a busy moment does not hit just one of them
        for tool in tools:
            if tool.name in failed:
                continue
            r = res[tool.name]
            settle(tool.markers)
            ids: list[str] = []
            try:
                t = time.perf_counter()
                for _ in range(BATCH):
                    ids.append(tool.run_detached("b"))
                t_start = time.perf_counter() - t
                t = time.perf_counter()
                tool.rm_f(ids)
                t_rm = time.perf_counter() - t
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"  {tool.name}: batch failed: {e}")
                _cleanup_tool(tool)
                failed.add(tool.name)
                continue
            r["start"].append(t_start)
            r["rm"].append(t_rm)
            r["tail"].append(settle([*tool.markers, *ids], timeout=60))
            left = [c for c in tool.leftovers() if c in ids]
            if left:
                print(f"  {tool.name}: {len(left)} containers left after rm -f")
                _cleanup_tool(tool)
    print(
        f"\n== {BATCH} x run -d --network none bb:1 sleep 300, then one rm -f with all {BATCH} ids"
        f" (median of {reps}; podman: rm -f -t 0) =="
    )
    ours = res["moorage"]
    if not ours["start"]:
        print("  (moorage failed; no comparison)")
        return
    for key, label in (("start", f"{BATCH} x run -d"), ("rm", f"rm -f ({BATCH} ids)")):
        for ref in ("docker", "podman"):
            theirs = med(res[ref][key]) if ref in res and res[ref][key] else None
            report(label, med(ours[key]), theirs, ref, "-")
    total = {n: med(r["start"]) + med(r["rm"]) for n, r in res.items() if r["start"]}
    for ref, target in (("docker", "<= 0.5"), ("podman", "-")):
        report(f"{BATCH} x run -d + rm -f, total", total["moorage"], total.get(ref), ref, target)
    if "moorage-cold" in total:
        report(
            f"{BATCH} x run -d + rm -f, WARM=0", total["moorage-cold"], total.get("docker"),
            "docker", "<= 0.5",
        )  # fmt: skip
    print(
        "  per container: "
        + "   ".join(
            f"{n} run -d {med(r['start']) / BATCH * 1000:.0f} ms, "
            f"rm {med(r['rm']) / BATCH * 1000:.0f} ms"
            for n, r in res.items()
            if r["start"]
        )
    )
    print(
        "  background work after rm -f returned (median): "
        + "   ".join(f"{n} {med(r['tail']) * 1000:.0f} ms" for n, r in res.items() if r["tail"])
    )


# ---- 3. idle memory per container ----------------------------------------------------------------


def bench_memory(tools: list[Tool]) -> None:
    print(f"\n== idle memory per running container ({IDLE} x sleep 300, helper processes only) ==")
    per: dict[str, tuple[float, float, int]] = {}
    for tool in tools:
        settle(tool.markers)
        ids: list[str] = []
        try:
            for _ in range(IDLE):
                ids.append(tool.run_detached("m"))
            time.sleep(1.0)  # let the helpers finish their start-up work
            procs = _cmdlines()
            helpers = [
                p
                for p, c in procs.items()
                if _exe_name(p) == tool.helper and any(cid in c for cid in ids)
            ]
            pss = rss = 0
            for p in helpers:
                a, b = _mem_kb(p)
                pss += a
                rss += b
            others = [
                p
                for p, c in procs.items()
                if p not in helpers and any(m in c for m in tool.markers)
            ]
            per[tool.name] = (pss / IDLE / 1024, rss / IDLE / 1024, len(helpers))
            if others:
                print(f"  {tool.name}: {len(others)} other processes also mention its store")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"  {tool.name}: memory benchmark failed: {e}")
        finally:
            if ids:
                try:
                    tool.rm_f(ids)
                except (RuntimeError, subprocess.TimeoutExpired):
                    _cleanup_tool(tool)
                settle([*tool.markers, *ids], timeout=60)
    for name, (pss, rss, n) in per.items():
        helper = "conmon" if name != "docker" else "containerd-shim-runc-v2"
        target = "   (target PSS <= 2.5 MB)" if name == "moorage" else ""
        print(
            f"{name:<8} {pss:6.2f} MB PSS   {rss:6.2f} MB RSS per container   "
            f"({n} x {helper} for {IDLE} containers){target}"
        )
    if "moorage" in per:
        for ref in ("docker", "podman"):
            if ref in per:
                print(f"  moorage / {ref} (PSS): {per['moorage'][0] / per[ref][0]:.2f}")


# ---- 4. where moorage's run --rm time goes ------------------------------------------------------

# Runs moorage's own ``main`` in-process with timers around the steps of ``run``; nesting is
# kept (a step called inside another is indented under it). Writes JSON to $MBENCH_OUT.
_HARNESS = r"""
import time
W0 = time.time()
import json, os, sys
rows, order, stack = {}, [], []

def wrap(owner, attr, label):
    orig = getattr(owner, attr, None)
    if orig is None:
        return
    def wrapper(*a, **k):
        lab = label(a) if callable(label) else label
        key = "/".join([*stack, lab])
        if key not in rows:
            rows[key] = [lab, len(stack), 0.0, 0]
            order.append(key)
        stack.append(lab)
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            stack.pop()
            rows[key][2] += time.perf_counter() - t
            rows[key][3] += 1
    setattr(owner, attr, wrapper)

t = time.perf_counter()
import moorage.cli.main as cm
import moorage.cli.app as app
import moorage.cli.container as cc
import moorage.engine.containers.service as svc
import moorage.engine.containers.attach as att
import moorage.runtime.runc as rr
imports = time.perf_counter() - t
S = svc.ContainerService
wrap(cc, "_service", "open store")
wrap(cc, "_spec", "parse options")
wrap(S, "create", "create (db row, dirs, /etc files)")
wrap(S, "start", "start")
wrap(S, "run_foreground", "run in the foreground (runc run, no conmon)")
wrap(S, "_write_bundle", "rootfs + config.json")
wrap(S, "_discard", "forget (db row, dirs)")
wrap(svc, "mount_overlay", "mount overlay")
wrap(svc, "resolve_user", "resolve user")
wrap(svc, "generate", "generate config.json")
wrap(svc, "spawn", "conmon + runc create")
wrap(rr.RuncLike, "_run", lambda a: "runc " + (str(a[1]) if len(a) > 1 else "?"))
wrap(rr.RuncLike, "run", "spawn runc run")
wrap(att, "connect", "attach connect")
wrap(att, "relay", "relay (container runs true)")
wrap(cc, "_exit_code", "wait for exit file")
wrap(S, "cleanup", "cleanup")
wrap(S, "remove", "remove")
wrap(S, "_update", "db update")
wrap(svc, "unmount", "umount")
code = 0
import posix
_real_exit = os._exit
# main() ends with posix._exit (os._exit); measure, then exit for real below
os._exit = posix._exit = lambda c: None
t = time.perf_counter()
try:
    cm.main(sys.argv[1:])
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 0
main_s = time.perf_counter() - t
import ctypes.util
t = time.perf_counter()
ctypes.util.find_library("c")
find_lib = time.perf_counter() - t
with open(os.environ["MBENCH_OUT"], "w") as f:
    json.dump({"imports": imports, "main": main_s, "find_library": find_lib, "w0": W0,
               "rows": [[k, *rows[k]] for k in order], "w1": time.time()}, f)
_real_exit(code)
"""


def _importtime(py: str, env: dict[str, str]) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) from ``-X importtime`` of ``moor run --rm``."""
    args = [py, "-X", "importtime", "-m", "moorage", "run", "--rm", "--network", "none"]
    p = subprocess.run([*args, "bb:1", "true"], env=env, capture_output=True, timeout=TIMEOUT)
    out = []
    for line in p.stderr.decode().splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            out.append((int(m[1]), int(m[2]), len(m[3]) // 2, m[4]))
    return out


def bench_breakdown(tool: Tool, runs: int, work: Path) -> None:
    assert tool.env is not None
    py = _moor_python()
    # where a cold start's time goes (the warm process skips the interpreter and imports)
    env = {**tool.env, "MBENCH_OUT": str(work / "harness.json"), "MOORAGE_WARM": "0"}
    floor = []
    version = []
    for _ in range(max(runs, 10)):
        floor.append(timed([py, "-c", "pass"])[0])
        version.append(timed([MOOR, "--version"])[0])
    walls: list[float] = []
    starts: list[float] = []
    exits: list[float] = []
    tails: list[float] = []
    docs = []
    args = [py, "-c", _HARNESS, "run", "--rm", "--network", "none", "bb:1", "true"]
    for _ in range(max(runs // 2, 5)):
        settle(tool.markers)
        w0 = time.time()
        dt, _ = timed(args, env)
        w1 = time.time()
        tails.append(settle(tool.markers))
        doc = json.loads((work / "harness.json").read_text())
        walls.append(dt)
        starts.append(doc["w0"] - w0)
        exits.append(w1 - doc["w1"])
        docs.append(doc)
    n = len(docs)
    print(f"\n== where moorage's run --rm true goes (in-process timers, median of {n}) ==")

    def line(label: str, secs: float, depth: int = 0, note: str = "") -> None:
        text = "  " * depth + label
        print(f"  {text:<50} {secs * 1000:7.1f} ms{('   ' + note) if note else ''}")

    keys: list[str] = []
    meta: dict[str, tuple[str, int]] = {}
    for d in docs:
        for key, label, depth, _total, _count in d["rows"]:
            if key not in meta:
                keys.append(key)
                meta[key] = (label, depth)
    line("wall time of the instrumented command", med(walls))
    line("interpreter start (exec to first line)", med(starts), 1)
    line("imports (cli.app, cli.container, service, ...)", med([d["imports"] for d in docs]), 1)
    main_s = med([d["main"] for d in docs])
    line("main()", main_s, 1)
    covered = 0.0
    for key in keys:
        label, depth = meta[key]
        vals = [r[3] for d in docs for r in d["rows"] if r[0] == key]
        cnt = int(med([r[4] for d in docs for r in d["rows"] if r[0] == key]))
        if depth == 0:
            covered += med(vals)
        line(f"{label}{f' (x{cnt})' if cnt > 1 else ''}", med(vals), depth + 2)
    line("not covered above (click, logging setup, ...)", max(main_s - covered, 0.0), 2)
    line("interpreter exit (finalisation, sqlite close)", med(exits), 1)
    print("  for reference:")
    line("python -c pass", med(floor), 1)
    line("moor --version", med(version), 1)
    line(
        "ctypes.util.find_library('c'), once",
        med([d["find_library"] for d in docs]),
        1,
        "(spawns /sbin/ldconfig -p; done at import by store/snapshots.py, containers/rootfs.py)",
    )
    line("after return: conmon's exit command still running", med(tails), 1, "(background CPU)")
    imps = _importtime(py, tool.env)
    if imps:
        total = sum(c for _s, c, d, _m in imps if d == 0)
        parent: dict[int, str] = {}
        for i, (_s, _c, d, _m) in enumerate(imps):
            parent[i] = next((imps[j][3] for j in range(i + 1, len(imps)) if imps[j][2] < d), "")
        ext = [
            (c, mod, parent[i])
            for i, (_s, c, _d, mod) in enumerate(imps)
            if not mod.startswith("moorage") and (parent[i].startswith("moorage") or not parent[i])
        ]
        ext.sort(reverse=True)
        print(
            f"  -X importtime (inflated by the tracing): all imports {total / 1000:.1f} ms; "
            "largest non-moorage imports (imported by):"
        )
        print(
            "    "
            + ", ".join(f"{mod} {c / 1000:.1f} ({par or 'python'})" for c, mod, par in ext[:8])
        )


# ---- main ----------------------------------------------------------------------------------------


def main(runs: int = 15, only: str = "") -> None:
    if os.geteuid() != 0:
        print("containers benchmark: needs root (overlay mounts); skipped")
        return
    if not BB_TAR.exists():
        print(f"containers benchmark: {BB_TAR} missing (start the anchors first); skipped")
        return
    if os.getcwd() == "/":
        os.chdir(tempfile.gettempdir())  # procs_matching tells commands from / (see there)
    work = Path(tempfile.mkdtemp(prefix="mbench-"))
    tools: list[Tool] = []
    runc: BareRunc | None = None
    old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        moorage = _moorage_tool(work)
        tools += [moorage, _moorage_tool(work, warm=False)]
        for make in (_docker_tool, _podman_tool):
            tool, why = make()
            name = make.__name__.strip("_").removesuffix("_tool")
            if tool is None:
                print(f"({name} skipped: {why})")
            else:
                tools.append(tool)
        if RUNC:
            runc = BareRunc(work)
        else:
            print("(bare runc skipped: not installed)")
        print(f"tools: {', '.join(t.name for t in tools)}{', bare runc' if runc else ''}")
        print(f"load average at start: {_loadavg()} ({os.cpu_count()} CPUs)")
        if only in ("", "run"):
            bench_run_rm(tools, runc, runs, work)
        if only in ("", "batch"):
            bench_batch(tools, max(1, runs // 5))
        if only in ("", "memory"):
            bench_memory([t for t in tools if t.name != "moorage-cold"])
        if only in ("", "breakdown"):
            bench_breakdown(moorage, runs, work)
        print(f"\nload average at end: {_loadavg()}")
    finally:
        for tool in tools:
            _cleanup_tool(tool)
        if runc is not None:
            runc.cleanup()
        _cleanup_moorage_store(work)
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--only", choices=["run", "batch", "memory", "breakdown"], default="",
                    help="one part only (default: all)")  # fmt: skip
    a = ap.parse_args()
    main(a.runs, a.only)
