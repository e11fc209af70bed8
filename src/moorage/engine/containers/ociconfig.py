"""The one generator of a container's OCI runtime config, from its spec and its image."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.engine.containers.parse import (
    clamp_rlimits,
    command_line,
    cpu_quota,
    merge_env,
    process_hard_limits,
)
from moorage.engine.containers.security import (
    MASKED_PATHS,
    READONLY_PATHS,
    current_bounding_set,
    parse_security_opts,
    resolve_capabilities,
    resolve_seccomp,
)
from moorage.engine.containers.spec import ContainerSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_IN_CONTAINER = "/run/moorage-init"


@dataclass(frozen=True)
class Placement:
    """Where a container's pieces are on the host."""

    cid: str
    rootfs: Path
    hostname_file: Path
    hosts_file: Path
    resolv_file: Path
    init_binary: str | None = None
    netns_path: str | None = None  # a namespace made beforehand (bridge networks, container:)
    extra_env: tuple[str, ...] = ()  # before the container's own (legacy link variables)
    extra_mounts: tuple[dict[str, Any], ...] = ()  # volumes, binds, --mount tmpfs


def cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def process_args(spec: ContainerSpec, image_config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd merged exactly as Docker does."""
    return command_line(
        image_config.get("Entrypoint"), image_config.get("Cmd"), spec.entrypoint, spec.args
    )


def environment(
    spec: ContainerSpec,
    image_config: dict[str, Any],
    hostname: str,
    extra_env: tuple[str, ...] = (),
) -> list[str]:
    env = merge_env([*(image_config.get("Env") or []), *extra_env], list(spec.env))
    keys = {e.split("=", 1)[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOSTNAME" not in keys:
        env.insert(1, f"HOSTNAME={hostname}")
    if spec.tty and "TERM" not in keys:
        env.append("TERM=xterm")
    return env


def generate(
    spec: ContainerSpec,
    image_config: dict[str, Any],
    place: Placement,
    *,
    hostname: str,
    uid: int,
    gid: int,
    additional_gids: list[int],
    workdir: str,
) -> dict[str, Any]:
    """The ``config.json`` runc gets."""
    args = process_args(spec, image_config)
    if spec.init and place.init_binary:
        args = [INIT_IN_CONTAINER, "--", *args]
    security = parse_security_opts(spec.security_opt)
    caps = resolve_capabilities(
        list(spec.cap_add), list(spec.cap_drop), spec.privileged, available=current_bounding_set()
    )
    capabilities = {"bounding": caps, "effective": caps, "permitted": caps}
    process: dict[str, Any] = {
        "terminal": spec.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
        "args": args,
        "env": environment(spec, image_config, hostname, place.extra_env),
        "cwd": workdir or "/",
        "capabilities": capabilities,
        "noNewPrivileges": security.no_new_privileges,
        "oomScoreAdj": 0,
    }
    rlimits = clamp_rlimits(list(spec.ulimits), process_hard_limits())
    if rlimits:
        process["rlimits"] = rlimits

    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if not spec.privileged else "rw"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime",
                     "ro" if not spec.privileged else "rw"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={spec.shm_size}"]},
    ]  # fmt: skip
    for dest, src in (
        ("/etc/resolv.conf", place.resolv_file),
        ("/etc/hostname", place.hostname_file),
        ("/etc/hosts", place.hosts_file),
    ):
        mounts.append(
            {"destination": dest, "type": "bind", "source": str(src),
             "options": ["rbind", "rprivate"] + (["ro"] if spec.read_only else [])}
        )  # fmt: skip
    for dest, opts in spec.tmpfs.items():
        options = ["nosuid", "nodev", "noexec"] + [o for o in opts.split(",") if o]
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
    mounts += place.extra_mounts
    if spec.init and place.init_binary:
        mounts.append(
            {"destination": INIT_IN_CONTAINER, "type": "bind", "source": place.init_binary,
             "options": ["bind", "ro", "nosuid", "nodev"]}
        )  # fmt: skip

    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if place.netns_path:
        namespaces.append({"type": "network", "path": place.netns_path})
    elif spec.network_mode != "host":
        namespaces.append({"type": "network"})
    if cgroup_v2():
        namespaces.append({"type": "cgroup"})

    resources: dict[str, Any] = {"devices": [{"allow": spec.privileged, "access": "rwm"}]}
    r = spec.resources
    if r.memory:
        swap = r.memory_swap if r.memory_swap else 2 * r.memory
        resources["memory"] = {"limit": r.memory, "swap": swap}
    cpu: dict[str, Any] = {}
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if r.nano_cpus:
        quota, period = cpu_quota(r.nano_cpus)
        cpu["quota"] = quota
        cpu["period"] = period
    if cpu:
        resources["cpu"] = cpu
    if r.pids_limit:
        resources["pids"] = {"limit": r.pids_limit}

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": f"/moorage/{place.cid}",
    }
    if spec.sysctls:
        linux["sysctl"] = dict(spec.sysctls)
    if not spec.privileged and not security.systempaths_unconfined:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    seccomp = resolve_seccomp(security, caps, spec.privileged)
    if seccomp is not None:
        linux["seccomp"] = seccomp

    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": str(place.rootfs), "readonly": spec.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
