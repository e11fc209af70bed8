"""The Dockerfile frontend: BuildKit's parser (the ``dockerfile`` package) splits the file
into instructions; here they are checked, grouped into stages and given file:line names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from moorage.errors import InvalidArgument

INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    }
)  # fmt: skip
_NEEDS_ARGS = INSTRUCTIONS - {"HEALTHCHECK"}
_FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"mount", "network", "security"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed or built; the message names file:line."""


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool  # unquoted delimiter: the content is expanded like a word
    chomp: bool  # <<- : leading tabs removed


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case: RUN, COPY, ...
    args: tuple[str, ...]
    flags: dict[str, list[str]]
    json: bool
    original: str
    file: str
    line: int
    heredocs: tuple[Heredoc, ...] = ()
    sub: str | None = None  # ONBUILD's trigger instruction name
    expand: bool = True  # False for the LABELs --label adds (taken literally)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self.where}: {message} ({self.original.splitlines()[0]})")

    def flag(self, name: str) -> str | None:
        values = self.flags.get(name)
        return values[-1] if values else None

    @property
    def trigger(self) -> str:
        """ONBUILD's trigger as Docker stores it: the instruction text after ONBUILD."""
        return self.original.split(None, 1)[1] if self.sub else ""


@dataclass
class Stage:
    index: int
    base: str  # unexpanded FROM argument
    name: str  # the AS name, lower case ("" if none)
    platform: str | None
    from_instr: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]
    escape: str
    file: str

    def stage_index(self, name: str) -> int | None:
        low = name.lower()
        for s in self.stages:
            if s.name and s.name == low:
                return s.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


def escape_directive(text: str) -> str:
    """The ``# escape=`` parser directive (``\\`` unless set to ``\\`` or a backtick)."""
    escape = "\\"
    for line in text.splitlines():
        m = _DIRECTIVE.match(line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise DockerfileError(f"invalid ESCAPE '{m.group(2)}'. Must be ` or \\")
            escape = m.group(2)
    return escape


def _heredocs(cmd: object, values: tuple[str, ...]) -> tuple[Heredoc, ...]:
    out = []
    marks = [v for v in values if v.startswith("<<")]
    for doc in getattr(cmd, "heredocs", ()) or ():
        mark = next((m for m in marks if m.lstrip("<-").strip("\"'") == doc.name), "")
        quoted = '"' in mark or "'" in mark
        chomp = mark.startswith("<<-")
        content = doc.content
        if chomp:
            content = "".join(line.lstrip("\t") for line in content.splitlines(keepends=True))
        out.append(Heredoc(doc.name, content, expand=not quoted, chomp=chomp))
    return tuple(out)


def parse_flags(
    raw: tuple[str, ...], cmd: str, line: int, file: str, original: str
) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    allowed = _FLAGS.get(cmd, frozenset())
    for f in raw:
        name, sep, value = f[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(f"{file}:{line}: unknown flag: {name} ({original})")
        if not sep and name != "link" and name != "keep-git-dir":
            raise DockerfileError(f"{file}:{line}: missing a value on flag: {name} ({original})")
        flags.setdefault(name, []).append(value if sep else "true")
    return flags


def to_instruction(cmd: object, file: str) -> Instruction:
    """One parsed command (from the ``dockerfile`` package) as a checked Instruction."""
    name = str(getattr(cmd, "cmd", "")).upper()
    line = int(getattr(cmd, "start_line", 0))
    original = str(getattr(cmd, "original", ""))
    first = original.splitlines()[0] if original else name
    if name not in INSTRUCTIONS:
        raise DockerfileError(f"{file}:{line}: unknown instruction: {name} ({first})")
    values = tuple(str(v) for v in getattr(cmd, "value", ()) or ())
    sub = getattr(cmd, "sub_cmd", None)
    if name == "ONBUILD":
        if not sub:
            raise DockerfileError(f"{file}:{line}: ONBUILD requires at least one argument")
        sub = str(sub).upper()
        if sub in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{file}:{line}: {sub} isn't allowed as an ONBUILD trigger")
        if sub not in INSTRUCTIONS:
            raise DockerfileError(f"{file}:{line}: unknown instruction: {sub} ({first})")
    elif name in _NEEDS_ARGS and not [v for v in values if v]:
        raise DockerfileError(f"{file}:{line}: {name} requires at least one argument ({first})")
    flags = parse_flags(tuple(getattr(cmd, "flags", ()) or ()), name, line, file, first)
    return Instruction(
        cmd=name,
        args=values,
        flags=flags,
        json=bool(getattr(cmd, "json", False)),
        original=original.rstrip("\n"),
        file=file,
        line=line,
        heredocs=_heredocs(cmd, values),
        sub=sub,
    )


def parse_instruction_text(text: str, file: str = "ONBUILD") -> Instruction:
    """One instruction from text (an ONBUILD trigger stored in an image)."""
    import dockerfile

    try:
        cmds = dockerfile.parse_string(text + "\n")
    except dockerfile.GoParseError as e:
        raise DockerfileError(f"{file}: {e}: {text}") from None
    if len(cmds) != 1:
        raise DockerfileError(f"{file}: expected one instruction: {text}")
    return to_instruction(cmds[0], file)


def parse(text: str, file: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile into meta ARGs and stages."""
    import dockerfile

    escape = escape_directive(text)
    try:
        cmds = dockerfile.parse_string(text)
    except dockerfile.GoParseError as e:
        if "no instructions" in str(e):
            raise DockerfileError(f"the Dockerfile ({file}) cannot be empty") from None
        raise DockerfileError(f"{file}: dockerfile parse error: {e}") from None
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for c in cmds:
        ins = to_instruction(c, file)
        if ins.cmd == "FROM":
            args = [a for a in ins.args if a]
            name = ""
            if len(args) == 3 and args[1].upper() == "AS":
                name = args[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9-_.]*", name):
                    raise ins.error(f"invalid name for build stage: {args[2]!r}")
                if any(s.name == name for s in stages):
                    raise ins.error(f"duplicate name {args[2]!r}")
            elif len(args) != 1:
                raise ins.error("FROM requires either one or three arguments")
            stages.append(Stage(len(stages), args[0], name, ins.flag("platform"), ins))
        elif not stages:
            if ins.cmd != "ARG":
                raise ins.error("no build stage in current context")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(f"{file}: no build stage in current context (no FROM)")
    return Dockerfile(meta, stages, escape, file)
