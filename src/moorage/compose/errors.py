"""The errors of the compose config pipeline: each names the key path and, where known, the
file, line and column it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.errors import InvalidArgument


@dataclass(frozen=True)
class Mark:
    """Where a value was written: file, line and column (both 1-based)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def format_path(path: tuple[str | int, ...]) -> str:
    """``("services", "web", "ports", 1)`` -> ``services.web.ports[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


class ComposeError(InvalidArgument):
    """A compose file (or its environment) that cannot be used.

    Exits 1, as ``docker compose`` v2 does for an invalid project; the message starts with
    ``file:line:column`` when the place is known, then the key path.
    """

    def __init__(
        self,
        message: str,
        path: tuple[str | int, ...] = (),
        mark: Mark | None = None,
    ) -> None:
        self.path = path
        self.mark = mark
        self.detail = message
        where = format_path(path)
        text = f"{where}: {message}" if where else message
        if mark is not None:
            text = f"{mark}: {text}"
        super().__init__(text)
