"""ContainerSpec: one typed, validated description of a container, from the CLI or the API."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from moorage.engine.containers.parse import parse_restart, parse_stop_signal, parse_sysctl
from moorage.engine.containers.security import parse_security_opts
from moorage.errors import InvalidArgument

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
NETWORK_MODES = ("none", "host", "bridge")  # or "container:NAME", or a network's name
RUNTIMES = ("runc", "crun")
NETWORK_TUPLES = ("network_aliases", "dns", "dns_search", "dns_options", "extra_hosts", "links",
                  "publish", "expose", "volumes", "mounts", "volumes_from")  # fmt: skip


@dataclass(frozen=True)
class Resources:
    memory: int = 0
    memory_swap: int = 0  # -1 unlimited, 0 = twice memory (Docker's default)
    nano_cpus: int = 0
    cpu_shares: int = 0
    pids_limit: int = 0


@dataclass(frozen=True)
class ContainerSpec:
    """What ``create`` was asked for, normalised; the image's defaults are merged at start."""

    image: str
    name: str = ""
    entrypoint: str | None = None  # --entrypoint (None: the image's; "": reset)
    args: tuple[str, ...] = ()  # command line after the image
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    group_add: tuple[str, ...] = ()
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    init: bool = False
    resources: Resources = field(default_factory=Resources)
    ulimits: tuple[tuple[str, int, int], ...] = ()
    shm_size: int = 64 << 20
    sysctls: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    stop_timeout: int | None = None
    network_mode: str = "bridge"
    network_aliases: tuple[str, ...] = ()
    ip: str = ""
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    publish_all: bool = False
    expose: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()  # -v
    mounts: tuple[str, ...] = ()  # --mount
    volumes_from: tuple[str, ...] = ()
    restart: str = "no"
    auto_remove: bool = False
    log_opts: tuple[str, ...] = ()
    runtime: str = "runc"
    healthcheck: dict[str, Any] | None = None  # Docker's HealthConfig (ns durations)
    log_driver: str = "k8s-file"  # k8s-file | json-file (written as k8s-file) | none | journald

    def validate(self) -> None:
        if self.name and not _NAME_RE.match(self.name):
            raise InvalidArgument(
                f"Invalid container name ({self.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        if self.workdir and not self.workdir.startswith("/"):
            raise InvalidArgument(
                f"the working directory '{self.workdir}' is invalid, it needs to be an "
                "absolute path"
            )
        from moorage.engine.network.modes import validate_network_options

        validate_network_options(self)
        if self.runtime not in RUNTIMES:
            raise InvalidArgument(f"unknown or invalid runtime name: {self.runtime}")
        policy, _ = parse_restart(self.restart)
        if self.auto_remove and policy != "no":
            raise InvalidArgument("Conflicting options: --restart and --rm")
        if self.stop_signal:
            parse_stop_signal(self.stop_signal)
        parse_security_opts(self.security_opt)
        for key, value in self.sysctls.items():
            parse_sysctl(f"{key}={value}", network_host=self.network_mode == "host")
        for dest in self.tmpfs:
            if not dest.startswith("/"):
                raise InvalidArgument(f"invalid mount path for --tmpfs: {dest} is not absolute")
        r = self.resources
        if r.memory and r.memory < 6 << 20:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if r.memory_swap > 0 and r.memory and r.memory_swap < r.memory:
            raise InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage"
            )
        if r.memory_swap > 0 and not r.memory:
            raise InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit"
            )
        if r.pids_limit < -1:
            raise InvalidArgument("invalid --pids-limit: must be -1 (unlimited) or positive")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerSpec:
        doc = dict(doc)
        doc["resources"] = Resources(**doc.get("resources") or {})
        for key in ("args", "env", "group_add", "cap_add", "cap_drop", "security_opt", "log_opts",
                    *NETWORK_TUPLES):  # fmt: skip
            doc[key] = tuple(doc.get(key) or ())
        doc["ulimits"] = tuple(tuple(u) for u in doc.get("ulimits") or ())
        return cls(**doc)
