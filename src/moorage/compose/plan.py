"""The convergence planner: from the services wanted and the containers found (by their
compose labels), what to do with each container. Pure: it reads records, returns a plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from moorage.compose import labels as L
from moorage.compose.errors import ComposeError
from moorage.compose.graph import closure, levels
from moorage.compose.model import Project, Service

CREATE = "create"
RECREATE = "recreate"
START = "start"
LEAVE = "leave"
REMOVE = "remove"  # a replica beyond the wanted scale, or a duplicate number
RESTART = "restart"  # up to date, but a ``restart: true`` dependency is being replaced

_RUNNING = ("running", "paused", "restarting")


@dataclass(frozen=True)
class Actual:
    """A container as found: its id, name, labels and state (created, running, exited…)."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str

    @property
    def service(self) -> str:
        return self.labels.get(L.SERVICE, "")

    @property
    def number(self) -> int:
        try:
            return int(self.labels.get(L.NUMBER, "0"))
        except ValueError:
            return 0

    @property
    def oneoff(self) -> bool:
        return self.labels.get(L.ONEOFF, "False") == "True"


@dataclass(frozen=True)
class Action:
    kind: str  # create | recreate | start | leave | remove
    service: str
    number: int
    name: str  # the container's name (the new one's for create and recreate)
    container: Actual | None = None  # the existing container, if any
    reason: str = ""


@dataclass(frozen=True)
class PlanOptions:
    services: Sequence[str] = ()  # empty: every enabled service
    no_deps: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    scale: Mapping[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    image_ids: Mapping[str, str] = field(default_factory=dict)  # service -> current image id


@dataclass(frozen=True)
class Plan:
    levels: list[list[str]]  # services in start order; one level's can start in parallel
    actions: dict[str, list[Action]]  # per service, by container number
    orphans: list[Actual]  # containers of services no longer in the project
    remove_orphans: bool = False

    def all(self) -> list[Action]:
        return [a for level in self.levels for svc in level for a in self.actions[svc]]

    def changes(self) -> list[Action]:
        return [a for a in self.all() if a.kind != LEAVE]


def selected_services(project: Project, names: Sequence[str], no_deps: bool) -> list[str]:
    """The named services (all enabled ones when none is named) and, unless ``no_deps``,
    everything they depend on."""
    for name in names:
        project.service(name)  # raises for an unknown or disabled service
    chosen = list(names) or list(project.services)
    if no_deps:
        return chosen
    deps = {n: s.dependencies() for n, s in project.services.items()}
    wanted = closure(deps, chosen)
    return [n for n in project.services if n in wanted]


def _replicas(service: Service, options: PlanOptions) -> int:
    if service.name in options.scale:
        n = options.scale[service.name]
        if n < 0:
            raise ComposeError(f"invalid scale for {service.name}: {n}")
        if n > 1 and service.container_name:
            raise ComposeError(
                f'service "{service.name}" has a container_name, so it cannot be scaled to {n}'
            )
        return n
    return service.replicas


def plan_service(
    project: Project, service: Service, found: list[Actual], options: PlanOptions
) -> list[Action]:
    wanted = _replicas(service, options)
    want_hash = L.config_hash(service)
    image_id = options.image_ids.get(service.name, "")
    by_number: dict[int, Actual] = {}
    extra: list[Actual] = []
    for ctr in sorted(found, key=lambda c: (c.number, c.state not in _RUNNING, c.name)):
        if ctr.number >= 1 and ctr.number not in by_number:
            by_number[ctr.number] = ctr
        else:
            extra.append(ctr)
    actions: list[Action] = []
    # keep the lowest numbers; the rest are beyond the scale
    keep = sorted(by_number)[:wanted]
    for number in sorted(by_number):
        if number not in keep:
            extra.append(by_number.pop(number))
    for number in keep:
        ctr = by_number[number]
        reason = _why_recreate(ctr, want_hash, image_id, options)
        if reason and not options.no_recreate:
            actions.append(Action(RECREATE, service.name, number, ctr.name, ctr, reason))
        elif ctr.state in _RUNNING:
            actions.append(Action(LEAVE, service.name, number, ctr.name, ctr, "up to date"))
        else:
            actions.append(Action(START, service.name, number, ctr.name, ctr, ctr.state))
    free = (n for n in range(1, 1_000_000) if n not in by_number)
    for _ in range(wanted - len(keep)):
        number = next(free)
        name = L.container_name(project, service, number)
        actions.append(Action(CREATE, service.name, number, name, None, "missing"))
    for ctr in extra:
        actions.append(Action(REMOVE, service.name, ctr.number, ctr.name, ctr, "beyond scale"))
    return sorted(actions, key=lambda a: (a.kind == REMOVE, a.number))


def _why_recreate(ctr: Actual, want_hash: str, image_id: str, options: PlanOptions) -> str:
    if options.force_recreate:
        return "forced"
    if ctr.labels.get(L.CONFIG_HASH) != want_hash:
        return "configuration changed"
    if image_id and ctr.labels.get(L.IMAGE) and ctr.labels[L.IMAGE] != image_id:
        return "image changed"
    if ctr.state in ("dead", "removing"):
        return ctr.state
    return ""


def plan(project: Project, actual: Sequence[Actual], options: PlanOptions | None = None) -> Plan:
    """What ``up`` must do so that the selected services run as configured.

    Containers of other projects and one-off containers (``run``) are ignored; those of
    services the project no longer has are orphans.
    """
    options = options or PlanOptions()
    if options.force_recreate and options.no_recreate:
        raise ComposeError("--force-recreate and --no-recreate are incompatible")
    for name in options.scale:
        project.service(name)
    chosen = selected_services(project, options.services, options.no_deps)
    mine = [c for c in actual if c.labels.get(L.PROJECT) == project.name and not c.oneoff]
    known = {*project.services, *project.disabled}
    orphans = [c for c in mine if c.service not in known]
    deps = {n: [d for d in project.services[n].dependencies() if d in chosen] for n in chosen}
    actions = {
        name: plan_service(
            project, project.services[name], [c for c in mine if c.service == name], options
        )
        for name in chosen
    }
    order = levels(deps)
    for level in order:
        for name in level:
            _restart_for_dependencies(project.services[name], actions)
    return Plan(order, actions, orphans, options.remove_orphans)


def _restart_for_dependencies(service: Service, actions: dict[str, list[Action]]) -> None:
    """``depends_on: {db: {restart: true}}``: when db's containers are replaced, the
    service's running containers are restarted after it (as docker compose does)."""
    for dep, d in service.depends_on.items():
        replaced = any(a.kind in (RECREATE, RESTART) for a in actions.get(dep, ()))
        if d.restart and replaced:
            actions[service.name] = [
                replace(a, kind=RESTART, reason=f"{dep} was replaced") if a.kind == LEAVE else a
                for a in actions[service.name]
            ]
            return
