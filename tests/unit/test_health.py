"""Health-check rules: option parsing, image/container merge, status transitions."""

from __future__ import annotations

import sqlite3
import time

import pytest

from moorage.engine import health
from moorage.errors import InvalidArgument

S = health.NS


def _opts(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "health_cmd": None, "health_interval": None, "health_timeout": None,
        "health_retries": None, "health_start_period": None, "no_healthcheck": False,
    }  # fmt: skip
    return {**base, **kw}


def test_from_options() -> None:
    assert health.from_options(_opts()) is None
    assert health.from_options(_opts(no_healthcheck=True)) == {"Test": ["NONE"]}
    doc = health.from_options(_opts(health_cmd="curl -f x", health_interval="1m30s",
                                    health_timeout="500ms", health_retries=5))  # fmt: skip
    assert doc == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 90 * S,
                   "Timeout": S // 2, "Retries": 5}  # fmt: skip
    with pytest.raises(InvalidArgument, match="invalid duration"):
        health.from_options(_opts(health_interval="often"))
    with pytest.raises(InvalidArgument, match="conflicts"):
        health.from_options(_opts(no_healthcheck=True, health_retries=2))


def test_merge_and_effective() -> None:
    image = {"Test": ["CMD", "true"], "Interval": 5 * S, "Retries": 2}
    merged = health.merge(image, {"Test": None, "Timeout": S})
    assert merged == {"Test": ["CMD", "true"], "Interval": 5 * S, "Retries": 2, "Timeout": S}
    cfg = health.effective(merged)
    assert cfg is not None and cfg.argv() == ["true"] and cfg.timeout == S
    assert cfg.start_period == 0 and cfg.retries == 2
    assert health.effective(health.merge(image, {"Test": ["NONE"]})) is None
    assert health.effective(None) is None
    shell = health.effective({"Test": ["CMD-SHELL", "exit 1"]})
    assert shell is not None and shell.argv() == ["/bin/sh", "-c", "exit 1"]
    assert shell.interval == 30 * S and shell.timeout == 30 * S and shell.retries == 3


@pytest.mark.parametrize(
    ("ns", "text"), [(30 * S, "30s"), (90 * S, "1m30s"), (S // 2, "500ms"), (3600 * S, "1h0m0s")]
)
def test_go_duration(ns: int, text: str) -> None:
    assert health.go_duration(ns) == text


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE health (container_id TEXT PRIMARY KEY, status TEXT NOT NULL "
              "DEFAULT 'starting', failing_streak INTEGER NOT NULL DEFAULT 0, "
              "log TEXT NOT NULL DEFAULT '[]')")  # fmt: skip
    return c


def _result(code: int) -> dict[str, object]:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": ""}


def test_transitions(conn: sqlite3.Connection) -> None:
    cfg = health.HealthConfig(test=("CMD", "x"), retries=2)
    started = time.time()
    assert health.apply_result(conn, "c", cfg, started, _result(1)) == ("starting", "starting")
    assert health.apply_result(conn, "c", cfg, started, _result(1)) == ("starting", "unhealthy")
    assert health.apply_result(conn, "c", cfg, started, _result(0)) == ("unhealthy", "healthy")
    for _ in range(6):
        health.apply_result(conn, "c", cfg, started, _result(0))
    state = health.state(conn, "c")
    assert state is not None and state["FailingStreak"] == 0 and len(state["Log"]) == 5
    health.reset(conn, "c")
    state = health.state(conn, "c")
    assert state is not None and state["Status"] == "starting" and len(state["Log"]) == 5


def test_start_period_failures_do_not_count(conn: sqlite3.Connection) -> None:
    cfg = health.HealthConfig(test=("CMD", "x"), retries=1, start_period=60 * S)
    now = time.time()
    for _ in range(3):
        assert health.apply_result(conn, "c", cfg, now, _result(1))[1] == "starting"
    state = health.state(conn, "c")
    assert state is not None and state["FailingStreak"] == 0
    # once it passed, the start period is over for good
    assert health.apply_result(conn, "c", cfg, now, _result(0))[1] == "healthy"
    assert health.apply_result(conn, "c", cfg, now, _result(1))[1] == "unhealthy"
    # a container started long ago is out of its start period
    assert health.apply_result(conn, "old", cfg, now - 120, _result(1))[1] == "unhealthy"
