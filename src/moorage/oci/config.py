"""The image config (OCI ``application/vnd.oci.image.config.v1+json`` and Docker
``application/vnd.docker.container.image.v1+json``) and ``--change`` instructions.

Parsing is strict on the types of the keys it knows and keeps every key it does not know
(``container``, ``container_config``, ``docker_version``, ``Hostname``, ``Image`` …) in an
``extra`` mapping, so :meth:`ImageConfig.to_json` writes them back. Like manifests, a config
parsed from bytes keeps them in ``raw`` (excluded from equality); ``content``/``digest`` use
them, so the image id of a pulled image is that of the registry's bytes.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moorage.errors import InvalidArgument, InvalidDigest
from moorage.oci.descriptor import (
    ContentAddressed,
    Descriptor,
    FrozenMap,
    freeze_json,
    get_bool,
    get_int,
    get_str,
    get_str_list,
    get_str_map,
    load_json_object,
    parse_digest,
    thaw_json,
)
from moorage.oci.digest import Digest
from moorage.oci.mediatypes import OCI_CONFIG
from moorage.oci.platform import Platform

__all__ = [
    "ContainerConfig",
    "HealthConfig",
    "HistoryEntry",
    "ImageConfig",
    "RootFS",
    "apply_changes",
]


def _empty_map() -> FrozenMap[Any]:
    return FrozenMap()


def _extra(obj: Mapping[str, Any], known: Iterable[str]) -> FrozenMap[Any]:
    known_set = set(known)
    return FrozenMap((k, freeze_json(v)) for k, v in obj.items() if k not in known_set)


def _require_object(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidArgument(f"invalid {where}: must be a JSON object")
    return obj


def _key_set(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """A Go ``map[string]struct{}`` (ExposedPorts, Volumes): an object of objects."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise InvalidArgument(f"invalid {where}.{key}: must be an object of empty objects")
    return tuple(value)


def _freeze_fields(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, list):
            object.__setattr__(obj, name, tuple(value))
        elif isinstance(value, Mapping) and not isinstance(value, FrozenMap):
            object.__setattr__(obj, name, FrozenMap(value))


# --- HealthConfig -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Docker's ``Healthcheck`` extension; durations in nanoseconds, None = inherit/default."""

    test: tuple[str, ...] | None = None
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty_map)

    _KEYS = (
        ("Interval", "interval"),
        ("Timeout", "timeout"),
        ("StartPeriod", "start_period"),
        ("StartInterval", "start_interval"),
        ("Retries", "retries"),
    )

    def __post_init__(self) -> None:
        _freeze_fields(self, "test", "extra")

    @classmethod
    def from_json(cls, obj: Any, where: str = "config.Healthcheck") -> HealthConfig:
        obj = _require_object(obj, where)
        ints = {attr: get_int(obj, key, where) for key, attr in cls._KEYS}
        return cls(
            test=get_str_list(obj, "Test", where),
            extra=_extra(obj, ["Test", *(k for k, _ in cls._KEYS)]),
            **ints,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.test is not None:
            out["Test"] = list(self.test)
        for key, attr in self._KEYS:
            value = getattr(self, attr)
            if value is not None:
                out[key] = value
        out.update(thaw_json(self.extra))
        return out


# --- ContainerConfig --------------------------------------------------------------------------

# (JSON key, attribute, kind) in the order Docker writes them.
_CC_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("User", "user", "str"),
    ("ExposedPorts", "exposed_ports", "set"),
    ("Env", "env", "list"),
    ("Entrypoint", "entrypoint", "list"),
    ("Cmd", "cmd", "list"),
    ("Volumes", "volumes", "set"),
    ("WorkingDir", "working_dir", "str"),
    ("Labels", "labels", "map"),
    ("StopSignal", "stop_signal", "str"),
    ("ArgsEscaped", "args_escaped", "bool"),
    ("Healthcheck", "healthcheck", "health"),
    ("OnBuild", "on_build", "list"),
    ("Shell", "shell", "list"),
)


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """The ``config`` object of an image config: run-time defaults for containers.

    Every field is None when absent or null in the JSON (so ``Entrypoint: null`` and
    ``Entrypoint: []`` stay distinct); None fields are omitted by :meth:`to_json`, so a
    Docker ``"OnBuild": null`` is not written back (unknown keys, nulls included, are).
    ``exposed_ports`` and ``volumes`` are the keys of Docker's ``{"80/tcp": {}}`` objects;
    ``env`` holds ``KEY=value`` strings.
    """

    user: str | None = None
    exposed_ports: tuple[str, ...] | None = None
    env: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] | None = None
    working_dir: str | None = None
    labels: Mapping[str, str] | None = None
    stop_signal: str | None = None
    args_escaped: bool | None = None
    healthcheck: HealthConfig | None = None
    on_build: tuple[str, ...] | None = None
    shell: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty_map)

    def __post_init__(self) -> None:
        _freeze_fields(
            self,
            "exposed_ports",
            "env",
            "entrypoint",
            "cmd",
            "volumes",
            "labels",
            "on_build",
            "shell",
            "extra",
        )

    @classmethod
    def from_json(cls, obj: Any, where: str = "config") -> ContainerConfig:
        obj = _require_object(obj, where)
        values: dict[str, Any] = {}
        for key, attr, kind in _CC_FIELDS:
            if kind == "str":
                values[attr] = get_str(obj, key, where)
            elif kind == "list":
                values[attr] = get_str_list(obj, key, where)
            elif kind == "set":
                values[attr] = _key_set(obj, key, where)
            elif kind == "map":
                values[attr] = get_str_map(obj, key, where)
            elif kind == "bool":
                values[attr] = get_bool(obj, key, where)
            elif obj.get(key) is not None:
                values[attr] = HealthConfig.from_json(obj[key], f"{where}.{key}")
        return cls(extra=_extra(obj, (k for k, _, _ in _CC_FIELDS)), **values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, attr, kind in _CC_FIELDS:
            value = getattr(self, attr)
            if value is None:
                continue
            if kind == "set":
                out[key] = {k: {} for k in value}
            elif kind == "list":
                out[key] = list(value)
            elif kind == "map":
                out[key] = dict(value)
            elif kind == "health":
                out[key] = value.to_json()
            else:
                out[key] = value
        out.update(thaw_json(self.extra))
        return out

    def env_dict(self) -> dict[str, str]:
        """``env`` as a dict (a ``KEY`` without ``=`` maps to the empty string)."""
        out: dict[str, str] = {}
        for item in self.env or ():
            key, _, value = item.partition("=")
            out[key] = value
        return out


# --- RootFS and history -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RootFS:
    """``rootfs``: the uncompressed layer digests, bottom first."""

    type: str = "layers"
    diff_ids: tuple[Digest, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=_empty_map)

    def __post_init__(self) -> None:
        _freeze_fields(self, "diff_ids", "extra")

    @classmethod
    def from_json(cls, obj: Any, where: str = "rootfs") -> RootFS:
        obj = _require_object(obj, where)
        rtype = get_str(obj, "type", where, required=True) or ""
        raw_ids = obj.get("diff_ids")
        if raw_ids is None:
            raw_ids = []
        if not isinstance(raw_ids, list):
            raise InvalidArgument(f"invalid {where}.diff_ids: must be a list of digests")
        diff_ids: list[Digest] = []
        for i, value in enumerate(raw_ids):
            if not isinstance(value, str):
                raise InvalidArgument(f"invalid {where}.diff_ids[{i}]: must be a digest string")
            try:
                diff_ids.append(parse_digest(value))
            except InvalidDigest as e:
                raise InvalidArgument(f"invalid {where}.diff_ids[{i}]: {e}") from None
        return cls(rtype, tuple(diff_ids), _extra(obj, ("type", "diff_ids")))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "diff_ids": [str(d) for d in self.diff_ids]}
        out.update(thaw_json(self.extra))
        return out


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One ``history`` item; ``empty_layer`` entries add no layer to ``rootfs``."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False
    extra: Mapping[str, Any] = field(default_factory=_empty_map)

    def __post_init__(self) -> None:
        _freeze_fields(self, "extra")

    @classmethod
    def from_json(cls, obj: Any, where: str = "history[]") -> HistoryEntry:
        obj = _require_object(obj, where)
        return cls(
            created=get_str(obj, "created", where),
            created_by=get_str(obj, "created_by", where),
            author=get_str(obj, "author", where),
            comment=get_str(obj, "comment", where),
            empty_layer=bool(get_bool(obj, "empty_layer", where)),
            extra=_extra(obj, ("created", "created_by", "author", "comment", "empty_layer")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("created", "created_by", "author", "comment"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        out.update(thaw_json(self.extra))
        return out


# --- ImageConfig ------------------------------------------------------------------------------

_TOP_KEYS = (
    "created",
    "author",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "config",
    "rootfs",
    "history",
)


@dataclass(frozen=True, slots=True)
class ImageConfig(ContentAddressed):
    """An image config. ``extra`` keeps unknown top-level keys in their original order."""

    architecture: str = ""
    os: str = ""
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    rootfs: RootFS = field(default_factory=RootFS)
    history: tuple[HistoryEntry, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=_empty_map)
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _freeze_fields(self, "os_features", "history", "extra")

    @classmethod
    def from_json(cls, data: bytes | Mapping[str, Any]) -> ImageConfig:
        """Parse bytes (kept as ``raw``) or decoded JSON; strict on known keys' types."""
        raw: bytes | None = None
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            obj: Mapping[str, Any] = load_json_object(raw, "image config")
        elif isinstance(data, Mapping):
            obj = data
        else:
            raise InvalidArgument("invalid image config: must be a JSON object")
        where = "image config"
        history_obj = obj.get("history")
        if history_obj is None:
            history_obj = []
        if not isinstance(history_obj, list):
            raise InvalidArgument(f"invalid {where}.history: must be an array")
        config_obj = obj.get("config")
        rootfs_obj = obj.get("rootfs")
        return cls(
            created=get_str(obj, "created", where),
            author=get_str(obj, "author", where),
            architecture=get_str(obj, "architecture", where) or "",
            os=get_str(obj, "os", where) or "",
            os_version=get_str(obj, "os.version", where),
            os_features=get_str_list(obj, "os.features", where),
            variant=get_str(obj, "variant", where),
            config=(
                ContainerConfig()
                if config_obj is None
                else ContainerConfig.from_json(config_obj, "config")
            ),
            rootfs=RootFS() if rootfs_obj is None else RootFS.from_json(rootfs_obj, "rootfs"),
            history=tuple(
                HistoryEntry.from_json(h, f"history[{i}]") for i, h in enumerate(history_obj)
            ),
            extra=_extra(obj, _TOP_KEYS),
            raw=raw,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        out["architecture"] = self.architecture
        out["os"] = self.os
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features is not None:
            out["os.features"] = list(self.os_features)
        if self.variant is not None:
            out["variant"] = self.variant
        out["config"] = self.config.to_json()
        out["rootfs"] = self.rootfs.to_json()
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        out.update(thaw_json(self.extra))
        return out

    @property
    def platform(self) -> Platform:
        return Platform(
            self.os, self.architecture, self.variant, self.os_version, self.os_features or ()
        )

    def descriptor(self, media_type: str = OCI_CONFIG) -> Descriptor:
        return Descriptor(media_type, self.digest, len(self.content))

    def evolve(self, **changes: Any) -> ImageConfig:
        """``dataclasses.replace`` that drops ``raw`` (the bytes no longer match)."""
        return dataclasses.replace(self, raw=None, **changes)


# --- --change instructions --------------------------------------------------------------------

_CHANGE_INSTRUCTIONS = frozenset(
    {
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "HEALTHCHECK",
        "LABEL",
        "ONBUILD",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
_OTHER_DOCKERFILE_INSTRUCTIONS = frozenset(
    {"ADD", "ARG", "COPY", "FROM", "MAINTAINER", "RUN", "SHELL"}
)
_DEFAULT_SHELL = ("/bin/sh", "-c")
_WINDOWS_SHELL = ("cmd", "/S", "/C")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/([A-Za-z]+))?\Z")
_SIGNAL_RE = re.compile(r"^(?:\d{1,2}|(?:SIG)?[A-Z][A-Z0-9]*(?:[+-]\d+)?)\Z", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_DURATION_NS["h"] = 3600 * 10**9


class _ChangeError(Exception):
    """Internal: a malformed instruction; turned into InvalidArgument naming it."""


def _split_words(text: str) -> list[str]:
    """Split on unquoted blanks; quotes and backslashes are kept for :func:`_process_word`."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            cur.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            in_word = True
            cur.append(ch)
            if ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
        i += 1
    if quote is not None:
        raise _ChangeError(f"unterminated {quote} quote")
    if in_word:
        words.append("".join(cur))
    return words


def _expand(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the ``$…`` at ``text[i]``; returns (value, index after it)."""
    j = i + 1
    if j < len(text) and text[j] == "{":
        end = text.find("}", j)
        if end < 0:
            raise _ChangeError("missing '}' in variable substitution")
        body = text[j + 1 : end]
        m = _NAME_RE.match(body)
        if m is None:
            raise _ChangeError(f"bad substitution ${{{body}}}")
        name, rest = m.group(0), body[m.end() :]
        value = env.get(name)
        if rest == "":
            return value or "", end + 1
        for op in (":-", ":+", "-", "+"):
            if rest.startswith(op):
                word = _process_word(rest[len(op) :], env)
                is_set = value is not None and (value != "" or ":" not in op)
                if op.endswith("-"):
                    return (value or "") if is_set else word, end + 1
                return word if is_set else "", end + 1
        raise _ChangeError(f"unsupported modifier in ${{{body}}}")
    m = _NAME_RE.match(text, j)
    if m is None:
        return "$", j
    return env.get(m.group(0), ""), m.end()


def _process_word(word: str, env: Mapping[str, str] | None) -> str:
    """Remove quotes and backslash escapes; expand ``$VAR``/``${VAR}`` unless ``env`` is None."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(word):
        ch = word[i]
        if quote == "'":
            if ch == "'":
                quote = None
            else:
                out.append(ch)
            i += 1
            continue
        if ch == "\\" and i + 1 < len(word):
            nxt = word[i + 1]
            if quote == '"' and nxt not in '"\\$':
                out.append(ch)
            else:
                out.append(nxt)
            i += 2
            continue
        if ch == "$" and env is not None:
            value, i = _expand(word, i, env)
            out.append(value)
            continue
        if ch == '"':
            quote = None if quote == '"' else '"'
        elif ch == "'" and quote is None:
            quote = "'"
        else:
            out.append(ch)
        i += 1
    if quote is not None:
        raise _ChangeError(f"unterminated {quote} quote")
    return "".join(out)


def _json_list(rest: str) -> list[str] | None:
    """``rest`` as a JSON array of strings (exec form), or None when it is not one."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _key_values(rest: str, env: Mapping[str, str], kw: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` pairs, or the legacy ``k v with spaces`` single pair."""
    words = _split_words(rest)
    if not words:
        raise _ChangeError(f"{kw} requires at least one argument")
    if "=" not in words[0]:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise _ChangeError(f"{kw} must have two arguments")
        key = _process_word(parts[0], env)
        pairs = [(key, _process_word(parts[1].strip(), env))]
    else:
        pairs = []
        for word in words:
            key, sep, value = word.partition("=")
            if not sep:
                raise _ChangeError(
                    f"syntax error - can't find = in {word!r}. Must be of the form: name=value"
                )
            pairs.append((_process_word(key, env), _process_word(value, env)))
    for key, _ in pairs:
        if not key:
            raise _ChangeError(f"{kw} names can not be blank")
    return pairs


def _command(rest: str, kw: str, shell: tuple[str, ...]) -> tuple[str, ...]:
    exec_form = _json_list(rest)
    if exec_form is not None:
        return tuple(exec_form)
    if not rest:
        raise _ChangeError(f"{kw} requires at least one argument")
    return (*shell, rest)


def _parse_duration(text: str, flag: str) -> int:
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART_RE.match(text, pos)
        if m is None:
            break
        total += float(m.group(1)) * _DURATION_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise _ChangeError(f"invalid duration {text!r} for --{flag}")
    return int(total)


def _healthcheck(rest: str) -> HealthConfig:
    words = rest.split()
    if not words:
        raise _ChangeError("HEALTHCHECK requires an argument")
    if words[0].upper() == "NONE":
        if len(words) > 1:
            raise _ChangeError("HEALTHCHECK NONE takes no arguments")
        return HealthConfig(test=("NONE",))
    options: dict[str, Any] = {}
    while rest.startswith("--"):
        flag_word, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, sep, value = flag_word[2:].partition("=")
        if not sep:
            raise _ChangeError(f"flag --{name} needs a value (--{name}=…)")
        if name in ("interval", "timeout", "start-period", "start-interval"):
            options[name.replace("-", "_")] = _parse_duration(value, name)
        elif name == "retries":
            if not value.isdigit():
                raise _ChangeError(f"--retries must be a non-negative integer, got {value!r}")
            options["retries"] = int(value)
        else:
            raise _ChangeError(f"unknown flag: --{name}")
    kind, _, cmd = rest.partition(" ")
    if kind.upper() != "CMD":
        raise _ChangeError("unknown type, must be CMD or NONE")
    cmd = cmd.strip()
    exec_form = _json_list(cmd)
    if exec_form is not None:
        test = ("CMD", *exec_form)
    elif cmd:
        test = ("CMD-SHELL", cmd)
    else:
        raise _ChangeError("HEALTHCHECK CMD requires a command")
    return HealthConfig(test=test, **options)


def _set_env(env: list[str], key: str, value: str) -> None:
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            return
    env.append(f"{key}={value}")


def _expose(words: list[str]) -> list[str]:
    ports: list[str] = []
    for word in words:
        m = _PORT_RE.match(word)
        if m is None:
            raise _ChangeError(f"invalid port {word!r}: expected port[/tcp|udp|sctp]")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        proto = (m.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise _ChangeError(f"invalid protocol {m.group(3)!r} in {word!r}")
        if not 1 <= start <= end <= 65535:
            raise _ChangeError(f"invalid port range {word!r}")
        ports += [f"{p}/{proto}" for p in range(start, end + 1)]
    return ports


def _merge(existing: tuple[str, ...] | None, new: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*(existing or ()), *new)))


def apply_changes(cfg: ImageConfig, changes: Iterable[str]) -> ImageConfig:
    """Apply ``docker commit/import --change`` Dockerfile instructions to ``cfg``.

    Supported: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER,
    VOLUME, WORKDIR. Environment variables are substituted as Docker does (in ENV, EXPOSE,
    LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, not in CMD/ENTRYPOINT). As in a Dockerfile,
    ENTRYPOINT resets an inherited CMD unless a CMD change came before it. The result has no
    ``raw`` bytes. Errors are InvalidArgument("invalid --change: …").
    """
    cc = cfg.config
    env = list(cc.env or ())
    values: dict[str, Any] = {}
    cmd_set = False
    shell = cc.shell or (_WINDOWS_SHELL if cfg.os == "windows" else _DEFAULT_SHELL)

    for change in changes:
        line = change.replace("\\\n", " ").strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        kw = parts[0].upper()
        rest = parts[1].strip() if len(parts) > 1 else ""
        if kw not in _CHANGE_INSTRUCTIONS:
            if kw in _OTHER_DOCKERFILE_INSTRUCTIONS:
                raise InvalidArgument(f"invalid --change: {kw} is not a valid change command")
            raise InvalidArgument(f"invalid --change: unknown instruction {parts[0]}")
        env_map = {}
        for item in env:
            key, _, value = item.partition("=")
            env_map[key] = value
        try:
            if kw == "CMD":
                values["cmd"] = _command(rest, kw, shell)
                cmd_set = True
            elif kw == "ENTRYPOINT":
                values["entrypoint"] = _command(rest, kw, shell)
                if not cmd_set:
                    values["cmd"] = None
            elif kw == "ENV":
                for key, value in _key_values(rest, env_map, kw):
                    _set_env(env, key, value)
                values["env"] = tuple(env)
            elif kw == "LABEL":
                labels = dict(values.get("labels", cc.labels) or {})
                labels.update(_key_values(rest, env_map, kw))
                values["labels"] = FrozenMap(labels)
            elif kw == "EXPOSE":
                words = [_process_word(w, env_map) for w in _split_words(rest)]
                if not words:
                    raise _ChangeError("EXPOSE requires at least one argument")
                values["exposed_ports"] = _merge(
                    values.get("exposed_ports", cc.exposed_ports), _expose(words)
                )
            elif kw == "USER":
                words = _split_words(rest)
                if len(words) != 1:
                    raise _ChangeError("USER requires exactly one argument")
                user = _process_word(words[0], env_map)
                if not user:
                    raise _ChangeError("USER requires a non-empty user")
                values["user"] = user
            elif kw == "WORKDIR":
                path = _process_word(rest, env_map)
                if not path:
                    raise _ChangeError("WORKDIR requires exactly one argument")
                current = values.get("working_dir", cc.working_dir) or "/"
                path = posixpath.normpath(posixpath.join(current, path))
                values["working_dir"] = "/" + path.lstrip("/")
            elif kw == "VOLUME":
                items = _json_list(rest)
                raw_items = items if items is not None else _split_words(rest)
                vols = [_process_word(v, env_map).strip() for v in raw_items]
                if not vols or any(not v for v in vols):
                    raise _ChangeError("VOLUME specified can not be an empty string")
                values["volumes"] = _merge(values.get("volumes", cc.volumes), vols)
            elif kw == "STOPSIGNAL":
                words = _split_words(rest)
                if len(words) != 1:
                    raise _ChangeError("STOPSIGNAL requires exactly one argument")
                sig = _process_word(words[0], env_map)
                if not _SIGNAL_RE.match(sig):
                    raise _ChangeError(f"invalid signal {sig!r}")
                values["stop_signal"] = sig
            elif kw == "ONBUILD":
                if not rest:
                    raise _ChangeError("ONBUILD requires at least one argument")
                trigger = rest.split(None, 1)[0].upper()
                if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise _ChangeError(f"{trigger} isn't allowed as an ONBUILD trigger")
                if trigger not in _CHANGE_INSTRUCTIONS | _OTHER_DOCKERFILE_INSTRUCTIONS:
                    raise _ChangeError(f"unknown ONBUILD trigger instruction {trigger}")
                values["on_build"] = (*(values.get("on_build", cc.on_build) or ()), rest)
            else:  # HEALTHCHECK
                values["healthcheck"] = _healthcheck(rest)
        except _ChangeError as e:
            raise InvalidArgument(f"invalid --change: {kw}: {e}") from None

    return cfg.evolve(config=dataclasses.replace(cc, **values))
