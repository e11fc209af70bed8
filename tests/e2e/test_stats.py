"""moor stats: cgroup numbers for running containers, Docker's table and fields, JSON and
Prometheus output."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from moorage.engine import stats as st
from tests.conftest import Moor


def test_stats_no_stream(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "busy", "--network", "none", "-m", "64m", "bb:1", "sh", "-c",
         "dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; while :; do :; done")  # fmt: skip
    moor("run", "-d", "--name", "idle", "bb:1", "sleep", "1000")
    moor("create", "--name", "stopped", "bb:1", "true")
    out = moor("stats", "--no-stream").stdout.splitlines()
    assert re.split(r"\s{2,}", out[0]) == [
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O",
        "PIDS",
    ]  # fmt: skip
    names = sorted(re.split(r"\s{2,}", line)[1] for line in out[1:])
    assert names == ["busy", "idle"]  # running ones only, by default
    rows = {
        r["Name"]: r
        for r in map(
            json.loads, moor("stats", "--no-stream", "--format", "json").stdout.split("\n")[:-1]
        )
    }
    busy = rows["busy"]
    assert set(busy) == {"BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name",
                         "NetIO", "PIDs"}  # fmt: skip
    assert float(busy["CPUPerc"].rstrip("%")) > 1.0  # it spins
    assert float(rows["idle"]["CPUPerc"].rstrip("%")) < 5.0
    usage, limit = busy["MemUsage"].split(" / ")
    assert limit == "64MiB"
    assert busy["NetIO"] == "0B / 0B"  # --network none: only lo
    assert busy["PIDs"] == "1"  # the shell runs the loop itself
    assert float(busy["MemPerc"].rstrip("%")) > 0
    # the tmpfs-less /tmp is the overlay: the 8 MiB written count in memory (page cache)
    # or block I/O, never nothing
    assert usage != "0B"
    by_name = moor("stats", "--no-stream", "--format", "{{.Container}}:{{.PIDs}}", "stopped",
                   "idle").stdout.split()  # fmt: skip
    assert by_name == ["stopped:0", "idle:1"]
    full = moor("stats", "--no-stream", "--no-trunc", "--format", "{{.ID}}", "idle").stdout
    assert len(full.strip()) == 64
    r = moor("stats", "--no-stream", "nosuch", check=False)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr


def test_stats_prometheus(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "p1", "-m", "32m", "bb:1", "sleep", "1000")
    text = moor("stats", "--format", "prometheus").stdout
    lines = text.splitlines()
    assert "# TYPE moorage_container_memory_limit_bytes gauge" in lines
    limit = [ln for ln in lines if ln.startswith("moorage_container_memory_limit_bytes{")]
    assert len(limit) == 1
    assert 'name="p1"' in limit[0] and limit[0].endswith(" 33554432")
    pids = [ln for ln in lines if ln.startswith("moorage_container_pids{")]
    assert pids[0].endswith(" 1")


def test_cgroup_v2_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The v2 reader on a unified hierarchy laid out as the kernel does (this host is
    hybrid, so a tree of the same files stands in for /sys/fs/cgroup)."""
    import os

    cg = tmp_path / "moorage" / "abc"
    cg.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    (cg / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    (cg / "memory.current").write_text("10485760\n")
    (cg / "memory.stat").write_text("anon 4194304\ninactive_file 2097152\n")
    (cg / "memory.max").write_text("max\n")
    (cg / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n"
                                "8:16 rbytes=1 wbytes=2 rios=1 wios=1\n")  # fmt: skip
    (cg / "pids.current").write_text("3\n")
    monkeypatch.setattr(st, "CGROUP_ROOT", tmp_path)
    assert st.unified_only()
    # a live pid whose /proc/PID/cgroup is read; the paths come from the bundle's config
    monkeypatch.setattr(st, "cgroup_paths", lambda pid, bundle: {"": "/moorage/abc"})
    s = st.sample(os.getpid(), bundle=None, host_network=True, host_mem=1 << 30)
    assert (s.cpu_ns, s.mem_usage, s.mem_limit) == (2_500_000, 8 << 20, 1 << 30)
    assert (s.blk_read, s.blk_write, s.pids, s.net_rx) == (4097, 8194, 3, 0)


def test_cgroup_paths_from_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"linux": {"cgroupsPath": "/moorage/x"}}))
    paths = st.cgroup_paths(0, tmp_path)
    assert paths["memory"] == "/moorage/x" and paths[""] == "/moorage/x"


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1KiB"), (64 << 20, "64MiB"), (1536 << 20, "1.5GiB")],
)
def test_bytes_size(n: int, text: str) -> None:
    assert st.bytes_size(n) == text


def test_cpu_percent() -> None:
    a = st.Sample(cpu_ns=0, system_ns=0, online_cpus=2)
    b = st.Sample(cpu_ns=500, system_ns=2000, online_cpus=2)
    assert st.cpu_percent(a, b) == 50.0
    assert st.cpu_percent(None, b) == 0.0


def test_stats_streams_until_interrupted(moor: Moor, bb: str) -> None:
    import os
    import selectors
    import signal
    import subprocess

    moor("run", "-d", "--name", "s1", "bb:1", "sleep", "1000")
    proc = moor.popen("stats", "--format", "{{.Name}} {{.PIDs}}", stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        lines = []
        while len(lines) < 2:  # a reading, then another one a second later
            assert sel.select(timeout=10), "no reading within 10 s"
            lines.append(proc.stdout.readline().decode().strip())
        assert lines == ["s1 1", "s1 1"]
        moor("run", "-d", "--name", "s2", "bb:1", "sleep", "1000")
        seen = set()
        deadline = time.monotonic() + 10
        while "s2 1" not in seen and time.monotonic() < deadline:  # new containers appear
            assert sel.select(timeout=10)
            seen.add(proc.stdout.readline().decode().strip())
        assert "s2 1" in seen
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) == 0  # Ctrl-C ends it quietly, as docker stats
