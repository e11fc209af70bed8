"""Image endpoints: list, inspect, history, tag, remove, prune, get (save), load."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.http import Route, api_at_least, filters, qbool
from moorage.api.streams import AsyncReader, AsyncWriter
from moorage.engine.images.service import ImageRecord, familiar
from moorage.errors import InvalidArgument
from moorage.units import parse_time

LOAD_LIMIT = int(os.environ.get("MOORAGE_API_MAX_UPLOAD", str(64 << 30)))


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


def image_summary(ctx: Ctx, rec: ImageRecord, *, old_api: bool) -> dict[str, Any]:
    cfg = (ctx.images.config(rec).get("config")) or {}
    created = parse_time(rec.created) or rec.added
    doc: dict[str, Any] = {
        "Id": str(rec.id),
        "ParentId": "",
        "RepoTags": [familiar(t) for t in rec.tags],
        "RepoDigests": [familiar(d) for d in rec.repo_digests],
        "Created": int(created),
        "Size": rec.size,
        "SharedSize": -1,
        "Labels": cfg.get("Labels") or {},
        "Containers": -1,
    }
    if old_api:
        doc["VirtualSize"] = rec.size
    return doc


async def list_images(request: web.Request) -> web.StreamResponse:
    wanted = filters(request)
    old_api = not api_at_least(request, "1.44")

    def run(ctx: Ctx) -> list[dict[str, Any]]:
        return [image_summary(ctx, r, old_api=old_api) for r in ctx.images.ls(filters=wanted)]

    return web.json_response(await _backend(request).call(run))


async def inspect_image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]

    def run(ctx: Ctx) -> dict[str, Any]:
        return ctx.images.inspect(ctx.images.resolve(name))

    return web.json_response(await _backend(request).call(run))


async def history(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]

    def run(ctx: Ctx) -> list[dict[str, Any]]:
        out = ctx.images.history(ctx.images.resolve(name))
        for h in out:
            h["Created"] = int(parse_time(h.get("Created")) or 0)
            h["Tags"] = h.get("Tags") or []
        return out

    return web.json_response(await _backend(request).call(run))


async def tag(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    repo = request.query.get("repo", "")
    tag_ = request.query.get("tag", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag_}" if tag_ else repo
    await _backend(request).call(lambda ctx: ctx.images.tag(name, target))
    return web.Response(status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    force = qbool(request, "force")
    noprune = qbool(request, "noprune")

    def run(ctx: Ctx) -> list[dict[str, str]]:
        events = ctx.images.remove(name, force=force, collect=not noprune)
        return [{"Untagged" if e.kind == "untagged" else "Deleted": e.value} for e in events]

    return web.json_response(await _backend(request).call(run))


async def prune(request: web.Request) -> web.StreamResponse:
    all_unused = False
    for key, value in filters(request):
        if key == "dangling":
            all_unused = value.lower() in ("false", "0")
        elif key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{key}'")

    def run(ctx: Ctx) -> dict[str, Any]:
        events, reclaimed = ctx.images.prune(all_unused=all_unused)
        deleted = [{"Untagged" if e.kind == "untagged" else "Deleted": e.value} for e in events]
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    return web.json_response(await _backend(request).call(run))


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    from moorage.engine.images.archive import save

    backend = _backend(request)
    # resolve first, so an unknown name is a clean 404 before the stream starts
    await backend.call(lambda ctx: [ctx.images.resolve(n) for n in names])
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await resp.prepare(request)
    writer = AsyncWriter(resp, asyncio.get_running_loop())

    def run(ctx: Ctx) -> None:
        save(ctx.images, names, writer)  # type: ignore[arg-type]
        writer.flush()

    try:
        await backend.call(run)
    except ConnectionError:
        return resp
    await resp.write_eof()
    return resp


async def get_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def get_many(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise InvalidArgument("no images to save: use ?names=IMAGE")
    return await _save(request, names)


async def load(request: web.Request) -> web.StreamResponse:
    from moorage.engine.images.archive import load as load_archive

    reader = AsyncReader(request, asyncio.get_running_loop(), LOAD_LIMIT)
    result = await _backend(request).call(lambda ctx: load_archive(ctx.images, reader))  # type: ignore[arg-type]
    lines = []
    for tag_, old in result.renamed:
        lines.append(
            f"The image {familiar(tag_)} already exists, renaming the old one with ID {old} "
            "to empty string\n"
        )
    for name in result.loaded:
        prefix = "Loaded image ID: " if name.startswith("sha256:") else "Loaded image: "
        lines.append(prefix + name + "\n")
    body = "".join(json.dumps({"stream": line}) + "\n" for line in lines)
    # exactly "application/json" (no charset): the docker CLI then renders the messages
    return web.Response(body=body.encode(), headers={"Content-Type": "application/json"})


ROUTES: list[Route] = [
    ("GET", "/images/json", list_images),
    ("GET", "/images/get", get_many),
    ("POST", "/images/load", load),
    ("POST", "/images/prune", prune),
    ("GET", "/images/{name:.+}/json", inspect_image),
    ("GET", "/images/{name:.+}/history", history),
    ("GET", "/images/{name:.+}/get", get_one),
    ("POST", "/images/{name:.+}/tag", tag),
    ("DELETE", "/images/{name:.+}", remove),
]
