"""Events and stats side by side with a real Docker (skipped where none runs, e.g. CI)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Moor
from tests.e2e.test_docker_compat import _docker_up, docker

pytestmark = pytest.mark.skipif(not _docker_up(), reason="no Docker daemon on this machine")


def test_event_json_and_stats_table_match_docker(moor: Moor, busybox_tar: Path) -> None:
    name = f"moorage-ops-{uuid.uuid4().hex[:8]}"
    t0 = int(time.time()) - 1
    docker("import", str(busybox_tar), f"{name}:1")
    try:
        docker("run", "-d", "--name", name, "-l", "k=v", f"{name}:1", "sleep", "60")
        docker_stats = docker("stats", "--no-stream", name).splitlines()[0]
        docker("rm", "-f", name)
        until = str(int(time.time()) + 1)
        theirs = [json.loads(line) for line in docker(
            "events", "--since", str(t0), "--until", until, "--filter", f"container={name}",
            "--format", "{{json .}}").splitlines()]  # fmt: skip
    finally:
        docker("rm", "-f", name)
        docker("rmi", "-f", f"{name}:1")
    moor("import", str(busybox_tar), "bb:1")
    moor("run", "-d", "--name", name, "-l", "k=v", "bb:1", "sleep", "60")
    our_stats = moor("stats", "--no-stream", name).stdout.splitlines()[0]
    moor("rm", "-f", name)
    ours = [json.loads(line) for line in moor(
        "events", "--since", "1m", "--until", f"{time.time() + 0.2:.3f}", "--filter",
        f"container={name}", "--format", "json").stdout.splitlines()]  # fmt: skip
    theirs = [e for e in theirs if e["Type"] == "container"]
    # the same lifecycle, in the same order and shape
    assert [e["Action"] for e in ours] == [e["Action"] for e in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert list(a) == list(b)  # same keys, same order
        assert set(a["Actor"]["Attributes"]) == set(b["Actor"]["Attributes"]) | (
            {"exitCode"} if "exitCode" in b["Actor"]["Attributes"] else set()
        )
    assert re.split(r"\s{2,}", our_stats.strip()) == re.split(r"\s{2,}", docker_stats.strip())
