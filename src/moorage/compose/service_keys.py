"""A service of a compose file, checked key by key and brought to its canonical (long) form."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

from moorage.compose.ports import parse_expose, parse_ports
from moorage.compose.schema import FileContext, check_keys, marked
from moorage.compose.values import (
    Loc,
    as_bool,
    as_duration,
    as_int,
    as_mapping,
    as_number,
    as_size,
    as_str,
    expected,
    kv_mapping,
    str_list,
    unique,
)
from moorage.compose.volumes import parse_volumes, resolve_path

CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def _shell_words(value: Any, loc: Loc) -> list[str] | None:
    """``command``/``entrypoint``: a list as is, a string split as a shell would (no shell
    runs it), null for "the image's"."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise loc.error(f"cannot split {value!r} into words: {e}") from None
    return str_list(value, loc)


# ---- service keys --------------------------------------------------------------------------


def _build(value: Any, loc: Loc, ctx: FileContext) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"context": value}
    build = as_mapping(value, loc)
    check_keys(build, _BUILD_KEYS, loc)
    out: dict[str, Any] = {}
    for key, raw in build.items():
        sub = loc.child(build, key)
        if key.startswith("x-"):
            out[key] = raw
        elif key == "context":
            text = as_str(raw, sub)
            remote = "://" in text or text.startswith(("git@", "github.com/"))
            out[key] = text if remote else resolve_path(text, ctx.base_dir)
        elif key in ("args", "labels"):
            out[key] = kv_mapping(raw, sub, allow_none=key == "args")
        elif key in ("no_cache", "pull", "privileged"):
            out[key] = as_bool(raw, sub)
        elif key == "shm_size":
            out[key] = as_size(raw, sub)
        elif key in ("cache_from", "cache_to", "tags", "platforms", "extra_hosts", "secrets"):
            out[key] = str_list(raw, sub)
        elif key in ("ssh",):
            out[key] = raw if isinstance(raw, dict) else str_list(raw, sub)
        elif key == "additional_contexts":
            out[key] = kv_mapping(raw, sub, allow_none=False)
        else:
            out[key] = as_str(raw, sub)
    out.setdefault("context", str(ctx.base_dir))
    if "dockerfile" not in out and "dockerfile_inline" not in out:
        out["dockerfile"] = "Dockerfile"
    return out


_BUILD_KEYS = (
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "target",
    "labels",
    "cache_from",
    "cache_to",
    "network",
    "shm_size",
    "extra_hosts",
    "no_cache",
    "pull",
    "platforms",
    "secrets",
    "ssh",
    "tags",
    "additional_contexts",
    "isolation",
    "privileged",
)


def _env_file(value: Any, loc: Loc, ctx: FileContext) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        sub = loc.child(value, i) if isinstance(value, list) else loc
        if isinstance(item, dict):
            check_keys(item, ("path", "required", "format"), sub)
            if "path" not in item:
                raise sub.error("an env_file entry needs a path")
            path = as_str(item["path"], sub.child(item, "path"))
            required = as_bool(item.get("required", True), sub.child(item, "required"))
        else:
            path, required = as_str(item, sub), True
        entry = {"path": resolve_path(path, ctx.base_dir), "required": required}
        if entry not in out:
            out.append(entry)
    return out


def _service_networks(value: Any, loc: Loc) -> dict[str, Any]:
    if isinstance(value, list):
        return {name: None for name in str_list(value, loc)}
    nets = as_mapping(value, loc)
    out: dict[str, Any] = {}
    for name, cfg in nets.items():
        sub = loc.child(nets, name)
        if cfg is None:
            out[as_str(name, sub)] = None
            continue
        cfg = as_mapping(cfg, sub)
        check_keys(
            cfg,
            (
                "aliases",
                "ipv4_address",
                "ipv6_address",
                "link_local_ips",
                "priority",
                "mac_address",
                "driver_opts",
                "gw_priority",
                "interface_name",
            ),
            sub,
        )
        entry: dict[str, Any] = {}
        for key, raw in cfg.items():
            ks = sub.child(cfg, key)
            if key in ("aliases", "link_local_ips"):
                entry[key] = unique(str_list(raw, ks))
            elif key in ("priority", "gw_priority"):
                entry[key] = as_int(raw, ks)
            elif key == "driver_opts":
                entry[key] = kv_mapping(raw, ks, allow_none=False)
            elif key in ("ipv4_address", "ipv6_address"):
                entry[key] = _ip(raw, ks, 4 if key.startswith("ipv4") else 6)
            else:
                entry[key] = as_str(raw, ks)
        out[as_str(name, sub)] = entry
    return out


def _ip(raw: Any, loc: Loc, version: int) -> str:
    import ipaddress

    text = as_str(raw, loc)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise loc.error(f"invalid IPv{version} address {text!r}") from None
    if ip.version != version:
        raise loc.error(f"{text!r} is not an IPv{version} address")
    return text


def _depends_on(value: Any, loc: Loc) -> dict[str, dict[str, Any]]:
    if isinstance(value, list):
        return {
            name: {"condition": "service_started", "required": True}
            for name in str_list(value, loc)
        }
    deps = as_mapping(value, loc)
    out: dict[str, dict[str, Any]] = {}
    for name, cfg in deps.items():
        sub = loc.child(deps, name)
        cfg = as_mapping(cfg if cfg is not None else {}, sub)
        check_keys(cfg, ("condition", "restart", "required"), sub)
        condition = as_str(cfg.get("condition", "service_started"), sub.child(cfg, "condition"))
        if condition not in CONDITIONS:
            raise sub.child(cfg, "condition").error(
                f"invalid condition {condition!r}: expected one of {', '.join(CONDITIONS)}"
            )
        entry: dict[str, Any] = {"condition": condition}
        if "restart" in cfg:
            entry["restart"] = as_bool(cfg["restart"], sub.child(cfg, "restart"))
        entry["required"] = as_bool(cfg.get("required", True), sub.child(cfg, "required"))
        out[as_str(name, sub)] = entry
    return out


def _healthcheck(value: Any, loc: Loc) -> dict[str, Any]:
    hc = as_mapping(value, loc)
    check_keys(
        hc,
        ("test", "interval", "timeout", "start_period", "start_interval", "retries", "disable"),
        loc,
    )
    out: dict[str, Any] = {}
    for key, raw in hc.items():
        sub = loc.child(hc, key)
        if key == "test":
            if isinstance(raw, str):
                out["test"] = ["CMD-SHELL", raw]
            elif not isinstance(raw, list):
                raise expected(sub, "a command string or a list such as [CMD, curl, ...]", raw)
            else:
                test = str_list(raw, sub)
                if not test or test[0] not in ("NONE", "CMD", "CMD-SHELL"):
                    raise sub.error(
                        "a healthcheck test list starts with NONE, CMD or CMD-SHELL, "
                        f"got {test[:1] or 'an empty list'}"
                    )
                out["test"] = test
        elif key == "retries":
            out[key] = as_int(raw, sub, minimum=0)
        elif key == "disable":
            if as_bool(raw, sub):
                out["disable"] = True
        elif not key.startswith("x-"):
            out[key] = as_duration(raw, sub)
    if out.pop("disable", False):
        if "test" in out and out["test"] != ["NONE"]:
            raise loc.error("a healthcheck cannot both set a test and disable: true")
        out = {"test": ["NONE"]}
    return out


def _restart(value: Any, loc: Loc) -> str:
    from moorage.engine.containers.parse import parse_restart
    from moorage.errors import InvalidArgument

    if value is False:  # ``restart: no`` in a file written for YAML 1.1
        return "no"
    text = as_str(value, loc)
    try:
        parse_restart(text)
    except InvalidArgument as e:
        raise loc.error(str(e)) from None
    return text


def _stop_signal(value: Any, loc: Loc) -> str:
    from moorage.engine.containers.parse import parse_stop_signal
    from moorage.errors import InvalidArgument

    text = as_str(value, loc)
    try:
        parse_stop_signal(text)
    except InvalidArgument as e:
        raise loc.error(str(e)) from None
    return text


def _container_name(value: Any, loc: Loc) -> str:
    text = as_str(value, loc)
    if not CONTAINER_NAME.fullmatch(text):
        raise loc.error(f"invalid container name {text!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed")
    return text


def _ulimits(value: Any, loc: Loc) -> dict[str, dict[str, int]]:
    from moorage.engine.containers.parse import ULIMIT_NAMES

    limits = as_mapping(value, loc)
    out: dict[str, dict[str, int]] = {}
    for name, raw in limits.items():
        sub = loc.child(limits, name)
        if name not in ULIMIT_NAMES:
            raise sub.error(f"unknown ulimit {name!r}: expected one of {', '.join(ULIMIT_NAMES)}")
        if isinstance(raw, dict):
            check_keys(raw, ("soft", "hard"), sub)
            if "soft" not in raw or "hard" not in raw:
                raise sub.error("a ulimit mapping needs both soft and hard")
            soft = as_int(raw["soft"], sub.child(raw, "soft"), minimum=-1)
            hard = as_int(raw["hard"], sub.child(raw, "hard"), minimum=-1)
        else:
            soft = hard = as_int(raw, sub, minimum=-1)
        if hard != -1 and (soft == -1 or soft > hard):
            shown = "unlimited" if soft == -1 else soft
            raise sub.error(f"the soft limit ({shown}) is above the hard limit ({hard})")
        out[name] = {"soft": soft, "hard": hard}
    return out


def _resources(value: Any, loc: Loc) -> dict[str, Any]:
    res = as_mapping(value, loc)
    check_keys(res, ("limits", "reservations"), loc)
    out: dict[str, Any] = {}
    for part in ("limits", "reservations"):
        if res.get(part) is None:
            continue
        sub = loc.child(res, part)
        body = as_mapping(res[part], sub)
        check_keys(body, ("cpus", "memory", "pids", "devices", "generic_resources"), sub)
        entry: dict[str, Any] = {}
        for key, raw in body.items():
            ks = sub.child(body, key)
            if key == "cpus":
                entry[key] = as_number(raw, ks)
            elif key == "memory":
                entry[key] = as_size(raw, ks)
            elif key == "pids":
                entry[key] = as_int(raw, ks, minimum=-1)
            else:
                entry[key] = raw
        out[part] = entry
    return out


def _deploy(value: Any, loc: Loc) -> dict[str, Any]:
    deploy = as_mapping(value, loc)
    check_keys(
        deploy,
        (
            "mode",
            "replicas",
            "labels",
            "resources",
            "restart_policy",
            "update_config",
            "rollback_config",
            "placement",
            "endpoint_mode",
        ),
        loc,
    )
    out: dict[str, Any] = {}
    for key, raw in deploy.items():
        sub = loc.child(deploy, key)
        if key == "replicas":
            out[key] = as_int(raw, sub, minimum=0)
        elif key == "resources":
            out[key] = _resources(raw, sub)
        elif key == "labels":
            out[key] = kv_mapping(raw, sub, allow_none=False)
        elif key == "mode":
            mode = as_str(raw, sub)
            if mode not in ("replicated", "global", "replicated-job", "global-job"):
                raise sub.error(f"invalid deploy mode {mode!r}")
            out[key] = mode
        elif key == "restart_policy":
            rp = as_mapping(raw, sub)
            check_keys(rp, ("condition", "delay", "max_attempts", "window"), sub)
            policy: dict[str, Any] = {}
            for rk, rv in rp.items():
                rs = sub.child(rp, rk)
                if rk == "condition":
                    cond = as_str(rv, rs)
                    if cond not in ("none", "on-failure", "any"):
                        raise rs.error(f"invalid condition {cond!r}: use none, on-failure or any")
                    policy[rk] = cond
                elif rk == "max_attempts":
                    policy[rk] = as_int(rv, rs, minimum=0)
                else:
                    policy[rk] = as_duration(rv, rs)
            out[key] = policy
        else:
            out[key] = as_mapping(raw, sub) if key != "endpoint_mode" else as_str(raw, sub)
    return out


def _file_refs(value: Any, loc: Loc) -> list[dict[str, Any]]:
    """A service's ``secrets``/``configs``: names, or {source, target, uid, gid, mode}."""
    items = value if isinstance(value, list) else None
    if items is None:
        raise expected(loc, "a list", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        sub = loc.child(items, i)
        if isinstance(item, dict):
            check_keys(item, ("source", "target", "uid", "gid", "mode"), sub)
            if "source" not in item:
                raise sub.error("needs a source")
            entry: dict[str, Any] = {"source": as_str(item["source"], sub.child(item, "source"))}
            for key in ("target", "uid", "gid"):
                if item.get(key) is not None:
                    entry[key] = as_str(item[key], sub.child(item, key))
            if item.get("mode") is not None:
                mode = item["mode"]
                entry["mode"] = (
                    int(mode, 8)
                    if isinstance(mode, str) and re.fullmatch(r"0?[0-7]{1,4}", mode)
                    else as_int(mode, sub.child(item, "mode"))
                )
            out.append(entry)
        else:
            out.append({"source": as_str(item, sub)})
    return out


def _extends(value: Any, loc: Loc, ctx: FileContext) -> dict[str, Any]:
    if isinstance(value, str):
        return {"service": value}
    ext = as_mapping(value, loc)
    check_keys(ext, ("service", "file"), loc)
    if "service" not in ext:
        raise loc.error("extends needs a service")
    out: dict[str, Any] = {"service": as_str(ext["service"], loc.child(ext, "service"))}
    if ext.get("file") is not None:
        out["file"] = resolve_path(as_str(ext["file"], loc.child(ext, "file")), ctx.base_dir)
    return out


WATCH_ACTIONS = ("sync", "rebuild", "sync+restart", "restart")


def _develop(value: Any, loc: Loc, ctx: FileContext) -> dict[str, Any]:
    """``develop.watch``: rules of ``moor compose watch`` (path relative to the file)."""
    dev = as_mapping(value, loc)
    check_keys(dev, ("watch",), loc)
    out: dict[str, Any] = {}
    if dev.get("watch") is None:
        return out
    rules = dev["watch"]
    wloc = loc.child(dev, "watch")
    if not isinstance(rules, list):
        raise expected(wloc, "a list", rules)
    out["watch"] = []
    for i, raw in enumerate(rules):
        sub = wloc.child(rules, i)
        rule = as_mapping(raw, sub)
        check_keys(rule, ("path", "action", "target", "ignore", "include", "initial_sync"), sub)
        for key in ("path", "action"):
            if rule.get(key) is None:
                raise sub.error(f"a watch rule needs a {key}")
        entry: dict[str, Any] = {
            "path": resolve_path(as_str(rule["path"], sub.child(rule, "path")), ctx.base_dir)
        }
        action = as_str(rule["action"], sub.child(rule, "action"))
        if action not in WATCH_ACTIONS:
            raise sub.child(rule, "action").error(
                f"invalid watch action {action!r}: expected one of {', '.join(WATCH_ACTIONS)}"
            )
        entry["action"] = action
        if rule.get("target") is not None:
            target = as_str(rule["target"], sub.child(rule, "target"))
            if not target.startswith("/"):
                raise sub.child(rule, "target").error(f"target {target!r} must be absolute")
            entry["target"] = target
        elif action.startswith("sync"):
            raise sub.error(f"a {action} rule needs a target (the path in the container)")
        for key in ("ignore", "include"):
            if rule.get(key) is not None:
                entry[key] = str_list(rule[key], sub.child(rule, key), single=True)
        if rule.get("initial_sync") is not None:
            entry["initial_sync"] = as_bool(rule["initial_sync"], sub.child(rule, "initial_sync"))
        out["watch"].append(entry)
    return out


def _logging(value: Any, loc: Loc) -> dict[str, Any]:
    log = as_mapping(value, loc)
    check_keys(log, ("driver", "options"), loc)
    out: dict[str, Any] = {}
    if log.get("driver") is not None:
        out["driver"] = as_str(log["driver"], loc.child(log, "driver"))
    if log.get("options") is not None:
        out["options"] = kv_mapping(log["options"], loc.child(log, "options"), allow_none=False)
    return out


def _extra_hosts(value: Any, loc: Loc) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in kv_mapping(value, loc, allow_none=False).items()]
    return unique(str_list(value, loc))


def _working_dir(value: Any, loc: Loc) -> str:
    text = as_str(value, loc)
    if not text.startswith("/"):
        raise loc.error(f"the working directory {text!r} must be an absolute path")
    return text


_Simple = Callable[[Any, Loc], Any]
_WithCtx = Callable[[Any, Loc, FileContext], Any]


def _plain(fn: _Simple) -> _WithCtx:
    return lambda v, loc, ctx: fn(v, loc)


def _str(v: Any, loc: Loc) -> str:
    return as_str(v, loc)


def _bool(v: Any, loc: Loc) -> bool:
    return as_bool(v, loc)


def _strs(v: Any, loc: Loc) -> list[str]:
    return unique(str_list(v, loc))


def _strs_or_one(v: Any, loc: Loc) -> list[str]:
    return unique(str_list(v, loc, single=True))


def _kv(v: Any, loc: Loc) -> dict[str, str | None]:
    return kv_mapping(v, loc)


def _labels(v: Any, loc: Loc) -> dict[str, str | None]:
    return kv_mapping(v, loc, allow_none=False)


def _size_or_unlimited(v: Any, loc: Loc) -> int:
    if v in (-1, "-1"):
        return -1
    return as_size(v, loc)


SERVICE_KEYS: dict[str, _WithCtx] = {
    "image": _plain(_str),
    "build": _build,
    "command": _plain(_shell_words),
    "entrypoint": _plain(_shell_words),
    "environment": _plain(_kv),
    "env_file": _env_file,
    "ports": _plain(parse_ports),
    "expose": _plain(parse_expose),
    "volumes": lambda v, loc, ctx: parse_volumes(v, loc, ctx.base_dir),
    "volumes_from": _plain(_strs),
    "networks": _plain(_service_networks),
    "network_mode": _plain(_str),
    "links": _plain(_strs),
    "external_links": _plain(_strs),
    "depends_on": _plain(_depends_on),
    "healthcheck": _plain(_healthcheck),
    "restart": _plain(_restart),
    "labels": _plain(_labels),
    "annotations": _plain(_labels),
    "container_name": _plain(_container_name),
    "hostname": _plain(_str),
    "domainname": _plain(_str),
    "user": _plain(_str),
    "working_dir": _plain(_working_dir),
    "init": _plain(_bool),
    "tty": _plain(_bool),
    "stdin_open": _plain(_bool),
    "privileged": _plain(_bool),
    "read_only": _plain(_bool),
    "oom_kill_disable": _plain(_bool),
    "attach": _plain(_bool),
    "stop_signal": _plain(_stop_signal),
    "stop_grace_period": _plain(as_duration),
    "cap_add": _plain(_strs),
    "cap_drop": _plain(_strs),
    "security_opt": _plain(_strs),
    "group_add": _plain(_strs),
    "devices": _plain(_strs),
    "dns": _plain(_strs_or_one),
    "dns_search": _plain(_strs_or_one),
    "dns_opt": _plain(_strs),
    "tmpfs": _plain(_strs_or_one),
    "extra_hosts": _plain(_extra_hosts),
    "sysctls": _plain(_labels),
    "ulimits": _plain(_ulimits),
    "mem_limit": _plain(as_size),
    "mem_reservation": _plain(as_size),
    "memswap_limit": _plain(_size_or_unlimited),
    "shm_size": _plain(as_size),
    "cpus": _plain(as_number),
    "cpu_shares": _plain(lambda v, loc: as_int(v, loc, minimum=0)),
    "pids_limit": _plain(lambda v, loc: as_int(v, loc, minimum=-1)),
    "oom_score_adj": _plain(lambda v, loc: as_int(v, loc)),
    "deploy": _plain(_deploy),
    "scale": _plain(lambda v, loc: as_int(v, loc, minimum=0)),
    "secrets": _plain(_file_refs),
    "configs": _plain(_file_refs),
    "profiles": _plain(_strs),
    "extends": _extends,
    "logging": _plain(_logging),
    "platform": _plain(_str),
    "pull_policy": _plain(_str),
    "ipc": _plain(_str),
    "pid": _plain(_str),
    "userns_mode": _plain(_str),
    "cgroup_parent": _plain(_str),
    "mac_address": _plain(_str),
    "runtime": _plain(_str),
    "develop": _develop,
}

PULL_POLICIES = ("always", "never", "missing", "if_not_present", "build", "daily", "weekly")


def _v1_service(raw: dict[str, Any], loc: Loc) -> dict[str, Any]:
    """The fig / compose v1 spellings of a service, in today's words."""
    service = dict(raw)
    if "net" in service:
        net = service.pop("net")
        service["network_mode"] = net
    if "dockerfile" in service:
        dockerfile = service.pop("dockerfile")
        build = service.get("build", ".")
        build = {"context": build} if isinstance(build, str) else dict(build or {})
        build["dockerfile"] = dockerfile
        service["build"] = build
    log_driver = service.pop("log_driver", None)
    log_opt = service.pop("log_opt", None)
    if log_driver is not None or log_opt is not None:
        service["logging"] = {
            **({"driver": log_driver} if log_driver is not None else {}),
            **({"options": log_opt} if log_opt is not None else {}),
        }
    return service


def canonical_service(raw: Any, loc: Loc, ctx: FileContext) -> dict[str, Any]:
    service = as_mapping(raw, loc)
    if ctx.v1:
        renamed = _v1_service(service, loc)
        marks = getattr(service, "key_marks", {})
        from moorage.compose.yamlsrc import MDict

        service = MDict(renamed, mark=getattr(raw, "mark", None))
        service.key_marks.update(marks)
        for old, new in (("net", "network_mode"), ("dockerfile", "build")):
            if old in marks:
                service.key_marks[new] = marks[old]
    check_keys(service, SERVICE_KEYS, loc)
    out: dict[str, Any] = {}
    for key, value in service.items():
        sub = loc.child(service, key)
        if key.startswith("x-"):
            out[key] = value
            continue
        if value is None and key not in ("command", "entrypoint"):
            continue  # ``key:`` with nothing after it sets nothing
        out[key] = SERVICE_KEYS[key](value, sub, ctx)
    if "pull_policy" in out and out["pull_policy"] not in PULL_POLICIES:
        raise loc.child(service, "pull_policy").error(
            f"invalid pull_policy {out['pull_policy']!r}: "
            f"expected one of {', '.join(PULL_POLICIES)}"
        )
    return marked(out, service)
