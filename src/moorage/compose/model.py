"""The typed project model: what a loaded, merged, validated set of compose files says.

Each ``Service`` keeps its canonical mapping (``config``): ``moor compose config`` prints it
and the config hash is computed from it, so both see exactly what the typed fields say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Port:
    target: int
    published: str | None = None  # "8080" or a range "8080-8081"
    host_ip: str = ""
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str = ""
    app_protocol: str = ""


@dataclass(frozen=True)
class Mount:
    type: str  # volume | bind | tmpfs | ...
    target: str
    source: str = ""  # volume key (not yet prefixed), absolute host path, or "" (anonymous)
    read_only: bool = False
    propagation: str = ""
    create_host_path: bool = False
    selinux: str = ""
    nocopy: bool = False
    subpath: str = ""
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


@dataclass(frozen=True)
class ServiceNetwork:
    aliases: tuple[str, ...] = ()
    ipv4_address: str = ""
    ipv6_address: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Dependency:
    condition: str = "service_started"
    restart: bool = False
    required: bool = True


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...] | None = None  # None: the image's
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None

    @property
    def disabled(self) -> bool:
        return self.test == ("NONE",)


@dataclass(frozen=True)
class Build:
    context: str
    dockerfile: str = "Dockerfile"
    args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # the other build keys, canonical


@dataclass(frozen=True)
class Resources:
    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None


@dataclass(frozen=True)
class Deploy:
    replicas: int | None = None
    limits: Resources = field(default_factory=Resources)
    reservations: Resources = field(default_factory=Resources)
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # mode, restart_policy, placement...


@dataclass(frozen=True)
class FileRef:
    """A service's use of a secret or config: which one, and where it appears."""

    source: str
    target: str = ""
    uid: str = ""
    gid: str = ""
    mode: int | None = None


@dataclass(frozen=True)
class WatchRule:
    """One ``develop.watch`` rule: changes under ``path`` (absolute, on the host) are
    synced to ``target`` in the containers, restart them, or rebuild the service."""

    path: str
    action: str  # sync | rebuild | sync+restart | restart
    target: str = ""
    ignore: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    initial_sync: bool = False


@dataclass(frozen=True)
class Service:
    name: str
    config: dict[str, Any] = field(compare=False, repr=False)
    image: str = ""
    build: Build | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str | None] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    expose: tuple[str, ...] = ()
    volumes: tuple[Mount, ...] = ()
    volumes_from: tuple[str, ...] = ()
    networks: dict[str, ServiceNetwork] = field(default_factory=dict)
    network_mode: str = ""
    links: tuple[str, ...] = ()
    external_links: tuple[str, ...] = ()
    depends_on: dict[str, Dependency] = field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    restart: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    container_name: str = ""
    hostname: str = ""
    domainname: str = ""
    user: str = ""
    working_dir: str = ""
    init: bool = False
    tty: bool = False
    stdin_open: bool = False
    privileged: bool = False
    read_only: bool = False
    stop_signal: str = ""
    stop_grace_period: float | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    mem_limit: int | None = None
    mem_reservation: int | None = None
    memswap_limit: int | None = None
    shm_size: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    deploy: Deploy | None = None
    scale: int | None = None
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()
    profiles: tuple[str, ...] = ()
    pull_policy: str = ""
    watch: tuple[WatchRule, ...] = ()

    @property
    def replicas(self) -> int:
        """How many containers the service wants: ``scale``, else ``deploy.replicas``, else 1."""
        if self.scale is not None:
            return self.scale
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return 1

    def dependencies(self) -> list[str]:
        """The services this one needs first: depends_on, links, ``service:`` network mode
        and volumes_from, in that order, each once."""
        out = list(self.depends_on)
        for link in self.links:
            name = link.partition(":")[0]
            if name not in out:
                out.append(name)
        if self.network_mode.startswith("service:"):
            name = self.network_mode.partition(":")[2]
            if name not in out:
                out.append(name)
        for source in self.volumes_from:
            if source.startswith("container:"):
                continue
            name = source.partition(":")[0]
            if name not in out:
                out.append(name)
        return out


@dataclass(frozen=True)
class Network:
    key: str
    name: str
    driver: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    external: bool = False
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    ipam: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Volume:
    key: str
    name: str
    driver: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileObject:
    """A top-level secret or config: its source (a file, a variable, inline content)."""

    key: str
    name: str
    file: str = ""
    environment: str = ""
    content: str = ""
    external: bool = False


@dataclass(frozen=True)
class Project:
    name: str
    working_dir: Path
    config_files: tuple[Path, ...]
    services: dict[str, Service]  # enabled by the active profiles (or named explicitly)
    disabled: dict[str, Service] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    secrets: dict[str, FileObject] = field(default_factory=dict)
    configs: dict[str, FileObject] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = ()  # unset variables, obsolete keys: printed, not fatal

    def all_profiles(self) -> list[str]:
        names = {p for s in (*self.services.values(), *self.disabled.values()) for p in s.profiles}
        return sorted(names)

    def service(self, name: str) -> Service:
        from moorage.compose.errors import ComposeError

        if name in self.services:
            return self.services[name]
        if name in self.disabled:
            raise ComposeError(f'service "{name}" is not enabled by the active profiles')
        raise ComposeError(f"no such service: {name}")
