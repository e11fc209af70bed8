"""Open directory fds below a root, reached one component at a time and kept for reuse.

Both extractors (layers into snapshots, ``cp`` into containers) resolve every entry's
parent this way: never by a path string the host would resolve, always ``openat`` from
the fd of the directory above, by a rule each extractor supplies (follow nothing, or
follow symlinks only inside the container's root).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K", str, bytes)


class DirFdCache(Generic[K]):
    def __init__(self, root_fd: int) -> None:
        self.root = root_fd
        self._fds: dict[tuple[K, ...], int] = {}

    def __len__(self) -> int:
        return len(self._fds)

    def walk(self, comps: tuple[K, ...], open_child: Callable[[int, tuple[K, ...]], int]) -> int:
        """The fd of ``comps``: from the longest prefix already open, each further component
        is opened by ``open_child(parent_fd, prefix)``. Only the final fd is kept."""
        if not comps:
            return self.root
        fd = self._fds.get(comps)
        if fd is not None:
            return fd
        i = len(comps) - 1
        cur = self.root
        while i > 0:
            cached = self._fds.get(comps[:i])
            if cached is not None:
                cur = cached
                break
            i -= 1
        owned = False
        try:
            for j in range(i, len(comps)):
                nxt = open_child(cur, comps[: j + 1])
                if owned:
                    os.close(cur)
                cur, owned = nxt, True
        except BaseException:
            if owned:
                os.close(cur)
            raise
        self._fds[comps] = cur
        return cur

    def forget(self, comps: tuple[K, ...]) -> None:
        """``comps`` is gone: close the fds at and below it."""
        n = len(comps)
        for k in [k for k in self._fds if k[:n] == comps]:
            os.close(self._fds.pop(k))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
