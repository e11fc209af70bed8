"""Events: every lifecycle change, recorded durably in SQLite and announced to followers.

One function writes: :func:`record_event` (and :func:`container_event`, which adds a
container's usual attributes). A row goes into the ``events`` table (retention: the newest
:func:`max_events`), then every live follower is woken at once: each ``moor events`` binds a
unix datagram socket under ``RUNROOT/events/`` and the writer sends one empty datagram to
each, so a follower learns of an event without polling (it then reads the new rows).

Other services call the same hook, e.g. networking::

    record_event(store, "network", "connect", network_id, {"container": cid, "name": net})
    record_event(store, "volume", "mount", volume_name, {"container": cid, "destination": d})
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MAX_EVENTS = 10000


def max_events() -> int:
    """How many events the journal keeps (env MOORAGE_EVENTS_MAX, read when needed: a warm
    process imports this module once for many commands)."""
    try:
        return int(os.environ.get("MOORAGE_EVENTS_MAX", MAX_EVENTS))
    except ValueError:
        return MAX_EVENTS


"""How many events the table keeps (the oldest go first)."""

_TRIM_EVERY = 64

SAFETY_TIMEOUT = 1.0
"""A follower re-reads after this long even unwoken (a writer killed mid-notify)."""

TYPES = ("container", "image", "network", "volume", "daemon", "plugin", "service", "node",
         "secret", "config")  # fmt: skip


class EventStore(Protocol):
    """What recording needs: the metadata database and the run-state directory."""

    @property
    def db(self) -> Any: ...

    @property
    def runroot(self) -> Path: ...


@dataclass(frozen=True)
class Event:
    seq: int
    time_nano: int
    type: str
    action: str
    actor_id: str
    attributes: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """Docker's event message, legacy ``status/id/from`` included for containers and
        images."""
        doc: dict[str, Any] = {}
        if self.type in ("container", "image"):
            doc["status"] = self.action
            doc["id"] = self.actor_id
            if self.type == "container" and "image" in self.attributes:
                doc["from"] = self.attributes["image"]
        doc.update(
            {
                "Type": self.type,
                "Action": self.action,
                "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
                "scope": "local",
                "time": self.time_nano // 1_000_000_000,
                "timeNano": self.time_nano,
            }
        )
        return doc

    def line(self) -> str:
        """The docker CLI's line: local time with nanoseconds, type, action, id, attributes."""
        secs, nanos = divmod(self.time_nano, 1_000_000_000)
        tm = time.localtime(secs)
        off = tm.tm_gmtoff or 0
        zone = (
            "Z"
            if off == 0
            else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:"
            + (f"{abs(off) % 3600 // 60:02d}")
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{nanos:09d}{zone}"
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attributes.items()))
        return f"{stamp} {self.type} {self.action} {self.actor_id}" + (
            f" ({attrs})" if attrs else ""
        )


def events_dir(runroot: Path) -> Path:
    return runroot / "events"


def record_event(
    store: EventStore,
    type: str,
    action: str,
    actor_id: str,
    attributes: Mapping[str, str] | None = None,
    *,
    wake: bool = True,
) -> None:
    """Record one event and wake the followers. Never fails the operation that called it.
    Inside the caller's open transaction (one commit for both), ``wake=False``: the caller
    calls ``notify`` once it has committed, or followers would look before the row is in."""
    attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
    try:
        conn = store.db.conn
        cur = conn.execute(
            "INSERT INTO events(time_nano, type, action, actor_id, attributes) "
            "VALUES (?, ?, ?, ?, ?)",
            (time.time_ns(), type, action, actor_id, json.dumps(attrs, separators=(",", ":"))),
        )
        seq = cur.lastrowid or 0
        if seq % _TRIM_EVERY == 0:
            conn.execute("DELETE FROM events WHERE seq <= ?", (seq - max_events(),))
    except Exception:
        return
    if wake:
        notify(store.runroot)


def container_event(
    store: EventStore, rec: Any, action: str, *, wake: bool = True, **extra: str
) -> None:
    """``record_event`` for a container record: its image, name and labels as attributes."""
    attrs = {**rec.spec.labels, "image": rec.image_ref, "name": rec.name, **extra}
    record_event(store, "container", action, rec.id, attrs, wake=wake)


def notify(runroot: Path) -> None:
    """One empty datagram to every follower's socket; stale sockets are removed."""
    d = events_dir(runroot)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    if not names:
        return
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        for n in names:
            if not n.endswith(".sock"):
                continue
            try:
                s.sendto(b"", str(d / n))
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(d / n)
            except OSError:  # its queue is full: it has wakeups enough
                continue
    finally:
        s.close()


# ---- reading --------------------------------------------------------------------------


def _row(r: Any) -> Event:
    return Event(
        seq=r[0], time_nano=r[1], type=r[2], action=r[3], actor_id=r[4],
        attributes=json.loads(r[5] or "{}"),
    )  # fmt: skip


def read_events(
    conn: Any, *, after_seq: int = 0, since_ns: int | None = None, until_ns: int | None = None
) -> list[Event]:
    sql = "SELECT seq, time_nano, type, action, actor_id, attributes FROM events WHERE seq > ?"
    params: list[Any] = [after_seq]
    if since_ns is not None:
        sql += " AND time_nano >= ?"
        params.append(since_ns)
    if until_ns is not None:
        sql += " AND time_nano <= ?"
        params.append(until_ns)
    return [_row(r) for r in conn.execute(sql + " ORDER BY seq", params).fetchall()]


def last_seq(conn: Any) -> int:
    row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
    return int(row[0] or 0)


FILTER_KEYS = ("container", "event", "image", "label", "type", "network", "volume")


def matches(ev: Event, filters: Mapping[str, Iterable[str]]) -> bool:
    """Docker's event filters: values of one key are OR'd, keys are AND'd."""
    for key, values in filters.items():
        vals = list(values)
        if not vals:
            continue
        if key == "type":
            ok = ev.type in vals
        elif key == "event":
            ok = any(ev.action == v or ev.action.startswith(v + ":") for v in vals)
        elif key == "container":
            ok = ev.type == "container" and any(
                ev.actor_id.startswith(v) or ev.attributes.get("name") == v for v in vals
            )
        elif key == "image":
            names = {ev.attributes.get("image"), ev.attributes.get("name")}
            if ev.type == "image":
                names.add(ev.actor_id)
            ok = ev.type in ("container", "image") and any(
                v in names or _strip_latest(v) in {_strip_latest(n or "") for n in names}
                for v in vals
            )
        elif key == "label":
            ok = any(_label_match(ev.attributes, v) for v in vals)
        elif key in ("network", "volume"):
            ok = ev.type == key and any(
                ev.actor_id.startswith(v) or ev.attributes.get("name") == v for v in vals
            )
        else:
            ok = False
        if not ok:
            return False
    return True


def _strip_latest(name: str) -> str:
    return name.removesuffix(":latest")


def _label_match(attrs: Mapping[str, str], want: str) -> bool:
    k, sep, v = want.partition("=")
    return k in attrs and (not sep or attrs[k] == v)


class Follower:
    """A bound wakeup socket under ``RUNROOT/events``; bind before the first read, so no
    event recorded in between is missed."""

    def __init__(self, runroot: Path) -> None:
        import socket

        d = events_dir(runroot)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = d / f"{os.getpid()}-{os.urandom(4).hex()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait(self, timeout: float) -> None:
        """Until a writer wakes us (or ``timeout`` seconds); drains queued wakeups."""
        import select

        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if ready:
            self.sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    self.sock.recv(1)
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def stream(
    conn: Any,
    runroot: Path,
    *,
    since_ns: int | None,
    until_ns: int | None,
    follow: bool = True,
) -> Iterator[Event]:
    """Past events from ``since_ns`` (none if None), then live ones until ``until_ns``."""
    follower = Follower(runroot) if follow else None
    try:
        after = 0 if since_ns is not None else last_seq(conn)
        while True:
            for ev in read_events(conn, after_seq=after, since_ns=since_ns, until_ns=until_ns):
                after = ev.seq
                yield ev
            if follower is None:
                return
            now = time.time_ns()
            if until_ns is not None and now > until_ns:
                return
            # the socket wakes us at once; the timeout is a safety net only
            wait = SAFETY_TIMEOUT
            if until_ns is not None:
                wait = min(wait, (until_ns - now) / 1e9 + 0.001)
            follower.wait(wait)
    finally:
        if follower is not None:
            follower.close()
