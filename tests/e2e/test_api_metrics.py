"""``GET /metrics`` on ``moor system service``: Prometheus text, the same reading as
``moor stats --format prometheus``."""

from __future__ import annotations

import re

from tests.conftest import Moor
from tests.e2e.apiservice import Service


def _values(text: str) -> dict[tuple[str, str], float]:
    """(metric, container name) -> value, checking every line is valid exposition format."""
    out = {}
    line_re = re.compile(
        r'^(moorage_container_\w+)\{id="(\w+)",name="([^"]*)",image="([^"]*)"\} (\S+)$'
    )
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = line_re.match(line)
        assert m, f"not exposition format: {line!r}"
        out[(m.group(1), m.group(3))] = float(m.group(5))
    return out


def test_metrics_endpoint(api: Service, moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "busy", "--memory", "64m", "bb:1", "sh", "-c",
         "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 1000")  # fmt: skip
    moor("create", "--name", "idle", "bb:1", "true")
    r = api.request("GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    assert "# TYPE moorage_container_cpu_usage_seconds_total counter" in text
    got = _values(text)
    cli = _values(moor("stats", "--no-stream", "--format", "prometheus").stdout)
    assert {k for k in got} == {k for k in cli}  # the same containers and metrics
    assert {name for _, name in got} == {"busy"}  # running ones only, as stats
    assert got[("moorage_container_memory_limit_bytes", "busy")] == 64 * 1024 * 1024
    assert got[("moorage_container_pids", "busy")] >= 1
    # counters only grow between the two readings
    assert (
        cli[("moorage_container_cpu_usage_seconds_total", "busy")]
        >= got[("moorage_container_cpu_usage_seconds_total", "busy")]
        > 0
    )
    every = _values(api.request("GET", "/metrics?all=1").body.decode())
    assert {name for _, name in every} == {"busy", "idle"}
    assert every[("moorage_container_pids", "idle")] == 0
