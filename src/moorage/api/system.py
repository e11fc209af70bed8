"""System endpoints: /_ping, /version, /info, /system/df, /events."""

from __future__ import annotations

import asyncio
import platform
import time
from typing import Any

from aiohttp import web

from moorage import __version__
from moorage.api import MAX_API_VERSION, MIN_API_VERSION
from moorage.api.backend import Backend, Ctx
from moorage.api.http import Route, filters, qint


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
    from moorage.api.containers import summary
    from moorage.api.images import image_summary
    from moorage.engine.system import container_bytes

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
    for c in ctrs:
        doc = summary(ctx, c, now=time.time())
        doc["SizeRw"] = container_bytes(svc, c)
        doc["SizeRootFs"] = doc["SizeRw"] + svc.image_of(c).size
        containers.append(doc)
    layers = ctx.images.exclusive_bytes(str(r.id) for r in ctx.images.ls())
    return {
        "LayersSize": layers,
        "Images": images,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    }


async def df(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).call(_df))


async def events(request: web.Request) -> web.StreamResponse:
    """No events are recorded yet (the events stream lands with its own module): a valid,
    empty stream that ends at ``until`` or when the client goes away."""
    filters(request)  # reject malformed filters as Docker does
    until = qint(request, "until")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    if until is not None:
        await asyncio.sleep(max(0.0, until - time.time()))
        await resp.write_eof()
        return resp
    transport = request.transport
    while transport is not None and not transport.is_closing():
        await asyncio.sleep(0.5)
    return resp


ROUTES: list[Route] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", df),
    ("GET", "/events", events),
]
