"""A service of a project -> the engine's ``ContainerSpec`` for one of its containers.

Everything the engine can do today is translated here. Ports, volumes and networks are
kept in the model and translated in one place, :func:`networking_and_storage`, which refuses
what the engine cannot do yet; the networking/volumes work completes that function.
"""

from __future__ import annotations

from typing import Any

from moorage.compose import labels as L
from moorage.compose.model import Project, Service, ServiceNetwork
from moorage.engine.containers.spec import ContainerSpec, Resources
from moorage.errors import Unsupported


def image_name(project: Project, service: Service) -> str:
    """The service's image; a build-only service's is ``<project>-<service>`` (compose v2)."""
    return service.image or f"{project.name}-{service.name}"


def command_fields(service: Service) -> dict[str, Any]:
    """``entrypoint``/``command`` as the spec's single entrypoint word plus arguments.

    An entrypoint of several words keeps its first as the entrypoint and puts the rest
    before the command; an empty entrypoint resets the image's (and its CMD), as Docker.
    """
    command = tuple(service.command) if service.command is not None else ()
    if service.entrypoint is None:
        return {"entrypoint": None, "args": command}
    if not service.entrypoint:
        return {"entrypoint": "", "args": command}
    first, *rest = service.entrypoint
    return {"entrypoint": first, "args": (*rest, *command)}


def _resources(service: Service) -> Resources:
    limits = service.deploy.limits if service.deploy else None
    memory = service.mem_limit if service.mem_limit is not None else (limits and limits.memory)
    cpus = service.cpus if service.cpus is not None else (limits and limits.cpus)
    pids = service.pids_limit if service.pids_limit is not None else (limits and limits.pids)
    return Resources(
        memory=memory or 0,
        memory_swap=service.memswap_limit or 0,
        nano_cpus=round((cpus or 0) * 1_000_000_000),
        cpu_shares=service.cpu_shares or 0,
        pids_limit=pids or 0,
    )


def _ulimits(service: Service) -> tuple[tuple[str, int, int], ...]:
    from moorage.engine.containers.parse import RLIM_INFINITY, ULIMIT_NAMES

    def oci(v: int) -> int:
        return RLIM_INFINITY if v == -1 else v

    return tuple(
        (ULIMIT_NAMES[name], oci(soft), oci(hard))
        for name, (soft, hard) in sorted(service.ulimits.items())
    )


def _tmpfs(service: Service) -> dict[str, str]:
    from moorage.engine.containers.parse import parse_tmpfs

    out = dict(parse_tmpfs(entry) for entry in service.tmpfs)
    for m in service.volumes:
        if m.type == "tmpfs":
            options = []
            if m.tmpfs_size:
                options.append(f"size={m.tmpfs_size}")
            if m.tmpfs_mode:
                options.append(f"mode={m.tmpfs_mode:o}")
            if m.read_only:
                options.append("ro")
            out[m.target] = ",".join(options)
    return out


def service_networks(project: Project, service: Service) -> list[tuple[str, ServiceNetwork]]:
    """The networks (full names) a service's containers join, the first one at create,
    in compose's order: by priority, then by key."""
    keys = sorted(service.networks, key=lambda k: (-service.networks[k].priority, k))
    out = []
    for key in keys:
        net = project.networks.get(key)
        out.append((net.name if net else f"{project.name}_{key}", service.networks[key]))
    return out


def _container_of(project: Project, ref: str) -> str:
    """``service`` (its first container) or ``container:NAME`` as a container name."""
    if ref.startswith("container:"):
        return ref.removeprefix("container:")
    ref = ref.removeprefix("service:")
    if ref in project.services:
        return L.container_name(project, project.services[ref], 1)
    return ref


def networking_and_storage(project: Project, service: Service) -> dict[str, Any]:
    """The spec fields for the service's network, published ports and mounts: the project
    network ``<project>_<key>`` (aliases: the service name and its own; ipv4_address),
    ``ports``, named volumes ``<project>_<key>`` and bind mounts, ``links``,
    ``volumes_from`` and ``expose``. Further networks are joined after create
    (:func:`service_networks`)."""
    out: dict[str, Any] = {}
    mode = service.network_mode
    if mode:
        if mode.startswith(("service:", "container:")):
            mode = "container:" + _container_of(project, mode)
        out["network_mode"] = mode
    else:
        nets = service_networks(project, service)
        if nets:
            name, cfg = nets[0]
            out["network_mode"] = name
            out["network_aliases"] = (service.name, *cfg.aliases)
            out["ip"] = cfg.ipv4_address
    publish = []
    for port in service.ports:
        proto = f"/{port.protocol}" if port.protocol and port.protocol != "tcp" else ""
        if port.host_ip:
            publish.append(f"{port.host_ip}:{port.published or ''}:{port.target}{proto}")
        elif port.published:
            publish.append(f"{port.published}:{port.target}{proto}")
        else:
            publish.append(f"{port.target}{proto}")
    out["publish"] = tuple(publish)
    out["expose"] = tuple(service.expose)
    links = []
    for link in service.links:
        target, _, alias = link.partition(":")
        links.append(f"{_container_of(project, target)}:{alias or target}")
    out["links"] = (*links, *service.external_links)
    mounts = []
    for m in service.volumes:
        if m.type == "tmpfs":
            continue  # in the spec's tmpfs (see _tmpfs)
        ro = ",readonly" if m.read_only else ""
        if m.type == "volume":
            vol = project.volumes.get(m.source) if m.source else None
            source = vol.name if vol else (f"{project.name}_{m.source}" if m.source else "")
            nocopy = ",volume-nocopy" if m.nocopy else ""
            src = f"source={source}," if source else ""
            mounts.append(f"type=volume,{src}target={m.target}{ro}{nocopy}")
        elif m.type == "bind":
            mounts.append(f"type=bind,source={m.source},target={m.target}{ro}")
        else:
            raise Unsupported(
                f'service "{service.name}": volumes of type {m.type} are not supported'
            )
    out["mounts"] = tuple(mounts)
    out["volumes_from"] = tuple(
        _container_of(project, ref.rsplit(":", 1)[0] if ref.endswith((":ro", ":rw")) else ref)
        + (ref[-3:] if ref.endswith((":ro", ":rw")) else "")
        for ref in service.volumes_from
    )
    return out


def healthcheck(service: Service) -> dict[str, Any] | None:
    """Docker's HealthConfig (nanoseconds) for the engine, which fills what is not said from
    the image's HEALTHCHECK; ``disable: true`` is ``["NONE"]``."""
    h = service.healthcheck
    if h is None:
        return None
    doc: dict[str, Any] = {}
    if h.test is not None:
        doc["Test"] = list(h.test)
    for key, value in (("Interval", h.interval), ("Timeout", h.timeout),
                       ("StartPeriod", h.start_period)):  # fmt: skip
        if value is not None:
            doc[key] = int(value * 1e9)
    if h.retries is not None:
        doc["Retries"] = h.retries
    return doc or None


def container_spec(
    project: Project, service: Service, number: int, *, image_id: str = ""
) -> ContainerSpec:
    """The spec of container ``number`` of ``service``, with compose's labels."""
    env = tuple(f"{k}={v}" for k, v in service.environment.items() if v is not None)
    grace = service.stop_grace_period
    fields: dict[str, Any] = dict(
        image=image_name(project, service),
        name=L.container_name(project, service, number),
        **command_fields(service),
        env=env,
        workdir=service.working_dir,
        user=service.user,
        hostname=service.hostname,
        labels=L.container_labels(project, service, number, image_id=image_id),
        tty=service.tty,
        open_stdin=service.stdin_open,
        privileged=service.privileged,
        cap_add=service.cap_add,
        cap_drop=service.cap_drop,
        security_opt=service.security_opt,
        read_only=service.read_only,
        tmpfs=_tmpfs(service),
        init=service.init,
        resources=_resources(service),
        ulimits=_ulimits(service),
        sysctls=dict(service.sysctls),
        stop_signal=service.stop_signal or None,
        stop_timeout=round(grace) if grace is not None else None,
        restart=service.restart or "no",
        healthcheck=healthcheck(service),
        **networking_and_storage(project, service),
    )
    if service.shm_size:
        fields["shm_size"] = service.shm_size
    return ContainerSpec(**fields)
