"""Work that may wait until the command has answered.

A command run by the warm process's child tells its client the exit code first and then does
this work, before it exits: the user's prompt comes back a few milliseconds sooner (removing a
container's directories takes 1-3 ms, far more on a busy host). Anywhere else (a cold
command, the API service, the library) it runs at once. Only work that a later command redoes
if this process dies first belongs here (``ContainerService.sweep_orphans`` finds what a
removal left)."""

from __future__ import annotations

from collections.abc import Callable

_pending: list[Callable[[], None]] | None = None


def after_reply(fn: Callable[[], None]) -> None:
    """Run ``fn`` once the command has answered, or now if nobody will run it later."""
    if _pending is None:
        fn()
    else:
        _pending.append(fn)


def hold() -> None:
    """From now on, ``after_reply`` keeps its work for ``run_held`` (the warm child)."""
    global _pending
    _pending = []


def run_held() -> None:
    """Run what was kept, in order; a failure of one does not stop the others."""
    global _pending
    pending, _pending = _pending or [], None
    for fn in pending:
        try:
            fn()
        except Exception:  # best effort: a later sweep redoes it
            continue
