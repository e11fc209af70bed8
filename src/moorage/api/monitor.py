"""Containers started through the API: attach requests waiting for a start, and one watcher
per running container that records its exit (and removes an ``AutoRemove`` one) as soon as
conmon reports it, instead of leaving that to conmon's exit command."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from moorage.api.backend import Backend, Ctx
from moorage.api.http import log
from moorage.engine.containers import attach as att
from moorage.errors import MoorageError
from moorage.runtime import process_alive


@dataclass
class Watch:
    done: asyncio.Future[int]
    removed: bool = False
    created: float = field(default_factory=time.monotonic)


@dataclass
class Monitor:
    backend: Backend
    # container id -> futures of attach requests waiting for its start
    attaching: dict[str, list[asyncio.Future[socket.socket]]] = field(default_factory=dict)
    watches: dict[str, Watch] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def want_attach(self, cid: str) -> asyncio.Future[socket.socket]:
        fut: asyncio.Future[socket.socket] = asyncio.get_running_loop().create_future()
        self.attaching.setdefault(cid, []).append(fut)
        return fut

    def drop_attach(self, cid: str, fut: asyncio.Future[socket.socket]) -> None:
        waiting = self.attaching.get(cid, [])
        if fut in waiting:
            waiting.remove(fut)
        if not waiting:
            self.attaching.pop(cid, None)

    async def start(self, cid: str) -> None:
        """Start the container, connecting waiting attach requests before it runs."""
        loop = asyncio.get_running_loop()
        waiting = self.attaching.pop(cid, [])

        def on_created(path: os.PathLike[str]) -> None:
            from pathlib import Path

            for fut in waiting:
                try:
                    sock = att.connect(Path(path))
                except OSError as e:
                    loop.call_soon_threadsafe(_fail, fut, e)
                    continue
                loop.call_soon_threadsafe(_deliver, fut, sock)

        def run(ctx: Ctx) -> tuple[str, int]:
            svc = ctx.containers
            rec = svc.get(cid)
            lock = svc.attached_lock(rec.id)
            lock.parent.mkdir(parents=True, exist_ok=True)
            # held while we watch: conmon's exit command leaves the cleanup to us
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                log.warning("%s: its attach lock is held elsewhere: not watched", rec.id)
                os.close(fd)
                fd = -1
            try:
                svc.start(rec.id, attach=on_created if waiting else None)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
            return rec.id, fd

        try:
            full_id, fd = await self.backend.call(run)
        except BaseException as e:
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))
            raise
        if fd >= 0:
            self._watch(full_id, fd)

    def _watch(self, cid: str, fd: int) -> None:
        loop = asyncio.get_running_loop()
        watch = Watch(loop.create_future())
        self.watches[cid] = watch
        task = loop.create_task(self._follow(cid, fd, watch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _follow(self, cid: str, fd: int, watch: Watch) -> None:
        code = -1
        try:
            exit_file, conmon_pid = await self.backend.call(
                lambda ctx: (
                    ctx.containers.layout(cid).exit_file(cid),
                    ctx.containers._reload(cid).conmon_pid,
                )
            )
            delay = 0.005
            while True:
                try:
                    code = int(exit_file.read_text().strip() or 0)
                    break
                except (FileNotFoundError, ValueError):
                    pass
                if not process_alive(conmon_pid):
                    await asyncio.sleep(0.05)
                    if not exit_file.exists():
                        break
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.1)

            def finish(ctx: Ctx) -> bool:
                svc = ctx.containers
                svc.cleanup(cid)
                rec = svc.find(cid)
                return rec is not None and rec.spec.auto_remove

            remove = await self.backend.call(finish)
        except MoorageError:
            remove = False
        finally:
            os.close(fd)
        try:
            if remove:
                await self.backend.call(lambda ctx: ctx.containers.remove(cid, force=True))
                watch.removed = True
            else:
                await self.backend.call(lambda ctx: _hand_over_restart(ctx, cid))
        except MoorageError:
            pass
        finally:
            if code < 0:
                rec = await self.backend.call(lambda ctx: ctx.containers.find(cid))
                code = rec.exit_code if rec is not None else 137
                watch.removed = rec is None
            if not watch.done.done():
                watch.done.set_result(code)
            # kept a while: a waiter that polls may only look after the container is gone
            asyncio.get_running_loop().call_later(60, self._forget, cid, watch)

    def _forget(self, cid: str, watch: Watch) -> None:
        if self.watches.get(cid) is watch:
            del self.watches[cid]

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _deliver(fut: asyncio.Future[socket.socket], sock: socket.socket) -> None:
    if fut.done():
        sock.close()
    else:
        fut.set_result(sock)


def _fail(fut: asyncio.Future[socket.socket], e: Exception) -> None:
    if not fut.done():
        fut.set_exception(e)


def _hand_over_restart(ctx: Ctx, cid: str) -> None:
    """A restart policy goes on (conmon's exit command was skipped while we watched): the
    engine's cleanup applies it, with its back-off, in a thread of its own."""
    rec = ctx.containers.find(cid)
    if rec is None or rec.spec.restart in ("", "no") or rec.stopped_by_user:
        return
    root, runroot = ctx.engine.root, ctx.engine.runroot

    def restart() -> None:
        from moorage.engine import Engine
        from moorage.engine.containers.service import ContainerService

        engine = Engine(root, runroot)
        try:
            ContainerService(engine.store, engine.images).cleanup(cid, restart=True)
        except MoorageError:
            pass
        finally:
            engine.close()

    threading.Thread(target=restart, daemon=True, name=f"moorage-restart-{cid[:12]}").start()
