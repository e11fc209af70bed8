"""``.env`` and ``env_file`` files as compose reads them: ``KEY=VALUE`` lines, ``export``,
comments, single quotes (literal), double quotes (escapes, several lines), ``${VAR}`` in
unquoted and double-quoted values, and a bare ``KEY`` taken from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from moorage.compose.errors import ComposeError
from moorage.compose.interpolate import TemplateError, expand

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}


def _double_quoted(text: str, pos: int, file: str, line: int) -> tuple[str, int]:
    out: list[str] = []
    i = pos
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            # \$ keeps the dollar away from interpolation
            out.append("$$" if nxt == "$" else _ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ComposeError(f"unterminated double-quoted value (from line {line})", mark=None) from None


def parse_dotenv(
    text: str, file: str = ".env", lookup: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of a dotenv file; ``lookup`` serves ``${VAR}`` and bare ``KEY`` lines
    (variables defined earlier in the file come first)."""
    env: dict[str, str] = {}
    outer = dict(lookup or {})
    i = 0
    n = len(text.removeprefix("\ufeff"))
    text = text.removeprefix("\ufeff")
    while i < n:
        line_no = text.count("\n", 0, i) + 1
        eol = text.find("\n", i)
        eol = n if eol < 0 else eol
        line = text[i:eol].strip()
        if not line or line.startswith("#"):
            i = eol + 1
            continue
        start = i + (len(text[i:eol]) - len(text[i:eol].lstrip()))
        if line.startswith("export ") or line.startswith("export\t"):
            start = text.index("export", start) + len("export")
            while start < eol and text[start] in " \t":
                start += 1
        m = _KEY.match(text, start)
        if not m:
            raise ComposeError(f"{file}:{line_no}: unexpected character in variable name: {line!r}")
        key = m.group()
        pos = m.end()
        while pos < eol and text[pos] in " \t":
            pos += 1
        if pos >= eol or text[pos] == "#":
            # a bare KEY: its value comes from the environment, if it is set there
            if key in outer:
                env[key] = outer[key]
            i = eol + 1
            continue
        if text[pos] != "=":
            raise ComposeError(f"{file}:{line_no}: expected '=' after {key}")
        pos += 1
        while pos < eol and text[pos] in " \t":
            pos += 1
        scope = {**outer, **env}
        try:
            if pos < n and text[pos] == "'":
                end = text.find("'", pos + 1)
                if end < 0:
                    raise ComposeError(f"{file}:{line_no}: unterminated single-quoted value")
                value = text[pos + 1 : end]
                pos = end + 1
            elif pos < n and text[pos] == '"':
                raw, pos = _double_quoted(text, pos + 1, file, line_no)
                value = expand(raw, scope)
            else:
                raw = text[pos:eol]
                comment = re.search(r"\s#", raw)
                if comment:
                    raw = raw[: comment.start()]
                value = expand(raw.strip(), scope)
                pos = eol
        except TemplateError as e:
            raise ComposeError(f"{file}:{line_no}: {key}: {e}") from None
        except ComposeError as e:
            if e.detail.startswith("unterminated double"):
                raise ComposeError(f"{file}:{line_no}: unterminated double-quoted value") from None
            raise
        env[key] = value
        nl = text.find("\n", pos)
        i = n if nl < 0 else nl + 1
    return env


def read_dotenv(
    path: Path, lookup: Mapping[str, str] | None = None, required: bool = True
) -> dict[str, str]:
    """:func:`parse_dotenv` of a file; a missing file is an error only when ``required``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not required:
            return {}
        raise ComposeError(f"env file {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ComposeError(f"cannot read env file {path}: {e}") from None
    return parse_dotenv(text, str(path), lookup)
