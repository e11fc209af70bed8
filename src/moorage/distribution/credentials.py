"""Credentials in Docker's ``config.json`` (``auths``), so ``docker login`` and ``moor login``
share them. The file is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from moorage.errors import InvalidArgument

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def registry_domain(server: str | None) -> str:
    """A login's server address (``https://host:5000/v2/``, ``host:5000``, none: Docker
    Hub) as the registry's domain."""
    if not server:
        return "docker.io"
    s = server.removeprefix("https://").removeprefix("http://").rstrip("/")
    s = s.removesuffix("/v1").removesuffix("/v2")
    if not s or "/" in s:
        raise InvalidArgument(f"invalid registry address {server!r}")
    return "docker.io" if s in ("index.docker.io", "registry-1.docker.io") else s


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def auth_key(domain: str) -> str:
    """The ``auths`` key Docker uses for a registry domain."""
    if domain in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB_KEY
    return domain


def _load() -> dict[str, Any]:
    path = config_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{path} is not a JSON object")
    return doc


def _save(doc: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.json.")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent="\t")
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def lookup(domain: str) -> tuple[str, str] | None:
    """The (username, password) stored for ``domain``, if any."""
    auths = _load().get("auths") or {}
    key = auth_key(domain)
    candidates = [
        key,
        f"https://{key}",
        f"http://{key}",
        f"https://{key}/v1/",
        f"https://{key}/v2/",
    ]
    for k in candidates:
        entry = auths.get(k)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return user, password
    return None


def store(domain: str, user: str, password: str) -> Path:
    doc = _load()
    auths = doc.setdefault("auths", {})
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    auths[auth_key(domain)] = {"auth": token}
    _save(doc)
    return config_path()


def remove(domain: str) -> bool:
    doc = _load()
    auths = doc.get("auths") or {}
    if auth_key(domain) not in auths:
        return False
    del auths[auth_key(domain)]
    _save(doc)
    return True
