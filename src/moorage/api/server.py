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
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from moorage.api import build, containers, distribution, exec, images, networks, system, volumes
from moorage.api.backend import Backend
from moorage.api.http import JSON_BODY_LIMIT, add_routes, edge_middleware, error_response
from moorage.api.http import on_prepare as add_headers
from moorage.api.metrics import ROUTES as METRICS_ROUTES
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


@dataclass(frozen=True)
class TLSConfig:
    """TLS for the TCP hosts: ``verify`` requires client certificates signed by ``ca``
    (dockerd's ``--tlsverify``); without it the server is encrypted but open."""

    cert: str
    key: str
    ca: str | None = None
    verify: bool = False

    @classmethod
    def from_flags(
        cls, *, tls: bool, verify: bool, cert: str | None, key: str | None, ca: str | None
    ) -> TLSConfig | None:
        if not (tls or verify or cert or key or ca):
            return None
        missing = [
            flag
            for flag, value, needed in (
                ("--tls-cert", cert, True),
                ("--tls-key", key, True),
                ("--tls-ca", ca, verify),
            )
            if needed and not value
        ]
        if missing:
            why = "--tls-verify" if verify else "TLS"
            raise InvalidArgument(f"{why} needs {', '.join(missing)}")
        if ca and not verify:
            verify = True  # a CA given is a CA to check clients against, as dockerd does
        assert cert is not None and key is not None
        return cls(cert, key, ca, verify)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(
                f"cannot load the TLS certificate {self.cert} and key {self.key}: {e}"
            ) from None
        if self.verify:
            assert self.ca is not None
            try:
                ctx.load_verify_locations(cafile=self.ca)
            except (OSError, ssl.SSLError) as e:
                raise InvalidArgument(f"cannot load the TLS CA {self.ca}: {e}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def parse_host(value: str, tls: TLSConfig | None = None) -> Host:
    """``unix:///path`` or ``tcp://HOST:PORT``: loopback only, unless TLS with client
    certificates guards it (``tls.verify``)."""
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
        if not loopback and not (tls is not None and tls.verify):
            raise InvalidArgument(
                f"refusing to listen on {host or 'every address'}: without TLS client "
                "certificates the API is served on loopback only (it is root on this "
                "machine): add --tls-verify --tls-ca --tls-cert --tls-key"
            )
        return Host("tcp", host=host, port=port)
    raise InvalidArgument(f"invalid --host {value!r}: use unix:///PATH or tcp://HOST:PORT")


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
    for module in (system, images, distribution, build, containers, exec, networks, volumes):
        add_routes(app, module.ROUTES)
    add_routes(app, METRICS_ROUTES)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.on_response_prepare.append(add_headers)

    async def shutdown(app: web.Application) -> None:
        await app["monitor"].close()
        backend.close()

    app.on_cleanup.append(shutdown)
    return app


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
    tls: TLSConfig | None = None,
) -> None:
    ssl_context = tls.context() if tls is not None else None
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
                await web.TCPSite(
                    runner, h.host, h.port, reuse_address=True, ssl_context=ssl_context
                ).start()
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


def run(
    hosts: list[str],
    root: Path | None,
    runroot: Path | None,
    idle: int,
    tls: TLSConfig | None = None,
) -> None:
    parsed = [parse_host(h, tls) for h in hosts] or [parse_host(default_host(runroot))]
    if tls is not None:
        tls.context()  # unreadable files: a clear error before anything listens
        if not any(h.kind == "tcp" for h in parsed):
            raise InvalidArgument("TLS flags given, but no tcp:// --host to serve them on")
    try:
        asyncio.run(serve(parsed, root, runroot, idle, tls=tls))
    except OSError as e:
        raise MoorageError(f"cannot serve the API: {e}") from e
