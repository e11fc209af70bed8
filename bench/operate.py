"""Operating benchmarks: the health supervisor under load, ``moor stats``, ``moor events``.

1. N containers (default 100) with a health check every 1 s: the supervisor's resident
   memory (VmRSS, and PSS) and its own CPU (% of one core, user and system) over a window,
   the CPU its probe processes took, the probes completed per second (every result recorded
   in the window, sampled each second) and the CPU per probe. Targets: RSS <= 40 MB, own
   CPU <= 5% of one core. ``MOORAGE_HEALTH_EXEC=runtime`` measures the runc exec path.
2. ``moor stats --no-stream`` for those N containers: median wall time. Target: < 1 s.
3. ``moor events`` follow latency: the time from an event's record (its timeNano) to the
   line a live ``moor events`` prints. Target: no polling delay (well under 100 ms).

Needs root. Uses a private store in a tmp dir; every container and the supervisor it
started are ended at the end (by pid).

    python bench/operate.py [--containers 100] [--window 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MOOR = str(Path(sys.executable).parent / "moor")
BB_TAR = Path("/tmp/moorage-anchors/bb-rootfs.tar")
HZ = os.sysconf("SC_CLK_TCK")


class Store:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.runroot = tmp / "run"
        self.env = {**os.environ, "MOORAGE_ROOT": str(self.root),
                    "MOORAGE_RUNROOT": str(self.runroot)}  # fmt: skip

    def moor(self, *args: str) -> str:
        p = subprocess.run([MOOR, *args], env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"moor {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout


def _base_image(store: Store, tmp: Path) -> None:
    tar = BB_TAR
    if not tar.exists():
        tar = tmp / "bb.tar"
        subprocess.run([str(REPO / "scripts" / "base-images"), "busybox", "--tar", str(tar)],
                       check=True, env={**os.environ, "MOOR": MOOR})  # fmt: skip
    store.moor("import", "-c", 'CMD ["sh"]', str(tar), "bb:1")


def _cpu_ticks(pid: int) -> tuple[tuple[int, int], int]:
    """((own utime, stime), waited-for children's cutime+cstime) in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    f = stat[stat.rfind(")") + 2 :].split()
    return (int(f[11]), int(f[12])), int(f[13]) + int(f[14])


def _mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def _watchdog_pids(runroot: Path) -> list[int]:
    """The supervisor's watchdog shell and the flock it waits in."""
    lock = str(runroot / "supervisor.lock").encode()
    shells = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (p / "cmdline").read_bytes().split(b"\0")
                if b"moorage-supervisor-watchdog" in argv and lock in argv:
                    shells.append(int(p.name))
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (p / "stat").read_text()
                if int(stat[stat.rfind(")") + 2 :].split()[1]) in shells:
                    kids.append(int(p.name))
    return shells + kids


def _results(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    """Every (container, probe start) the health table holds now (its last 5 per container)."""
    out = set()
    for cid, log in conn.execute("SELECT container_id, log FROM health"):
        out |= {(cid, e["Start"]) for e in json.loads(log)}
    return out


def bench_supervisor(store: Store, n: int, window: float, method: str) -> None:
    t0 = time.monotonic()
    for i in range(n):
        store.moor("run", "-d", "--name", f"hc{i}", "--health-cmd", "true",
                   "--health-interval", "1s", "bb:1", "sleep", "3600")  # fmt: skip
    print(f"started {n} health-checked containers in {time.monotonic() - t0:.1f} s")
    pid = int((store.runroot / "supervisor.lock").read_text().strip())
    time.sleep(3)  # let every container reach its first checks
    server = _fork_server(pid)
    own0, kids0 = _cpu_ticks(pid)
    srv0, skids0 = _cpu_ticks(server) if server else ((0, 0), 0)
    faults0 = _minflt(pid)
    conn = sqlite3.connect(store.root / "moorage.db")
    seen = _results(conn)
    before = set(seen)
    w0 = time.monotonic()
    peak_rss = 0
    samples = []
    while time.monotonic() - w0 < window:
        rss, pss = _mem_kb(pid)
        peak_rss = max(peak_rss, rss)
        samples.append((rss, pss))
        seen |= _results(conn)  # sampled every second: the table keeps 5 per container
        time.sleep(1)
    own1, kids1 = _cpu_ticks(pid)
    srv1, skids1 = _cpu_ticks(server) if server else ((0, 0), 0)
    srv_rss = _mem_kb(server)[0] if server else 0
    faults1 = _minflt(pid)
    elapsed = time.monotonic() - w0
    seen |= _results(conn)
    conn.close()
    own_pct = (own1[0] + own1[1] - own0[0] - own0[1]) / HZ / elapsed * 100
    user_pct = (own1[0] - own0[0]) / HZ / elapsed * 100
    srv_pct = (srv1[0] + srv1[1] - srv0[0] - srv0[1]) / HZ / elapsed * 100
    srv_user = (srv1[0] - srv0[0]) / HZ / elapsed * 100
    # runc execs are the supervisor's children, direct probes the fork server's
    kids_pct = (kids1 - kids0 + skids1 - skids0) / HZ / elapsed * 100
    probes = len(seen - before)
    rss, pss = samples[-1]
    helpers = _watchdog_pids(store.runroot)
    helper_rss = sum(_mem_kb(p)[0] for p in helpers)
    print(f"supervisor (pid {pid}), {n} containers, checks every 1 s (Docker's interval: from "
          f"the end of one check to the start of the next), probes {method}, "
          f"{elapsed:.0f} s window:")  # fmt: skip
    print(f"  memory: VmRSS {rss / 1024:.1f} MB (peak {peak_rss / 1024:.1f} MB), "
          f"PSS {pss / 1024:.1f} MB")  # fmt: skip
    print(f"  fork server (pid {server or '-'}): VmRSS {srv_rss / 1024:.1f} MB; watchdog "
          f"(sh + flock, {len(helpers)} procs): VmRSS {helper_rss / 1024:.1f} MB; "
          f"total {(rss + srv_rss + helper_rss) / 1024:.1f} MB   target <= 40 MB")  # fmt: skip
    print(
        f"  supervisor CPU: {own_pct:.1f}% of one core (user {user_pct:.1f}%, system "
        f"{own_pct - user_pct:.1f}%; {(faults1 - faults0) / elapsed:.0f} minor faults/s)"
    )
    print(f"  fork server CPU: {srv_pct:.1f}% (user {srv_user:.1f}%, system "
          f"{srv_pct - srv_user:.1f}%: its forks)")  # fmt: skip
    print(f"  own CPU, both: {own_pct + srv_pct:.1f}% of one core   target <= 5%")
    own_pct += srv_pct
    print(f"  probe processes (entering + the check, or runc exec): {kids_pct:.0f}% of one core")
    rate = probes / elapsed
    per = (own_pct + kids_pct) / 100 / rate * 1000 if rate else 0.0
    print(f"  probes: {rate:.0f}/s completed ({probes} in the window; asked: one per container "
          f"per ~1 s); cost per probe {per:.1f} ms of CPU, {own_pct / 100 / rate * 1000:.2f} ms"
          " of it the supervisor's and its fork server's" if rate else
          "  probes: none recorded")  # fmt: skip


def _fork_server(supervisor: int) -> int:
    """The supervisor's fork server (its child running enterproc.py), 0 if none."""
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (p / "stat").read_text()
                ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
                if ppid == supervisor and b"enterproc.py" in (p / "cmdline").read_bytes():
                    return int(p.name)
    return 0


def _minflt(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[7])


def bench_stats(store: Store, n: int, runs: int) -> None:
    times = []
    for _ in range(runs):
        t = time.monotonic()
        out = store.moor("stats", "--no-stream")
        times.append(time.monotonic() - t)
    rows = len(out.splitlines()) - 1
    print(f"  moor stats --no-stream, {rows} containers: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}; {runs} runs)   target < 1 s")  # fmt: skip


def bench_events(store: Store, count: int) -> None:
    proc = subprocess.Popen([MOOR, "events", "--format", "json", "--filter", "type=image"],
                            env=store.env, stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    latencies = []
    try:
        time.sleep(1.0)
        for i in range(count):
            store.moor("tag", "bb:1", f"bb:t{i}")
            if not sel.select(timeout=5):
                print("  events: no line within 5 s")
                return
            line = proc.stdout.readline()
            got = time.time_ns()
            ev = json.loads(line)
            latencies.append((got - ev["timeNano"]) / 1e6)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait()
    print(f"moor events follow latency ({count} events): median "
          f"{statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms "
          "(record -> printed line)")  # fmt: skip


def bench_flood(store: Store, seconds: float, runs: int) -> None:
    """A container logging as fast as it can (``yes``): the disk its log takes (sampled) and
    ``moor ps`` beside it."""

    def ps_median() -> float:
        times = []
        for _ in range(runs):
            t = time.monotonic()
            store.moor("ps")
            times.append(time.monotonic() - t)
        return statistics.median(times)

    quiet = ps_median()
    cid = store.moor("run", "-d", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
                     "bb:1", "sh", "-c", "yes 0123456789abcdef0123456789abcdef")  # fmt: skip
    cid = cid.strip()
    ud = store.root / "containers" / cid
    conmon = int((store.runroot / "containers" / cid / "conmon.pid").read_text())

    def wchar() -> int:  # what conmon wrote (the log files)
        for line in Path(f"/proc/{conmon}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        return 0

    peak = 0
    t0 = time.monotonic()
    w0 = wchar()
    while time.monotonic() - t0 < seconds:
        size = 0
        for f in ud.glob("ctr.log*"):
            with contextlib.suppress(FileNotFoundError):
                size += f.stat().st_size
        peak = max(peak, size)
        time.sleep(0.05)
    written = wchar() - w0
    elapsed = time.monotonic() - t0
    busy = ps_median()
    store.moor("rm", "-f", cid)
    print(f"a container logging flat out (yes), max-size=10m max-file=3, {elapsed:.0f} s:")
    print(f"  log written: {written / elapsed / 1e6:.0f} MB/s (conmon's writes); disk taken "
          f"at most {peak / 1e6:.1f} MB (max-file=3 files of 10 MiB: "
          f"{3 * 10 * 1.048576:.1f} MB, + one entry)")  # fmt: skip
    print(f"  moor ps: median {quiet * 1000:.0f} ms quiet, {busy * 1000:.0f} ms beside the "
          f"flood ({runs} runs each)")  # fmt: skip


def bench_probe_cost(store: Store, n: int) -> None:
    """One probe after another on one container, each way: CPU per probe in this process
    (which forks, as the supervisor does) and in the probe's own processes, and wall time."""
    from moorage.engine import health

    cid = store.moor("run", "-d", "bb:1", "sleep", "3600").strip()
    pid = int(store.moor("inspect", "-f", "{{.State.Pid}}", cid))
    bundle = store.root / "containers" / cid
    run_dir = store.runroot / "containers" / cid
    cfg = health.HealthConfig(test=("CMD", "true"))
    health.write_probe_process(bundle, run_dir, cfg)
    plan, method = health.probe_method(bundle, cfg, pid)
    runtime = ["--root", str(store.runroot / "runtime" / "runc")]
    print(f"one probe (CMD true) after another, {n} each way:")
    for name, p in (("direct", plan), ("runc exec", None)):
        health.run_probe("/usr/sbin/runc", runtime, cid, run_dir, cfg, p)  # warm up
        t0, c0 = time.monotonic(), os.times()
        for _ in range(n):
            r = health.run_probe("/usr/sbin/runc", runtime, cid, run_dir, cfg, p)
            assert r["ExitCode"] == 0, r
        t1, c1 = time.monotonic(), os.times()
        own = (c1.user + c1.system - c0.user - c0.system) / n * 1000
        kids = (c1.children_user + c1.children_system - c0.children_user
                - c0.children_system) / n * 1000  # fmt: skip
        print(f"  {name:9}: {own:.2f} ms CPU in the caller, {kids:.1f} ms in the probe's "
              f"processes, {(t1 - t0) / n * 1000:.1f} ms wall per probe"
              + ("" if p is not None or name != "direct" else f" ({method})"))  # fmt: skip
    store.moor("rm", "-f", cid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="moor-operate-") as d:
        store = Store(Path(d))
        _base_image(store, Path(d))
        try:
            bench_events(store, 20)
            bench_flood(store, 10, args.runs)
            bench_probe_cost(store, 100)
            ids = [store.moor("run", "-d", "bb:1", "sleep", "3600").strip()
                   for _ in range(args.containers)]  # fmt: skip
            print(f"{args.containers} plain containers (no health checks):")
            bench_stats(store, args.containers, args.runs)
            store.moor("rm", "-f", *ids)
            method = (
                "via runc exec"
                if os.environ.get("MOORAGE_HEALTH_EXEC") == "runtime"
                else ("entering the containers directly")
            )
            bench_supervisor(store, args.containers, args.window, method)
            print("while the supervisor probes them:")
            bench_stats(store, args.containers, args.runs)
        finally:
            ids = store.moor("ps", "-aq").split()
            if ids:
                subprocess.run([MOOR, "rm", "-f", *ids], env=store.env, capture_output=True)
            # its default network's bridge and nftables table go with the store
            subprocess.run([MOOR, "network", "teardown-host"], env=store.env, capture_output=True)
            # SIGTERM is an ordinary end: its watchdog goes too (wait for both before the
            # store is removed under them)
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                pid = int((store.runroot / "supervisor.lock").read_text().strip())
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(store.runroot).encode() in cmd:
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _watchdog_pids(store.runroot) and time.monotonic() < deadline:
                time.sleep(0.2)


if __name__ == "__main__":
    main()
