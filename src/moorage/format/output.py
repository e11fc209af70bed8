"""The one formatter behind every ``--format``/``-f`` flag: list tables, JSON lines, inspect.

It mirrors the docker CLI (``cli/command/formatter``):

* ``format_list`` — ``moor images``/``moor ps`` style listings: the default table, ``table
  TEMPLATE`` (headers derived from the field names, columns aligned like docker's tabwriter:
  minimum width 10, padding 3), ``json`` (one compact object per line, keys sorted), or a raw
  Go template rendered once per row;
* ``format_inspect`` — ``moor inspect``: an indented JSON array, or a template per object;
* ``render_table``/``tabwrite`` — the column alignment, for commands that build rows
  themselves.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Final

from moorage.format.gotemplate import Template, format_value, to_json

__all__ = [
    "DEFAULT_HEADERS",
    "derive_header",
    "format_inspect",
    "format_list",
    "render_table",
    "tabwrite",
]

TABLE_MINWIDTH: Final = 10
"""docker's tabwriter minimum cell width (``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``)."""
TABLE_PADDING: Final = 3

DEFAULT_HEADERS: Final[Mapping[str, str]] = {
    "CreatedSince": "CREATED",
    "RunningFor": "CREATED",
}
"""Headers docker uses that do not follow from the field name."""

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z])")


def derive_header(field: str) -> str:
    """A column header from a field name: ``CreatedAt`` -> ``CREATED AT``, ``ImageID`` ->
    ``IMAGE ID``, ``HTTPPort`` -> ``HTTP PORT``."""
    return _CAMEL_BOUNDARY.sub(" ", field).replace("_", " ").upper()


def _header_for(path: tuple[str, ...], headers: Mapping[str, str] | None) -> str:
    if not path:
        return ""
    dotted = ".".join(path)
    for table in (headers or {}, DEFAULT_HEADERS):
        for key in (dotted, path[-1]):
            if key in table:
                return table[key]
    return derive_header(path[-1])


def _cell_width(text: str) -> int:
    """Display width in terminal columns (East Asian wide characters count 2)."""
    if text.isascii():
        return len(text)
    width = 0
    for c in text:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return width


def tabwrite(text: str, *, minwidth: int = TABLE_MINWIDTH, padding: int = TABLE_PADDING) -> str:
    """Align tab-separated ``text`` like Go's ``text/tabwriter`` (padchar ' ', no flags).

    Cells are tab-*terminated*: text after a line's last tab is not part of a column and is
    not padded.  A column is a run of consecutive lines that have a cell in it; each column
    is as wide as its widest cell plus ``padding`` (at least ``minwidth``).  Trailing spaces
    are stripped from every line.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    widths = [[_cell_width(c) for c in cells] for cells in lines]
    out = [""] * len(lines)
    columns: list[int] = []

    def write(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            parts: list[str] = []
            for j, cell in enumerate(lines[i]):
                parts.append(cell)
                if j < len(columns):
                    parts.append(" " * (columns[j] - widths[i][j]))
            out[i] = "".join(parts).rstrip(" ")

    def format_block(line0: int, line1: int) -> None:
        column = len(columns)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, widths[this][column] + padding)
                this += 1
            columns.append(width)
            format_block(line0, this)
            columns.pop()
            line0 = this
        write(line0, line1)

    format_block(0, len(lines))
    return "\n".join(out)


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    minwidth: int = TABLE_MINWIDTH,
    padding: int = TABLE_PADDING,
) -> str:
    """A header line and rows, aligned like docker's tables; ends with a newline."""
    if not headers and not rows:
        return ""
    lines = ["\t".join(headers), *("\t".join(row) for row in rows)]
    return tabwrite("\n".join(lines) + "\n", minwidth=minwidth, padding=padding)


def _prepare(fmt: str) -> str:
    """docker's ``preFormat``: trim spaces and turn the two characters ``\\t``/``\\n`` into
    a tab/newline."""
    return fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def format_list(
    rows: Sequence[Mapping[str, object]],
    fmt: str | None,
    *,
    default_table: str,
    quiet_field: str | None = None,
    quiet: bool = False,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Format the rows of a listing command the way ``docker ... --format`` does.

    * ``quiet``: ``row[quiet_field]`` (default ``"ID"``) per line; ``fmt`` is ignored;
    * ``fmt`` None, empty or ``"table"``: ``default_table`` (itself a ``table ...`` format);
    * ``"json"``: one compact JSON object per row and line, keys sorted and ``<>&``
      escaped, as docker's ``{{json .}}`` prints its row contexts;
    * ``"table TEMPLATE"``: a header line and one line per row, aligned in columns at the
      template's tabs.  A header comes from ``headers`` (keyed by field name or dotted
      path), then :data:`DEFAULT_HEADERS`, else :func:`derive_header`;
    * anything else: a Go template rendered per row, one line each.

    The two characters ``\\t`` and ``\\n`` in a format are a tab and a newline.  Returns
    the text ending in a newline, or ``""`` when there is nothing to print (a table always
    prints its header).  Raises :class:`~moorage.format.gotemplate.TemplateError`.
    """
    if quiet:
        key = quiet_field or "ID"
        return "".join(f"{_quiet_value(row.get(key))}\n" for row in rows)
    spec = (fmt or "").strip()
    if spec in ("", "table"):
        spec = default_table
    if spec == "json":
        return "".join(to_json(row, sort_keys=True, escape_html=True) + "\n" for row in rows)
    if spec.startswith("table"):
        template = Template(_prepare(spec[len("table") :]))
        header = template.render_headers(lambda path: _header_for(path, headers))
        lines = [header, *(template.render(row) for row in rows)]
        return tabwrite("\n".join(lines) + "\n")
    template = Template(_prepare(spec))
    return "".join(template.render(row) + "\n" for row in rows)


def _quiet_value(value: object) -> str:
    return "" if value is None else format_value(value)


def format_inspect(objects: Sequence[object], fmt: str | None) -> str:
    """Format ``inspect`` output as ``docker inspect`` does.

    Without a format (or with ``json``) a JSON array indented by 4 spaces, like the
    engine's JSON (``<``, ``>``, ``&`` escaped, non-ASCII kept); otherwise the Go template
    rendered once per object, each followed by a newline (no ``\\t`` translation here,
    as docker).  Raises :class:`~moorage.format.gotemplate.TemplateError`.
    """
    if fmt is None or fmt.strip() in ("", "json"):
        return to_json(list(objects), indent=4, escape_html=True) + "\n"
    template = Template(fmt)
    return "".join(template.render(obj) + "\n" for obj in objects)
