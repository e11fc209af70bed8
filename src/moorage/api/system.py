"""System endpoints: /_ping, /version, /info, /system/df, /events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from moorage import __version__
from moorage.api import MAX_API_VERSION, MIN_API_VERSION
from moorage.api.backend import Backend, Ctx
from moorage.api.http import Route, filters
from moorage.errors import InvalidArgument


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


async def ping(request: web.Request) -> web.StreamResponse:
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Type": "text/plain"})
    return web.Response(text="OK", headers=headers)


def version_doc() -> dict[str, Any]:
    from moorage.oci.platform import host_platform

    plat = host_platform()
    details = {
        "ApiVersion": MAX_API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "python" + platform.python_version(),
        "Os": plat.os,
        "Arch": plat.architecture,
        "KernelVersion": platform.release(),
        "Experimental": "false",
        "BuildTime": "",
    }
    return {
        "Platform": {"Name": "moorage"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": MAX_API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "python" + platform.python_version(),
        "Os": plat.os,
        "Arch": plat.architecture,
        "KernelVersion": platform.release(),
        "BuildTime": "",
    }


async def version(request: web.Request) -> web.StreamResponse:
    return web.json_response(version_doc())


def _info(ctx: Ctx) -> dict[str, Any]:
    from moorage.engine.system import info

    doc = info(ctx.images)
    doc["ContainersPaused"] = sum(1 for c in ctx.containers.ls() if c.state == "paused")
    doc["ContainersRunning"] -= doc["ContainersPaused"] if doc["ContainersRunning"] else 0
    doc.update(
        {
            "Runtimes": {"runc": {"path": "runc"}, "crun": {"path": "crun"}},
            "Plugins": {
                "Volume": [],
                "Network": ["host", "none"],
                "Authorization": None,
                "Log": ["k8s-file", "json-file"],
            },
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False},
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": []},
            "Debug": False,
            "ExperimentalBuild": False,
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "catatonit",
            "Warnings": None,
            "MemoryLimit": True,
            "SwapLimit": True,
            "CpuCfsQuota": True,
            "CpuShares": True,
            "PidsLimit": True,
            "OomKillDisable": False,
            "IPv4Forwarding": True,
            "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Labels": [],
        }
    )
    return doc


async def info(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).call(_info))


def _df(ctx: Ctx) -> dict[str, Any]:
    from moorage.api.containers import Attached, summary
    from moorage.api.images import image_summary
    from moorage.engine.system import container_bytes
    from moorage.store.snapshots import dir_usage

    svc = ctx.containers
    ctrs = svc.ls()
    counts: dict[str, int] = {}
    for c in ctrs:
        counts[c.image_id] = counts.get(c.image_id, 0) + 1
    images = []
    for rec in ctx.images.ls():
        doc = image_summary(ctx, rec, old_api=False)
        doc["Containers"] = counts.get(str(rec.id), 0)
        images.append(doc)
    containers = []
    attached = Attached.read(ctx)
    for c in ctrs:
        doc = summary(ctx, c, now=time.time(), attached=attached)
        doc["SizeRw"] = container_bytes(svc, c)
        doc["SizeRootFs"] = doc["SizeRw"] + svc.image_of(c).size
        containers.append(doc)
    layers = ctx.images.exclusive_bytes(str(r.id) for r in ctx.images.ls())
    volumes = []
    vols = svc.volumes
    for v in vols.ls():
        doc = vols.inspect(v)
        size = -1 if v.options.get("type") else dir_usage(vols.mountpoint(v.name))
        doc["UsageData"] = {"Size": size, "RefCount": len(vols.users(v.name))}
        volumes.append(doc)
    return {
        "LayersSize": layers,
        "Images": images,
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": [],
    }


async def df(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).call(_df))


_EVENT_FILTERS = ("container", "event", "image", "label", "type", "network", "volume",
                  "daemon", "plugin", "scope", "service", "node", "secret", "config")  # fmt: skip


def _event_time(value: str, now: float, what: str) -> int:
    """``since``/``until``: unix seconds with an optional fraction (what the docker CLI
    sends), or RFC 3339 or a duration, as ``moor events`` takes them; in nanoseconds."""
    from moorage.engine.containers.logs import parse_since, parse_until

    try:
        return int(float(value) * 1e9) if "." in value else int(value) * 1_000_000_000
    except ValueError:
        pass
    parse = parse_since if what == "since" else parse_until
    return int(parse(value, now) * 1e9)


def _event_filters(request: web.Request) -> dict[str, list[str]]:
    from moorage.engine.events import TYPES

    out: dict[str, list[str]] = {}
    for key, value in filters(request):
        if key not in _EVENT_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type" and value not in TYPES:
            raise InvalidArgument(f"invalid filter 'type={value}'")
        if key == "scope" and value not in ("local", "swarm"):
            raise InvalidArgument(f"invalid filter 'scope={value}'")
        out.setdefault(key, []).append(value)
    return out


def _reader(after: int, since_ns: int | None, until_ns: int | None) -> Callable[[Ctx], list[Any]]:
    from moorage.engine.events import read_events

    def read(ctx: Ctx) -> list[Any]:
        conn = ctx.engine.store.db.conn
        return read_events(conn, after_seq=after, since_ns=since_ns, until_ns=until_ns)

    return read


async def events(request: web.Request) -> web.StreamResponse:
    """Docker's event stream, one JSON object a line: the recorded events from ``since``
    (none without it), then live ones until ``until`` (or until the client goes). A
    datagram socket under RUNROOT/events wakes the loop as soon as any moorage process
    records an event; the stream ends at once when the client disconnects."""
    from moorage.engine import events as ev

    wanted = _event_filters(request)
    wanted.pop("scope", None)  # every event is local
    now = time.time()
    since_q, until_q = request.query.get("since", ""), request.query.get("until", "")
    since_ns = _event_time(since_q, now, "since") if since_q else None
    until_ns = _event_time(until_q, now, "until") if until_q else None
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise InvalidArgument("`since` time must be before `until` time")
    backend = _backend(request)
    runroot: Path = await backend.call(lambda ctx: ctx.engine.runroot)
    follower = await backend.run(lambda: ev.Follower(runroot))
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def on_wake() -> None:
        with contextlib.suppress(OSError):
            while follower.sock.recv(64, socket.MSG_DONTWAIT) is not None:
                pass
        woken.set()

    fd = follower.sock.fileno()
    loop.add_reader(fd, on_wake)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        after = 0 if since_ns is not None else await backend.call(
            lambda ctx: ev.last_seq(ctx.engine.store.db.conn)
        )  # fmt: skip
        await resp.prepare(request)
        transport = request.transport
        while transport is not None and not transport.is_closing():
            woken.clear()
            found = await backend.call(_reader(after, since_ns, until_ns))
            lines = []
            for e in found:
                after = e.seq
                if ev.matches(e, wanted):
                    lines.append(json.dumps(e.to_json()).encode() + b"\n")
            if lines:
                await resp.write(b"".join(lines))
            wait = 1.0
            if until_ns is not None:
                left = (until_ns - time.time_ns()) / 1e9
                if left < 0:
                    break
                wait = min(wait, left + 0.001)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), wait)
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
    except ConnectionError:
        pass
    finally:
        loop.remove_reader(fd)
        follower.close()
    return resp


ROUTES: list[Route] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", df),
    ("GET", "/events", events),
]
