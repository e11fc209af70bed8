"""Parsers for ``docker run``/``docker create`` flag values, with Docker's semantics and messages.

Each function takes the text the user typed and returns plain values (or OCI fragments);
invalid input raises :class:`~moorage.errors.InvalidArgument`. Only :func:`parse_env`,
:func:`parse_labels` (they read env/label files and the caller's environment) and the rlimit
helpers that look at this process touch the system.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from moorage.errors import InvalidArgument

__all__ = [
    "CPU_PERIOD",
    "RLIM_INFINITY",
    "SIGNALS",
    "ULIMIT_NAMES",
    "clamp_rlimits",
    "command_line",
    "cpu_quota",
    "default_rlimits",
    "merge_env",
    "parse_bytes",
    "parse_cpus",
    "parse_env",
    "parse_labels",
    "parse_memory_swap",
    "parse_restart",
    "parse_stop_signal",
    "parse_sysctl",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_user",
    "process_hard_limits",
]

_INT64_MAX = 2**63 - 1

# --- sizes and CPUs -------------------------------------------------------------------------

_SIZE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+) ?([kmgtp]?)(b|ib)?", re.IGNORECASE)
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(s: str, what: str = "size") -> int:
    """A size in bytes as Docker's ``RAMInBytes`` reads it (``--memory``, ``--shm-size``…).

    Binary units, case-insensitive, with an optional ``b``/``ib`` after the unit and an
    optional space before it: ``512``, ``512b``, ``64k``, ``64KB``, ``1.5g``, ``2GiB``.
    Fractions are truncated to whole bytes. ``what`` names the value in the "too large"
    message.
    """
    m = _SIZE_RE.fullmatch(s)
    if not m or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
        raise InvalidArgument(f"invalid size: '{s}'")
    from fractions import Fraction

    value = Fraction(m.group(1)) * _BINARY[m.group(2).lower()]
    n = int(value)
    if n > _INT64_MAX:
        raise InvalidArgument(f"invalid {what}: '{s}' is too large")
    return n


def parse_memory_swap(s: str) -> int:
    """``--memory-swap``: ``-1`` (unlimited swap) or a size as :func:`parse_bytes`."""
    if s == "-1":
        return -1
    return parse_bytes(s, "memory-swap")


_RATIONAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?\d+/\d+")

#: The CFS period Docker uses for ``--cpus`` (100 ms, in microseconds).
CPU_PERIOD = 100_000


def parse_cpus(s: str) -> int:
    """``--cpus`` as nano-CPUs (``1.5`` -> 1_500_000_000), as Docker's ``ParseCPUs``."""
    if not _RATIONAL_RE.fullmatch(s):
        raise InvalidArgument(f"failed to parse {s} as a rational number")
    try:
        from fractions import Fraction

        value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        raise InvalidArgument(f"failed to parse {s} as a rational number") from None
    nano = value * 1_000_000_000
    if nano.denominator != 1:
        raise InvalidArgument("value is too precise")
    if nano < 0:
        raise InvalidArgument(f"invalid value {s} for --cpus: it cannot be negative")
    if nano > _INT64_MAX:
        raise InvalidArgument(f"invalid value {s} for --cpus: it is too large")
    return int(nano)


def cpu_quota(nano_cpus: int) -> tuple[int, int]:
    """(CFS quota, CFS period) in microseconds for nano-CPUs, as Docker computes them."""
    return nano_cpus * CPU_PERIOD // 1_000_000_000, CPU_PERIOD


# --- ulimits --------------------------------------------------------------------------------

#: ``--ulimit`` names Docker accepts and their OCI ``process.rlimits[].type``.
ULIMIT_NAMES: dict[str, str] = {
    name: "RLIMIT_" + name.upper()
    for name in (
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    )
}
#: The OCI (uint64) value of "unlimited"; ``-1`` on the command line.
RLIM_INFINITY = 2**64 - 1

_LIMIT_RE = re.compile(r"-1|\d+")


def _limit(text: str, arg: str) -> int:
    if not _LIMIT_RE.fullmatch(text):
        raise InvalidArgument(f'invalid ulimit argument: {arg}: "{text}" is not a number')
    n = int(text)
    if n > _INT64_MAX:
        raise InvalidArgument(f'invalid ulimit argument: {arg}: "{text}" is out of range')
    return RLIM_INFINITY if n == -1 else n


def parse_ulimit(s: str) -> tuple[str, int, int]:
    """``--ulimit NAME=SOFT[:HARD]`` -> (OCI type, soft, hard); ``-1`` means unlimited.

    ``nofile=1024:2048`` -> ``("RLIMIT_NOFILE", 1024, 2048)``; a single value sets both.
    """
    name, sep, values = s.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid ulimit argument: {s}")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise InvalidArgument(
            f"too many limit value arguments - {values}, can only have up to two, `soft[:hard]`"
        )
    soft = _limit(parts[0], s)
    hard = _limit(parts[1], s) if len(parts) == 2 else soft
    if soft > hard:
        shown = ["-1" if v == RLIM_INFINITY else str(v) for v in (soft, hard)]
        raise InvalidArgument(
            f"ulimit soft limit must be less than or equal to hard limit: {shown[0]} > {shown[1]}"
        )
    return ULIMIT_NAMES[name], soft, hard


def _oci_limit(value: int) -> int:
    return RLIM_INFINITY if value < 0 or value >= RLIM_INFINITY else value


def process_hard_limits() -> dict[str, int]:
    """This process's hard limits by OCI type (``RLIM_INFINITY`` for unlimited)."""
    out: dict[str, int] = {}
    for oci in ULIMIT_NAMES.values():
        res = getattr(resource, oci, None)
        if res is not None:
            out[oci] = _oci_limit(resource.getrlimit(res)[1])
    return out


def _has_cap_sys_resource(status_path: str = "/proc/self/status") -> bool:
    try:
        with open(status_path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 24 & 1)
    except OSError:
        pass
    return False


def _can_raise_hard_limits() -> bool:
    return os.geteuid() == 0 and _has_cap_sys_resource()


def clamp_rlimits(
    rlimits: Sequence[tuple[str, int, int]],
    hard_limits: Mapping[str, int],
    *,
    can_raise: bool | None = None,
) -> list[dict[str, Any]]:
    """The OCI ``process.rlimits`` for parsed ``--ulimit`` values, refusing impossible ones.

    runc sets the limits with the privileges of its caller: raising a hard limit above the
    caller's needs ``CAP_SYS_RESOURCE``, which this host's moorage may lack. So a requested
    hard limit above ``hard_limits`` (usually :func:`process_hard_limits`; ``-1`` or
    ``RLIM_INFINITY`` for unlimited) raises :class:`InvalidArgument` naming the limit,
    unless ``can_raise`` (default: running as root with ``CAP_SYS_RESOURCE`` effective,
    from ``/proc/self/status``). Later values for the same limit replace earlier ones.
    """
    merged: dict[str, tuple[int, int]] = {}
    for typ, soft, hard in rlimits:
        merged[typ] = (soft, hard)
    if can_raise is None:
        can_raise = _can_raise_hard_limits()
    out: list[dict[str, Any]] = []
    for typ, (soft, hard) in merged.items():
        current = hard_limits.get(typ)
        if not can_raise and current is not None and hard > _oci_limit(current):
            name = typ.removeprefix("RLIMIT_").lower()
            cur = "unlimited" if _oci_limit(current) == RLIM_INFINITY else str(current)
            want = "unlimited" if hard == RLIM_INFINITY else str(hard)
            raise InvalidArgument(
                f"ulimit {name}: the hard limit {want} is above moorage's own hard limit "
                f"({cur}) and raising it needs CAP_SYS_RESOURCE, which moorage does not "
                f"have; use a hard limit of at most {cur}"
            )
        out.append({"type": typ, "hard": hard, "soft": soft})
    return out


def default_rlimits() -> list[dict[str, Any]]:
    """The rlimits a container gets without ``--ulimit``: none, so it inherits moorage's.

    Docker sets none either, so containers inherit the daemon's limits. Podman sets
    ``RLIMIT_NOFILE`` to 1048576 (and a high ``RLIMIT_NPROC``), but raising a hard limit above
    the caller's needs ``CAP_SYS_RESOURCE``, which moorage may not have: runc would then fail
    to start every container. Inheriting is always possible.
    """
    return []


# --- sysctls --------------------------------------------------------------------------------

_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)


def parse_sysctl(s: str, network_host: bool = False, ipc_host: bool = False) -> tuple[str, str]:
    """``--sysctl KEY=VALUE`` -> (key, value), allowing only namespaced sysctls, as Docker.

    Allowed: the IPC sysctls (``kernel.msg*``, ``kernel.sem``, ``kernel.shm*``) and
    ``fs.mqueue.*`` (not with ``--ipc host``), and ``net.*`` (not with ``--network host``).
    """
    key, sep, value = s.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidArgument(f"sysctl '{s}' is not allowed")
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if ipc_host:
            raise InvalidArgument(f"sysctl '{s}' is not allowed in host IPC namespace")
    elif key.startswith("net."):
        if network_host:
            raise InvalidArgument(f"sysctl '{s}' is not allowed in host network namespace")
    else:
        raise InvalidArgument(f"sysctl '{s}' is not allowed")
    return key, value


# --- environment and labels -----------------------------------------------------------------

_WHITESPACE = " \t"


def _read_kv_file(path: Path, kind: str) -> list[tuple[str, str | None, int]]:
    """The ``KEY=VALUE`` / ``KEY`` lines of an env or label file, as Docker reads them.

    Leading whitespace is removed, blank lines and ``#`` comments skipped, values kept as
    they are (no quote processing). Returns (key, value or None, line number).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise InvalidArgument(f"open {path}: {reason[:1].lower()}{reason[1:]}") from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    out: list[tuple[str, str | None, int]] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"{kind} file {path} contains invalid utf8 bytes at line {lineno}"
            ) from None
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.lstrip(_WHITESPACE)
        if any(c in key for c in _WHITESPACE):
            raise InvalidArgument(
                f"poorly formatted {kind} file {path}, line {lineno}: variable '{key}' "
                "contains whitespaces"
            )
        if not sep:
            key = key.strip()
        if not key:
            raise InvalidArgument(
                f"poorly formatted {kind} file {path}, line {lineno}: no variable name on "
                f"line '{line}'"
            )
        out.append((key, value if sep else None, lineno))
    return out


def parse_env(
    values: Sequence[str],
    env_files: Sequence[Path],
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``--env-file`` and ``-e`` values as ``KEY=VALUE`` strings, files first, as Docker.

    ``-e K=V`` is taken as is; ``-e K`` and a bare ``K`` line in a file take ``K`` from the
    caller's environment (``environ``, default ``os.environ``) and are dropped when it is
    not set. ``-e =V`` is an error. Later entries for a key override earlier ones when the
    environment is built (see :func:`merge_env`).
    """
    env = os.environ if environ is None else environ
    out: list[str] = []
    for f in env_files:
        for key, value, _ in _read_kv_file(f, "env"):
            if value is not None:
                out.append(f"{key}={value}")
            elif key in env:
                out.append(f"{key}={env[key]}")
    for v in values:
        key, sep, _ = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable: {v}")
        if sep:
            out.append(v)
        elif key in env:
            out.append(f"{key}={env[key]}")
    return out


def merge_env(image_env: Sequence[str], user_env: Sequence[str]) -> list[str]:
    """The container's environment: the user's variables, then the image's not overridden.

    This is the order Docker stores in the container's ``Config.Env``: the user's entries
    first (in their order; a repeated key keeps its first position and its last value),
    then each image entry whose key the user did not set. A bare ``KEY`` in ``user_env``
    (possible through the Engine API) unsets ``KEY``: the image's value is dropped and
    nothing is emitted, as Docker does when it builds the process environment.
    """
    user: dict[str, str | None] = {}
    for e in user_env:
        key, sep, value = e.partition("=")
        user[key] = value if sep else None
    image: dict[str, str] = {}
    for e in image_env:
        key, _, value = e.partition("=")
        if key not in user and key not in image:
            image[key] = value
    out = [f"{k}={v}" for k, v in user.items() if v is not None]
    out.extend(f"{k}={v}" for k, v in image.items())
    return out


def parse_labels(values: Sequence[str], label_files: Sequence[Path]) -> dict[str, str]:
    """``--label-file`` and ``-l`` values as a mapping, files first, as Docker.

    ``KEY=VALUE`` or a bare ``KEY`` (an empty value); keys may not be empty nor contain
    whitespace.
    """
    out: dict[str, str] = {}
    for f in label_files:
        for key, value, _ in _read_kv_file(f, "label"):
            out[key] = value or ""
    for v in values:
        key, _, value = v.partition("=")
        key = key.lstrip(_WHITESPACE)
        if not key:
            raise InvalidArgument(f"invalid label '{v}': empty name")
        if any(c in key for c in _WHITESPACE):
            raise InvalidArgument(f"label '{key}' contains whitespaces")
        out[key] = value
    return out


# --- tmpfs, restart policy, signals, user ---------------------------------------------------

_TMPFS_FLAGS = frozenset(
    {
        "rw",
        "ro",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "sync",
        "async",
        "dirsync",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "mand",
        "nomand",
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
        "tmpcopyup",
        "notmpcopyup",
    }
)
_TMPFS_DATA = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})
_TMPFS_SIZE_RE = re.compile(r"\d+[kmgtpe%]?", re.IGNORECASE)


def parse_tmpfs(s: str) -> tuple[str, str]:
    """``--tmpfs DEST[:OPTIONS]`` -> (destination, options), e.g. ``/run:rw,size=64m``.

    The destination must be absolute and not ``/``; options are mount flags (``rw``,
    ``noexec``…) and the tmpfs data options ``size``, ``mode`` (octal), ``uid``, ``gid``,
    ``nr_inodes``, ``nr_blocks``, ``mpol``.
    """
    dest, _, options = s.partition(":")
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
    if not dest.strip("/"):
        raise InvalidArgument("invalid specification: destination can't be '/'")
    for opt in options.split(",") if options else []:
        key, sep, value = opt.partition("=")
        ok = key in _TMPFS_FLAGS if not sep else key in _TMPFS_DATA and value != ""
        if ok and key == "mode":
            ok = re.fullmatch(r"[0-7]{1,4}", value) is not None
        elif ok and key == "size":
            ok = _TMPFS_SIZE_RE.fullmatch(value) is not None
        elif ok and key in ("uid", "gid", "nr_inodes", "nr_blocks"):
            ok = re.fullmatch(r"\d+[kmg]?" if key.startswith("nr_") else r"\d+", value) is not None
        if not ok:
            raise InvalidArgument(f'invalid tmpfs option "{opt}" in "{s}"')
    return dest, options


_RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def parse_restart(s: str) -> tuple[str, int]:
    """``--restart POLICY[:MAX-RETRIES]`` -> (policy, maximum retry count), as Docker.

    ``""`` is ``("no", 0)``; only ``on-failure`` takes a count (not negative).
    """
    if s == "":
        return "no", 0
    name, sep, count_text = s.partition(":")
    if sep and not name:
        raise InvalidArgument("invalid restart policy format: no policy provided before colon")
    count = 0
    if count_text:
        if not re.fullmatch(r"[+-]?\d+", count_text):
            raise InvalidArgument(
                "invalid restart policy format: maximum retry count must be an integer"
            )
        count = int(count_text)
    if name in ("no", "always", "unless-stopped"):
        if count != 0:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            raise InvalidArgument(msg + (" and cannot be negative" if count < 0 else ""))
    elif name == "on-failure":
        if count < 0:
            raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    else:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )
    return name, count


def _signal_table() -> dict[str, int]:
    table = {
        "HUP": 1,
        "INT": 2,
        "QUIT": 3,
        "ILL": 4,
        "TRAP": 5,
        "ABRT": 6,
        "IOT": 6,
        "BUS": 7,
        "FPE": 8,
        "KILL": 9,
        "USR1": 10,
        "SEGV": 11,
        "USR2": 12,
        "PIPE": 13,
        "ALRM": 14,
        "TERM": 15,
        "STKFLT": 16,
        "CHLD": 17,
        "CLD": 17,
        "CONT": 18,
        "STOP": 19,
        "TSTP": 20,
        "TTIN": 21,
        "TTOU": 22,
        "URG": 23,
        "XCPU": 24,
        "XFSZ": 25,
        "VTALRM": 26,
        "PROF": 27,
        "WINCH": 28,
        "IO": 29,
        "POLL": 29,
        "PWR": 30,
        "SYS": 31,
        "RTMIN": 34,
        "RTMAX": 64,
    }
    for i in range(1, 16):
        table[f"RTMIN+{i}"] = 34 + i
        table[f"RTMAX-{i}"] = 64 - i
    return table


#: Signal names Docker knows on Linux (x86-64 and arm64 numbers), without the ``SIG`` prefix.
SIGNALS: dict[str, int] = _signal_table()


def parse_stop_signal(s: str) -> int:
    """``--stop-signal``: ``SIGTERM``, ``TERM``, ``term``, ``15``, ``SIGRTMIN+3``…"""
    if re.fullmatch(r"\d+", s):
        n = int(s)
        if 1 <= n <= 64:
            return n
        raise InvalidArgument(f"invalid signal: {s}")
    name = s.upper().removeprefix("SIG")
    if name in SIGNALS:
        return SIGNALS[name]
    raise InvalidArgument(f"invalid signal: {s}")


def parse_user(s: str) -> tuple[str, str | None]:
    """``--user USER[:GROUP]`` -> (user, group or None); either may be a name or a number."""
    user, sep, group = s.partition(":")
    return user, (group if sep and group else None)


# --- command line ---------------------------------------------------------------------------


def command_line(
    image_entrypoint: Sequence[str] | None,
    image_cmd: Sequence[str] | None,
    entrypoint_flag: str | None,
    args: Sequence[str],
) -> list[str]:
    """The container's command (entrypoint + arguments) from image config and flags, as Docker.

    * no ``--entrypoint``: the image's Entrypoint, then ``args`` if any, else the image's Cmd;
    * ``--entrypoint X``: ``[X, *args]`` — the image's Cmd is not used;
    * ``--entrypoint ""``: resets both: just ``args``.

    An empty result -> :class:`InvalidArgument` ("no command specified").
    """
    cmd = list(args)
    if entrypoint_flag is None:
        entrypoint = list(image_entrypoint or [])
        if not cmd:
            cmd = list(image_cmd or [])
    elif entrypoint_flag == "":
        entrypoint = []
    else:
        entrypoint = [entrypoint_flag]
    result = entrypoint + cmd
    if not result:
        raise InvalidArgument("no command specified")
    return result
