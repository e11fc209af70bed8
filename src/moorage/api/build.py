"""``POST /build``: a build from a tar context with the classic builder's JSON stream
(``{"stream": "Step 1/3 : ..."}``, ``{"aux": {"ID": ...}}``, ``Successfully built``)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.distribution import build_credentials
from moorage.api.http import Route, qbool
from moorage.api.jsonstream import ClientGone, Emitter, Message, run_streamed
from moorage.api.streams import AsyncReader
from moorage.errors import InvalidArgument, MoorageError, Unsupported

log = logging.getLogger("moorage.api")

CONTEXT_LIMIT = int(os.environ.get("MOORAGE_API_MAX_UPLOAD", str(64 << 30)))


@dataclass
class BuildRequest:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    rm: bool = True
    force_rm: bool = False
    quiet: bool = False
    pull: bool = False
    cache_from: list[str] = field(default_factory=list)
    network: str = "bridge"
    registry_auth: dict[str, tuple[str, str]] = field(default_factory=dict)


def _json_query(request: web.Request, name: str, want: type) -> Any:
    raw = request.query.get(name, "")
    if not raw:
        return want()
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name}: {raw!r} is not JSON") from None
    if doc is None:
        return want()
    if not isinstance(doc, want):
        kind = "object" if want is dict else "array"
        raise InvalidArgument(f"invalid {name}: expected a JSON {kind}")
    return doc


def parse_request(request: web.Request) -> BuildRequest:
    """The query as build options; every mistake a 400 before the context is read."""
    from moorage.oci.reference import parse_reference

    if request.query.get("remote"):
        raise Unsupported("building from a remote context is not supported: send a tar")
    if qbool(request, "squash"):
        raise Unsupported("squash is not supported")
    tags = []
    for t in request.query.getall("t", []):
        ref = parse_reference(t)
        if ref.digest is not None:
            raise InvalidArgument(f"invalid reference format: {t} (a tag cannot be a digest)")
        tags.append(str(ref.with_default_tag()))
    args = _json_query(request, "buildargs", dict)
    for k, v in args.items():
        if v is not None and not isinstance(v, str):
            raise InvalidArgument(f"invalid buildargs: the value of {k} must be a string")
    labels = _json_query(request, "labels", dict)
    for k, v in labels.items():
        if not isinstance(v, str):
            raise InvalidArgument(f"invalid labels: the value of {k} must be a string")
    cache_from = _json_query(request, "cachefrom", list)
    if not all(isinstance(c, str) for c in cache_from):
        raise InvalidArgument("invalid cachefrom: expected an array of image names")
    network = request.query.get("networkmode", "") or "default"
    dockerfile = request.query.get("dockerfile", "") or "Dockerfile"
    rel = posixpath.normpath(dockerfile.lstrip("/"))
    if rel in (".", "..") or rel.startswith("../"):
        raise InvalidArgument(f"the Dockerfile ({dockerfile}) must be within the build context")
    return BuildRequest(
        tags=tags,
        dockerfile=rel,
        build_args=dict(args),
        labels=dict(labels),
        target=request.query.get("target") or None,
        no_cache=qbool(request, "nocache"),
        rm=qbool(request, "rm", True),
        force_rm=qbool(request, "forcerm"),
        quiet=qbool(request, "q"),
        pull=qbool(request, "pull"),
        cache_from=list(cache_from),
        network="bridge" if network == "default" else network,
        registry_auth=build_credentials(request),
    )


class _Output:
    """One pipe for the step lines and the RUN steps' output (so they stay in order); a
    thread turns what comes out of it into ``stream`` messages."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        r, w = os.pipe()
        self.reader = os.fdopen(r, "rb", buffering=0)
        self.writer = os.fdopen(w, "wb", buffering=0)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        gone = False
        while data := self.reader.read(1 << 16):
            text = decoder.decode(data)
            if text and not gone:
                try:
                    self.emitter.send({"stream": text})
                except ClientGone:
                    gone = True  # keep draining so the builder never blocks on the pipe

    def line(self, text: str) -> None:
        if self.emitter.cancelled.is_set():
            raise ClientGone("the client went away")
        self.writer.write((text + "\n").encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.close()
        self.thread.join()
        self.reader.close()


def _build(
    backend: Backend, ctx: Ctx, emitter: Emitter, req: BuildRequest, body: AsyncReader
) -> tuple[str, list[str]]:
    from moorage.build.builder import Builder, BuildOptions, Progress
    from moorage.build.context import BuildContext, extract_tar
    from moorage.build.frontend import parse

    base = ctx.engine.store.root / "build"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix="ctx-", dir=base))
    try:
        extract_tar(body, tmp, "in the request")  # type: ignore[arg-type]
        df_path = tmp / req.dockerfile
        if req.dockerfile == "Dockerfile" and not df_path.exists():
            df_path = tmp / "dockerfile"  # Docker's fallback for the default name
        # resolved inside the context: a symlink must not read the service's own files
        real = df_path.resolve()
        if not real.is_relative_to(tmp.resolve()) or not real.is_file():
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {req.dockerfile}")
        dockerfile = parse(real.read_text(encoding="utf-8", errors="replace"), req.dockerfile)
        options = BuildOptions(
            tags=req.tags,
            build_args=req.build_args,
            target=req.target,
            labels=req.labels,
            network=req.network,
            no_cache=req.no_cache,
            cache_from=req.cache_from,
            quiet=req.quiet,
            pull=req.pull,
            rm=req.rm,
            force_rm=req.force_rm,
            registry_auth=req.registry_auth,
            stored_credentials=False,
        )
        out = _Output(emitter)
        done = threading.Event()
        try:
            builder = Builder(
                ctx.engine,
                dockerfile,
                BuildContext.open(tmp),
                options,
                Progress(out.line, req.quiet),
                (out.writer, out.writer),
            )
            emitter.on_cancel.append(lambda: _kill_running(backend, builder, done))
            image_id = builder.build()
        finally:
            done.set()
            out.close()
        for t in req.tags:
            ctx.images.tag(image_id, t)
        return image_id, req.tags
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_running(backend: Backend, builder: Any, done: threading.Event) -> None:
    """On the loop, when the client left: until the build ends (in a pool thread), kill
    the RUN step's container whenever one runs, so the build stops and removes it. A step
    may be between creating its container and starting it: a kill refused then (the
    container is not running yet) is tried again."""

    def watch() -> None:
        killed: set[str] = set()
        while not done.wait(0.05):
            running = builder.running
            if running is None or running in killed:
                continue
            try:
                backend.ctx().containers.kill(running, "KILL")
            except MoorageError:
                continue  # not started yet, or already gone: look again
            except Exception:
                log.exception("cannot end build container %s", running)
                continue
            killed.add(running)

    backend.pool.submit(watch)


async def build(request: web.Request) -> web.StreamResponse:
    from moorage.engine.images.service import familiar

    req = parse_request(request)
    body = AsyncReader(request, asyncio.get_running_loop(), CONTEXT_LIMIT)

    def finish(result: tuple[str, list[str]]) -> list[Message]:
        image_id, tags = result
        msgs: list[Message] = [{"aux": {"ID": image_id}}]
        if req.quiet:
            return [*msgs, {"stream": image_id + "\n"}]
        msgs.append({"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"})
        msgs += [{"stream": f"Successfully tagged {familiar(t)}\n"} for t in tags]
        return msgs

    backend: Backend = request.app["backend"]
    return await run_streamed(request, lambda ctx, em: _build(backend, ctx, em, req, body), finish)


ROUTES: list[Route] = [("POST", "/build", build)]
