"""Output formatting: Go templates (``--format``), docker-style tables, JSON lines, inspect."""

from moorage.format.gotemplate import (
    NO_VALUE,
    Template,
    TemplateError,
    format_value,
    render,
    sprintf,
    to_json,
)
from moorage.format.output import (
    DEFAULT_HEADERS,
    derive_header,
    format_inspect,
    format_list,
    render_table,
    tabwrite,
)

__all__ = [
    "DEFAULT_HEADERS",
    "NO_VALUE",
    "Template",
    "TemplateError",
    "derive_header",
    "format_inspect",
    "format_list",
    "format_value",
    "render",
    "render_table",
    "sprintf",
    "tabwrite",
    "to_json",
]
