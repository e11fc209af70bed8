"""``moor registry serve``: bind, print what is served and how it is guarded, run the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from moorage.errors import InvalidArgument


@dataclass
class ServeOptions:
    addr: str = "127.0.0.1:5000"
    root: Path = Path("/var/lib/moorage/registry")
    htpasswd: Path | None = None
    token_issuer: Path | None = None
    token_realm: str | None = None
    acl: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    read_only: bool = False
    delete: bool = False
    workers: int = 1


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidArgument(f"invalid --addr {addr!r}: expected HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def build(opts: ServeOptions) -> object:
    """The aiohttp application for ``opts`` (also used by tests in-process)."""
    from moorage.registry.app import Registry
    from moorage.registry.auth import Authorizer, load_acl, load_htpasswd, load_token_key
    from moorage.registry.fsdriver import FilesystemDriver
    from moorage.registry.storage import RegistryStorage

    if opts.token_issuer is not None and opts.htpasswd is None:
        raise InvalidArgument("--token-issuer needs --htpasswd (the issuer checks passwords)")
    if opts.acl is not None and opts.htpasswd is None:
        raise InvalidArgument("--acl needs --htpasswd")
    authorizer = Authorizer(
        users=load_htpasswd(opts.htpasswd) if opts.htpasswd else None,
        acl=load_acl(opts.acl) if opts.acl else None,
        token_key=load_token_key(opts.token_issuer) if opts.token_issuer else None,
        realm=opts.token_realm,
    )
    opts.root.mkdir(parents=True, exist_ok=True)
    storage = RegistryStorage(FilesystemDriver(opts.root), opts.root)
    return Registry(storage, authorizer, read_only=opts.read_only, delete=opts.delete).app()


def _ssl(opts: ServeOptions) -> object | None:
    if opts.tls_cert is None and opts.tls_key is None:
        return None
    if opts.tls_cert is None or opts.tls_key is None:
        raise InvalidArgument("--tls-cert and --tls-key go together")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"cannot load TLS certificate: {e}") from None
    return ctx


async def _run(app: object, sock: socket.socket, ssl_ctx: object | None) -> None:
    from aiohttp import web

    assert isinstance(app, web.Application)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_ctx)  # type: ignore[arg-type]
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def _die_with_parent() -> None:
    """A worker ends when the main process does, even when that one was killed with -9."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(opts: ServeOptions) -> None:
    # until the event loop takes over, SIGTERM ends the process cleanly too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = build(opts)
    ssl_ctx = _ssl(opts)
    host, port = parse_addr(opts.addr)
    sock = _bind(host, port)
    scheme = "https" if ssl_ctx else "http"
    bound = sock.getsockname()[1]
    guard = "token auth" if opts.token_issuer else "basic auth" if opts.htpasswd else None
    warning = (
        "; WARNING: no --htpasswd: serving openly, anyone who can reach it can pull and push"
        if guard is None
        else ""
    )
    print(
        f"moor registry: serving {opts.root} on {scheme}://{host}:{bound}"
        + (f" ({guard})" if guard else "")
        + (" read-only" if opts.read_only else "")
        + warning,
        file=sys.stderr,
        flush=True,
    )
    children: list[int] = []
    for _ in range(max(opts.workers, 1) - 1):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            try:
                asyncio.run(_run(app, sock, ssl_ctx))
            finally:
                os._exit(0)
        children.append(pid)
    try:
        asyncio.run(_run(app, sock, ssl_ctx))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
