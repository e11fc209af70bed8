"""Volume endpoints: list (with filters), inspect, create, remove, prune, through the
engine's volume service."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.createspec import get_field, str_map
from moorage.api.http import Route, api_at_least, filters, qbool, read_json
from moorage.errors import Conflict, InvalidArgument, NotFound

_LIST_FILTERS = ("dangling", "name", "label", "driver")
_PRUNE_FILTERS = ("label", "label!", "all", "until")


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


def _label(labels: dict[str, str], want: str) -> bool:
    k, sep, v = want.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _bool_filter(key: str, value: str) -> bool:
    if value not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter '{key}={value}': must be one of true, false, 1, 0")
    return value in ("true", "1")


def _parse(request: web.Request, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in filters(request):
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key in ("dangling", "all"):
            _bool_filter(key, value)
        out.setdefault(key, []).append(value)
    return out


async def list_volumes(request: web.Request) -> web.StreamResponse:
    wanted = _parse(request, _LIST_FILTERS)

    def run(ctx: Ctx) -> dict[str, Any]:
        svc = ctx.containers.volumes
        out = []
        for rec in svc.ls():
            if any(not any(v in rec.name for v in vals) for k, vals in wanted.items()
                   if k == "name"):  # fmt: skip
                continue
            if not all(_label(rec.labels, v) for v in wanted.get("label", [])):
                continue
            if "driver" in wanted and rec.driver not in wanted["driver"]:
                continue
            if "dangling" in wanted:
                dangling = not svc.users(rec.name)
                if all(_bool_filter("dangling", v) != dangling for v in wanted["dangling"]):
                    continue
            out.append(svc.inspect(rec))
        return {"Volumes": out, "Warnings": []}

    return web.json_response(await _backend(request).call(run))


async def inspect(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]

    def run(ctx: Ctx) -> dict[str, Any]:
        svc = ctx.containers.volumes
        doc: dict[str, Any] = svc.inspect(svc.get(name))
        return doc

    return web.json_response(await _backend(request).call(run))


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    w = "VolumeCreateBody"
    name = get_field(body, w, "Name", str, "")
    driver = get_field(body, w, "Driver", str, "") or "local"
    options = str_map(body, w, "DriverOpts")
    labels = str_map(body, w, "Labels")
    if driver != "local":
        raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" '
                       "not found")  # fmt: skip

    def run(ctx: Ctx) -> dict[str, Any]:
        svc = ctx.containers.volumes
        rec = svc.create(name, driver=driver, labels=labels, options=options)
        doc: dict[str, Any] = svc.inspect(rec)
        return doc

    return web.json_response(await _backend(request).call(run), status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    force = qbool(request, "force")
    await _backend(request).call(lambda ctx: ctx.containers.volumes.remove(name, force=force))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.StreamResponse:
    wanted = _parse(request, _PRUNE_FILTERS)
    # from API 1.42 on, prune takes only anonymous volumes unless all=true (as Docker 23+)
    every = not api_at_least(request, "1.42") or any(
        _bool_filter("all", v) for v in wanted.get("all", [])
    )

    def run(ctx: Ctx) -> tuple[list[str], int]:
        from moorage.engine.containers.logs import parse_until
        from moorage.store.snapshots import dir_usage

        svc = ctx.containers.volumes
        until = min((parse_until(v, time.time()) for v in wanted.get("until", [])), default=None)
        removed, reclaimed = [], 0
        for rec in svc.ls():
            if svc.users(rec.name) or not (every or rec.anonymous):
                continue
            if until is not None and rec.created > until:
                continue
            if not all(_label(rec.labels, v) for v in wanted.get("label", [])):
                continue
            if any(_label(rec.labels, v) for v in wanted.get("label!", [])):
                continue
            size = 0 if rec.options.get("type") else dir_usage(svc.mountpoint(rec.name))
            try:
                svc.remove(rec.name)
            except (Conflict, NotFound):
                continue
            removed.append(rec.name)
            reclaimed += size
        return removed, reclaimed

    removed, reclaimed = await _backend(request).call(run)
    return web.json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})


ROUTES: list[Route] = [
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", remove),
]
