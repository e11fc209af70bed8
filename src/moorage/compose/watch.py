"""``moor compose watch``: the developer loop. inotify reports changes under the paths of the
services' ``develop.watch`` rules; a change that no ``ignore`` glob nor the build context's
``.dockerignore`` excludes is synced into the service's running containers, restarts them,
or rebuilds the service's image and recreates them."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from moorage.build.ignore import Matcher, read_patterns
from moorage.compose.model import Project, Service, WatchRule
from moorage.errors import InvalidArgument
from moorage.inotify import Inotify

# what editors and version control write beside the files (compose ignores them too)
DEFAULT_IGNORE = ("**/.git", "**/*~", "**/*.swp", "**/*.swx", "**/4913", "**/.#*")

QUIET = 0.05  # seconds without a further event that end a batch
MAX_BATCH = 0.3  # seconds a batch may keep growing


# ---- which rule a change falls under ---------------------------------------------------------


@dataclass
class ServiceWatch:
    """A service's rules and the ``.dockerignore`` of its build context."""

    service: Service
    rules: tuple[WatchRule, ...]
    context: str = ""
    dockerignore: Matcher = field(default_factory=lambda: Matcher([]))
    ignores: dict[int, Matcher] = field(default_factory=dict)  # per rule index


def service_watches(project: Project, names: Sequence[str]) -> list[ServiceWatch]:
    """The watched services among ``names`` (all when empty); an error when none is."""
    out = []
    for name in names or list(project.services):
        service = project.service(name)
        if not service.watch:
            continue
        sw = ServiceWatch(service, service.watch)
        if service.build is not None:
            ctx = Path(service.build.context)
            sw.context = str(ctx if ctx.is_absolute() else project.working_dir / ctx)
            ignore_file = Path(sw.context) / ".dockerignore"
            if ignore_file.is_file():
                sw.dockerignore = Matcher(read_patterns(ignore_file.read_text()))
        for i, rule in enumerate(service.watch):
            sw.ignores[i] = Matcher([*DEFAULT_IGNORE, *rule.ignore])
            if rule.action == "rebuild" and service.build is None:
                raise InvalidArgument(
                    f'service "{name}": a rebuild watch rule needs a build section'
                )
        out.append(sw)
    if not out:
        raise InvalidArgument(
            "none of the selected services is configured for watch: "
            "give them a develop.watch section"
        )
    return out


def _under(path: str, top: str) -> str | None:
    """``path`` relative to ``top`` ("." for ``top`` itself), or None if not below it."""
    if path == top:
        return "."
    if path.startswith(top.rstrip("/") + "/"):
        return path[len(top.rstrip("/")) + 1 :]
    return None


def match(sw: ServiceWatch, path: str) -> tuple[int, WatchRule, str] | None:
    """The first rule of the service that ``path`` falls under and is not ignored by, with
    the path relative to the rule's path; None if no rule takes it."""
    if sw.context:
        in_context = _under(path, sw.context)
        if in_context not in (None, ".") and sw.dockerignore.excluded(in_context):
            return None
    for i, rule in enumerate(sw.rules):
        rel = _under(path, rule.path)
        if rel is None:
            continue
        if rel != "." and sw.ignores[i].excluded(rel):
            continue
        if rel == "." and sw.ignores[i].excluded(os.path.basename(path)):
            continue
        return i, rule, rel
    return None


@dataclass
class Batch:
    """What one burst of changes asks of one service."""

    syncs: dict[str, str] = field(default_factory=dict)  # host path -> container path
    restart: bool = False
    rebuild: bool = False

    def __bool__(self) -> bool:
        return bool(self.syncs) or self.restart or self.rebuild


def plan_batch(watches: Iterable[ServiceWatch], paths: Iterable[str]) -> dict[str, Batch]:
    """Per service name, what to do about the changed ``paths``."""
    out: dict[str, Batch] = {}
    unique = list(dict.fromkeys(paths))
    for sw in watches:
        batch = Batch()
        for path in unique:
            found = match(sw, path)
            if found is None:
                continue
            _, rule, rel = found
            if rule.action == "rebuild":
                batch.rebuild = True
            elif rule.action == "restart":
                batch.restart = True
            else:
                target = rule.target if rel == "." else f"{rule.target.rstrip('/')}/{rel}"
                batch.syncs[path] = target
                batch.restart |= rule.action == "sync+restart"
        if batch:
            out[sw.service.name] = batch
    return out


def initial_paths(watches: Iterable[ServiceWatch]) -> list[str]:
    """The files below the paths of ``initial_sync`` rules."""
    out: list[str] = []
    for sw in watches:
        for rule in sw.rules:
            if not rule.initial_sync:
                continue
            if os.path.isdir(rule.path):
                for dirpath, _, files in os.walk(rule.path):
                    out += [os.path.join(dirpath, n) for n in files]
            elif os.path.lexists(rule.path):
                out.append(rule.path)
    return out


# ---- the loop ---------------------------------------------------------------------------------


def batches(watcher: Inotify, stop: Callable[[], bool]) -> Iterator[list[str]]:
    """Bursts of changed paths: a burst ends after :data:`QUIET` seconds without a further
    change (or :data:`MAX_BATCH` seconds after it began), so a saved file is one change."""
    while not stop():
        paths = watcher.read(0.2)
        if not paths:
            continue
        began = time.monotonic()
        while time.monotonic() - began < MAX_BATCH:
            more = watcher.read(QUIET)
            if not more:
                break
            paths += more
        yield paths


def watch_paths(watcher: Inotify, watches: Iterable[ServiceWatch]) -> None:
    for sw in watches:
        for rule in sw.rules:
            if not os.path.lexists(rule.path):
                raise InvalidArgument(
                    f'service "{sw.service.name}": watch path {rule.path} does not exist'
                )
            watcher.watch_tree(rule.path)


# ---- carrying a batch out ---------------------------------------------------------------------


def sync_files(root: Path, syncs: dict[str, str]) -> None:
    """Copy each host path to its path in the container whose root is ``root`` (the live
    mount of a running container), or remove it there when it is gone on the host. The
    copy is the one ``moor cp`` makes: a tar stream extracted with paths resolved inside the
    root, so a symlink in the container cannot lead a write out of it."""
    import io
    import shutil
    import tarfile

    from moorage.engine.containers import fsops
    from moorage.errors import NotFound

    present = {h: t for h, t in syncs.items() if os.path.lexists(h)}
    gone = {h: t for h, t in syncs.items() if h not in present}
    if present:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for host, target in sorted(present.items(), key=lambda kv: kv[1]):
                # a directory comes with what is in it; its files may come again on their own
                with contextlib.suppress(FileNotFoundError):
                    tar.add(host, arcname=target.lstrip("/"), recursive=os.path.isdir(host))
        data.seek(0)
        fsops.copy_to_container(root, "/", data)
    if not gone:
        return
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for target in sorted(gone.values(), reverse=True):
            parent, name = os.path.split(target.rstrip("/"))
            if not name:
                continue
            try:
                pfd = fsops.resolve_in_root(root_fd, parent or "/", follow_final=True)
            except NotFound:
                continue
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=pfd)
            finally:
                os.close(pfd)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=dfd)
                else:
                    os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            finally:
                os.close(dfd)
    finally:
        os.close(root_fd)
