"""A service of a project -> the engine's ``ContainerSpec`` for one of its containers.

Everything the engine can do today is translated here. Ports, volumes and networks are
kept in the model and translated in one place, :func:`networking_and_storage`, which refuses
what the engine cannot do yet; the networking/volumes work completes that function.
"""

from __future__ import annotations

from typing import Any

from moorage.compose import labels as L
from moorage.compose.model import Project, Service
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


def networking_and_storage(project: Project, service: Service) -> dict[str, Any]:
    """The spec fields for the service's network, published ports and mounts.

    Today the engine has ``none`` and ``host`` networking and no volumes: the rest is
    refused with a clear message. To complete when bridge networks, published ports and
    volumes land: the project network ``<project>_<key>`` (aliases, ipv4_address), ``ports``
    (Port records), named volumes ``<project>_<key>`` and bind mounts (Mount records),
    ``links``, ``volumes_from`` and ``expose``.
    """
    mode = service.network_mode
    if mode not in ("none", "host"):
        wanted = f"network_mode {mode!r}" if mode else "a project network"
        raise Unsupported(
            f'service "{service.name}" needs {wanted}; moor compose can run only services with '
            "network_mode: none or host until bridge networks are supported"
        )
    if service.ports and mode != "host":
        raise Unsupported(f'service "{service.name}": published ports are not supported yet')
    mounts = [m for m in service.volumes if m.type != "tmpfs"]
    if mounts or service.volumes_from:
        raise Unsupported(f'service "{service.name}": volumes are not supported yet')
    return {"network_mode": mode}


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
        **networking_and_storage(project, service),
    )
    if service.shm_size:
        fields["shm_size"] = service.shm_size
    return ContainerSpec(**fields)
