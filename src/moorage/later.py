"""Work that may wait until a command has answered.

A short command run by the warm process's child (``run``, ``rm``, ``container prune``) tells
its client the exit code first and then does this work, before it exits: the user's prompt
comes back a few milliseconds sooner (removing a container's directories takes 1-3 ms, far
more on a busy host). Anywhere else (a cold command, a long-running one such as ``system
service`` or ``compose up``, the library) it runs at once. Only work that a later command
redoes if this process dies first belongs here (``ContainerService.sweep_orphans`` finds
what a removal left)."""

from __future__ import annotations

from collections.abc import Callable

_enabled = False  # someone runs held work once the command has answered (the warm child)
_pending: list[Callable[[], None]] | None = None


def after_reply(fn: Callable[[], None]) -> None:
    """Run ``fn`` once the command has answered, or now if it is not held."""
    if _pending is None:
        fn()
    else:
        _pending.append(fn)


def enable() -> None:
    """This process will call ``run_held`` once its command has answered."""
    global _enabled
    _enabled = True


def hold() -> None:
    """Called by a short command: keep ``after_reply`` work for ``run_held``, if enabled."""
    global _pending
    if _enabled and _pending is None:
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
