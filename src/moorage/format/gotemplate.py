"""Go ``text/template``, the subset Docker users type into ``--format``.

The engine is a small lexer, a recursive-descent parser to an AST and a tree-walking
evaluator.  It follows Go's semantics where they are observable from a ``--format`` flag:

* data is Python values standing in for Go values: a :class:`~collections.abc.Mapping` is a
  Go map (``.Key`` looks the key up; a missing key is *no value* and prints ``<no value>``),
  any other object is a Go struct (``.Name`` reads the attribute, a missing one is an
  error).  ``None`` is a present ``nil`` and prints ``<nil>``.  A callable found by a field
  lookup is a Go method: it is called with the command's arguments (``{{.Label "k"}}``).
  ``index`` on a missing key yields Go's zero value of the map's element type: ``""`` for a
  map of strings (labels), no value otherwise;
* truthiness, variables and scoping, ``range`` over lists, maps (sorted by key) and ints,
  ``if``/``else if``/``with``/``else with``, ``break``/``continue``, ``define``/``template``/
  ``block``, trim markers and comments, pipelines and parenthesised sub-expressions;
* Go's builtins (``and``, ``or``, ``not``, ``len``, ``index``, ``slice``, ``print``,
  ``printf``, ``println``, ``eq`` …, ``html``, ``js``, ``urlquery``, ``call``) and the docker
  CLI's extras (``json``, ``join``, ``split``, ``title``, ``upper``, ``lower``, ``truncate``,
  ``pad``);
* values print like Go's ``fmt`` ``%v`` (``[a b]``, ``map[k:v]``, ``1e+06``, ``true``).

Every failure raises :class:`TemplateError` (an :class:`~moorage.errors.InvalidArgument`)
whose message reads like the docker CLI's, e.g. ``template parsing error: template: :1:
function "foo" not defined`` or ``template parsing error: template: :1:2: executing "" at
<.Foo>: can't evaluate field Foo in type string``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import enum
import inspect
import math
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from json.encoder import encode_basestring as _encode_json_string
from typing import Final, NamedTuple, NoReturn

from moorage.errors import InvalidArgument

__all__ = [
    "NO_VALUE",
    "Template",
    "TemplateError",
    "format_value",
    "render",
    "sprintf",
    "to_json",
]


class TemplateError(InvalidArgument):
    """A template that does not parse, or fails while it executes."""


class _NoValue:
    """Go's *invalid* ``reflect.Value``: what a missing map key evaluates to."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Final = _NoValue()
"""The value of a missing map key; prints as ``<no value>``."""


class _Absent:
    """Marks "no pipeline value to pass as the final argument" (Go's ``missingVal``)."""

    __slots__ = ()


_ABSENT: Final = _Absent()

_MAX_PAREN_DEPTH = 100
_MAX_TEMPLATE_DEPTH = 100
_CONTEXT_WIDTH = 20  # Go truncates the "<...>" context of an execution error to this


# --------------------------------------------------------------------------- value printing


def format_value(value: object) -> str:
    """Render ``value`` the way Go's ``{{.}}`` (``fmt`` ``%v``) prints it."""
    t = type(value)
    if t is str:
        return value  # type: ignore[return-value]
    if t is int:
        return int.__repr__(value)
    if t is bool:
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if value is NO_VALUE:
        return "<no value>"
    if t is float:
        return _float_v(value)  # type: ignore[arg-type]
    return _format_other(value)


def _format_other(value: object) -> str:
    if isinstance(value, enum.Enum):
        return format_value(value.value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float_v(float(value))
    if isinstance(value, Mapping):
        parts = [f"{format_value(k)}:{format_value(value[k])}" for k in _sorted_keys(value)]
        return "map[" + " ".join(parts) + "]"
    if isinstance(value, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "[" + " ".join(format_value(v) for v in _sorted_values(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return "{" + " ".join(format_value(getattr(value, f.name)) for f in fields) + "}"
    return str(value)


def _sorted_keys(mapping: Mapping[object, object]) -> list[object]:
    """Map keys in Go's printing/ranging order (sorted; mixed types grouped by type)."""
    return _sorted_values(mapping.keys())


def _sorted_values(values: Iterable[object]) -> list[object]:
    items = list(values)
    try:
        return sorted(items)  # type: ignore[type-var]
    except TypeError:
        return sorted(items, key=lambda k: (type(k).__name__, format_value(k)))


def _go_type(value: object) -> str:
    """A Go-ish type name for messages such as ``%!d(string=abc)``."""
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[]interface {}"
    return type(value).__name__


def _shortest_digits(f: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip ``abs(f)`` and the decimal point position.

    The value is ``0.<digits> * 10**dp``; ``f`` must be finite and non-zero.
    """
    r = repr(abs(f))
    mant, _, exp_text = r.partition("e")
    exp = int(exp_text) if exp_text else 0
    int_part, _, frac = mant.partition(".")
    if frac == "0":
        frac = ""
    digits = int_part + frac
    dp = len(int_part) + exp
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    return stripped.rstrip("0"), dp


def _e_form(digits: str, dp: int) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _f_form(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _float_v(f: float) -> str:
    """Go's ``%v`` for a float64: ``strconv.FormatFloat(f, 'g', -1, 64)``."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits, dp = _shortest_digits(f)
    sign = "-" if f < 0 else ""
    exp = dp - 1
    if exp < -4 or exp >= 6:  # Go uses precision 6 for this decision when shortest
        return sign + _e_form(digits, dp)
    return sign + _f_form(digits, dp)


def _json_float(f: float) -> str:
    """``encoding/json``'s float64 encoding."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {_float_v(f)}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits, dp = _shortest_digits(f)
    sign = "-" if f < 0 else ""
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        exp = dp - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}".replace("e-0", "e-")
    return sign + _f_form(digits, dp)


# --------------------------------------------------------------------------- JSON


def to_json(
    value: object,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    escape_html: bool = False,
) -> str:
    """Encode ``value`` like Go's ``encoding/json``.

    Compact by default (``{"a":1,"b":[1,2]}``); with ``indent`` laid out like
    ``json.MarshalIndent``.  Non-ASCII text is written as is, U+2028/U+2029 are escaped, and
    with ``escape_html`` so are ``<``, ``>`` and ``&`` (as ``\\u003c`` …).  Map keys keep their
    insertion order unless ``sort_keys``.  Dataclasses encode as objects, bytes as base64,
    enums as their value, datetimes as RFC 3339; callables (methods) are skipped.  Raises
    :class:`ValueError` for NaN and infinities.
    """
    return _JsonEncoder(indent, sort_keys, escape_html).encode(value, 0)


class _JsonEncoder:
    __slots__ = ("escape_html", "indent", "sort_keys")

    def __init__(self, indent: int | None, sort_keys: bool, escape_html: bool) -> None:
        self.indent = indent
        self.sort_keys = sort_keys
        self.escape_html = escape_html

    def string(self, s: str) -> str:
        out = _encode_json_string(s)
        if "\u2028" in out or "\u2029" in out:
            out = out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        if self.escape_html and ("<" in out or ">" in out or "&" in out):
            out = out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return out

    def encode(self, v: object, level: int) -> str:
        t = type(v)
        if t is str:
            return self.string(v)  # type: ignore[arg-type]
        if v is None or v is NO_VALUE:
            return "null"
        if t is bool:
            return "true" if v else "false"
        if t is int:
            return int.__repr__(v)
        if t is float:
            return _json_float(v)  # type: ignore[arg-type]
        if isinstance(v, enum.Enum):
            return self.encode(v.value, level)
        if isinstance(v, str):
            return self.string(str.__str__(v))
        if isinstance(v, int):
            return int.__repr__(v)
        if isinstance(v, float):
            return _json_float(float(v))
        if isinstance(v, Mapping):
            items = [(k, x) for k, x in v.items() if not _is_method(x)]
            return self.object(
                [(k if isinstance(k, str) else format_value(k), x) for k, x in items], level
            )
        if isinstance(v, (bytes, bytearray)):
            return self.string(base64.b64encode(bytes(v)).decode("ascii"))
        if isinstance(v, (set, frozenset)):
            return self.array(_sorted_values(v), level)
        if isinstance(v, (list, tuple)):
            return self.array(v, level)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            pairs = [
                (f.name, getattr(v, f.name))
                for f in dataclasses.fields(v)
                if not f.name.startswith("_")
            ]
            return self.object(pairs, level)
        if isinstance(v, datetime.datetime):
            text = v.isoformat()
            return self.string(text[:-6] + "Z" if text.endswith("+00:00") else text)
        return self.string(str(v))

    def array(self, items: Sequence[object], level: int) -> str:
        if not items:
            return "[]"
        if self.indent is None:
            return "[" + ",".join(self.encode(x, level) for x in items) + "]"
        inner = "\n" + " " * (self.indent * (level + 1))
        body = ("," + inner).join(self.encode(x, level + 1) for x in items)
        return "[" + inner + body + "\n" + " " * (self.indent * level) + "]"

    def object(self, pairs: list[tuple[str, object]], level: int) -> str:
        if not pairs:
            return "{}"
        if self.sort_keys:
            pairs = sorted(pairs, key=lambda p: p[0])
        if self.indent is None:
            return (
                "{" + ",".join(f"{self.string(k)}:{self.encode(x, level)}" for k, x in pairs) + "}"
            )
        inner = "\n" + " " * (self.indent * (level + 1))
        body = ("," + inner).join(
            f"{self.string(k)}: {self.encode(x, level + 1)}" for k, x in pairs
        )
        return "{" + inner + body + "\n" + " " * (self.indent * level) + "}"


def _is_method(v: object) -> bool:
    return callable(v) and not isinstance(v, type)


# --------------------------------------------------------------------------- quoting


_QUOTE_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def _quote_char(c: str, quote: str, ascii_only: bool = False) -> str:
    if c == quote:
        return "\\" + c
    esc = _QUOTE_ESCAPES.get(c)
    if esc is not None:
        return esc
    o = ord(c)
    if (c.isprintable() or c == " ") and not (ascii_only and o >= 0x80):
        return c
    if o < 0x80:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _go_quote(s: str, ascii_only: bool = False) -> str:
    """Go's ``strconv.Quote``."""
    return '"' + "".join(_quote_char(c, '"', ascii_only) for c in s) + '"'


def _go_quote_rune(r: int) -> str:
    """Go's ``strconv.QuoteRune``."""
    c = chr(r) if 0 <= r <= 0x10FFFF and not 0xD800 <= r < 0xE000 else "\ufffd"
    return "'" + _quote_char(c, "'") + "'"


# --------------------------------------------------------------------------- printf


class _Spec:
    __slots__ = ("minus", "plus", "precision", "sharp", "space", "width", "zero")

    def __init__(self) -> None:
        self.minus = False
        self.plus = False
        self.sharp = False
        self.space = False
        self.zero = False
        self.width: int | None = None
        self.precision: int | None = None


def _pad(s: str, spec: _Spec, zero_ok: bool = True) -> str:
    width = spec.width
    if width is None or len(s) >= width:
        return s
    fill = width - len(s)
    if spec.minus:
        return s + " " * fill
    if spec.zero and zero_ok:
        return "0" * fill + s
    return " " * fill + s


def _bad_verb(verb: str, value: object) -> str:
    if value is None or value is NO_VALUE:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(value)}={format_value(value)})"


def _fmt_int(v: int, verb: str, spec: _Spec) -> str:
    a = abs(v)
    prefix = ""
    if verb in ("d", "v"):
        digits = str(a)
    elif verb == "b":
        digits = format(a, "b")
        prefix = "0b" if spec.sharp else ""
    elif verb == "o":
        digits = format(a, "o")
        prefix = "0" if spec.sharp else ""
    elif verb == "O":
        digits = format(a, "o")
        prefix = "0o"
    elif verb == "x":
        digits = format(a, "x")
        prefix = "0x" if spec.sharp else ""
    elif verb == "X":
        digits = format(a, "X")
        prefix = "0X" if spec.sharp else ""
    elif verb == "c":
        ok = 0 <= v <= 0x10FFFF and not 0xD800 <= v < 0xE000
        return _pad(chr(v) if ok else "\ufffd", spec, zero_ok=False)
    elif verb == "q":
        return _pad(_go_quote_rune(v), spec, zero_ok=False)
    elif verb == "U":
        text = f"U+{v:04X}" if v >= 0 else f"U+{v & 0xFFFFFFFFFFFFFFFF:04X}"
        if spec.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
            text += f" '{chr(v)}'"
        return _pad(text, spec, zero_ok=False)
    else:
        return _bad_verb(verb, v)
    if spec.precision is not None:
        digits = "" if spec.precision == 0 and a == 0 else digits.rjust(spec.precision, "0")
    sign = "-" if v < 0 else "+" if spec.plus else " " if spec.space else ""
    if spec.zero and not spec.minus and spec.precision is None and spec.width is not None:
        digits = digits.rjust(spec.width - len(sign) - len(prefix), "0")
    return _pad(sign + prefix + digits, spec, zero_ok=False)


def _fmt_float(v: float, verb: str, spec: _Spec) -> str:
    prec = spec.precision
    if math.isnan(v) or math.isinf(v):
        if math.isnan(v):
            text = "+NaN" if spec.plus else " NaN" if spec.space else "NaN"
        else:
            text = "+Inf" if v > 0 else "-Inf"
            if v > 0 and spec.space and not spec.plus:
                text = " Inf"
        return _pad(text, spec, zero_ok=False)
    a = abs(v)
    if verb in ("v", "g", "G") and prec is None:
        if a == 0:
            body = "0"
        else:
            digits, dp = _shortest_digits(a)
            exp = dp - 1
            body = _e_form(digits, dp) if exp < -4 or exp >= 6 else _f_form(digits, dp)
        if verb == "G":
            body = body.upper()
    elif verb in ("g", "G"):
        body = format(a, f"{'#' if spec.sharp else ''}.{prec}{verb}")
    elif verb in ("e", "E"):
        body = format(a, f".{6 if prec is None else prec}{verb}")
    elif verb in ("f", "F"):
        body = format(a, f".{6 if prec is None else prec}f")
    else:
        return _bad_verb(verb, v)
    negative = v < 0 or (v == 0 and math.copysign(1.0, v) < 0)
    sign = "-" if negative else "+" if spec.plus else " " if spec.space else ""
    if spec.zero and not spec.minus and spec.width is not None:
        body = body.rjust(spec.width - len(sign), "0")
    return _pad(sign + body, spec, zero_ok=False)


def _fmt_str(s: str, verb: str, spec: _Spec) -> str:
    prec = spec.precision
    if verb in ("s", "v"):
        return _pad(s if prec is None else s[:prec], spec)
    if verb == "q":
        if prec is not None:
            s = s[:prec]
        if spec.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(_go_quote(s, ascii_only=spec.plus), spec)
    if verb in ("x", "X"):
        data = s.encode("utf-8", "surrogatepass")
        if prec is not None:
            data = data[:prec]
        hexes = [format(b, "02x" if verb == "x" else "02X") for b in data]
        pre = ("0x" if verb == "x" else "0X") if spec.sharp else ""
        if spec.space:
            return _pad(" ".join(pre + h for h in hexes), spec)
        return _pad(pre + "".join(hexes), spec)
    return _bad_verb(verb, s)


def _fmt_arg(v: object, verb: str, spec: _Spec) -> str:
    if verb == "T":
        return _pad(_go_type(v), spec)
    if v is None or v is NO_VALUE:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(verb, v)
    if isinstance(v, enum.Enum):
        return _fmt_arg(v.value, verb, spec)
    if isinstance(v, bool):
        if verb in ("t", "v"):
            return _pad("true" if v else "false", spec)
        return _bad_verb(verb, v)
    if isinstance(v, int):
        return _fmt_int(int(v), verb, spec)
    if isinstance(v, float):
        return _fmt_float(float(v), verb, spec)
    if isinstance(v, str):
        s = str.__str__(v)
        if verb == "v" and spec.sharp:
            return _pad(_go_quote(s), spec)
        return _fmt_str(s, verb, spec)
    if isinstance(v, Mapping):
        parts = [f"{_fmt_arg(k, verb, spec)}:{_fmt_arg(v[k], verb, spec)}" for k in _sorted_keys(v)]
        return "map[" + " ".join(parts) + "]"
    if isinstance(v, (list, tuple, set, frozenset)):
        seq = _sorted_values(v) if isinstance(v, (set, frozenset)) else v
        return "[" + " ".join(_fmt_arg(x, verb, spec) for x in seq) + "]"
    if verb in ("v", "s"):
        return _pad(format_value(v), spec)
    return _bad_verb(verb, v)


def sprintf(fmt: str, *args: object) -> str:
    """Go's ``fmt.Sprintf``, as the template function ``printf`` exposes it.

    Supports the flags ``-+# 0``, widths and precisions (also ``*``), explicit argument
    indexes (``%[2]s``) and the verbs ``v s q d b o O x X c U e E f F g G t T %``; mistakes
    print Go's markers (``%!d(string=x)``, ``%!s(MISSING)``, ``%!(EXTRA int=1)``).
    """
    return _sprintf(fmt, args, header=False)


def _sprintf(fmt: str, args: Sequence[object], header: bool) -> str:
    out: list[str] = []
    n = len(fmt)
    i = 0
    argi = 0
    reordered = False
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        if j > i:
            out.append(fmt[i:j])
        i = j + 1
        if i >= n:
            out.append("%!(NOVERB)")
            break
        spec = _Spec()
        while i < n:
            c = fmt[i]
            if c == "-":
                spec.minus = True
                spec.zero = False
            elif c == "+":
                spec.plus = True
            elif c == "#":
                spec.sharp = True
            elif c == " ":
                spec.space = True
            elif c == "0":
                spec.zero = not spec.minus
            else:
                break
            i += 1
        bad_index = False

        def arg_index(pos: int) -> int:
            """Parse an optional ``[n]`` at ``pos``; sets argi; returns the new position."""
            nonlocal argi, reordered, bad_index
            if pos >= n or fmt[pos] != "[":
                return pos
            reordered = True
            close = fmt.find("]", pos)
            text = fmt[pos + 1 : close] if close >= 0 else ""
            if close < 0 or not text.isdigit() or not 1 <= int(text) <= len(args):
                bad_index = True
                return close + 1 if close >= 0 else n
            argi = int(text) - 1
            return close + 1

        i = arg_index(i)
        bad_width = bad_prec = False
        if i < n and fmt[i] == "*":
            i += 1
            if (
                argi < len(args)
                and isinstance(args[argi], int)
                and not isinstance(args[argi], bool)
            ):
                w = int(args[argi])  # type: ignore[call-overload]
                spec.width = abs(w)
                if w < 0:
                    spec.minus = True
                    spec.zero = False
            else:
                bad_width = True
            argi += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                spec.width = int(fmt[start:i])
        if i < n and fmt[i] == ".":
            i += 1
            i = arg_index(i)
            if i < n and fmt[i] == "*":
                i += 1
                if (
                    argi < len(args)
                    and isinstance(args[argi], int)
                    and not isinstance(args[argi], bool)
                ):
                    p = int(args[argi])  # type: ignore[call-overload]
                    spec.precision = p if p >= 0 else None
                else:
                    bad_prec = True
                argi += 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                spec.precision = int(fmt[start:i]) if i > start else 0
        i = arg_index(i)
        if bad_width:
            out.append("%!(BADWIDTH)")
        if bad_prec:
            out.append("%!(BADPREC)")
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if bad_index:
            out.append(f"%!{verb}(BADINDEX)")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        if header and isinstance(arg, _HeaderText):
            spec.precision = None
            verb = "s"
        out.append(_fmt_arg(arg, verb, spec))
    if not reordered and argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None or a is NO_VALUE else f"{_go_type(a)}={format_value(a)}"
            for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --------------------------------------------------------------------------- functions


class _FuncError(Exception):
    """Raised by a template function; reported as ``error calling NAME: MESSAGE``."""


class _Func(NamedTuple):
    fn: Callable[..., object]
    min_args: int
    max_args: int | None  # None: variadic


def _truth(v: object) -> bool:
    """Go's ``isTrue``: the zero value of a type is false, everything else is true."""
    if v is None or v is NO_VALUE:
        return False
    t = type(v)
    if t is bool or t is str or t is int or t is float or t is list or t is dict or t is tuple:
        return bool(v)
    if isinstance(v, (int, float, str, Mapping, list, tuple, set, frozenset, bytes, bytearray)):
        return bool(v)
    return True


def _as_str(v: object) -> str:
    if type(v) is str:
        return v
    if v is None or v is NO_VALUE:
        return ""
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, (bool, int, float)):
        return format_value(v)
    raise _FuncError(f"wrong type for value; expected string; got {_go_type(v)}")


def _as_int(v: object) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise _FuncError(f"wrong type for value; expected int; got {_go_type(v)}")


def _map_zero(m: Mapping[object, object]) -> object:
    """What ``index`` yields for a missing key: Go's zero value of the map's element type.

    A map whose values are all strings (Docker's labels, ``map[string]string``) yields
    ``""``; any other map is treated as ``map[string]interface{}`` and yields no value.
    """
    return "" if all(type(x) is str for x in m.values()) else NO_VALUE


def _fn_index(item: object, *indexes: object) -> object:
    v = item
    for ix in indexes:
        if v is None or v is NO_VALUE:
            raise _FuncError("index of untyped nil")
        if isinstance(v, Mapping):
            try:
                v = v[ix] if ix in v else _map_zero(v)
            except TypeError:
                raise _FuncError(f"value has type {_go_type(ix)}; should be string") from None
        elif isinstance(v, (str, list, tuple, bytes, bytearray)):
            if isinstance(ix, bool) or not isinstance(ix, int):
                raise _FuncError(f"cannot index slice/array with type {_go_type(ix)}")
            seq: Sequence[object] = v.encode("utf-8") if isinstance(v, str) else v
            if not 0 <= ix < len(seq):
                raise _FuncError(f"index out of range: {ix}")
            v = seq[ix]
        else:
            raise _FuncError(f"can't index item of type {_go_type(v)}")
    return v


def _fn_slice(item: object, *indexes: object) -> object:
    if item is None or item is NO_VALUE:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
    elif not isinstance(item, (list, tuple)):
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    size = len(item)
    idx = [_as_int(x) for x in indexes]
    for x in idx:
        if not 0 <= x <= size:
            raise _FuncError(f"index out of range: {x}")
    if not idx:
        return item
    lo = idx[0]
    hi = idx[1] if len(idx) > 1 else size
    if lo > hi:
        raise _FuncError(f"invalid slice index: {lo} > {hi}")
    if len(idx) == 3 and hi > idx[2]:
        raise _FuncError(f"invalid slice index: {hi} > {idx[2]}")
    return item[lo:hi]


def _fn_len(v: object) -> int:
    if v is None or v is NO_VALUE:
        raise _FuncError("len of nil pointer")
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, (Mapping, list, tuple, set, frozenset, bytes, bytearray)):
        return len(v)
    raise _FuncError(f"len of type {_go_type(v)}")


def _kind(v: object) -> str:
    if v is None or v is NO_VALUE:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "other"


def _fn_eq(a: object, *others: object) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    ka = _kind(a)
    for b in others:
        kb = _kind(b)
        if ka == kb:
            equal = a is b or a == b
        elif ka == "nil" or kb == "nil":
            equal = False
        else:
            raise _FuncError("incompatible types for comparison")
        if equal:
            return True
    return False


def _fn_ne(a: object, b: object) -> bool:
    return not _fn_eq(a, b)


def _fn_lt(a: object, b: object) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    if ka not in ("number", "string"):
        raise _FuncError("invalid type for comparison")
    return bool(a < b)  # type: ignore[operator]


def _fn_le(a: object, b: object) -> bool:
    return _fn_lt(a, b) or _fn_eq(a, b)


def _fn_gt(a: object, b: object) -> bool:
    return not _fn_le(a, b)


def _fn_ge(a: object, b: object) -> bool:
    return not _fn_lt(a, b)


def _fn_and(first: object, *rest: object) -> object:
    v = first
    for v in (first, *rest):
        if not _truth(v):
            return v
    return v


def _fn_or(first: object, *rest: object) -> object:
    v = first
    for v in (first, *rest):
        if _truth(v):
            return v
    return v


def _fn_not(v: object) -> bool:
    return not _truth(v)


def _fn_print(*args: object) -> str:
    out: list[str] = []
    prev_str = False
    for n, a in enumerate(args):
        is_str = isinstance(a, str)
        if n > 0 and not is_str and not prev_str:
            out.append(" ")
        out.append(format_value(None if a is NO_VALUE else a))
        prev_str = is_str
    return "".join(out)


def _fn_println(*args: object) -> str:
    return " ".join(format_value(None if a is NO_VALUE else a) for a in args) + "\n"


def _fn_printf(fmt: object, *args: object) -> str:
    return _sprintf(_as_str(fmt), args, header=False)


def _text_of(args: Sequence[object]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return str.__str__(args[0])
    return _fn_print(*args)


_HTML_ESCAPES: Final = str.maketrans(
    {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
)


def _fn_html(*args: object) -> str:
    return _text_of(args).translate(_HTML_ESCAPES)


def _js_char(c: str) -> str:
    if c in "\\'\"":
        return "\\" + c
    if c in "<>&=":
        return f"\\u{ord(c):04X}"
    if ord(c) < 0x20 or not c.isprintable():
        return f"\\u{ord(c):04X}"
    return c


def _fn_js(*args: object) -> str:
    return "".join(_js_char(c) for c in _text_of(args))


def _fn_urlquery(*args: object) -> str:
    return urllib.parse.quote_plus(_text_of(args), safe="")


def _fn_call(fn: object, *args: object) -> object:
    if fn is None or fn is NO_VALUE:
        raise _FuncError("call of nil")
    if not callable(fn):
        raise _FuncError(f"non-function of type {_go_type(fn)}")
    return fn(*args)


def _fn_json(v: object) -> str:
    try:
        return to_json(v)
    except (ValueError, RecursionError) as e:
        raise _FuncError(str(e)) from None


def _fn_join(elems: object, sep: object) -> str:
    if elems is None or elems is NO_VALUE:
        return ""
    if isinstance(elems, (str, Mapping)) or not isinstance(elems, Iterable):
        raise _FuncError(f"wrong type for value; expected []string; got {_go_type(elems)}")
    return _as_str(sep).join(_as_str(e) if isinstance(e, str) else format_value(e) for e in elems)


def _fn_split(s: object, sep: object) -> list[str]:
    text, separator = _as_str(s), _as_str(sep)
    if separator == "":
        return list(text)
    return text.split(separator)


def _is_title_separator(c: str) -> bool:
    """Go's ``strings.Title`` word boundary rule."""
    if c.isascii():
        return not (c.isalnum() or c == "_")
    if c.isalpha() or c.isdecimal():
        return False
    return c.isspace()


def _fn_title(s: object) -> str:
    out: list[str] = []
    prev = " "
    for c in _as_str(s):
        if _is_title_separator(prev):
            up = c.upper()
            out.append(up if len(up) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _fn_upper(s: object) -> str:
    return _as_str(s).upper()


def _fn_lower(s: object) -> str:
    return _as_str(s).lower()


def _fn_truncate(s: object, length: object) -> str:
    text, n = _as_str(s), _as_int(length)
    if n < 0:
        raise _FuncError(f"slice bounds out of range [:{n}]")
    return text[:n]


def _fn_pad(s: object, left: object, right: object) -> str:
    text = _as_str(s)
    if text == "":
        return text
    return " " * _as_int(left) + text + " " * _as_int(right)


_BUILTINS: Final[Mapping[str, _Func]] = {
    # Go's text/template builtins
    "and": _Func(_fn_and, 1, None),
    "call": _Func(_fn_call, 1, None),
    "eq": _Func(_fn_eq, 1, None),
    "ge": _Func(_fn_ge, 2, 2),
    "gt": _Func(_fn_gt, 2, 2),
    "html": _Func(_fn_html, 0, None),
    "index": _Func(_fn_index, 1, None),
    "js": _Func(_fn_js, 0, None),
    "le": _Func(_fn_le, 2, 2),
    "len": _Func(_fn_len, 1, 1),
    "lt": _Func(_fn_lt, 2, 2),
    "ne": _Func(_fn_ne, 2, 2),
    "not": _Func(_fn_not, 1, 1),
    "or": _Func(_fn_or, 1, None),
    "print": _Func(_fn_print, 0, None),
    "printf": _Func(_fn_printf, 1, None),
    "println": _Func(_fn_println, 0, None),
    "slice": _Func(_fn_slice, 1, None),
    "urlquery": _Func(_fn_urlquery, 0, None),
    # the docker CLI's extras (github.com/docker/cli/templates)
    "json": _Func(_fn_json, 1, 1),
    "join": _Func(_fn_join, 2, 2),
    "split": _Func(_fn_split, 2, 2),
    "title": _Func(_fn_title, 1, 1),
    "upper": _Func(_fn_upper, 1, 1),
    "lower": _Func(_fn_lower, 1, 1),
    "truncate": _Func(_fn_truncate, 2, 2),
    "pad": _Func(_fn_pad, 3, 3),
}

# Functions that keep working on table headers (they shape the text: widths, padding).
_HEADER_KEEP: Final = frozenset({"printf", "print", "println", "pad"})


def _header_passthrough(*args: object) -> object:
    """Docker's header functions: ``{{upper .Name}}`` heads its column with ``NAME``.

    The first header among the arguments passes through unchanged (else the first argument).
    """
    for a in args:
        if isinstance(a, _HeaderText):
            return a
    return args[0] if args else ""


def _header_printf(fmt: object, *args: object) -> str:
    return _sprintf(_as_str(fmt), args, header=True)


def _header_funcs(funcs: Mapping[str, _Func]) -> dict[str, _Func]:
    table: dict[str, _Func] = {}
    for name, f in funcs.items():
        if name == "printf":
            table[name] = _Func(_header_printf, f.min_args, f.max_args)
        elif name in _HEADER_KEEP:
            table[name] = f
        else:
            table[name] = _Func(_header_passthrough, f.min_args, f.max_args)
    return table


_BUILTIN_HEADER_FUNCS: Final = _header_funcs(_BUILTINS)

_IDENT_RE: Final = re.compile(r"[^\W\d]\w*")


def _wrap_user_func(name: str, fn: Callable[..., object]) -> _Func:
    if not _IDENT_RE.fullmatch(name):
        raise ValueError(f"function name {name!r} is not a valid identifier")
    if not callable(fn):
        raise ValueError(f"value for function {name!r} is not callable")
    lo, hi = 0, None
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return _Func(fn, 0, None)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    lo = sum(1 for p in positional if p.default is p.empty)
    hi = None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(positional)
    return _Func(fn, lo, hi)


class _HeaderText(str):
    """Text standing for a field while a table's header row is rendered."""

    path: tuple[str, ...]

    def __new__(cls, text: str, path: tuple[str, ...]) -> _HeaderText:
        self = super().__new__(cls, text)
        self.path = path
        return self


# --------------------------------------------------------------------------- lexer


class _K(enum.Enum):
    ERROR = enum.auto()
    EOF = enum.auto()
    TEXT = enum.auto()
    LEFT = enum.auto()  # {{
    RIGHT = enum.auto()  # }}
    SPACE = enum.auto()
    ASSIGN = enum.auto()  # =
    DECLARE = enum.auto()  # :=
    PIPE = enum.auto()
    LPAREN = enum.auto()
    RPAREN = enum.auto()
    CHAR = enum.auto()  # any other printable ASCII character, such as ','
    STRING = enum.auto()
    RAWSTRING = enum.auto()
    CHARCONST = enum.auto()
    NUMBER = enum.auto()
    BOOL = enum.auto()
    IDENT = enum.auto()
    FIELD = enum.auto()  # .Name
    VARIABLE = enum.auto()  # $ or $name
    DOT = enum.auto()
    NIL = enum.auto()
    # keywords
    BLOCK = enum.auto()
    BREAK = enum.auto()
    CONTINUE = enum.auto()
    DEFINE = enum.auto()
    ELSE = enum.auto()
    END = enum.auto()
    IF = enum.auto()
    RANGE = enum.auto()
    TEMPLATE = enum.auto()
    WITH = enum.auto()


_KEYWORDS: Final = {
    "block": _K.BLOCK,
    "break": _K.BREAK,
    "continue": _K.CONTINUE,
    "define": _K.DEFINE,
    "else": _K.ELSE,
    "end": _K.END,
    "if": _K.IF,
    "nil": _K.NIL,
    "range": _K.RANGE,
    "template": _K.TEMPLATE,
    "with": _K.WITH,
}
_ANGLED: Final = frozenset({*_KEYWORDS.values(), _K.DOT})
_OPERAND_START: Final = frozenset(
    {
        _K.BOOL,
        _K.CHARCONST,
        _K.DOT,
        _K.FIELD,
        _K.IDENT,
        _K.NUMBER,
        _K.NIL,
        _K.RAWSTRING,
        _K.STRING,
        _K.VARIABLE,
        _K.LPAREN,
    }
)
_SPACES: Final = " \t\r\n"
_TERMINATORS: Final = frozenset(" \t\r\n.,|:()")


class _Tok(NamedTuple):
    kind: _K
    val: str
    pos: int
    line: int

    def describe(self) -> str:
        """How Go's parser names this token in "unexpected X" messages."""
        if self.kind is _K.EOF:
            return "EOF"
        if self.kind is _K.ERROR:
            return self.val
        if self.kind in _ANGLED:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote(self.val[:10]) + "..."
        return _go_quote(self.val)


class _LexStop(Exception):
    pass


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


def _fmt_rune(c: str) -> str:
    """Go's ``%#U``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.n = len(src)
        self.toks: list[_Tok] = []
        self._line_pos = 0
        self._line = 1

    def line_at(self, pos: int) -> int:
        if pos > self._line_pos:
            self._line += self.src.count("\n", self._line_pos, pos)
            self._line_pos = pos
        return self._line

    def emit(self, kind: _K, start: int, end: int) -> None:
        self.toks.append(_Tok(kind, self.src[start:end], start, self.line_at(start)))

    def error(self, msg: str, pos: int) -> NoReturn:
        self.toks.append(_Tok(_K.ERROR, msg, pos, self.line_at(pos)))
        raise _LexStop

    def run(self) -> list[_Tok]:
        with contextlib.suppress(_LexStop):
            self._text()
        return self.toks

    def _skip_spaces(self, pos: int) -> int:
        while pos < self.n and self.src[pos] in _SPACES:
            pos += 1
        return pos

    def _at_right_delim(self, pos: int) -> tuple[bool, bool]:
        src = self.src
        if src.startswith("}}", pos):
            return True, False
        if pos + 1 < self.n and src[pos] in _SPACES and src.startswith("-}}", pos + 1):
            return True, True
        return False, False

    def _at_terminator(self, pos: int) -> bool:
        return pos >= self.n or self.src[pos] in _TERMINATORS or self.src.startswith("}}", pos)

    def _text(self) -> None:
        src, n = self.src, self.n
        pos = 0
        while True:
            i = src.find("{{", pos)
            if i < 0:
                if pos < n:
                    self.emit(_K.TEXT, pos, n)
                self.toks.append(_Tok(_K.EOF, "", n, self.line_at(n)))
                return
            trim = src.startswith("-", i + 2) and i + 3 < n and src[i + 3] in _SPACES
            end = i
            if trim:
                while end > pos and src[end - 1] in _SPACES:
                    end -= 1
            if end > pos:
                self.emit(_K.TEXT, pos, end)
            pos = i + 2 + (2 if trim else 0)
            if src.startswith("/*", pos):
                pos = self._comment(pos)
            else:
                self.emit(_K.LEFT, i, i + 2)
                pos = self._action(pos)

    def _comment(self, pos: int) -> int:
        close = self.src.find("*/", pos + 2)
        if close < 0:
            self.error("unclosed comment", pos)
        p = close + 2
        delim, trim = self._at_right_delim(p)
        if not delim:
            self.error("comment ends before closing delimiter", p)
        p += 4 if trim else 2
        return self._skip_spaces(p) if trim else p

    def _action(self, pos: int) -> int:
        src, n = self.src, self.n
        depth = 0
        while True:
            delim, trim = self._at_right_delim(pos)
            if delim:
                if depth:
                    self.error("unclosed left paren", pos)
                if trim:
                    pos += 2
                self.emit(_K.RIGHT, pos, pos + 2)
                pos += 2
                return self._skip_spaces(pos) if trim else pos
            if pos >= n:
                self.error("unclosed action", pos)
            c = src[pos]
            if c in _SPACES:
                j = self._skip_spaces(pos)
                if src.startswith("-}}", j):
                    j -= 1  # leave the space that belongs to the " -}}" trim marker
                if j > pos:
                    self.emit(_K.SPACE, pos, j)
                pos = j
            elif c == "=":
                self.emit(_K.ASSIGN, pos, pos + 1)
                pos += 1
            elif c == ":":
                if not src.startswith(":=", pos):
                    self.error("expected :=", pos)
                self.emit(_K.DECLARE, pos, pos + 2)
                pos += 2
            elif c == "|":
                self.emit(_K.PIPE, pos, pos + 1)
                pos += 1
            elif c == '"':
                pos = self._quoted(pos, _K.STRING, "unterminated quoted string")
            elif c == "'":
                pos = self._quoted(pos, _K.CHARCONST, "unterminated character constant")
            elif c == "`":
                close = src.find("`", pos + 1)
                if close < 0:
                    self.error("unterminated raw quoted string", pos)
                self.emit(_K.RAWSTRING, pos, close + 1)
                pos = close + 1
            elif c == "$":
                pos = self._field_or_variable(pos, _K.VARIABLE)
            elif c == "." and pos + 1 < n and not "0" <= src[pos + 1] <= "9":
                pos = self._field_or_variable(pos, _K.FIELD)
            elif c in "+-." or "0" <= c <= "9":
                pos = self._number(pos)
            elif _is_alnum(c):
                pos = self._identifier(pos)
            elif c == "(":
                depth += 1
                self.emit(_K.LPAREN, pos, pos + 1)
                pos += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    self.error("unexpected right paren", pos)
                self.emit(_K.RPAREN, pos, pos + 1)
                pos += 1
            elif c.isascii() and c.isprintable():
                self.emit(_K.CHAR, pos, pos + 1)
                pos += 1
            else:
                self.error(f"unrecognized character in action: {_fmt_rune(c)}", pos)

    def _quoted(self, pos: int, kind: _K, unterminated: str) -> int:
        src, n = self.src, self.n
        quote = src[pos]
        p = pos + 1
        while True:
            if p >= n or src[p] == "\n":
                self.error(unterminated, pos)
            c = src[p]
            if c == "\\":
                p += 1
                if p >= n or src[p] == "\n":
                    self.error(unterminated, pos)
            elif c == quote:
                break
            p += 1
        self.emit(kind, pos, p + 1)
        return p + 1

    def _field_or_variable(self, pos: int, kind: _K) -> int:
        p = pos + 1
        if self._at_terminator(p):
            self.emit(_K.VARIABLE if kind is _K.VARIABLE else _K.DOT, pos, p)
            return p
        while p < self.n and _is_alnum(self.src[p]):
            p += 1
        if not self._at_terminator(p):
            self.error(f"bad character {_fmt_rune(self.src[p])}", p)
        self.emit(kind, pos, p)
        return p

    def _run(self, p: int, chars: str) -> int:
        while p < self.n and self.src[p] in chars:
            p += 1
        return p

    def _scan_number(self, p: int) -> tuple[int, bool]:
        src, n = self.src, self.n
        if p < n and src[p] in "+-":
            p += 1
        digits = "0123456789_"
        if p < n and src[p] == "0":
            p += 1
            if p < n and src[p] in "xX":
                p, digits = p + 1, "0123456789abcdefABCDEF_"
            elif p < n and src[p] in "oO":
                p, digits = p + 1, "01234567_"
            elif p < n and src[p] in "bB":
                p, digits = p + 1, "01_"
        p = self._run(p, digits)
        if p < n and src[p] == ".":
            p = self._run(p + 1, digits)
        if len(digits) == 11 and p < n and src[p] in "eE":
            p = self._run(p + 1, "+-")
            p = self._run(p, "0123456789_")
        if len(digits) == 23 and p < n and src[p] in "pP":
            p = self._run(p + 1, "+-")
            p = self._run(p, "0123456789_")
        if p < n and src[p] == "i":
            p += 1
        if p < n and _is_alnum(src[p]):
            return p + 1, False
        return p, True

    def _number(self, pos: int) -> int:
        p, ok = self._scan_number(pos)
        if ok and p < self.n and self.src[p] in "+-":  # a complex constant such as 1+2i
            p, ok = self._scan_number(p)
            ok = ok and self.src[p - 1] == "i"
        if not ok:
            self.error(f"bad number syntax: {_go_quote(self.src[pos:p])}", pos)
        self.emit(_K.NUMBER, pos, p)
        return p

    def _identifier(self, pos: int) -> int:
        p = pos
        while p < self.n and _is_alnum(self.src[p]):
            p += 1
        if not self._at_terminator(p):
            self.error(f"bad character {_fmt_rune(self.src[p])}", p)
        word = self.src[pos:p]
        kind = _KEYWORDS.get(word)
        if kind is None:
            kind = _K.BOOL if word in ("true", "false") else _K.IDENT
        self.emit(kind, pos, p)
        return p


# --------------------------------------------------------------------------- AST + evaluation


class _ExecError(Exception):
    def __init__(self, node: _Expr | _Node | None, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message
        self.template: str | None = None


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_BREAK: Final = _Break()
_CONTINUE: Final = _Continue()


class _Exec:
    """The state of one execution: variables, output, functions, defined templates."""

    __slots__ = ("depth", "funcs", "header", "out", "templates", "vars")

    def __init__(
        self,
        data: object,
        funcs: Mapping[str, _Func],
        templates: Mapping[str, list[_Node]],
        header: Callable[[tuple[str, ...]], str] | None,
    ) -> None:
        self.vars: list[tuple[str, object]] = [("$", data)]
        self.out: list[str] = []
        self.funcs = funcs
        self.templates = templates
        self.header = header
        self.depth = 0

    def walk(self, nodes: Sequence[_Node], dot: object) -> None:
        for node in nodes:
            node.run(self, dot)

    def var(self, name: str, node: _Expr) -> object:
        vs = self.vars
        for i in range(len(vs) - 1, -1, -1):
            if vs[i][0] == name:
                return vs[i][1]
        raise _ExecError(node, f"undefined variable: {name}")

    def set_var(self, name: str, value: object, node: _Expr) -> None:
        vs = self.vars
        for i in range(len(vs) - 1, -1, -1):
            if vs[i][0] == name:
                vs[i] = (name, value)
                return
        raise _ExecError(node, f"undefined variable: {name}")

    def pipe(self, dot: object, pipe: _Pipe) -> object:
        value: object = _ABSENT
        for cmd in pipe.cmds:
            value = cmd.first.command(self, dot, cmd.rest, value, cmd)
        if pipe.decls:
            if pipe.is_assign:
                for name in pipe.decls:
                    self.set_var(name, value, pipe)
            else:
                for name in pipe.decls:
                    self.vars.append((name, value))
        return value

    def chain(
        self,
        dot: object,
        receiver: object,
        names: tuple[str, ...],
        node: _Expr,
        rest: Sequence[_Expr],
        final: object,
    ) -> object:
        last = len(names) - 1
        for i in range(last):
            receiver = self.field(dot, receiver, names[i], node, (), _ABSENT)
        return self.field(dot, receiver, names[last], node, rest, final)

    def field(
        self,
        dot: object,
        receiver: object,
        name: str,
        node: _Expr,
        rest: Sequence[_Expr],
        final: object,
    ) -> object:
        has_args = bool(rest) or final is not _ABSENT
        if type(receiver) is dict or isinstance(receiver, Mapping):
            value = receiver.get(name, NO_VALUE)
            if callable(value) and not isinstance(value, type):
                return self.call(dot, value, name, rest, final, node)
            if has_args:
                raise _ExecError(node, f"{name} is not a method but has arguments")
            return value
        if receiver is NO_VALUE:
            return NO_VALUE
        if receiver is None:
            raise _ExecError(node, f"nil pointer evaluating interface {{}}.{name}")
        if self.header is not None and isinstance(receiver, _HeaderText):
            path = (*receiver.path, name)
            return _HeaderText(self.header(path), path)
        if isinstance(receiver, _BASIC) or name.startswith("_"):
            raise _ExecError(node, f"can't evaluate field {name} in type {_go_type(receiver)}")
        try:
            value = getattr(receiver, name)
        except AttributeError:
            raise _ExecError(
                node, f"can't evaluate field {name} in type {type(receiver).__name__}"
            ) from None
        except Exception as e:
            raise _ExecError(node, f"error evaluating field {name}: {e}") from None
        if callable(value) and not isinstance(value, type):
            return self.call(dot, value, name, rest, final, node)
        if has_args:
            raise _ExecError(node, f"{name} has arguments but cannot be invoked as function")
        return value

    def call(
        self,
        dot: object,
        fn: Callable[..., object],
        name: str,
        rest: Sequence[_Expr],
        final: object,
        node: _Expr,
    ) -> object:
        argv = [a.value(self, dot) for a in rest]
        if final is not _ABSENT:
            argv.append(final)
        argv = [None if a is NO_VALUE else a for a in argv]
        try:
            return fn(*argv)
        except (_ExecError, _Break, _Continue):
            raise
        except Exception as e:
            raise _ExecError(node, f"error calling {name}: {e}") from None

    def function(
        self, dot: object, ident: _Ident, rest: Sequence[_Expr], final: object, node: _Expr
    ) -> object:
        name = ident.name
        f = self.funcs[name]
        nargs = len(rest) + (final is not _ABSENT)
        if nargs < f.min_args or (f.max_args is not None and nargs > f.max_args):
            if f.max_args is None:
                want = f"at least {f.min_args}"
            else:
                want = (
                    str(f.min_args) if f.min_args == f.max_args else f"{f.min_args}..{f.max_args}"
                )
            raise _ExecError(node, f"wrong number of args for {name}: want {want} got {nargs}")
        if f.fn is _fn_and or f.fn is _fn_or:  # short-circuit, as Go does since 1.18
            want_truth = f.fn is _fn_or
            value: object = NO_VALUE
            for a in rest:
                value = a.value(self, dot)
                if _truth(value) == want_truth:
                    return value
            return final if final is not _ABSENT else value
        argv: list[object] = [a.value(self, dot) for a in rest]
        if final is not _ABSENT:
            argv.append(final)
        for i, arg in enumerate(argv):
            if arg is NO_VALUE:
                argv[i] = None
        try:
            return f.fn(*argv)
        except _FuncError as e:
            raise _ExecError(node, f"error calling {name}: {e}") from None
        except (_ExecError, _Break, _Continue):
            raise
        except Exception as e:  # Go recovers a panicking function the same way
            raise _ExecError(node, f"error calling {name}: {e}") from None


_BASIC: Final = (str, int, float, bool, list, tuple, set, frozenset, bytes, bytearray)


def _not_a_function(node: _Expr, rest: Sequence[_Expr], final: object) -> None:
    if rest or final is not _ABSENT:
        raise _ExecError(node, f"can't give argument to non-function {node}")


class _Expr:
    """An operand: evaluated as an argument (``value``) or as a command's first word."""

    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def value(self, ex: _Exec, dot: object) -> object:
        return self.command(ex, dot, (), _ABSENT, self)

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        raise NotImplementedError


class _Field(_Expr):
    __slots__ = ("names",)

    def __init__(self, pos: int, names: tuple[str, ...]) -> None:
        super().__init__(pos)
        self.names = names

    def __str__(self) -> str:
        return "." + ".".join(self.names)

    def value(self, ex: _Exec, dot: object) -> object:
        names = self.names
        if len(names) == 1 and type(dot) is dict:
            v = dot.get(names[0], NO_VALUE)
            if not callable(v):
                return v
        return ex.chain(dot, dot, names, self, (), _ABSENT)

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        return ex.chain(dot, dot, self.names, self, rest, final)


class _Variable(_Expr):
    __slots__ = ("fields", "name")

    def __init__(self, pos: int, name: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(pos)
        self.name = name
        self.fields = fields

    def __str__(self) -> str:
        return self.name + "".join("." + f for f in self.fields)

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        v = ex.var(self.name, self)
        if not self.fields:
            _not_a_function(self, rest, final)
            return v
        return ex.chain(dot, v, self.fields, self, rest, final)


class _Dot(_Expr):
    __slots__ = ()

    def __str__(self) -> str:
        return "."

    def value(self, ex: _Exec, dot: object) -> object:
        return dot

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        _not_a_function(self, rest, final)
        return dot


class _Nil(_Expr):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"

    def value(self, ex: _Exec, dot: object) -> object:
        return None

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        raise _ExecError(self, "nil is not a command")


class _Literal(_Expr):
    __slots__ = ("text", "val")

    def __init__(self, pos: int, val: object, text: str) -> None:
        super().__init__(pos)
        self.val = val
        self.text = text

    def __str__(self) -> str:
        return self.text

    def value(self, ex: _Exec, dot: object) -> object:
        return self.val

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        _not_a_function(self, rest, final)
        return self.val


class _Ident(_Expr):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        return ex.function(dot, self, rest, final, cmd)


class _Chain(_Expr):
    """Fields applied to a non-field term: ``(.A).B``, ``(index .M "k").Name``."""

    __slots__ = ("fields", "node")

    def __init__(self, pos: int, node: _Expr, fields: tuple[str, ...]) -> None:
        super().__init__(pos)
        self.node = node
        self.fields = fields

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + f for f in self.fields)

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        if isinstance(self.node, _Nil):
            raise _ExecError(self, f"indirection through explicit nil in {self}")
        base = self.node.value(ex, dot)
        return ex.chain(dot, base, self.fields, self, rest, final)


class _Command(_Expr):
    __slots__ = ("args", "first", "rest")

    def __init__(self, pos: int, args: list[_Expr]) -> None:
        super().__init__(pos)
        self.args = args
        self.first = args[0]
        self.rest = tuple(args[1:])

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Expr):
    """A pipeline; as an operand it is a parenthesised sub-expression."""

    __slots__ = ("cmds", "decls", "is_assign")

    def __init__(self, pos: int, decls: list[str], is_assign: bool, cmds: list[_Command]) -> None:
        super().__init__(pos)
        self.decls = decls
        self.is_assign = is_assign
        self.cmds = cmds

    def __str__(self) -> str:
        text = " | ".join(str(c) for c in self.cmds)
        if self.decls:
            return ", ".join(self.decls) + (" = " if self.is_assign else " := ") + text
        return text

    def value(self, ex: _Exec, dot: object) -> object:
        return ex.pipe(dot, self)

    def command(
        self, ex: _Exec, dot: object, rest: Sequence[_Expr], final: object, cmd: _Expr
    ) -> object:
        _not_a_function(self, rest, final)
        return ex.pipe(dot, self)


class _Node:
    """A statement of a template body."""

    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def run(self, ex: _Exec, dot: object) -> None:
        raise NotImplementedError


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def run(self, ex: _Exec, dot: object) -> None:
        ex.out.append(self.text)


class _Action(_Node):
    __slots__ = ("field", "pipe")

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        super().__init__(pos)
        self.pipe = pipe
        # The overwhelmingly common {{.Name}}: skip the generic pipeline machinery.
        only = pipe.cmds[0].first if len(pipe.cmds) == 1 and not pipe.decls else None
        self.field = only if isinstance(only, _Field) and not pipe.cmds[0].rest else None

    def run(self, ex: _Exec, dot: object) -> None:
        if self.field is not None:
            ex.out.append(format_value(self.field.value(ex, dot)))
            return
        value = ex.pipe(dot, self.pipe)
        if not self.pipe.decls:
            ex.out.append(format_value(value))


class _If(_Node):
    """``if`` and ``with`` (which also moves dot)."""

    __slots__ = ("body", "else_body", "is_with", "pipe")

    def __init__(
        self, pos: int, pipe: _Pipe, body: list[_Node], else_body: list[_Node] | None, is_with: bool
    ) -> None:
        super().__init__(pos)
        self.pipe = pipe
        self.body = body
        self.else_body = else_body
        self.is_with = is_with

    def run(self, ex: _Exec, dot: object) -> None:
        mark = len(ex.vars)
        value = ex.pipe(dot, self.pipe)
        if _truth(value):
            ex.walk(self.body, value if self.is_with else dot)
        elif self.else_body is not None:
            ex.walk(self.else_body, dot)
        del ex.vars[mark:]


class _Range(_Node):
    __slots__ = ("body", "else_body", "pipe")

    def __init__(
        self, pos: int, pipe: _Pipe, body: list[_Node], else_body: list[_Node] | None
    ) -> None:
        super().__init__(pos)
        self.pipe = pipe
        self.body = body
        self.else_body = else_body

    def _items(self, ex: _Exec, value: object) -> Iterable[tuple[object, object]]:
        if value is None or value is NO_VALUE:
            return ()
        if isinstance(value, (list, tuple)):
            return enumerate(value)
        if isinstance(value, Mapping):
            return ((k, value[k]) for k in _sorted_keys(value))
        if ex.header is not None and isinstance(value, _HeaderText):
            return ((0, value),)
        if isinstance(value, int) and not isinstance(value, bool):
            if len(self.pipe.decls) > 1:
                raise _ExecError(self.pipe, "can't use 2 variables to range over an int")
            return ((i, i) for i in range(value))
        if isinstance(value, (set, frozenset)):
            return enumerate(_sorted_values(value))
        if isinstance(value, Iterable) and not isinstance(value, (str, bytes, bytearray)):
            return enumerate(list(value))
        raise _ExecError(self.pipe, f"range can't iterate over {format_value(value)}")

    def run(self, ex: _Exec, dot: object) -> None:
        mark = len(ex.vars)
        pipe = self.pipe
        value: object = _ABSENT
        for cmd in pipe.cmds:
            value = cmd.first.command(ex, dot, cmd.rest, value, cmd)
        decls = pipe.decls
        assign = pipe.is_assign
        if decls and not assign:
            ex.vars.extend((name, value) for name in decls)
        ran = False
        for key, elem in self._items(ex, value):
            ran = True
            if decls:
                pairs: tuple[tuple[str, object], ...]
                if len(decls) == 1:
                    pairs = ((decls[0], elem),)
                else:
                    pairs = ((decls[0], key), (decls[1], elem))
                for j, (name, v) in enumerate(pairs):
                    if assign:
                        ex.set_var(name, v, pipe)
                    else:
                        ex.vars[mark + j] = (name, v)
            inner = len(ex.vars)
            try:
                ex.walk(self.body, elem)
            except _Continue:
                pass
            except _Break:
                del ex.vars[inner:]
                break
            del ex.vars[inner:]
        if not ran and self.else_body is not None:
            ex.walk(self.else_body, dot)
        del ex.vars[mark:]


class _BreakNode(_Node):
    __slots__ = ()

    def run(self, ex: _Exec, dot: object) -> None:
        raise _BREAK


class _ContinueNode(_Node):
    __slots__ = ()

    def run(self, ex: _Exec, dot: object) -> None:
        raise _CONTINUE


class _TemplateCall(_Node):
    __slots__ = ("name", "pipe")

    def __init__(self, pos: int, name: str, pipe: _Pipe | None) -> None:
        super().__init__(pos)
        self.name = name
        self.pipe = pipe

    def run(self, ex: _Exec, dot: object) -> None:
        body = ex.templates.get(self.name)
        if body is None:
            raise _ExecError(self, f"template {_go_quote(self.name)} not defined")
        if ex.depth >= _MAX_TEMPLATE_DEPTH:
            raise _ExecError(self, f"exceeded maximum template depth ({_MAX_TEMPLATE_DEPTH})")
        new_dot = ex.pipe(dot, self.pipe) if self.pipe is not None else None
        saved = ex.vars
        ex.vars = [("$", new_dot)]
        ex.depth += 1
        try:
            ex.walk(body, new_dot)
        except _ExecError as e:
            if e.template is None:
                e.template = self.name
            raise
        finally:
            ex.vars = saved
            ex.depth -= 1

    def __str__(self) -> str:
        return (
            f"{{{{template {_go_quote(self.name)}" + (f" {self.pipe}" if self.pipe else "") + "}}"
        )


class _End(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class _Else(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{else}}"


# --------------------------------------------------------------------------- parser


class _ParseError(Exception):
    pass


_SIMPLE_ESCAPES: Final = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _unquote(body: str, quote: str) -> str:
    """Decode the escapes of a Go interpreted string or rune literal (quotes stripped)."""
    buf = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == quote:
            raise ValueError
        if c != "\\":
            buf += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            buf.append(_SIMPLE_ESCAPES[e])
        elif e == quote:
            buf += e.encode()
        elif e in ("x", "u", "U"):
            k = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + k]
            if len(digits) != k or not set(digits) <= _HEX:
                raise ValueError
            i += k
            code = int(digits, 16)
            if e == "x":
                buf.append(code)
            else:
                if code > 0x10FFFF or 0xD800 <= code < 0xE000:
                    raise ValueError
                buf += chr(code).encode()
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or not set(digits) <= set("01234567") or int(digits, 8) > 255:
                raise ValueError
            buf.append(int(digits, 8))
            i += 2
        else:
            raise ValueError
    return buf.decode("utf-8", "replace")


def _parse_number(text: str) -> int | float:
    """A Go number literal (int, legacy octal, 0x/0o/0b, float, hex float).

    Raises ValueError when it is none of them (complex constants are not supported).
    """
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body.endswith("i"):
        raise ValueError("complex numbers are not supported")
    if _LEGACY_OCTAL.fullmatch(body):
        return sign * int(body.replace("_", ""), 8)
    try:
        return sign * int(body, 0)
    except ValueError:
        pass
    if body[:2] in ("0x", "0X"):
        return sign * float.fromhex(body.replace("_", ""))
    if not _DECIMAL_FLOAT.fullmatch(body):
        raise ValueError(text)
    return sign * float(body)


_LEGACY_OCTAL: Final = re.compile(r"0(?:_?[0-7])+")
_DECIMAL_FLOAT: Final = re.compile(r"[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?")


class _Parser:
    def __init__(self, src: str, name: str, funcs: Mapping[str, _Func]) -> None:
        self.src = src
        self.name = name
        self.funcs = funcs
        self.toks = _Lexer(src).run()
        self.i = 0
        self.line = 1
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.paren_depth = 0
        self.templates: dict[str, list[_Node]] = {}

    # token stream
    def next(self) -> _Tok:
        toks = self.toks
        t = toks[self.i] if self.i < len(toks) else toks[-1]
        self.i += 1
        self.line = t.line
        return t

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> _Tok:
        t = self.next()
        self.i -= 1
        return t

    def next_non_space(self) -> _Tok:
        t = self.next()
        while t.kind is _K.SPACE:
            t = self.next()
        return t

    def peek_non_space(self) -> _Tok:
        t = self.next_non_space()
        self.i -= 1
        return t

    def error(self, message: str) -> NoReturn:
        raise _ParseError(f"template: {self.name}:{self.line}: {message}")

    def unexpected(self, tok: _Tok, context: str) -> NoReturn:
        if tok.kind is _K.ERROR:
            self.error(tok.val)
        self.error(f"unexpected {tok.describe()} in {context}")

    def expect(self, kind: _K, context: str) -> _Tok:
        t = self.next_non_space()
        if t.kind is not kind:
            self.unexpected(t, context)
        return t

    # structure
    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        while self.peek().kind is not _K.EOF:
            if self.peek().kind is _K.LEFT:
                save = self.i
                self.next()
                if self.next_non_space().kind is _K.DEFINE:
                    self.definition()
                    continue
                self.i = save
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                self.error(f"unexpected {node}")
            root.append(node)
        return root

    def item_list(self) -> tuple[list[_Node], _Node]:
        nodes: list[_Node] = []
        while self.peek_non_space().kind is not _K.EOF:
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return nodes, node
            nodes.append(node)
        self.error("unexpected EOF")

    def text_or_action(self) -> _Node:
        t = self.next_non_space()
        if t.kind is _K.TEXT:
            return _Text(t.pos, t.val)
        if t.kind is _K.LEFT:
            return self.action()
        self.unexpected(t, "input")

    def action(self) -> _Node:
        t = self.next_non_space()
        k = t.kind
        if k is _K.BLOCK:
            return self.block_control()
        if k is _K.BREAK or k is _K.CONTINUE:
            return self.loop_control(t)
        if k is _K.ELSE:
            return self.else_control(t)
        if k is _K.END:
            self.expect(_K.RIGHT, "end")
            return _End(t.pos)
        if k is _K.IF or k is _K.WITH:
            return self.branch(k is _K.WITH)
        if k is _K.RANGE:
            return self.range_control()
        if k is _K.TEMPLATE:
            return self.template_control()
        self.backup()
        pos = self.peek().pos
        return _Action(pos, self.pipeline("command", _K.RIGHT))

    def loop_control(self, t: _Tok) -> _Node:
        context = "{{" + t.val + "}}"
        tok = self.next_non_space()
        if tok.kind is not _K.RIGHT:
            self.unexpected(tok, context)
        if self.range_depth == 0:
            self.error(f"{context} outside {{{{range}}}}")
        return _BreakNode(t.pos) if t.kind is _K.BREAK else _ContinueNode(t.pos)

    def else_control(self, t: _Tok) -> _Node:
        peek = self.peek_non_space()
        if peek.kind is _K.IF or peek.kind is _K.WITH:
            return _Else(peek.pos)  # "else if"/"else with": leave the keyword pending
        self.expect(_K.RIGHT, "else")
        return _Else(t.pos)

    def control(self, context: str) -> tuple[_Pipe, list[_Node], list[_Node] | None]:
        mark = len(self.vars)
        pipe = self.pipeline(context, _K.RIGHT)
        if context == "range":
            self.range_depth += 1
        body, term = self.item_list()
        if context == "range":
            self.range_depth -= 1
        else_body: list[_Node] | None = None
        if isinstance(term, _Else):
            nxt = self.peek().kind
            if context == "if" and nxt is _K.IF:
                self.next()
                else_body = [self.branch(is_with=False)]
            elif context == "with" and nxt is _K.WITH:
                self.next()
                else_body = [self.branch(is_with=True)]
            else:
                else_body, term = self.item_list()
                if not isinstance(term, _End):
                    self.error(f"expected end; found {term}")
        del self.vars[mark:]
        return pipe, body, else_body

    def branch(self, is_with: bool) -> _Node:
        pipe, body, else_body = self.control("with" if is_with else "if")
        return _If(pipe.pos, pipe, body, else_body, is_with)

    def range_control(self) -> _Node:
        pipe, body, else_body = self.control("range")
        return _Range(pipe.pos, pipe, body, else_body)

    def template_name(self, tok: _Tok, context: str) -> str:
        if tok.kind is _K.STRING:
            try:
                return _unquote(tok.val[1:-1], '"')
            except ValueError:
                self.error("invalid syntax")
        if tok.kind is _K.RAWSTRING:
            return tok.val[1:-1].replace("\r", "")
        self.unexpected(tok, context)

    def template_control(self) -> _Node:
        context = "template clause"
        t = self.next_non_space()
        name = self.template_name(t, context)
        pipe = None
        if self.next_non_space().kind is not _K.RIGHT:
            self.backup()
            pipe = self.pipeline(context, _K.RIGHT)
        return _TemplateCall(t.pos, name, pipe)

    def sub_template(self, context: str) -> list[_Node]:
        saved = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, term = self.item_list()
        if not isinstance(term, _End):
            self.error(f"unexpected {term} in {context}")
        self.vars, self.range_depth = saved
        return body

    def block_control(self) -> _Node:
        context = "block clause"
        t = self.next_non_space()
        name = self.template_name(t, context)
        pipe = self.pipeline(context, _K.RIGHT)
        self.templates[name] = self.sub_template(context)
        return _TemplateCall(t.pos, name, pipe)

    def definition(self) -> None:
        context = "define clause"
        name = self.template_name(self.next_non_space(), context)
        self.expect(_K.RIGHT, context)
        self.templates[name] = self.sub_template(context)

    # pipelines and operands
    def pipeline(self, context: str, end: _K) -> _Pipe:
        pos = self.peek_non_space().pos
        decls: list[str] = []
        is_assign = False
        while self.peek_non_space().kind is _K.VARIABLE:
            save = self.i
            v = self.next_non_space()
            nxt = self.next_non_space()
            if nxt.kind is _K.ASSIGN or nxt.kind is _K.DECLARE:
                is_assign = nxt.kind is _K.ASSIGN
                decls.append(v.val)
                break
            if nxt.kind is _K.CHAR and nxt.val == ",":
                decls.append(v.val)
                if context == "range" and len(decls) < 2:
                    if self.peek_non_space().kind in (_K.VARIABLE, _K.RIGHT, _K.RPAREN):
                        continue
                    self.error("range can only initialize variables")
                self.error(f"too many declarations in {context}")
            self.i = save
            break
        if is_assign:
            for name in decls:
                if name not in self.vars:
                    self.error(f"undefined variable {_go_quote(name)}")
        self.vars.extend(decls)
        cmds: list[_Command] = []
        while True:
            t = self.next_non_space()
            if t.kind is end:
                if not cmds:
                    self.error(f"missing value for {context}")
                for stage, c in enumerate(cmds[1:], start=2):
                    if isinstance(c.first, (_Literal, _Dot, _Nil)):
                        self.error(f"non executable command in pipeline stage {stage}")
                return _Pipe(pos, decls, is_assign, cmds)
            if t.kind in _OPERAND_START:
                self.backup()
                cmds.append(self.command())
            else:
                self.unexpected(t, context)

    def command(self) -> _Command:
        pos = self.peek_non_space().pos
        args: list[_Expr] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            t = self.next()
            if t.kind is _K.SPACE:
                continue
            if t.kind is _K.RIGHT or t.kind is _K.RPAREN:
                self.backup()
            elif t.kind is not _K.PIPE:
                self.unexpected(t, "operand")
            break
        if not args:
            self.error("empty command")
        return _Command(pos, args)

    def operand(self) -> _Expr | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind is _K.FIELD:
            pos = self.peek().pos
            fields: list[str] = []
            while self.peek().kind is _K.FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, _Field):
                return _Field(node.pos, node.names + tuple(fields))
            if isinstance(node, _Variable):
                return _Variable(node.pos, node.name, node.fields + tuple(fields))
            if isinstance(node, (_Literal, _Nil, _Dot)):
                self.error(f"unexpected . after term {_go_quote(str(node))}")
            return _Chain(pos, node, tuple(fields))
        return node

    def term(self) -> _Expr | None:
        t = self.next_non_space()
        k = t.kind
        if k is _K.FIELD:
            return _Field(t.pos, (t.val[1:],))
        if k is _K.IDENT:
            if t.val not in self.funcs:
                self.error(f"function {_go_quote(t.val)} not defined")
            return _Ident(t.pos, t.val)
        if k is _K.DOT:
            return _Dot(t.pos)
        if k is _K.NIL:
            return _Nil(t.pos)
        if k is _K.VARIABLE:
            if t.val not in self.vars:
                self.error(f"undefined variable {_go_quote(t.val)}")
            return _Variable(t.pos, t.val)
        if k is _K.BOOL:
            return _Literal(t.pos, t.val == "true", t.val)
        if k is _K.NUMBER:
            try:
                return _Literal(t.pos, _parse_number(t.val), t.val)
            except ValueError:
                self.error(f"illegal number syntax: {_go_quote(t.val)}")
        if k is _K.CHARCONST:
            try:
                decoded = _unquote(t.val[1:-1], "'")
            except ValueError:
                self.error("invalid syntax")
            if len(decoded) != 1:
                self.error(f"malformed character constant: {t.val}")
            return _Literal(t.pos, ord(decoded), t.val)
        if k is _K.STRING:
            try:
                return _Literal(t.pos, _unquote(t.val[1:-1], '"'), t.val)
            except ValueError:
                self.error("invalid syntax")
        if k is _K.RAWSTRING:
            return _Literal(t.pos, t.val[1:-1].replace("\r", ""), t.val)
        if k is _K.LPAREN:
            self.paren_depth += 1
            if self.paren_depth > _MAX_PAREN_DEPTH:
                self.error("max expression depth exceeded")
            pipe = self.pipeline("parenthesized pipeline", _K.RPAREN)
            self.paren_depth -= 1
            return pipe
        self.backup()
        return None


# --------------------------------------------------------------------------- public API


class Template:
    """A compiled template: parse once, :meth:`render` many rows."""

    __slots__ = ("_funcs", "_header_funcs", "_root", "_templates", "name", "source")

    def __init__(
        self,
        source: str,
        *,
        name: str = "",
        funcs: Mapping[str, Callable[..., object]] | None = None,
    ) -> None:
        """Parse ``source``; ``funcs`` adds (or overrides) template functions by name.

        Raises :class:`TemplateError` (``template parsing error: …``) when it does not parse.
        """
        self.source = source
        self.name = name
        table: Mapping[str, _Func] = _BUILTINS
        if funcs:
            table = {**_BUILTINS, **{k: _wrap_user_func(k, f) for k, f in funcs.items()}}
        self._funcs = table
        self._header_funcs = _BUILTIN_HEADER_FUNCS if table is _BUILTINS else _header_funcs(table)
        parser = _Parser(source, name, table)
        try:
            self._root = parser.parse()
        except _ParseError as e:
            raise TemplateError(f"template parsing error: {e}") from None
        except RecursionError:
            where = f"template: {name}:{parser.line}"
            raise TemplateError(f"template parsing error: {where}: nested too deeply") from None
        self._templates: dict[str, list[_Node]] = parser.templates

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, data: object) -> str:
        """Execute the template with ``data`` as dot (and ``$``)."""
        ex = _Exec(data, self._funcs, self._templates, None)
        self._execute(ex, data)
        return "".join(ex.out)

    def render_headers(self, header: Callable[[tuple[str, ...]], str]) -> str:
        """Render the header row of a ``table`` format, as the docker CLI does.

        Every field chain evaluates to ``header(path)`` (``{{.State.Status}}`` asks for
        ``("State", "Status")``); functions that would transform a value (``upper``,
        ``json``, ``index``, ``len`` …) pass the header through unchanged, while ``printf``
        and ``pad`` still shape it so that it lines up with its column.  Execution errors
        are ignored (as docker does): whatever rendered until then is returned.
        """
        root = _HeaderText("", ())
        ex = _Exec(root, self._header_funcs, self._templates, header)
        with contextlib.suppress(TemplateError):
            self._execute(ex, root)
        return "".join(ex.out)

    def _execute(self, ex: _Exec, data: object) -> None:
        try:
            ex.walk(self._root, data)
        except _ExecError as e:
            raise TemplateError(self._exec_message(e)) from None
        except RecursionError:
            raise TemplateError(
                f"template parsing error: template: {self.name}: template nested too deeply"
            ) from None

    def _exec_message(self, e: _ExecError) -> str:
        name = self.name if e.template is None else e.template
        if e.node is None:
            return f"template parsing error: template: {name}: {e.message}"
        pos = e.node.pos
        line = self.source.count("\n", 0, pos) + 1
        col = pos - (self.source.rfind("\n", 0, pos) + 1)
        context = str(e.node)
        if len(context) > _CONTEXT_WIDTH:
            context = context[:_CONTEXT_WIDTH] + "..."
        return (
            f"template parsing error: template: {self.name}:{line}:{col}: "
            f"executing {_go_quote(name)} at <{context}>: {e.message}"
        )


@lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return Template(source)


def render(template: str, data: object) -> str:
    """Render the Go template ``template`` with ``data`` (compiled templates are cached)."""
    return _compiled(template).render(data)
