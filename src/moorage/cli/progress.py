"""Transfer progress as Docker shows it: per-layer bars redrawn on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from moorage.units import human_size


class PlainReporter:
    """One line per status change (no byte counts): what a log or a pipe wants."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def status(self, key: str, text: str) -> None:
        with self._lock:
            print(f"{key}: {text}", file=self.out, flush=True)

    def progress(self, key: str, verb: str, done: int, total: int) -> None:
        pass


class QuietReporter:
    def message(self, text: str) -> None:
        pass

    def status(self, key: str, text: str) -> None:
        pass

    def progress(self, key: str, verb: str, done: int, total: int) -> None:
        pass


def bar(done: int, total: int, width: int = 50) -> str:
    if total <= 0:
        return ""
    filled = min(width, done * width // total)
    arrow = ">" if filled < width else ""
    pad = " " * (width - filled - len(arrow))
    return f"[{'=' * filled}{arrow}{pad}]  {human_size(done)}/{human_size(total)}"


class TTYReporter:
    """Docker's layout: one line per layer, rewritten in place with ANSI cursor moves."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._keys: list[str] = []
        self._lines: dict[str, str] = {}
        self._drawn = 0

    def _redraw(self) -> None:
        parts = []
        if self._drawn:
            parts.append(f"\x1b[{self._drawn}A")
        for k in self._keys:
            parts.append(f"\x1b[2K\r{k}: {self._lines[k]}\n")
        self._drawn = len(self._keys)
        self.out.write("".join(parts))
        self.out.flush()

    def message(self, text: str) -> None:
        with self._lock:
            if self._drawn:  # a message after the layers: they are final, keep them above
                self._keys.clear()
                self._lines.clear()
                self._drawn = 0
            self.out.write(text + "\n")
            self.out.flush()

    def status(self, key: str, text: str) -> None:
        with self._lock:
            if key not in self._lines:
                self._keys.append(key)
            self._lines[key] = text
            self._redraw()

    def progress(self, key: str, verb: str, done: int, total: int) -> None:
        self.status(key, f"{verb} {bar(done, total)}")


def reporter(quiet: bool) -> PlainReporter | QuietReporter | TTYReporter:
    if quiet:
        return QuietReporter()
    return TTYReporter() if sys.stdout.isatty() else PlainReporter()
