"""The service: one aiohttp application on unix sockets and loopback TCP, shut down after
``--time`` idle seconds (0: never) or on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import ipaddress
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from moorage.api import containers, exec, images, networks, system, volumes
from moorage.api.backend import Backend
from moorage.api.http import JSON_BODY_LIMIT, add_routes, edge_middleware, error_response
from moorage.api.http import on_prepare as add_headers
from moorage.api.monitor import Monitor
from moorage.errors import InvalidArgument, MoorageError
from moorage.store import default_runroot

log = logging.getLogger("moorage.api")

SOCKET_GROUP = "moorage"


@dataclass(frozen=True)
class Host:
    kind: str  # "unix" | "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.kind == "unix" else f"tcp://{self.host}:{self.port}"


def default_host(runroot: Path | None) -> str:
    return f"unix://{(runroot or default_runroot()) / 'moorage.sock'}"


def parse_host(value: str) -> Host:
    """``unix:///path`` or ``tcp://127.0.0.1:PORT`` (loopback only: there is no TLS yet)."""
    if value.startswith("unix://"):
        path = value[len("unix://") :]
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid --host {value!r}: the socket path must be absolute")
        return Host("unix", path=path)
    if value.startswith("tcp://"):
        parts = urlsplit(value)
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None:
            raise InvalidArgument(f"invalid --host {value!r}: a port is required")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidArgument(
                f"refusing to listen on {host}: without TLS the API is served on loopback "
                "only (TLS with client certificates is not supported yet)"
            )
        return Host("tcp", host=host, port=port)
    raise InvalidArgument(f"invalid --host {value!r}: use unix:///PATH or tcp://127.0.0.1:PORT")


class Activity:
    """Requests in flight and when the last one ended, for ``--time``."""

    def __init__(self) -> None:
        self.active = 0
        self.last = time.monotonic()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.active += 1
        try:
            return await handler(request)
        finally:
            self.active -= 1
            self.last = time.monotonic()


async def _not_found(request: web.Request) -> web.StreamResponse:
    return error_response(404, "page not found")


def build_app(
    root: Path | None, runroot: Path | None, activity: Activity | None = None
) -> web.Application:
    middlewares = [edge_middleware]
    if activity is not None:
        middlewares.insert(0, activity.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=JSON_BODY_LIMIT)
    backend = Backend(root, runroot)
    app["backend"] = backend
    app["monitor"] = Monitor(backend)
    app["execs"] = {}
    for module in (system, images, containers, exec, networks, volumes):
        add_routes(app, module.ROUTES)
    # pulls come with the registry client: say so rather than "page not found"
    add_routes(app, [("POST", "/images/create", _no_pull)])
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.on_response_prepare.append(add_headers)

    async def shutdown(app: web.Application) -> None:
        await app["monitor"].close()
        backend.close()

    app.on_cleanup.append(shutdown)
    return app


async def _no_pull(request: web.Request) -> web.StreamResponse:
    image = request.query.get("fromImage", "")
    tag = request.query.get("tag", "")
    ref = f"{image}:{tag}" if tag and "@" not in image else image
    return error_response(
        404, f"No such image: {ref} (pulling from a registry is not available in this moorage)"
    )


def _secure_socket(path: str) -> None:
    os.chmod(path, 0o660)
    try:
        gid = grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        gid = 0
    with contextlib.suppress(PermissionError):
        os.chown(path, 0, gid)


def _unix_socket(path: str) -> socket.socket:
    """Bind ``path`` (mode 0660 from the start), replacing a stale socket but never a live
    one or another kind of file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    if p.exists() or p.is_symlink():
        import stat

        if not stat.S_ISSOCK(p.lstat().st_mode):
            raise InvalidArgument(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            p.unlink()
        else:
            raise InvalidArgument(f"{path} is in use by another service")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    _secure_socket(path)
    return sock


async def serve(
    hosts: list[Host],
    root: Path | None,
    runroot: Path | None,
    idle: int,
    ready: Callable[[], None] | None = None,
) -> None:
    activity = Activity()
    app = build_app(root, runroot, activity)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    made: list[str] = []
    try:
        for h in hosts:
            if h.kind == "unix":
                sock = _unix_socket(h.path)
                made.append(h.path)
                await web.SockSite(runner, sock).start()
            else:
                await web.TCPSite(runner, h.host, h.port, reuse_address=True).start()
        if ready is not None:
            ready()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            idle_for = time.monotonic() - activity.last
            if idle and activity.active == 0 and idle_for >= idle:
                break
    finally:
        await runner.cleanup()
        for path in made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def run(hosts: list[str], root: Path | None, runroot: Path | None, idle: int) -> None:
    parsed = [parse_host(h) for h in hosts] or [parse_host(default_host(runroot))]
    try:
        asyncio.run(serve(parsed, root, runroot, idle))
    except OSError as e:
        raise MoorageError(f"cannot serve the API: {e}") from e
