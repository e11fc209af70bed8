"""``POST /containers/create``'s body (Config, HostConfig, NetworkingConfig) to a
ContainerSpec, with Go's type errors for wrong JSON types and Docker's messages for invalid
values; fields moorage does not act on are ignored, as Docker does with unknown ones."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def bad_type(where: str, field: str, value: object, gotype: str) -> InvalidArgument:
    return InvalidArgument(
        f"json: cannot unmarshal {json_type(value)} into Go struct field {where}.{field} "
        f"of type {gotype}"
    )


def get_field(doc: dict[str, Any], where: str, field: str, kind: type, default: Any = None) -> Any:
    v = doc.get(field)
    if v is None:
        return default
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if kind is int and isinstance(v, float) and v.is_integer():
        v, ok = int(v), True
    if not ok:
        raise bad_type(where, field, v, _GO_TYPES[kind])
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
        raise bad_type(where, field, v, "[]string")
    return list(v)


def str_map(doc: dict[str, Any], where: str, field: str) -> dict[str, str]:
    v = get_field(doc, where, field, dict, {})
    for x in v.values():
        if not isinstance(x, str):
            raise bad_type(where, field, x, "string")
    return dict(v)


def network_mode(mode: str) -> str:
    """``default`` (what the docker CLI sends) and an empty mode are the engine's default;
    any other mode is the spec's to accept or refuse (``ContainerSpec.validate``)."""
    if mode in ("", "default"):
        default: str = ContainerSpec.__dataclass_fields__["network_mode"].default  # type: ignore[assignment]
        return default
    return mode


_get = get_field  # the names the other handlers import
_bad = bad_type
_str_map = str_map


@dataclass(frozen=True)
class Endpoint:
    """A network of NetworkingConfig.EndpointsConfig beyond the first: connected after
    create, before start (as compose and ``docker run --network a --network b`` expect)."""

    network: str
    aliases: tuple[str, ...] = ()
    ip: str = ""


@dataclass(frozen=True)
class EndpointConfig:
    aliases: tuple[str, ...] = ()
    ip: str = ""
    links: tuple[str, ...] = ()


_BIND_MODES = {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared",
               "slave", "rslave", "consistent", "cached", "delegated"}  # fmt: skip
_LOG_DRIVERS = ("k8s-file", "json-file", "none", "journald")
_DOCKER_LOG_DRIVERS = ("local", "syslog", "gelf", "fluentd", "awslogs", "splunk", "etwlogs",
                       "gcplogs", "logentries")  # fmt: skip


def _port_key(key: str) -> tuple[str, str]:
    """``80``, ``80/tcp``, ``53/udp`` -> ("80", "tcp"); Docker's message for anything else."""
    port, _, proto = key.partition("/")
    proto = proto.lower() or "tcp"
    lo, _, hi = port.partition("-")
    ok = lo.isdigit() and (not hi or hi.isdigit()) and proto in ("tcp", "udp", "sctp")
    if not ok or not 0 < int(lo) < 65536 or (hi and not int(lo) <= int(hi) < 65536):
        raise InvalidArgument(f'invalid port specification: "{key}"')
    return port, proto


def _exposed(body: dict[str, Any]) -> tuple[str, ...]:
    doc = get_field(body, "ContainerConfigWrapper", "ExposedPorts", dict, {})
    return tuple("/".join(_port_key(k)) for k in doc)


def _publish(hc: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """PortBindings -> ``-p`` texts; a port bound to nothing is only exposed."""
    h = "HostConfig"
    publish: list[str] = []
    expose: list[str] = []
    for key, bindings in get_field(hc, h, "PortBindings", dict, {}).items():
        port, proto = _port_key(key)
        if bindings is None or bindings == []:
            expose.append(f"{port}/{proto}")
            continue
        if not isinstance(bindings, list):
            raise bad_type(h, "PortBindings", bindings, "[]nat.PortBinding")
        for b in bindings:
            if not isinstance(b, dict):
                raise bad_type(h, "PortBindings", b, "nat.PortBinding")
            host_ip = get_field(b, "PortBinding", "HostIp", str, "")
            host_port = get_field(b, "PortBinding", "HostPort", str, "")
            if host_ip in ("::", "[::]"):
                continue  # the IPv6 twin of 0.0.0.0 that newer clients add
            if host_port and not all(x.isdigit() for x in host_port.split("-", 1)):
                raise InvalidArgument(f'invalid port specification: "{host_port}"')
            if host_ip:
                publish.append(f"{host_ip}:{host_port}:{port}/{proto}")
            elif host_port:
                publish.append(f"{host_port}:{port}/{proto}")
            else:
                publish.append(f"{port}/{proto}")
    return tuple(publish), tuple(expose)


def _binds(hc: dict[str, Any]) -> tuple[str, ...]:
    """Binds (``SRC:DEST[:MODE]``) as ``-v`` texts; propagation, SELinux and nocopy modes
    are accepted and have no effect here."""
    out = []
    for b in _strings(hc, "HostConfig", "Binds") or ():
        parts = b.split(":")
        if len(parts) == 3:
            modes = parts[2].split(",")
            bad = [m for m in modes if m not in _BIND_MODES]
            if bad:
                raise InvalidArgument(f"invalid mode: {parts[2]}")
            parts[2] = "ro" if "ro" in modes else "rw"
        elif len(parts) != 2:
            raise InvalidArgument(f"invalid volume specification: '{b}'")
        out.append(":".join(parts))
    return tuple(out)


def _mounts(hc: dict[str, Any]) -> tuple[str, ...]:
    """Mounts (bind, volume, tmpfs) as ``--mount`` texts."""
    out = []
    for m in get_field(hc, "HostConfig", "Mounts", list, []):
        if not isinstance(m, dict):
            raise bad_type("HostConfig", "Mounts", m, "mount.Mount")
        kind = get_field(m, "Mount", "Type", str, "")
        source = get_field(m, "Mount", "Source", str, "")
        target = get_field(m, "Mount", "Target", str, "")
        readonly = get_field(m, "Mount", "ReadOnly", bool, False)
        if kind not in ("bind", "volume", "tmpfs"):
            raise InvalidArgument(f"mount type unknown: {kind!r}" if kind else
                                  "invalid mount config: mount type unknown")  # fmt: skip
        if not target:
            raise InvalidArgument(f"invalid mount config for type \"{kind}\": field Target "
                                  "must not be empty")  # fmt: skip
        if "," in source or "," in target:
            raise InvalidArgument(f"invalid mount config: a comma in {source or target!r}")
        fields = [f"type={kind}", f"target={target}"]
        if source:
            fields.append(f"source={source}")
        if kind == "bind" and not source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must '
                                  "not be empty")  # fmt: skip
        if kind == "tmpfs":
            topts = get_field(m, "Mount", "TmpfsOptions", dict, {})
            size = get_field(topts, "TmpfsOptions", "SizeBytes", int, 0)
            mode = get_field(topts, "TmpfsOptions", "Mode", int, 0)
            if size < 0:
                raise InvalidArgument("invalid tmpfs size: it cannot be negative")
            if size:
                fields.append(f"tmpfs-size={size}")
            if mode:
                fields.append(f"tmpfs-mode={mode:o}")
        if readonly:
            fields.append("readonly")
        out.append(",".join(fields))
    return tuple(out)


def _anonymous(body: dict[str, Any], taken: set[str]) -> tuple[str, ...]:
    """Config.Volumes not already a destination of Binds or Mounts: anonymous volumes."""
    vols = get_field(body, "ContainerConfigWrapper", "Volumes", dict, {})
    out = []
    for dest in vols:
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise InvalidArgument(f"invalid mount config: mount path must be absolute: {dest}")
        d = dest.rstrip("/") or "/"
        if d not in taken:
            out.append(d)
            taken.add(d)
    return tuple(out)


def _destinations(binds: tuple[str, ...], mounts: tuple[str, ...]) -> set[str]:
    out = {b.split(":")[1].rstrip("/") or "/" for b in binds}
    for m in mounts:
        for f in m.split(","):
            if f.startswith("target="):
                out.add(f[len("target=") :].rstrip("/") or "/")
    return out


def _endpoint(doc: Any, name: str) -> EndpointConfig:
    e = "EndpointSettings"
    if doc is None:
        return EndpointConfig()
    if not isinstance(doc, dict):
        raise bad_type("NetworkingConfig", "EndpointsConfig", doc, "network.EndpointSettings")
    ipam = get_field(doc, e, "IPAMConfig", dict, {})
    ip = get_field(ipam, "EndpointIPAMConfig", "IPv4Address", str, "")
    if get_field(ipam, "EndpointIPAMConfig", "IPv6Address", str, ""):
        raise InvalidArgument(f"network {name}: IPv6 addresses are not supported")
    return EndpointConfig(
        aliases=tuple(_strings(doc, e, "Aliases") or ()),
        ip=ip,
        links=tuple(_strings(doc, e, "Links") or ()),
    )


def _networking(body: dict[str, Any]) -> list[tuple[str, EndpointConfig]]:
    nc = get_field(body, "ContainerConfigWrapper", "NetworkingConfig", dict, {})
    eps = get_field(nc, "NetworkingConfig", "EndpointsConfig", dict, {})
    return [(str(k), _endpoint(v, str(k))) for k, v in eps.items()]


def _log_config(hc: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    log_doc = get_field(hc, "HostConfig", "LogConfig", dict, {})
    log_type = get_field(log_doc, "LogConfig", "Type", str, "") or "k8s-file"
    if log_type in _DOCKER_LOG_DRIVERS:
        raise InvalidArgument(f"unsupported log driver {log_type!r}: use "
                              + ", ".join(_LOG_DRIVERS))  # fmt: skip
    if log_type not in _LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{log_type}' is registered")
    if log_type == "journald" and not os.path.exists("/run/systemd/journal/socket"):
        raise InvalidArgument("the journald log driver needs systemd-journald, not running here")
    opts = tuple(f"{k}={v}" for k, v in str_map(log_doc, "LogConfig", "Config").items())
    if log_type == "none" and opts:
        raise InvalidArgument("logger: the none log driver takes no options")
    return log_type, opts


def _healthcheck(body: dict[str, Any]) -> dict[str, Any] | None:
    doc = get_field(body, "ContainerConfigWrapper", "Healthcheck", dict)
    if doc is None:
        return None
    w = "HealthConfig"
    out: dict[str, Any] = {}
    test = _strings(doc, w, "Test")
    if test is not None:
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidArgument(f"unknown healthcheck type {test[0]!r}: use NONE, CMD or "
                                  "CMD-SHELL")  # fmt: skip
        out["Test"] = test
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = get_field(doc, w, key, int, 0)
        if v and v < 1_000_000:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
        if v:
            out[key] = v
    retries = get_field(doc, w, "Retries", int, 0)
    if retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")
    if retries:
        out["Retries"] = retries
    return out or None


def spec_from_body(body: dict[str, Any], name: str) -> ContainerSpec:
    return parse_create(body, name)[0]


def parse_create(body: dict[str, Any], name: str) -> tuple[ContainerSpec, list[Endpoint]]:
    """The spec, and the networks to connect after create (NetworkingConfig beyond the
    network of NetworkMode)."""
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
    if policy not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{policy}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")  # fmt: skip
    if retries and policy != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'")  # fmt: skip
    if retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    restart = f"{policy}:{retries}" if policy == "on-failure" and retries else policy

    log_driver, log_opts = _log_config(hc)

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
    if _get(hc, h, "Devices", list, []):
        raise InvalidArgument("devices are not supported by moorage (--device)")
    stop_timeout = _get(body, c, "StopTimeout", int)
    pids = _get(hc, h, "PidsLimit", int, 0) or 0
    shm = _get(hc, h, "ShmSize", int, 0) or (64 << 20)
    if shm < 0:
        raise InvalidArgument("SHM size can not be less than 0")

    # ports, mounts
    publish, bound_only = _publish(hc)
    binds = _binds(hc)
    mounts = _mounts(hc)
    anonymous = _anonymous(body, _destinations(binds, mounts))
    volumes_from = tuple(_strings(hc, h, "VolumesFrom") or ())

    # networks: NetworkMode's network takes its endpoint settings; the others are connected
    given_mode = _get(hc, h, "NetworkMode", str, "")
    mode = network_mode(given_mode)
    endpoints = _networking(body)
    if given_mode in ("", "default") and endpoints and endpoints[0][0] not in ("bridge", "default"):
        mode = endpoints[0][0]  # no mode but a network: that network, as Docker
    first_ep = EndpointConfig()
    extra: list[Endpoint] = []
    for net, ep in endpoints:
        if net == mode or (net in ("bridge", "default") and mode == network_mode("")):
            first_ep = ep
        elif mode.startswith("container:") or mode in ("host", "none"):
            raise InvalidArgument(
                "Container cannot be connected to network endpoints: "
                + ", ".join(n for n, _ in endpoints)
            )
        else:
            extra.append(Endpoint(net, ep.aliases, ep.ip))
    links = (*(_strings(hc, h, "Links") or ()), *first_ep.links)

    spec = ContainerSpec(
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
        network_mode=mode,
        network_aliases=first_ep.aliases,
        ip=first_ep.ip,
        dns=tuple(_strings(hc, h, "Dns") or ()),
        dns_search=tuple(_strings(hc, h, "DnsSearch") or ()),
        dns_options=tuple(_strings(hc, h, "DnsOptions") or ()),
        extra_hosts=tuple(_strings(hc, h, "ExtraHosts") or ()),
        links=tuple(dict.fromkeys(links)),
        publish=publish,
        publish_all=_get(hc, h, "PublishAllPorts", bool, False),
        expose=tuple(dict.fromkeys((*_exposed(body), *bound_only))),
        volumes=(*binds, *anonymous),
        mounts=mounts,
        volumes_from=volumes_from,
        restart=restart,
        auto_remove=_get(hc, h, "AutoRemove", bool, False),
        log_opts=log_opts,
        log_driver=log_driver,
        runtime=_get(hc, h, "Runtime", str, "") or "runc",
        healthcheck=_healthcheck(body),
    )
    return spec, extra
