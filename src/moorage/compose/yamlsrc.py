"""YAML for compose files: YAML 1.2 scalars (as compose v2 reads them) and containers that
remember where each of their entries was written, so errors can say ``file:line:column``."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import yaml

from moorage.compose.errors import ComposeError, Mark

try:  # the C parser when libyaml is there; the marks are the same
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader


class MDict(dict[Any, Any]):
    """A mapping with the mark of each key (``key_marks``) and of itself (``mark``)."""

    def __init__(self, *args: Any, mark: Mark | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mark = mark
        self.key_marks: dict[Any, Mark] = {}


class MList(list[Any]):
    """A sequence with the mark of each item (``item_marks``) and of itself (``mark``)."""

    def __init__(self, *args: Any, mark: Mark | None = None) -> None:
        super().__init__(*args)
        self.mark = mark
        self.item_marks: list[Mark | None] = []


def mark_of(container: Any, key: Any = None) -> Mark | None:
    """The mark of ``container[key]`` (or of the container itself when ``key`` is None)."""
    if key is None:
        return getattr(container, "mark", None)
    if isinstance(container, MDict):
        return container.key_marks.get(key, container.mark)
    if isinstance(container, MList) and isinstance(key, int):
        if 0 <= key < len(container.item_marks):
            return container.item_marks[key] or container.mark
        return container.mark
    return None


# YAML 1.2 core schema: no yes/no/on/off booleans, no base-60 numbers (``80:22`` stays a
# port mapping), no octal from a leading zero, no timestamps.
_RESOLVERS: list[tuple[str, re.Pattern[str], str]] = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN"),
    (
        "tag:yaml.org,2002:int",
        re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
        "-+0123456789",
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+.0123456789",
    ),
]


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {}


for _tag, _regexp, _first in _RESOLVERS:
    # PyYAML finds the resolvers of the empty scalar under the first character ""
    _Loader.add_implicit_resolver(_tag, _regexp, list(_first) + ([""] if "~" in _first else []))
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def plain_is_string(text: str) -> bool:
    """Whether ``text`` written as a plain (unquoted) scalar would load back as a string."""
    tag: str = _Loader.resolve(_Loader, yaml.ScalarNode, text, (True, False))
    return tag == "tag:yaml.org,2002:str"


def _mark(file: str, m: Any) -> Mark:
    return Mark(file, m.line + 1, m.column + 1)


def _scalar(node: yaml.ScalarNode, file: str) -> Any:
    tag, value = node.tag, node.value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value, 10)
    if tag == "tag:yaml.org,2002:float":
        low = value.lower()
        if low.endswith(".inf"):
            return float("-inf") if low.startswith("-") else float("inf")
        if low == ".nan":
            return float("nan")
        return float(value)
    if tag in ("tag:yaml.org,2002:str", "!"):
        return value
    raise ComposeError(f"unsupported YAML tag {tag}", mark=_mark(file, node.start_mark))


class _Builder:
    """Turns a composed YAML node graph into MDict/MList/scalars, with merge keys (``<<``)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.active: set[int] = set()

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node, self.file)
        if id(node) in self.active:
            raise ComposeError("recursive YAML alias", mark=_mark(self.file, node.start_mark))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                seq = MList(mark=_mark(self.file, node.start_mark))
                for item in node.value:
                    seq.append(self.build(item))
                    seq.item_marks.append(_mark(self.file, item.start_mark))
                return seq
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode) -> MDict:
        out = MDict(mark=_mark(self.file, node.start_mark))
        merged: list[MDict] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for src in sources:
                    value = self.build(src)
                    if not isinstance(value, MDict):
                        raise ComposeError(
                            "a merge key (<<) takes a mapping or a list of mappings",
                            mark=_mark(self.file, src.start_mark),
                        )
                    merged.append(value)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ComposeError(
                    "a mapping key must be a scalar", mark=_mark(self.file, key_node.start_mark)
                )
            key = _scalar(key_node, self.file)
            key = "null" if key is None else key if isinstance(key, str) else key_node.value
            if key in out:
                raise ComposeError(
                    f"mapping key {key!r} already defined",
                    mark=_mark(self.file, key_node.start_mark),
                )
            out[key] = self.build(value_node)
            out.key_marks[key] = _mark(self.file, key_node.start_mark)
        # explicit keys win over merged ones; earlier merge sources win over later ones
        for src in merged:
            for key, value in src.items():
                if key not in out:
                    out[key] = value
                    out.key_marks[key] = src.key_marks.get(key) or src.mark or out.mark  # type: ignore[assignment]
        return out


def load_yaml(text: str, file: str) -> Any:
    """One YAML document as MDict/MList/scalars; a syntax error names ``file:line:column``."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        raise ComposeError(
            f"invalid YAML: {problem}", mark=_mark(file, m) if m is not None else None
        ) from None
    except yaml.YAMLError as e:
        raise ComposeError(f"invalid YAML: {e}", mark=Mark(file, 1, 1)) from None
    if node is None:
        return None
    return _Builder(file).build(node)
