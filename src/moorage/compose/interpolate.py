"""Variable interpolation in compose files, as compose v2 does it.

``$VAR`` and ``${VAR}``; ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset);
``${VAR:?message}`` / ``${VAR?message}`` (an error naming VAR); ``${VAR:+replacement}`` /
``${VAR+replacement}``; ``$$`` is a literal ``$``. Defaults and replacements may themselves
hold variables (``${A:-${B}}``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from moorage.compose.errors import ComposeError, format_path
from moorage.compose.yamlsrc import MDict, MList, mark_of

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class TemplateError(ValueError):
    """A template that cannot be expanded; ``required`` when a required variable is unset."""

    def __init__(self, message: str, required: bool = False) -> None:
        super().__init__(message)
        self.required = required


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body begins at ``start``."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise TemplateError("missing closing brace")


def _braced(body: str, env: Mapping[str, str], missing: set[str] | None) -> str:
    m = _NAME.match(body)
    if not m:
        raise TemplateError(f"invalid variable name in ${{{body}}}")
    name, rest = m.group(), body[m.end() :]
    value = env.get(name)
    if not rest:
        if value is None and missing is not None:
            missing.add(name)
        return value or ""
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise TemplateError(f"invalid operator in ${{{body}}}")
    arg = rest[len(op) :]
    is_set = value is not None
    is_filled = bool(value)
    if op == ":-":
        return value if is_filled else expand(arg, env, missing)  # type: ignore[return-value]
    if op == "-":
        return value if is_set else expand(arg, env, missing)  # type: ignore[return-value]
    if op == ":+":
        return expand(arg, env, missing) if is_filled else ""
    if op == "+":
        return expand(arg, env, missing) if is_set else ""
    ok = is_filled if op == ":?" else is_set
    if ok:
        return value  # type: ignore[return-value]
    message = expand(arg, env, missing)
    suffix = f": {message}" if message else ""
    raise TemplateError(f"required variable {name} is missing a value{suffix}", required=True)


def expand(text: str, env: Mapping[str, str], missing: set[str] | None = None) -> str:
    """``text`` with its variables replaced from ``env``; :class:`TemplateError` if invalid.

    The names of unset variables used without a default are added to ``missing``.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            j = text.find("$", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], env, missing))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if not m:
                raise TemplateError("a $ must start a variable; write $$ for a literal $")
            value = env.get(m.group())
            if value is None and missing is not None:
                missing.add(m.group())
            out.append(value or "")
            i = m.end()
    return "".join(out)


Path = tuple[str | int, ...]


def interpolate_tree(
    data: Any,
    env: Mapping[str, str],
    path: Path = (),
    skip: Callable[[Path], bool] | None = None,
    missing: set[str] | None = None,
) -> Any:
    """Every string value under ``data`` expanded (keys are left alone), keeping marks;
    unset variables without a default are added to ``missing``."""
    if isinstance(data, str):
        try:
            return expand(data, env, missing)
        except TemplateError as e:
            msg = (
                str(e)
                if e.required
                else f'invalid interpolation format for {format_path(path)}: "{data}": {e}'
            )
            raise ComposeError(msg, path) from None
    if isinstance(data, dict):
        out = MDict(mark=mark_of(data))
        for key, value in data.items():
            sub = (*path, key)
            if skip is not None and skip(sub):
                out[key] = value
            else:
                out[key] = _with_mark(value, env, sub, skip, missing, data, key)
            if isinstance(data, MDict) and key in data.key_marks:
                out.key_marks[key] = data.key_marks[key]
        return out
    if isinstance(data, list):
        seq = MList(mark=mark_of(data))
        for i, value in enumerate(data):
            seq.append(_with_mark(value, env, (*path, i), skip, missing, data, i))
        seq.item_marks = list(getattr(data, "item_marks", [None] * len(data)))
        return seq
    return data


def _with_mark(
    value: Any, env: Any, path: Path, skip: Any, missing: Any, parent: Any, key: Any
) -> Any:
    try:
        return interpolate_tree(value, env, path, skip, missing)
    except ComposeError as e:
        if e.mark is None and e.path == path:
            raise ComposeError(e.detail, e.path, mark_of(parent, key)) from None
        raise
