"""The library facade: one ``Engine`` per store root, with images (and later containers,
networks, volumes) services. The CLI and the API both call this; neither shells out."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from moorage.engine.images import ImageService
from moorage.store import Store, default_root, default_runroot


class Engine:
    def __init__(self, root: Path | None = None, runroot: Path | None = None) -> None:
        # absolute: conmon runs in the container's directory (where it writes ``oom``)
        self.root = (root or default_root()).absolute()
        self.runroot = (runroot or default_runroot()).absolute()

    @cached_property
    def store(self) -> Store:
        return Store.open(self.root, self.runroot)

    @cached_property
    def images(self) -> ImageService:
        return ImageService(self.store)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
