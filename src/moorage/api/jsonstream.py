"""Docker's JSON message streams (pull, push, build): long engine work runs in a worker
thread and sends messages through a queue; the response starts with the first message, so
an error before any output is a plain HTTP error, and one after it an ``errorDetail``
message in the stream. A client that goes away cancels the work at its next message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.http import error_response, status_of
from moorage.errors import MoorageError
from moorage.units import human_size

log = logging.getLogger("moorage.api")

T = TypeVar("T")
Message = dict[str, Any]

_BAR = 50


class ClientGone(ConnectionResetError):
    """The client closed the connection: the work stops at its next message."""


class Emitter:
    """Thread-safe: engine code calls :meth:`send` from any worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.on_cancel: list[Callable[[], None]] = []

    def send(self, msg: Message) -> None:
        if self.cancelled.is_set():
            raise ClientGone("the client went away")
        self.loop.call_soon_threadsafe(self.queue.put_nowait, msg)

    def cancel(self) -> None:
        self.cancelled.set()
        for fn in self.on_cancel:
            with contextlib.suppress(Exception):
                fn()


def progress_bar(current: int, total: int) -> str:
    """Docker's ``progress`` text: ``[=====>     ]  1.2MB/3.4MB``."""
    if total <= 0:
        return f"{human_size(current)}"
    filled = min(_BAR, _BAR * current // total)
    arrow = ">" if filled < _BAR else ""
    bar = "=" * filled + arrow + " " * (_BAR - filled - len(arrow))
    return f"[{bar}] {human_size(current):>8}/{human_size(total)}"


def error_message(e: BaseException) -> Message:
    text = str(e)
    detail: dict[str, Any] = {"message": text}
    code = getattr(e, "exit_code", None)
    if isinstance(code, int) and type(e).__name__ == "BuildFailed":
        detail["code"] = code
    return {"errorDetail": detail, "error": text}


def _encode(msg: Message) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\r\n"


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def run_streamed(
    request: web.Request,
    work: Callable[[Ctx, Emitter], T],
    finish: Callable[[T], list[Message]] | None = None,
) -> web.StreamResponse:
    """Run ``work(ctx, emitter)`` in the backend's pool, streaming what it sends; then the
    messages ``finish(result)`` makes. Returns the (possibly not yet started) response."""
    backend: Backend = request.app["backend"]
    emitter = Emitter(asyncio.get_running_loop())
    job: asyncio.Future[T] = asyncio.ensure_future(backend.call(lambda ctx: work(ctx, emitter)))
    resp: web.StreamResponse | None = None

    async def write(msg: Message) -> None:
        nonlocal resp
        if resp is None:
            # exactly "application/json": the docker CLI then renders the messages
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
        await resp.write(_encode(msg))

    try:
        while True:
            getter: asyncio.Future[Any] = asyncio.ensure_future(emitter.queue.get())
            waiting: set[asyncio.Future[Any]] = {getter, job}
            done, _ = await asyncio.wait(waiting, timeout=1.0, return_when="FIRST_COMPLETED")
            if getter in done:
                await write(getter.result())
                continue
            getter.cancel()
            if job in done:
                while not emitter.queue.empty():
                    await write(emitter.queue.get_nowait())
                break
            if _gone(request):
                raise ClientGone("the client went away")
        try:
            result = job.result()
        except MoorageError as e:
            if resp is None:
                return error_response(status_of(e), str(e))
            await write(error_message(e))
        else:
            for msg in finish(result) if finish is not None else []:
                await write(msg)
    except asyncio.CancelledError:
        emitter.cancel()
        await asyncio.shield(_reap(job))
        raise
    except ConnectionError:  # the client went away: nothing more to say to it
        emitter.cancel()
        await asyncio.shield(_reap(job))
        return resp if resp is not None else web.Response()
    except Exception as e:  # a bug in the work: say so in the stream, keep serving
        if not isinstance(e, MoorageError):
            log.exception("%s %s failed", request.method, request.path)
        if resp is None:
            return error_response(500, f"internal error: {e}")
        with contextlib.suppress(ConnectionError):
            await write(error_message(e))
    if resp is None:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


async def _reap(job: asyncio.Future[Any]) -> None:
    """Wait for cancelled work to clean up after itself."""
    with contextlib.suppress(BaseException):
        await job
