"""Blocking engine calls off the event loop: a thread pool whose every worker opens its own
Engine (and so its own SQLite connection) on first use."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from moorage.engine import Engine
from moorage.engine.containers.service import ContainerService
from moorage.engine.images import ImageService

T = TypeVar("T")


@dataclass
class Ctx:
    """What a handler's blocking part works with, private to one worker thread."""

    engine: Engine

    @property
    def images(self) -> ImageService:
        return self.engine.images

    @cached_property
    def containers(self) -> ContainerService:
        return ContainerService(self.engine.store, self.engine.images)


class Backend:
    def __init__(self, root: Path | None, runroot: Path | None, workers: int = 32) -> None:
        self.root = root
        self.runroot = runroot
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="moorage-api")
        self._local = threading.local()
        self._all: list[Ctx] = []
        self._lock = threading.Lock()

    def ctx(self) -> Ctx:
        """This thread's context (opened on first use)."""
        ctx: Ctx | None = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = Ctx(Engine(self.root, self.runroot))
            self._local.ctx = ctx
            with self._lock:
                self._all.append(ctx)
        return ctx

    async def call(self, fn: Callable[[Ctx], T]) -> T:
        """Run ``fn(ctx)`` in the pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(self.ctx()))

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in the pool (for blocking work that needs no engine)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for ctx in self._all:
                ctx.engine.close()
            self._all.clear()
