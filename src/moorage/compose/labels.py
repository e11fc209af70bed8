"""The labels Docker Compose puts on a project's containers, container names, and the config
hash that tells whether a container still matches its service."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from moorage import __version__
from moorage.compose.model import Project, Service

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_HASH = "com.docker.compose.config-hash"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
DEPENDS_ON = "com.docker.compose.depends_on"
VERSION = "com.docker.compose.version"
IMAGE = "com.docker.compose.image"

# What may change without the container being recreated: how it is built or pulled, how many
# replicas there are, what it waits for, which profiles enable it, and how it is watched.
_NOT_HASHED = ("build", "pull_policy", "scale", "depends_on", "profiles", "develop")


def config_hash(service: Service) -> str:
    """SHA-256 of the service's effective configuration, stable across runs and machines
    (canonical JSON: sorted keys, no whitespace; only what the container is made from)."""
    doc: dict[str, Any] = {
        k: v
        for k, v in service.config.items()
        if k not in _NOT_HASHED and not k.startswith("x-")  # extensions make no container
    }
    if "deploy" in doc:
        doc["deploy"] = {k: v for k, v in doc["deploy"].items() if k != "replicas"}
        if not doc["deploy"]:
            del doc["deploy"]
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def container_name(project: Project | str, service: Service, number: int) -> str:
    """``container_name`` if set, else ``<project>-<service>-<number>`` (compose v2)."""
    if service.container_name:
        return service.container_name
    name = project if isinstance(project, str) else project.name
    return f"{name}-{service.name}-{number}"


def depends_on_label(service: Service) -> str:
    """``db:service_healthy:false,cache:service_started:false`` as compose v2 writes it."""
    return ",".join(
        f"{name}:{dep.condition}:{str(dep.restart).lower()}"
        for name, dep in service.depends_on.items()
    )


def container_labels(
    project: Project,
    service: Service,
    number: int,
    *,
    oneoff: bool = False,
    image_id: str = "",
) -> dict[str, str]:
    """The service's own labels, then compose's (which win, as in docker compose)."""
    labels = dict(service.labels)
    labels.update(
        {
            PROJECT: project.name,
            SERVICE: service.name,
            NUMBER: str(number),
            ONEOFF: "True" if oneoff else "False",
            CONFIG_HASH: config_hash(service),
            WORKING_DIR: str(project.working_dir),
            CONFIG_FILES: ",".join(str(f) for f in project.config_files),
            DEPENDS_ON: depends_on_label(service),
            VERSION: __version__,
        }
    )
    if image_id:
        labels[IMAGE] = image_id
    return labels
