"""The config pipeline: find the files, read ``.env``, then for each file load the YAML,
interpolate, canonicalise and resolve ``extends``; merge the files, name the project, select
profiles, resolve each service's environment, and check the whole (references, cycles,
published ports) before anything runs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from moorage.compose import typed
from moorage.compose.canonical import FileContext, canonical_file
from moorage.compose.dotenv import read_dotenv
from moorage.compose.errors import ComposeError
from moorage.compose.graph import check_acyclic
from moorage.compose.interpolate import interpolate_tree
from moorage.compose.merge import merge_files, merge_service
from moorage.compose.model import Project, Service
from moorage.compose.ports import published_range
from moorage.compose.values import Loc
from moorage.compose.yamlsrc import MDict, load_yaml, mark_of

#: The file names ``moor compose`` looks for, in order (the first found wins).
DEFAULT_FILES = (
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "fig.yml",
    "fig.yaml",
)
OVERRIDE_FILES = {
    "compose.yaml": ("compose.override.yaml", "compose.override.yml"),
    "compose.yml": ("compose.override.yml", "compose.override.yaml"),
    "docker-compose.yml": ("docker-compose.override.yml", "docker-compose.override.yaml"),
    "docker-compose.yaml": ("docker-compose.override.yaml", "docker-compose.override.yml"),
    "fig.yml": ("fig.override.yml",),
    "fig.yaml": ("fig.override.yaml",),
}
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class ProjectOptions:
    """What the command line says about the project (``-f``, ``-p``, ``--env-file``…)."""

    files: Sequence[Path] = ()
    project_name: str | None = None
    project_directory: Path | None = None
    env_files: Sequence[Path] = ()
    profiles: Sequence[str] = ()
    services: Sequence[str] = ()  # named on the command line: enabled whatever their profiles
    environ: Mapping[str, str] | None = None  # default: os.environ
    cwd: Path | None = None
    stdin_text: str | None = field(default=None, repr=False)  # for ``-f -``


def find_files(cwd: Path) -> list[Path]:
    """The default file of ``cwd`` or its nearest parent, and its override file if any."""
    for directory in (cwd, *cwd.parents):
        for name in DEFAULT_FILES:
            path = directory / name
            if path.is_file():
                found = [path]
                for override in OVERRIDE_FILES[name]:
                    if (directory / override).is_file():
                        found.append(directory / override)
                        break
                return found
    raise ComposeError(
        "no configuration file provided: not found (looked for "
        + ", ".join(DEFAULT_FILES)
        + f" in {cwd} and its parents)"
    )


def normalize_project_name(name: str) -> str:
    """A directory name as compose makes it a project name: lower case, only
    ``[a-z0-9_-]``, starting with a letter or digit."""
    name = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return name.lstrip("_-")


def check_project_name(name: str, source: str) -> str:
    if not _PROJECT_NAME.fullmatch(name):
        raise ComposeError(
            f"invalid project name {name!r} (from {source}): it must contain only lowercase "
            "letters, digits, dashes and underscores, and start with a letter or digit"
        )
    return name


class _Reader:
    """Reads, interpolates and canonicalises files, once each (``extends`` may revisit)."""

    def __init__(self, env: Mapping[str, str], stdin_text: str | None) -> None:
        self.env = env
        self.stdin_text = stdin_text
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.missing: set[str] = set()
        self.warnings: list[str] = []

    def read(self, path: Path, base_dir: Path) -> dict[str, Any]:
        key = (str(path), str(base_dir))
        if key not in self.cache:
            if str(path) == "-":
                text = self.stdin_text or ""
                shown = "<stdin>"
            else:
                try:
                    text = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    raise ComposeError(f"open {path}: no such file or directory") from None
                except (OSError, UnicodeDecodeError) as e:
                    raise ComposeError(f"cannot read {path}: {e}") from None
                shown = str(path)
            data = load_yaml(text, shown)
            data = interpolate_tree(data, self.env, missing=self.missing)
            doc = canonical_file(data, shown, FileContext(base_dir))
            if "version" in doc:
                self.warnings.append(
                    f"{shown}: the attribute `version` is obsolete, it will be ignored"
                )
            self.cache[key] = doc
        return self.cache[key]

    def resolve_extends(self, doc: dict[str, Any], path: Path) -> dict[str, Any]:
        services = doc.get("services") or {}
        if not any("extends" in s for s in services.values()):
            return doc
        resolved = {name: self._extended(services, name, path, []) for name in services}
        out = MDict(doc, mark=mark_of(doc))
        out.key_marks.update(getattr(doc, "key_marks", {}))
        out["services"] = MDict(resolved, mark=mark_of(services))
        out["services"].key_marks.update(getattr(services, "key_marks", {}))
        return out

    def _extended(
        self, services: dict[str, Any], name: str, path: Path, seen: list[tuple[str, str]]
    ) -> dict[str, Any]:
        svc: dict[str, Any] = services[name]
        ext = svc.get("extends")
        if ext is None:
            return svc
        here = (str(path), name)
        if here in seen:
            chain = " -> ".join(n for _, n in [*seen, here])
            raise ComposeError(f"extends cycle: {chain}", ("services", name, "extends"))
        other_file = Path(ext["file"]) if "file" in ext else path
        if "file" in ext:
            other = self.read(other_file, other_file.parent).get("services") or {}
        else:
            other = services
        base_name = ext["service"]
        if base_name not in other:
            where = f" in {other_file}" if "file" in ext else ""
            raise ComposeError(
                f"cannot extend service {base_name!r}: no such service{where}",
                ("services", name, "extends"),
                mark_of(svc, "extends"),
            )
        base = self._extended(other, base_name, other_file, [*seen, here])
        own = {k: v for k, v in svc.items() if k != "extends"}
        return merge_service(base, own)


def load_project(options: ProjectOptions) -> Project:
    """The whole pipeline, from the command line's options to a checked :class:`Project`."""
    environ = dict(os.environ if options.environ is None else options.environ)
    cwd = (options.cwd or Path.cwd()).absolute()
    if options.files:
        files = [f if str(f) == "-" else (cwd / f).absolute() for f in options.files]
    elif environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        files = [(cwd / f).absolute() for f in environ["COMPOSE_FILE"].split(sep) if f]
    else:
        files = find_files(cwd)
    first = next((f for f in files if str(f) != "-"), None)
    if options.project_directory is not None:
        project_dir = (cwd / options.project_directory).absolute()
    else:
        project_dir = first.parent if first is not None else cwd
    env = _environment(options, environ, cwd, project_dir)
    reader = _Reader(env, options.stdin_text)
    docs = []
    for path in files:
        doc = reader.read(path, project_dir)
        docs.append(reader.resolve_extends(doc, path))
    merged = merge_files(docs)
    name = _project_name(options, env, merged, project_dir)
    active = _active_profiles(options, env)
    warnings = [
        f'The "{var}" variable is not set. Defaulting to a blank string.'
        for var in sorted(reader.missing)
    ]
    project = build_project(merged, name, project_dir, tuple(files), active, options.services, env)
    return replace(project, warnings=(*warnings, *reader.warnings))


def _environment(
    options: ProjectOptions, environ: dict[str, str], cwd: Path, project_dir: Path
) -> dict[str, str]:
    """What ``${VAR}`` sees: the ``.env`` file (or ``--env-file``s), overridden by the
    process environment."""
    dotenv: dict[str, str] = {}
    if options.env_files:
        for f in options.env_files:
            dotenv.update(read_dotenv((cwd / f).absolute(), {**environ, **dotenv}))
    elif (project_dir / ".env").is_file():
        dotenv = read_dotenv(project_dir / ".env", environ)
    return {**dotenv, **environ}


def _project_name(
    options: ProjectOptions, env: Mapping[str, str], merged: dict[str, Any], project_dir: Path
) -> str:
    if options.project_name:
        return check_project_name(options.project_name, "-p")
    if env.get("COMPOSE_PROJECT_NAME"):
        return check_project_name(env["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME")
    if merged.get("name"):
        return check_project_name(merged["name"], "the name: key")
    name = normalize_project_name(project_dir.name)
    if not name:
        raise ComposeError(
            f"cannot make a project name from the directory {project_dir.name!r}: use -p NAME"
        )
    return name


def _active_profiles(options: ProjectOptions, env: Mapping[str, str]) -> tuple[str, ...]:
    if options.profiles:
        names = [p for value in options.profiles for p in value.split(",")]
    else:
        names = env.get("COMPOSE_PROFILES", "").split(",")
    return tuple(dict.fromkeys(p.strip() for p in names if p.strip()))


def _enabled(svc: dict[str, Any], active: Sequence[str]) -> bool:
    profiles = svc.get("profiles") or []
    return not profiles or "*" in active or any(p in active for p in profiles)


def build_project(
    merged: dict[str, Any],
    name: str,
    project_dir: Path,
    files: tuple[Path, ...],
    active: Sequence[str] = (),
    requested: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Project:
    """A checked :class:`Project` from the merged canonical mapping."""
    env = dict(env or {})
    services_doc: dict[str, Any] = merged.get("services") or {}
    for svc in requested:
        if svc not in services_doc:
            raise ComposeError(f"no such service: {svc}")
    services: dict[str, Service] = {}
    disabled: dict[str, Service] = {}
    for svc_name, body in services_doc.items():
        body = _resolve_environment(svc_name, body, env)
        if not body.get("network_mode") and not body.get("networks"):
            body = {**body, "networks": {"default": None}}
        model = typed.service(svc_name, body)
        if _enabled(body, active) or svc_name in requested:
            services[svc_name] = model
        else:
            disabled[svc_name] = model
    config: dict[str, Any] = {"name": name, "services": {s: m.config for s, m in services.items()}}
    sections: dict[str, dict[str, Any]] = {}
    for kind in ("networks", "volumes", "secrets", "configs"):
        section = {}
        for key, body in (merged.get(kind) or {}).items():
            body = dict(body)
            if "name" not in body:
                body["name"] = key if body.get("external") else f"{name}_{key}"
            section[key] = body
        sections[kind] = section
    if any("default" in s.networks for s in services.values()):
        sections["networks"].setdefault("default", {"name": f"{name}_default"})
    for kind in ("networks", "volumes", "secrets", "configs"):
        if sections[kind]:
            config[kind] = sections[kind]
    project = Project(
        name=name,
        working_dir=project_dir,
        config_files=files,
        services=services,
        disabled=disabled,
        networks={k: typed.network(k, v) for k, v in sections["networks"].items()},
        volumes={k: typed.volume(k, v) for k, v in sections["volumes"].items()},
        secrets={k: typed.file_object(k, v) for k, v in sections["secrets"].items()},
        configs={k: typed.file_object(k, v) for k, v in sections["configs"].items()},
        profiles=tuple(active),
        environment=env,
        config=config,
    )
    validate_project(project, services_doc)
    return project


def _resolve_environment(name: str, body: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``env_file`` contents under ``environment``, and each bare ``KEY`` taken from the
    environment (dropped when unset there), as the container will get them."""
    if "env_file" not in body and not any(v is None for v in body.get("environment", {}).values()):
        return body
    out = dict(body)
    resolved: dict[str, str | None] = {}
    for entry in out.pop("env_file", []):
        resolved.update(read_dotenv(Path(entry["path"]), env, required=entry["required"]))
    for key, value in body.get("environment", {}).items():
        if value is not None:
            resolved[key] = value
        elif key in env:
            resolved[key] = env[key]
        else:
            resolved.pop(key, None)
    out["environment"] = resolved
    return out


def validate_project(project: Project, raw_services: dict[str, Any]) -> None:
    """References between the parts of a project, cycles and published ports."""
    everything = {**project.services, **project.disabled}
    names_taken: dict[str, str] = {}
    for svc in project.services.values():
        raw = raw_services.get(svc.name, {})
        loc = Loc(("services", svc.name), mark_of(raw_services, svc.name))
        if not svc.image and svc.build is None:
            raise loc.error(f'service "{svc.name}" has neither an image nor a build context')
        for dep, d in svc.depends_on.items():
            where = loc.child(raw, "depends_on")
            if dep not in everything:
                raise where.error(f'service "{svc.name}" depends on undefined service "{dep}"')
            if dep not in project.services and d.required:
                raise where.error(
                    f'service "{svc.name}" depends on "{dep}", which no active profile enables '
                    f"(its profiles: {', '.join(everything[dep].profiles)})"
                )
        for link in svc.links:
            target = link.partition(":")[0]
            if target not in everything:
                raise loc.child(raw, "links").error(
                    f'service "{svc.name}" links to undefined service "{target}"'
                )
        mode = svc.network_mode
        if mode.startswith("service:") and mode[8:] not in everything:
            raise loc.child(raw, "network_mode").error(
                f'service "{svc.name}" uses the network of undefined service "{mode[8:]}"'
            )
        if svc.network_mode and svc.networks:
            raise loc.child(raw, "networks").error("network_mode and networks cannot be combined")
        for source in svc.volumes_from:
            target = source.partition(":")[0]
            if source.startswith("container:"):
                continue
            if target not in everything:
                raise loc.child(raw, "volumes_from").error(
                    f'service "{svc.name}" takes volumes from undefined service "{target}"'
                )
        for net in svc.networks:
            if net not in project.networks:
                raise loc.child(raw, "networks").error(
                    f'service "{svc.name}" refers to undefined network {net}'
                )
        for m in svc.volumes:
            if m.type == "volume" and m.source and m.source not in project.volumes:
                raise loc.child(raw, "volumes").error(
                    f'service "{svc.name}" refers to undefined volume {m.source}'
                )
        for kind, refs, known in (
            ("secret", svc.secrets, project.secrets),
            ("config", svc.configs, project.configs),
        ):
            for ref in refs:
                if ref.source not in known:
                    raise loc.child(raw, kind + "s").error(
                        f'service "{svc.name}" refers to undefined {kind} {ref.source}'
                    )
        if (
            svc.scale is not None
            and svc.deploy is not None
            and svc.deploy.replicas is not None
            and svc.scale != svc.deploy.replicas
        ):
            raise loc.child(raw, "scale").error(
                f"scale ({svc.scale}) and deploy.replicas ({svc.deploy.replicas}) disagree"
            )
        if svc.container_name and svc.container_name in names_taken:
            raise loc.child(raw, "container_name").error(
                f'container name "{svc.container_name}" is already used by service '
                f'"{names_taken[svc.container_name]}"'
            )
        if svc.container_name:
            names_taken[svc.container_name] = svc.name
        if svc.container_name and svc.replicas > 1:
            raise loc.child(raw, "container_name").error(
                f'service "{svc.name}" has a container_name, so it cannot have '
                f"{svc.replicas} replicas"
            )
    check_acyclic({name: s.dependencies() for name, s in project.services.items()})
    check_published_ports(project)


def _ip_overlap(a: str, b: str) -> bool:
    wildcard = ("", "0.0.0.0", "::")
    return a == b or a in wildcard or b in wildcard


def check_published_ports(project: Project) -> None:
    """Two containers cannot publish the same host port (same protocol, overlapping IP)."""
    taken: list[tuple[str, str, int, str]] = []  # (ip, protocol, port, service)
    for svc in project.services.values():
        for port in svc.ports:
            numbers = published_range(port.published)
            if not numbers:
                continue
            if svc.replicas > 1 and len(numbers) < svc.replicas:
                raise ComposeError(
                    f'service "{svc.name}" publishes host port {port.published} but has '
                    f"{svc.replicas} replicas: each needs its own host port",
                    ("services", svc.name, "ports"),
                )
            for number in numbers if len(numbers) == 1 else []:
                for ip, proto, other, owner in taken:
                    if other == number and proto == port.protocol and _ip_overlap(ip, port.host_ip):
                        who = "twice" if owner == svc.name else f'as "{owner}" does'
                        raise ComposeError(
                            f'service "{svc.name}" publishes host port {number}/{proto} {who}',
                            ("services", svc.name, "ports"),
                        )
                taken.append((port.host_ip, port.protocol, number, svc.name))
