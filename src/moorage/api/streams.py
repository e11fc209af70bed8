"""Docker's raw streams: the 8-byte multiplexed framing, hijacked (upgraded) connections, and
bridges between blocking engine readers/writers and aiohttp streams."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from aiohttp import web

from moorage.api.http import api_at_least

STDIN, STDOUT, STDERR = 0, 1, 2
_STREAMS = {"stdout": STDOUT, "stderr": STDERR}


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: [stream, 0, 0, 0, big-endian uint32 size] + data."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def stream_no(name: str) -> int:
    return _STREAMS.get(name, STDOUT)


def raw_content_type(request: web.Request, tty: bool) -> str:
    if not tty and api_at_least(request, "1.42"):
        return "application/vnd.docker.multiplexed-stream"
    return "application/vnd.docker.raw-stream"


class Hijacked(asyncio.Protocol):
    """A connection taken over from aiohttp after the response head: raw bytes both ways,
    the client's half-close seen as EOF (so stdin can end while output still flows)."""

    def __init__(self, transport: asyncio.Transport, previous: asyncio.BaseProtocol) -> None:
        self.transport = transport
        self._previous = previous
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.Event()
        self._paused = False

    # protocol callbacks
    def data_received(self, data: bytes) -> None:
        self._incoming.put_nowait(data)
        if self._incoming.qsize() > 64 and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._incoming.put_nowait(None)
        return True  # keep writing after the client's CloseWrite

    def connection_lost(self, exc: Exception | None) -> None:
        self._incoming.put_nowait(None)
        self._writable.set()
        self.closed.set()
        with contextlib.suppress(Exception):
            self._previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # for handlers
    async def read(self) -> bytes | None:
        """The client's next bytes; None at its EOF (or when it went away)."""
        data = await self._incoming.get()
        if self._paused and self._incoming.qsize() < 8:
            self._paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()
        if data is None:
            self._incoming.put_nowait(None)  # later reads see EOF too
        return data

    async def write(self, data: bytes) -> bool:
        """False once the client is gone."""
        if self.closed.is_set() or self.transport.is_closing():
            return False
        self.transport.write(data)
        await self._writable.wait()
        return not self.closed.is_set()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


class _Taken(web.StreamResponse):
    """What a hijacking handler returns: aiohttp must not write anything more."""

    def __init__(self) -> None:
        super().__init__(status=101)

    async def prepare(self, request: web.BaseRequest) -> Any:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def hijack(request: web.Request, content_type: str) -> tuple[Hijacked, web.StreamResponse]:
    """Answer ``101 UPGRADED`` (when asked with ``Upgrade: tcp``) or the classic ``200`` and
    take the connection over. Returns the connection and what the handler must return."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("client went away")
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    if upgrade:
        head = (
            "HTTP/1.1 101 UPGRADED\r\n"
            f"Content-Type: {content_type}\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: tcp\r\n"
        )
    else:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
    head += f"Api-Version: {request['api_version']}\r\n\r\n"
    protocol = request.protocol
    conn = Hijacked(transport, protocol)
    tail = getattr(protocol, "_message_tail", b"")
    transport.write(head.encode())
    transport.set_protocol(conn)
    if tail:
        conn.data_received(tail)
    return conn, _Taken()


class AsyncWriter:
    """A blocking file-like ``write`` (for engine code run in a worker thread) that sends to
    an aiohttp response on the loop; raises ConnectionResetError once the client is gone."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.response = response
        self.loop = loop
        self._buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        if len(self._buf) >= 1 << 16:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self._buf:
            return
        chunk = bytes(self._buf)
        self._buf.clear()
        fut = asyncio.run_coroutine_threadsafe(self.response.write(chunk), self.loop)
        try:
            fut.result()
        except ConnectionError:
            raise
        except Exception as e:
            raise ConnectionResetError(str(e)) from e


class AsyncReader:
    """A blocking file-like ``read`` over a request body, for engine code in a worker thread;
    refuses to read past ``limit`` bytes."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.content = request.content
        self.loop = loop
        self.limit = limit
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        data = asyncio.run_coroutine_threadsafe(self.content.read(n), self.loop).result()
        self.total += len(data)
        if self.total > self.limit:
            from moorage.errors import InvalidArgument

            raise InvalidArgument(f"request body larger than the limit of {self.limit} bytes")
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False
