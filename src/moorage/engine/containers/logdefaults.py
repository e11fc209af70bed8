"""The default bound on a container's log: Docker and Podman keep logs unbounded and fill
disks; moorage caps each container at ``max-size`` x ``max-file`` unless told otherwise
(``--log-opt max-size=-1`` for unbounded; ``MOORAGE_LOG_MAX_SIZE``/``MOORAGE_LOG_MAX_FILE``
change the defaults, ``MOORAGE_LOG_MAX_SIZE=-1`` turns the cap off)."""

from __future__ import annotations

import os
from collections.abc import Sequence

DEFAULT_MAX_SIZE = "10m"
DEFAULT_MAX_FILE = "3"


def default_log_opts(opts: Sequence[str], driver: str = "k8s-file") -> tuple[str, ...]:
    """``opts`` with the default cap added where the user set none (kept in the spec, so
    ``inspect`` shows it); an explicit ``max-size=-1`` is dropped (unbounded)."""
    if driver not in ("k8s-file", "json-file"):
        return tuple(opts)
    keys = {o.partition("=")[0] for o in opts}
    if "max-size=-1" in opts:
        return tuple(o for o in opts if not o.startswith("max-size="))
    if "max-size" in keys:
        return tuple(opts)
    size = os.environ.get("MOORAGE_LOG_MAX_SIZE", DEFAULT_MAX_SIZE)
    if size == "-1":
        return tuple(opts)
    files = os.environ.get("MOORAGE_LOG_MAX_FILE", DEFAULT_MAX_FILE)
    extra = [f"max-size={size}"] + ([] if "max-file" in keys else [f"max-file={files}"])
    return (*opts, *extra)
