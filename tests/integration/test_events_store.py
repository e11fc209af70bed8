"""record_event against a real SQLite store: retention and notification of followers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from moorage.engine import events as ev
from moorage.store.metadata import Metadata


@dataclass
class _Store:
    db: Metadata
    runroot: Path


@pytest.fixture
def store(tmp_path: Path) -> _Store:
    return _Store(Metadata(tmp_path / "moorage.db"), tmp_path / "run")


def test_retention_keeps_the_newest(store: _Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_EVENTS_MAX", "10")
    for i in range(200):
        ev.record_event(store, "image", "tag", f"id{i}", {"name": f"n{i}"})
    rows = ev.read_events(store.db.conn)
    assert rows[-1].actor_id == "id199"
    assert 10 <= len(rows) < 10 + 64  # trimmed every 64 inserts
    assert [r.actor_id for r in rows] == [f"id{i}" for i in range(200 - len(rows), 200)]


def test_follower_wakes_on_record(store: _Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "SAFETY_TIMEOUT", 60.0)  # only the wakeup can end the wait now
    got: list[ev.Event] = []
    until = time.time_ns() + 30 * 10**9

    def follow() -> None:
        conn = Metadata(store.db.path).conn
        for e in ev.stream(conn, store.runroot, since_ns=None, until_ns=until):
            got.append(e)
            return

    t = threading.Thread(target=follow)
    t.start()
    deadline = time.monotonic() + 2
    while not list((store.runroot / "events").glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.01)
    ev.record_event(store, "network", "connect", "net1", {"container": "c1", "name": "n"})
    t.join(timeout=20)
    assert got and got[0].type == "network" and got[0].attributes["container"] == "c1"
    assert "status" not in got[0].to_json()


def test_stale_socket_is_removed(store: _Store) -> None:
    d = ev.events_dir(store.runroot)
    d.mkdir(parents=True)
    f = ev.Follower(store.runroot)
    f.sock.close()  # a follower killed without cleaning up
    ev.record_event(store, "image", "tag", "x")
    assert not f.path.exists()


def test_matches() -> None:
    e = ev.Event(1, 0, "container", "health_status: healthy", "abc123", {"name": "web"})
    assert ev.matches(e, {"event": ["health_status"]})
    assert ev.matches(e, {"container": ["abc"], "type": ["container"]})
    assert not ev.matches(e, {"container": ["web2"]})
    assert ev.matches(e, {"container": ["web2", "web"]})
    assert not ev.matches(e, {"type": ["image"]})
