"""``.dockerignore``: Docker's pattern rules (``*``, ``?``, ``[...]``, ``**``, ``!``
exceptions, the last matching pattern wins, a pattern matching a parent matches its files)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from moorage.errors import InvalidArgument


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]
    depth: int  # number of path components in the pattern

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _compile(pattern: str) -> re.Pattern[str]:
    out = "^"
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out += ".*" if i >= n else "(.*/)?"
                continue
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"invalid .dockerignore pattern {pattern!r}: syntax error")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end
        elif ch == "\\":
            i += 1
            if i < n:
                out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$", re.DOTALL)


def read_patterns(text: str) -> list[str]:
    """The pattern lines of a ``.dockerignore`` file."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line)
    return out


class Matcher:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            exclusion = p.startswith("!")
            body = p[1:].strip() if exclusion else p
            if not body:
                raise InvalidArgument('illegal exclusion pattern: "!"')
            body = posixpath.normpath(body)
            body = body.lstrip("/") or "."
            if body == ".":
                continue
            self.patterns.append(Pattern(body, exclusion, _compile(body), len(body.split("/"))))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the context path (relative, ``/``-separated) is ignored."""
        matched = False
        parts = path.split("/")
        for p in self.patterns:
            if p.exclusion != matched:
                continue  # cannot change the outcome
            hit = p.match(path)
            if not hit and len(parts) > 1 and p.depth < len(parts):
                hit = p.match("/".join(parts[: p.depth]))
            if hit:
                matched = not p.exclusion
        return matched

    def may_include_below(self, dirpath: str) -> bool:
        """Whether an exception pattern could re-include something under an excluded dir."""
        if not self.has_exclusions:
            return False
        prefix = dirpath + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            if p.text.startswith(prefix) or "*" in p.text or "?" in p.text or "[" in p.text:
                return True
        return False
