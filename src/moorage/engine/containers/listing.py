"""How containers are listed and described, shared by ``moor ps``/``top`` and the API:
Docker's status text, the command line shown, ``--filter`` matching, the process table."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from moorage.engine.containers.service import ContainerRecord, ContainerService
from moorage.errors import InvalidArgument, MoorageError
from moorage.units import human_duration, since

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def status_text(rec: Any, now: float) -> str:
    """``Up 3 minutes``, ``Up 2 hours (Paused)``, ``Exited (0) 5 seconds ago``, ``Created``."""
    if rec.state == "running":
        return "Up " + human_duration(now - (rec.started_at or now))
    if rec.state == "paused":
        return "Up " + human_duration(now - (rec.started_at or now)) + " (Paused)"
    if rec.state == "exited":
        return f"Exited ({rec.exit_code}) " + since(rec.finished_at or now, now)
    return str(rec.state).capitalize()


def command_text(
    svc: ContainerService, rec: ContainerRecord, configs: dict[str, Any] | None = None
) -> str:
    """The command line the container runs; ``configs`` (image id -> image config) saves
    reading an image's config again when listing many containers."""
    from moorage.engine.containers.ociconfig import process_args

    try:
        if configs is not None and rec.image_id in configs:
            image_config = configs[rec.image_id]
        else:
            image_config = svc.images.config(svc.image_of(rec)).get("config") or {}
            if configs is not None:
                configs[rec.image_id] = image_config
        return str(" ".join(process_args(rec.spec, image_config)))
    except MoorageError:
        return ""


def matches(svc: ContainerService, rec: ContainerRecord, filters: list[tuple[str, str]]) -> bool:
    """Docker's ``ps --filter``: status, name (regexp), id (prefix), label, ancestor, health,
    exited."""
    for key, value in filters:
        if key == "status":
            if value not in STATUSES:
                raise InvalidArgument(f"invalid filter 'status={value}'")
            if rec.state != value:
                return False
        elif key == "name":
            if not re.search(value, rec.name):
                return False
        elif key == "id":
            if not rec.id.startswith(value):
                return False
        elif key == "label":
            k, sep, v = value.partition("=")
            labels = rec.spec.labels
            if k not in labels or (sep and labels[k] != v):
                return False
        elif key == "ancestor":
            try:
                img = svc.images.resolve(value)
            except MoorageError:
                return False
            if str(img.id) != rec.image_id:
                return False
        elif key == "health":
            from moorage.engine.health import status

            if value not in ("starting", "healthy", "unhealthy", "none"):
                raise InvalidArgument(f"Unrecognised filter value for health: {value}")
            if status(svc.store.db.conn, rec) != value:
                return False
        elif key == "exited":
            if rec.state != "exited" or str(rec.exit_code) != value:
                return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def top(
    svc: ContainerService, rec: ContainerRecord, ps_args: list[str]
) -> tuple[list[str], list[list[str]]]:
    """``docker top``: ``ps`` (with ``ps_args``, default ``-ef``) limited to the container's
    processes: (titles, rows)."""
    if not rec.running:
        raise InvalidArgument(f"Container {rec.id} is not running")
    pids = svc.runtime(rec).pids(rec.id)
    args = ps_args or ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    header = lines[0].split()
    pid_col = header.index("PID") if "PID" in header else 1
    keep = {str(p) for p in pids}
    rows = [ln for ln in lines[1:] if len(ln.split()) > pid_col and ln.split()[pid_col] in keep]
    n = len(header)
    return header, [ln.split(None, n - 1) for ln in rows]
