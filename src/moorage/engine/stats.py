"""Container resource usage, read straight from cgroups (v1 and v2) and the container's netns.

No runtime call per container: a container's cgroup comes from ``/proc/PID/cgroup`` (its
``config.json`` ``cgroupsPath`` as a fallback), and each number is one small file read, so
sampling 100 containers takes milliseconds. CPU % needs two samples (usage delta over the
host's CPU time delta, times the number of CPUs, as Docker computes it).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded 2^63-1


@dataclass(frozen=True)
class Sample:
    """One reading of one container; byte counts and nanoseconds."""

    cpu_ns: int = 0
    system_ns: int = 0  # the host's total CPU time when read
    online_cpus: int = 1
    mem_usage: int = 0  # without the reclaimable page cache, as Docker shows it
    mem_limit: int = 0
    net_rx: int = 0
    net_tx: int = 0
    blk_read: int = 0
    blk_write: int = 0
    pids: int = 0
    interfaces: dict[str, tuple[int, int]] = field(default_factory=dict)


def _read(path: Path | str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: Path | str) -> int:
    text = _read(path)
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return 0
    try:
        return int(text)
    except ValueError:
        return 0


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[k] = int(v)
    return out


def unified_only() -> bool:
    """A pure cgroup v2 host (every controller in one hierarchy)."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_paths(pid: int, bundle: Path | None = None) -> dict[str, str]:
    """controller -> path inside its hierarchy (``""`` for the v2 unified one)."""
    out: dict[str, str] = {}
    text = _read(Path(f"/proc/{pid}/cgroup")) if pid > 0 else None
    for line in (text or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    if not out and bundle is not None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            path = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"]
            for c in ("cpuacct", "memory", "blkio", "pids", ""):
                out[c] = path
    return out


def host_cpu_ns() -> tuple[int, int]:
    """(total CPU time of the host in ns, online CPUs), from /proc/stat."""
    text = _read(Path("/proc/stat")) or ""
    total = 0
    cpus = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            total = sum(int(x) for x in line.split()[1:8])
        elif line.startswith("cpu"):
            cpus += 1
        else:
            break
    hz = os.sysconf("SC_CLK_TCK")
    return total * 1_000_000_000 // hz, max(cpus, 1)


def mem_total() -> int:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _net(pid: int) -> dict[str, tuple[int, int]]:
    """Bytes received and sent per interface of the process's network namespace, lo aside."""
    out: dict[str, tuple[int, int]] = {}
    for line in (_read(Path(f"/proc/{pid}/net/dev")) or "").splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        cols = rest.split()
        if len(cols) >= 9:
            out[name] = (int(cols[0]), int(cols[8]))
    return out


def _v1(paths: dict[str, str], host_mem: int) -> dict[str, int]:
    root = str(CGROUP_ROOT)

    def p(controller: str, name: str) -> str:  # plain strings: this runs 100s of times
        return f"{root}/{controller}/{paths.get(controller, '/').strip('/')}/{name}"

    usage = _int(p("memory", "memory.usage_in_bytes"))
    stat = _kv(_read(p("memory", "memory.stat")))
    inactive = stat.get("total_inactive_file", 0)
    limit = _int(p("memory", "memory.limit_in_bytes"))
    rd = wr = 0
    for line in (_read(p("blkio", "blkio.throttle.io_service_bytes")) or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("Read", "Write"):
            if parts[1] == "Read":
                rd += int(parts[2])
            else:
                wr += int(parts[2])
    return {
        "cpu_ns": _int(p("cpuacct", "cpuacct.usage")),
        "mem_usage": usage - inactive if inactive < usage else usage,
        "mem_limit": limit if 0 < limit < _UNLIMITED else host_mem,
        "blk_read": rd,
        "blk_write": wr,
        "pids": _int(p("pids", "pids.current")),
    }


def _v2(path: str, host_mem: int) -> dict[str, int]:
    base = CGROUP_ROOT / path.lstrip("/")
    cpu = _kv(_read(base / "cpu.stat")).get("usage_usec", 0) * 1000
    usage = _int(base / "memory.current")
    inactive = _kv(_read(base / "memory.stat")).get("inactive_file", 0)
    limit = _int(base / "memory.max")
    rd = wr = 0
    for line in (_read(base / "io.stat") or "").splitlines():
        for item in line.split()[1:]:
            k, _, v = item.partition("=")
            if k == "rbytes":
                rd += int(v)
            elif k == "wbytes":
                wr += int(v)
    return {
        "cpu_ns": cpu,
        "mem_usage": usage - inactive if inactive < usage else usage,
        "mem_limit": limit if limit > 0 else host_mem,
        "blk_read": rd,
        "blk_write": wr,
        "pids": _int(base / "pids.current"),
    }


def sample(
    pid: int,
    *,
    bundle: Path | None,
    host_network: bool,
    host_mem: int,
    host_cpu: tuple[int, int] | None = None,
    paths: dict[str, str] | None = None,
) -> Sample:
    """One reading of the container whose init process is ``pid`` (0: not running).
    ``host_cpu`` (:func:`host_cpu_ns`) and ``paths`` (:func:`cgroup_paths`) may be read
    once for many samples: /proc/stat is large."""
    system_ns, cpus = host_cpu or host_cpu_ns()
    if pid <= 0:
        return Sample(system_ns=system_ns, online_cpus=cpus)
    if paths is None:
        paths = cgroup_paths(pid, bundle)
    if unified_only() or (paths.keys() <= {""}):
        numbers = _v2(paths.get("", "/"), host_mem)
    else:
        numbers = _v1(paths, host_mem)
    nets = {} if host_network else _net(pid)
    return Sample(
        system_ns=system_ns,
        online_cpus=cpus,
        net_rx=sum(rx for rx, _ in nets.values()),
        net_tx=sum(tx for _, tx in nets.values()),
        interfaces=nets,
        **numbers,
    )


def cpu_percent(prev: Sample | None, cur: Sample) -> float:
    if prev is None:
        return 0.0
    cpu = cur.cpu_ns - prev.cpu_ns
    system = cur.system_ns - prev.system_ns
    if cpu <= 0 or system <= 0:
        return 0.0
    return cpu / system * cur.online_cpus * 100.0


def mem_percent(s: Sample) -> float:
    return s.mem_usage / s.mem_limit * 100.0 if s.mem_limit else 0.0


_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def bytes_size(n: float) -> str:
    """go-units BytesSize: ``1.23MiB`` (binary units, 4 significant digits)."""
    i = 0
    while n >= 1024 and i < len(_BINARY) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{_BINARY[i]}"


def row(
    rec: Any, prev: Sample | None, cur: Sample, *, no_trunc: bool, given: str = ""
) -> dict[str, str]:
    """One line of ``moor stats``: Docker's field names and texts."""
    from moorage.units import human_size

    running = rec.state in ("running", "paused")
    return {
        "Container": given or (rec.id if no_trunc else rec.id[:12]),
        "ID": rec.id if no_trunc else rec.id[:12],
        "Name": rec.name,
        "CPUPerc": f"{cpu_percent(prev, cur):.2f}%",
        "MemUsage": f"{bytes_size(cur.mem_usage)} / {bytes_size(cur.mem_limit)}",
        "MemPerc": f"{mem_percent(cur):.2f}%",
        "NetIO": f"{human_size(cur.net_rx, 3)} / {human_size(cur.net_tx, 3)}",
        "BlockIO": f"{human_size(cur.blk_read, 3)} / {human_size(cur.blk_write, 3)}",
        "PIDs": str(cur.pids) if running else "0",
    }


_METRICS = (
    ("cpu_usage_seconds_total", "counter", "CPU time the container used", "cpu_ns", 1e-9),
    ("memory_usage_bytes", "gauge", "Memory in use, without reclaimable cache", "mem_usage", 1),
    ("memory_limit_bytes", "gauge", "Memory limit (the host's memory when none)", "mem_limit", 1),
    ("network_receive_bytes_total", "counter", "Bytes received on its interfaces", "net_rx", 1),
    ("network_transmit_bytes_total", "counter", "Bytes sent on its interfaces", "net_tx", 1),
    ("blkio_read_bytes_total", "counter", "Bytes read from block devices", "blk_read", 1),
    ("blkio_write_bytes_total", "counter", "Bytes written to block devices", "blk_write", 1),
    ("pids", "gauge", "Processes and threads in the container", "pids", 1),
)


def prometheus(samples: list[tuple[Any, Sample]]) -> str:
    """The Prometheus text exposition format (0.0.4) of one reading of each container."""

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines: list[str] = []
    for name, kind, help_text, attr, scale in _METRICS:
        metric = f"moorage_container_{name}"
        lines.append(f"# HELP {metric} {help_text}.")
        lines.append(f"# TYPE {metric} {kind}")
        for rec, s in samples:
            labels = f'id="{rec.id}",name="{esc(rec.name)}",image="{esc(rec.image_ref)}"'
            value = getattr(s, attr) * scale
            text = f"{value:.9g}" if isinstance(value, float) else str(value)
            lines.append(f"{metric}{{{labels}}} {text}")
    return "\n".join(lines) + "\n"


def read_prometheus(svc: Any, records: list[Any]) -> str:
    """One reading of these containers (``ContainerService`` records) in Prometheus text:
    what ``moor stats --format prometheus`` prints and the service's ``/metrics`` serves."""
    host_mem = mem_total()
    host_cpu = host_cpu_ns()
    samples = []
    for r in records:
        pid = r.pid if r.running else 0
        paths = cgroup_paths(pid, svc.userdata(r.id)) if pid else None
        samples.append((r, sample(pid, bundle=None, host_network=r.spec.network_mode == "host",
                                  host_mem=host_mem, host_cpu=host_cpu, paths=paths)))  # fmt: skip
    return prometheus(samples)
