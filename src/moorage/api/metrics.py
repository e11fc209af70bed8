"""``GET /metrics``: the containers' resource usage in Prometheus text format, the same
reading as ``moor stats --format prometheus`` (running containers; ``?all=1`` for all)."""

from __future__ import annotations

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.http import Route

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics(request: web.Request) -> web.StreamResponse:
    backend: Backend = request.app["backend"]
    show_all = request.query.get("all", "") in ("1", "true", "True")

    def read(ctx: Ctx) -> str:
        from moorage.engine import stats

        svc = ctx.containers
        return stats.read_prometheus(svc, [r for r in svc.ls() if show_all or r.running])

    text = await backend.call(read)
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


ROUTES: list[Route] = [("GET", "/metrics", metrics)]
