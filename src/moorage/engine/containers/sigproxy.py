"""Forwarding the signals ``moor`` receives to a container, as the docker CLI's sig-proxy."""

from __future__ import annotations

import contextlib
import signal as signals
from collections.abc import Callable, Iterator

# signals the docker CLI forwards to the container (not the ones about terminals or children)
PROXIED = [
    s
    for s in signals.valid_signals()
    if isinstance(s, signals.Signals)
    and s
    not in (
        signals.SIGCHLD,
        signals.SIGPIPE,
        signals.SIGURG,
        signals.SIGWINCH,
        signals.SIGKILL,
        signals.SIGSTOP,
        signals.SIGTSTP,
        signals.SIGTTIN,
        signals.SIGTTOU,
        signals.SIGCONT,
    )
]


@contextlib.contextmanager
def proxy_signals(send: Callable[[int], None]) -> Iterator[None]:
    """Forward the signals ``moor`` gets to the container while attached."""
    previous = {}
    for s in PROXIED:
        with contextlib.suppress(OSError, ValueError):
            previous[s] = signals.signal(s, lambda num, _frame: send(num))
    try:
        yield
    finally:
        for s, handler in previous.items():
            with contextlib.suppress(OSError, ValueError):
                signals.signal(s, handler)
