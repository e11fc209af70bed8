"""Carrying out compose commands on the engine: ``up`` follows the convergence plan level
by level; ``down``, ``start``, ``stop`` and ``rm`` act on the project's containers, found by
their compose labels. A failure halfway leaves labelled containers that the next ``up`` or
``down`` plans from, like any others."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from moorage.compose import labels as L
from moorage.compose.errors import ComposeError
from moorage.compose.graph import levels
from moorage.compose.model import Project, Service
from moorage.compose.plan import (
    CREATE,
    RECREATE,
    REMOVE,
    RESTART,
    START,
    Action,
    Actual,
    Plan,
    PlanOptions,
    plan,
)
from moorage.compose.translate import container_spec, image_name, service_networks
from moorage.errors import MoorageError, NotFound

if TYPE_CHECKING:
    from moorage.engine.containers.service import ContainerRecord, ContainerService

Progress = Callable[[str], None]
MAX_PARALLEL = 8
MAX_PARALLEL_STOP = 16  # stopping is mostly waiting (for the exit, for conmon)


def _ignore(line: str) -> None:
    pass


def project_records(
    svc: ContainerService, project: str, services: Sequence[str] = (), oneoff: bool = True
) -> list[ContainerRecord]:
    """The project's containers (of ``services`` if given), by service then number."""
    out = []
    for rec in svc.ls():
        labels = rec.spec.labels
        if labels.get(L.PROJECT) != project:
            continue
        if services and labels.get(L.SERVICE) not in services:
            continue
        if not oneoff and labels.get(L.ONEOFF) == "True":
            continue
        out.append(rec)
    return sorted(out, key=lambda r: (r.spec.labels.get(L.SERVICE, ""), _number(r), r.name))


def _number(rec: ContainerRecord) -> int:
    try:
        return int(rec.spec.labels.get(L.NUMBER, "0"))
    except ValueError:
        return 0


def actual_of(records: Sequence[ContainerRecord]) -> list[Actual]:
    return [Actual(r.id, r.name, dict(r.spec.labels), r.state) for r in records]


def _image_ids(project: Project, svc: ContainerService, names: Sequence[str]) -> dict[str, str]:
    out = {}
    for name in names:
        with contextlib.suppress(NotFound):
            out[name] = str(svc.images.resolve(image_name(project, project.services[name])).id)
    return out


def _preflight(project: Project, p: Plan, image_ids: dict[str, str]) -> None:
    """Everything that can be refused is refused before the first container is touched."""
    for level in p.levels:
        for name in level:
            service = project.services[name]
            if any(a.kind in (CREATE, RECREATE) for a in p.actions[name]):
                if name not in image_ids:
                    raise NotFound(
                        f'service "{name}": no such image: {image_name(project, service)} '
                        "(pull or load it, or give the service a build section)"
                    )
                container_spec(project, service, 1).validate()


def up(
    project: Project,
    svc: ContainerService,
    options: PlanOptions,
    *,
    timeout: int | None = None,
    progress: Progress = _ignore,
    parallel: bool = True,
    start: bool = True,
    rolling: bool = False,
) -> Plan:
    """Converge: create, recreate, start or leave each container, in dependency order; the
    services of one dependency level are handled in parallel unless ``parallel`` is False.
    With ``start`` False (``create``), containers are created but not started. Services with
    ``deploy.replicas`` above 1 (every service, with ``rolling``) are recreated one
    container at a time, each new one ready before its old one goes (:func:`_roll`)."""
    from moorage.compose.plan import selected_services

    chosen = selected_services(project, options.services, options.no_deps)
    image_ids = _image_ids(project, svc, chosen)
    options = replace(options, image_ids=image_ids)
    p = plan(project, actual_of(project_records(svc, project.name)), options)
    _preflight(project, p, image_ids)
    if p.orphans:
        if p.remove_orphans:
            for orphan in p.orphans:
                _remove(svc, orphan.id, orphan.name, timeout, progress)
        else:
            names = ", ".join(o.name for o in p.orphans)
            progress(
                f"WARN Found orphan containers ({names}) for this project. If you removed or "
                "renamed this service in your compose file, you can run this command with the "
                "--remove-orphans flag to clean it up."
            )
    provision(project, svc, chosen, progress)
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            progress(line)

    def work(name: str) -> None:
        # each thread with its own store connection: SQLite and flock make that as safe
        # as separate moor commands
        with svc.separate() as mine:
            _converge(project, mine, name, p, image_ids, timeout, locked, start, rolling)

    for level in p.levels:
        if not parallel or len(level) == 1:
            for name in level:
                _converge(project, svc, name, p, image_ids, timeout, progress, start, rolling)
            continue
        # independent services of one level start together
        with ThreadPoolExecutor(max_workers=min(len(level), MAX_PARALLEL)) as pool:
            futures = [pool.submit(work, name) for name in level]
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            raise errors[0]
    return p


def _converge(
    project: Project,
    svc: ContainerService,
    name: str,
    p: Plan,
    image_ids: dict[str, str],
    timeout: int | None,
    progress: Progress,
    start: bool = True,
    rolling: bool = False,
) -> None:
    """Carry out one service's actions (after waiting for what it depends on)."""
    if start:
        _wait_for_dependencies(project, svc, name, p)
    service = project.services[name]
    replicas = service.deploy.replicas if service.deploy is not None else None
    roll = start and (rolling or (replicas or 0) > 1)
    for action in p.actions[name]:
        if action.kind == RECREATE and roll:
            _roll(project, svc, service, action, image_ids[name], timeout, progress)
            continue
        if action.kind == REMOVE:
            assert action.container is not None
            _remove(svc, action.container.id, action.name, timeout, progress)
            continue
        if action.kind == RECREATE:
            assert action.container is not None
            progress(f" Container {action.name}  Recreate")
            _stop(svc, action.container.id, timeout)
            svc.remove(action.container.id, force=True)
        if action.kind in (CREATE, RECREATE):
            if action.kind == CREATE:
                progress(f" Container {action.name}  Creating")
            rec = _create(project, svc, service, action.number, image_ids[name])
            done = "Recreated" if action.kind == RECREATE else "Created"
            progress(f" Container {rec.name}  {done}")
            if start:
                svc.start(rec.id)
                progress(f" Container {rec.name}  Started")
        elif not start:
            progress(f" Container {action.name}  Created")
        elif action.kind == RESTART:
            assert action.container is not None
            progress(f" Container {action.name}  Restarting")
            _stop(svc, action.container.id, timeout)
            svc.start(action.container.id)
            progress(f" Container {action.name}  Started")
        elif action.kind == START:
            assert action.container is not None
            svc.start(action.container.id)
            progress(f" Container {action.name}  Started")
        else:
            progress(f" Container {action.name}  Running")


def _create(
    project: Project, svc: ContainerService, service: Service, number: int, image_id: str
) -> ContainerRecord:
    """Container ``number`` of ``service``, created and joined to its further networks."""
    rec = svc.create(container_spec(project, service, number, image_id=image_id))
    if not service.network_mode:
        for net_name, cfg in service_networks(project, service)[1:]:
            svc.networks.connect(
                net_name, rec, svc, aliases=(service.name, *cfg.aliases), ip=cfg.ipv4_address
            )
    return rec


READY_TIMEOUT = 120.0  # seconds a rolled container may take to become healthy
DRAIN_SECONDS = 1.0  # between withdrawing an old container's names and stopping it


def _roll(
    project: Project,
    svc: ContainerService,
    service: Service,
    action: Action,
    image_id: str,
    timeout: int | None,
    progress: Progress,
) -> None:
    """Replace one container without a gap: the old one steps aside under a temporary name
    (``<id>_<name>``, as docker compose names it while recreating), the new one starts under
    the real name, hidden from DNS until it is healthy (running, without a healthcheck);
    then it is published, the old one hidden, and after a short drain the old one is
    stopped and removed. A new container that fails is removed and the old one keeps
    serving under its name."""
    old = action.container
    assert old is not None
    aside = f"{old.id[:12]}_{action.name}"
    progress(f" Container {action.name}  Recreate (rolling)")
    svc.rename(old.id, aside)
    rec = None
    try:
        rec = _create(project, svc, service, action.number, image_id)
        svc.networks.hide_names(rec.id)  # not asked for before it answers
        svc.start(rec.id)
        progress(f" Container {action.name}  Started")
        _wait_ready(svc, rec.id, action.name, progress)
        svc.networks.hide_names(rec.id, hidden=False)
    except ComposeError as e:
        _undo_roll(svc, rec, old.id, action.name)
        raise ComposeError(f"{e}: the old container keeps running") from None
    except BaseException:
        _undo_roll(svc, rec, old.id, action.name)
        raise
    if old.state == "running":
        with contextlib.suppress(NotFound):
            svc.networks.hide_names(old.id)
        time.sleep(DRAIN_SECONDS)  # lookups answered just before finish their requests
    _remove(svc, old.id, aside, timeout, progress)


def _undo_roll(svc: ContainerService, new: ContainerRecord | None, old: str, name: str) -> None:
    if new is not None:
        with contextlib.suppress(MoorageError):
            svc.remove(new.id, force=True)
    with contextlib.suppress(MoorageError):
        svc.rename(old, name)
        svc.networks.hide_names(old, hidden=False)  # DNS learns its name again


def _wait_ready(svc: ContainerService, cid: str, name: str, progress: Progress) -> None:
    """Until the container is healthy (running, when it has no healthcheck)."""
    from moorage.engine.health import status

    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        rec = svc.find(cid)
        if rec is None or not rec.running:
            code = rec.exit_code if rec is not None else None
            raise ComposeError(f"container {name} exited ({code})")
        st = status(svc.store.db.conn, rec)
        if st in ("none", "healthy"):
            if st == "healthy":
                progress(f" Container {name}  Healthy")
            return
        if st == "unhealthy":
            raise ComposeError(f"container {name} is unhealthy")
        if time.monotonic() > deadline:
            raise ComposeError(f"container {name} did not become healthy in time")
        time.sleep(0.1)


def wait_services(
    project: Project, svc: ContainerService, names: Sequence[str], progress: Progress
) -> None:
    """``up --wait``: until every container of ``names`` is healthy (running, without a
    healthcheck); one that exited 0 is done, one that failed or is unhealthy is an error."""
    for rec in project_records(svc, project.name, names, oneoff=False):
        now = svc.find(rec.id)
        if now is not None and not now.running and now.exit_code == 0:
            progress(f" Container {rec.name}  Exited")
            continue
        _wait_ready(svc, rec.id, rec.name, progress)
        progress(f" Container {rec.name}  Waited")


NETWORK_LABEL = "com.docker.compose.network"
VOLUME_LABEL = "com.docker.compose.volume"


def provision(
    project: Project, svc: ContainerService, services: Sequence[str], progress: Progress
) -> None:
    """Create the project networks and named volumes that ``services`` use, as docker
    compose does (labelled with the project and their key); external ones must exist."""
    for key, net in project.networks.items():
        used = any(
            not project.services[n].network_mode and key in project.services[n].networks
            for n in services
        )
        if not used or svc.networks.find(net.name) is not None:
            continue
        if net.external:
            raise NotFound(f"network {net.name} declared as external, but could not be found")
        ipam = (net.ipam.get("config") or [{}])[0] if isinstance(net.ipam, dict) else {}
        progress(f" Network {net.name}  Creating")
        svc.networks.create(
            net.name,
            subnet=str(ipam.get("subnet", "")),
            gateway=str(ipam.get("gateway", "")),
            ip_range=str(ipam.get("ip_range", "")),
            internal=net.internal,
            labels={**net.labels, L.PROJECT: project.name, NETWORK_LABEL: key},
        )
        progress(f" Network {net.name}  Created")
    wanted = {m.source for n in services for m in project.services[n].volumes
              if m.type == "volume" and m.source}  # fmt: skip
    for key in sorted(wanted):
        vol = project.volumes.get(key)
        name = vol.name if vol else f"{project.name}_{key}"
        if svc.volumes.find(name) is not None:
            continue
        if vol is not None and vol.external:
            raise NotFound(f"external volume {name!r} not found")
        progress(f" Volume {name}  Creating")
        svc.volumes.create(
            name,
            labels={**(vol.labels if vol else {}), L.PROJECT: project.name, VOLUME_LABEL: key},
            options=dict(vol.driver_opts) if vol else None,
        )
        progress(f" Volume {name}  Created")


def remove_provisioned(
    project: Project, svc: ContainerService, *, volumes: bool, progress: Progress
) -> None:
    """``down``: the project's networks (and with ``volumes`` its named volumes)."""
    for net in svc.networks.ls():
        if net.labels.get(L.PROJECT) == project.name and NETWORK_LABEL in net.labels:
            progress(f" Network {net.name}  Removing")
            with contextlib.suppress(MoorageError):
                svc.networks.remove(net.name)
                progress(f" Network {net.name}  Removed")
    if volumes:
        for vol in svc.volumes.ls():
            if vol.labels.get(L.PROJECT) == project.name and VOLUME_LABEL in vol.labels:
                progress(f" Volume {vol.name}  Removing")
                with contextlib.suppress(MoorageError):
                    svc.volumes.remove(vol.name)
                    progress(f" Volume {vol.name}  Removed")


def plan_levels(project: Project, options: PlanOptions) -> list[list[str]]:
    """The services ``up`` with ``options`` acts on, in start order."""
    from moorage.compose.plan import selected_services

    chosen = selected_services(project, options.services, options.no_deps)
    deps = {n: [d for d in project.services[n].dependencies() if d in chosen] for n in chosen}
    return levels(deps)


HEALTHY_TIMEOUT = 300.0  # seconds a service_healthy dependency may take


def _wait_healthy(project: Project, svc: ContainerService, dep: str) -> None:
    """Until every container of ``dep`` reports healthy (its health check says so)."""
    from moorage.engine.health import status

    deadline = time.monotonic() + HEALTHY_TIMEOUT
    while True:
        states = [
            status(svc.store.db.conn, r)
            for r in project_records(svc, project.name, [dep], oneoff=False)
        ]
        if states and all(st == "healthy" for st in states):
            return
        if "none" in states:
            raise ComposeError(f'service "{dep}" has no healthcheck (or is not running): '
                               "it cannot become healthy")  # fmt: skip
        if "unhealthy" in states:
            raise ComposeError(f'dependency failed to start: container for service "{dep}" '
                               "is unhealthy")  # fmt: skip
        if time.monotonic() > deadline:
            raise ComposeError(f'service "{dep}" did not become healthy in time')
        time.sleep(0.2)


def _wait_for_dependencies(project: Project, svc: ContainerService, name: str, p: Plan) -> None:
    for dep, d in project.services[name].depends_on.items():
        if d.condition == "service_healthy" and dep in p.actions:
            _wait_healthy(project, svc, dep)
            continue
        if d.condition != "service_completed_successfully" or dep not in p.actions:
            continue
        for rec in project_records(svc, project.name, [dep], oneoff=False):
            code = svc.wait(rec.id)
            if code != 0:
                raise ComposeError(f'service "{dep}" didn\'t complete successfully: exit {code}')


def _stop(svc: ContainerService, cid: str, timeout: int | None) -> None:
    with contextlib.suppress(NotFound):
        svc.stop(cid, timeout)


def _remove(
    svc: ContainerService, cid: str, name: str, timeout: int | None, progress: Progress
) -> None:
    progress(f" Container {name}  Stopping")
    _stop(svc, cid, timeout)
    progress(f" Container {name}  Stopped")
    with contextlib.suppress(NotFound):
        svc.remove(cid, force=True)
    progress(f" Container {name}  Removed")


def _stop_order(project: Project, records: Sequence[ContainerRecord]) -> list[ContainerRecord]:
    """Dependents first: the reverse of the start order; unknown services first of all."""
    deps = {n: s.dependencies() for n, s in project.services.items()}
    rank = {name: i for i, level in enumerate(reversed(levels(deps))) for name in level}
    return sorted(records, key=lambda r: rank.get(r.spec.labels.get(L.SERVICE, ""), -1))


def down(
    project: Project,
    svc: ContainerService,
    *,
    remove_orphans: bool = False,
    timeout: int | None = None,
    progress: Progress = _ignore,
    volumes: bool = False,
) -> None:
    """Stop and remove the project's containers (orphans too with ``remove_orphans``), then
    its networks, and with ``volumes`` its named volumes."""
    known = {*project.services, *project.disabled}
    records = [
        r
        for r in project_records(svc, project.name)
        if remove_orphans or r.spec.labels.get(L.SERVICE) in known
    ]
    _remove_by_level(project, svc, records, timeout, progress)
    remove_provisioned(project, svc, volumes=volumes, progress=progress)


def _remove_by_level(
    project: Project,
    svc: ContainerService,
    records: Sequence[ContainerRecord],
    timeout: int | None,
    progress: Progress,
) -> None:
    """Dependents first; the containers of one level (no dependency between them) are
    stopped and removed together, as docker compose does."""
    deps = {n: s.dependencies() for n, s in project.services.items()}
    rank = {name: i for i, level in enumerate(reversed(levels(deps))) for name in level}
    groups: dict[int, list[ContainerRecord]] = {}
    for rec in records:
        groups.setdefault(rank.get(rec.spec.labels.get(L.SERVICE, ""), -1), []).append(rec)
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            progress(line)

    def work(rec: ContainerRecord) -> None:
        with svc.separate() as mine:
            _remove(mine, rec.id, rec.name, timeout, locked)

    for _, group in sorted(groups.items()):
        if len(group) == 1:
            _remove(svc, group[0].id, group[0].name, timeout, progress)
            continue
        with ThreadPoolExecutor(max_workers=min(len(group), MAX_PARALLEL_STOP)) as pool:
            futures = [pool.submit(work, rec) for rec in group]
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            raise errors[0]


def stop(
    project: Project,
    svc: ContainerService,
    services: Sequence[str] = (),
    *,
    timeout: int | None = None,
    progress: Progress = _ignore,
) -> None:
    for name in services:
        project.service(name)
    records = project_records(svc, project.name, services, oneoff=False)
    for rec in _stop_order(project, [r for r in records if r.running]):
        progress(f" Container {rec.name}  Stopping")
        svc.stop(rec.id, timeout)
        progress(f" Container {rec.name}  Stopped")


def start(
    project: Project,
    svc: ContainerService,
    services: Sequence[str] = (),
    *,
    progress: Progress = _ignore,
) -> None:
    for name in services:
        project.service(name)
    records = project_records(svc, project.name, services, oneoff=False)
    if not records:
        raise ComposeError("service(s) not created yet: run moor compose up first")
    deps = {n: s.dependencies() for n, s in project.services.items()}
    rank = {name: i for i, level in enumerate(levels(deps)) for name in level}
    for rec in sorted(records, key=lambda r: rank.get(r.spec.labels.get(L.SERVICE, ""), 0)):
        if rec.running:
            continue
        progress(f" Container {rec.name}  Starting")
        try:
            svc.start(rec.id)
        except MoorageError as e:
            raise ComposeError(f"cannot start {rec.name}: {e}") from None
        progress(f" Container {rec.name}  Started")


def removable(
    project: Project, svc: ContainerService, services: Sequence[str] = (), *, stopped_first: bool
) -> list[ContainerRecord]:
    """``rm``: the project's stopped containers (all, when they are to be stopped first)."""
    for name in services:
        project.service(name)
    records = project_records(svc, project.name, services)
    return [r for r in records if stopped_first or not r.running]
