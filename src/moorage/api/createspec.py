"""``POST /containers/create``'s body (Config + HostConfig) to a ContainerSpec, with Go's
type errors for wrong JSON types; fields moorage does not act on are ignored, as Docker does
with unknown ones."""

from __future__ import annotations

from typing import Any

from moorage.api.http import json_type
from moorage.engine.containers.parse import ULIMIT_NAMES, parse_tmpfs
from moorage.engine.containers.spec import ContainerSpec, Resources
from moorage.errors import InvalidArgument

_GO_TYPES = {
    str: "string",
    bool: "bool",
    int: "int64",
    list: "[]string",
    dict: "map[string]string",
}


def _bad(where: str, field: str, value: object, gotype: str) -> InvalidArgument:
    return InvalidArgument(
        f"json: cannot unmarshal {json_type(value)} into Go struct field {where}.{field} "
        f"of type {gotype}"
    )


def _get(doc: dict[str, Any], where: str, field: str, kind: type, default: Any = None) -> Any:
    v = doc.get(field)
    if v is None:
        return default
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if kind is int and isinstance(v, float) and v.is_integer():
        v, ok = int(v), True
    if not ok:
        raise _bad(where, field, v, _GO_TYPES[kind])
    return v


def _strings(
    doc: dict[str, Any], where: str, field: str, *, slice_: bool = False
) -> list[str] | None:
    """A []string; Docker's StrSlice (``slice_``: Cmd, Entrypoint) also takes a string."""
    v = doc.get(field)
    if v is None:
        return None
    if isinstance(v, str) and slice_:
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(where, field, v, "[]string")
    return list(v)


def _str_map(doc: dict[str, Any], where: str, field: str) -> dict[str, str]:
    v = _get(doc, where, field, dict, {})
    for x in v.values():
        if not isinstance(x, str):
            raise _bad(where, field, x, "string")
    return dict(v)


def network_mode(mode: str) -> str:
    """``default`` (what the docker CLI sends) and an empty mode are the engine's default;
    any other mode is the spec's to accept or refuse (``ContainerSpec.validate``)."""
    if mode in ("", "default"):
        default: str = ContainerSpec.__dataclass_fields__["network_mode"].default  # type: ignore[assignment]
        return default
    return mode


def spec_from_body(body: dict[str, Any], name: str) -> ContainerSpec:
    c = "ContainerConfigWrapper"
    image = _get(body, c, "Image", str, "")
    if not image:
        raise InvalidArgument("Config.Image is empty: no image given")
    hc_raw = body.get("HostConfig")
    if hc_raw is not None and not isinstance(hc_raw, dict):
        raise _bad(c, "HostConfig", hc_raw, "container.HostConfig")
    hc: dict[str, Any] = hc_raw or {}
    h = "HostConfig"

    cmd = _strings(body, c, "Cmd", slice_=True)
    entrypoint_list = _strings(body, c, "Entrypoint", slice_=True)
    entrypoint: str | None = None
    args = tuple(cmd or ())
    if entrypoint_list is not None:
        if not entrypoint_list or entrypoint_list == [""]:
            entrypoint = ""  # reset the image's
        else:
            # the spec keeps one entrypoint word; the rest go first in the arguments
            entrypoint = entrypoint_list[0]
            args = (*entrypoint_list[1:], *args)

    restart_doc = _get(hc, h, "RestartPolicy", dict, {})
    policy = _get(restart_doc, "RestartPolicy", "Name", str, "") or "no"
    retries = _get(restart_doc, "RestartPolicy", "MaximumRetryCount", int, 0)
    restart = f"{policy}:{retries}" if policy == "on-failure" and retries else policy

    log_doc = _get(hc, h, "LogConfig", dict, {})
    log_type = _get(log_doc, "LogConfig", "Type", str, "")
    if log_type not in ("", "k8s-file", "json-file"):
        raise InvalidArgument(f"unsupported log driver {log_type!r}: use k8s-file")
    log_opts = tuple(f"{k}={v}" for k, v in _str_map(log_doc, "LogConfig", "Config").items())

    ulimits = []
    for u in _get(hc, h, "Ulimits", list, []):
        if not isinstance(u, dict):
            raise _bad(h, "Ulimits", u, "container.Ulimit")
        uname = _get(u, "Ulimit", "Name", str, "")
        if uname not in ULIMIT_NAMES:
            raise InvalidArgument(f"invalid ulimit type: {uname}")
        soft = _get(u, "Ulimit", "Soft", int, 0)
        hard = _get(u, "Ulimit", "Hard", int, soft)
        ulimits.append((ULIMIT_NAMES[uname], soft, hard))

    tmpfs = {}
    for dest, opts in _str_map(hc, h, "Tmpfs").items():
        d, o = parse_tmpfs(f"{dest}:{opts}" if opts else dest)
        tmpfs[d] = o

    init = hc.get("Init")
    if init is not None and not isinstance(init, bool):
        raise _bad(h, "Init", init, "bool")
    stop_timeout = _get(body, c, "StopTimeout", int)
    pids = _get(hc, h, "PidsLimit", int, 0) or 0
    shm = _get(hc, h, "ShmSize", int, 0) or (64 << 20)
    if shm < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    return ContainerSpec(
        image=image,
        name=name,
        entrypoint=entrypoint,
        args=args,
        env=tuple(_strings(body, c, "Env") or ()),
        workdir=_get(body, c, "WorkingDir", str, ""),
        user=_get(body, c, "User", str, ""),
        group_add=tuple(_strings(hc, h, "GroupAdd") or ()),
        hostname=_get(body, c, "Hostname", str, ""),
        labels=_str_map(body, c, "Labels"),
        tty=_get(body, c, "Tty", bool, False),
        open_stdin=_get(body, c, "OpenStdin", bool, False),
        privileged=_get(hc, h, "Privileged", bool, False),
        cap_add=tuple(_strings(hc, h, "CapAdd") or ()),
        cap_drop=tuple(_strings(hc, h, "CapDrop") or ()),
        security_opt=tuple(_strings(hc, h, "SecurityOpt") or ()),
        read_only=_get(hc, h, "ReadonlyRootfs", bool, False),
        tmpfs=tmpfs,
        init=bool(init),
        resources=Resources(
            memory=_get(hc, h, "Memory", int, 0),
            memory_swap=_get(hc, h, "MemorySwap", int, 0),
            nano_cpus=_get(hc, h, "NanoCpus", int, 0),
            cpu_shares=_get(hc, h, "CpuShares", int, 0),
            pids_limit=pids,
        ),
        ulimits=tuple(ulimits),
        shm_size=shm,
        sysctls=_str_map(hc, h, "Sysctls"),
        stop_signal=_get(body, c, "StopSignal", str) or None,
        stop_timeout=stop_timeout,
        network_mode=network_mode(_get(hc, h, "NetworkMode", str, "")),
        restart=restart,
        auto_remove=_get(hc, h, "AutoRemove", bool, False),
        log_opts=log_opts,
        runtime=_get(hc, h, "Runtime", str, "") or "runc",
    )
