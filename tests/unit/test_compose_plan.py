"""Compose labels, the config hash, dependency levels, the convergence planner and the
translation of a service to a ContainerSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.compose import labels as L
from moorage.compose.errors import ComposeError
from moorage.compose.graph import closure, dependents, find_cycle, levels
from moorage.compose.loader import ProjectOptions, load_project
from moorage.compose.model import Project
from moorage.compose.plan import (
    CREATE,
    LEAVE,
    RECREATE,
    REMOVE,
    START,
    Actual,
    PlanOptions,
    plan,
)
from moorage.compose.translate import command_fields, container_spec, service_networks
from moorage.engine.containers.parse import RLIM_INFINITY

APP = """
name: app
services:
  db:
    image: db:1
    network_mode: none
    healthcheck: {test: ["CMD", "true"]}
  cache:
    image: cache:1
    network_mode: none
  web:
    image: web:1
    network_mode: none
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started, restart: true}
  worker:
    image: web:1
    network_mode: none
    links: [db]
    scale: 2
  tool:
    image: t
    network_mode: none
    profiles: [tools]
"""


def project_from(tmp_path: Path, text: str = APP, **env: str) -> Project:
    (tmp_path / "compose.yaml").write_text(text)
    return load_project(ProjectOptions(cwd=tmp_path, environ=env))


@pytest.fixture
def app(tmp_path: Path) -> Project:
    return project_from(tmp_path)


# ---- graph -----------------------------------------------------------------------------


def test_levels_and_closure() -> None:
    deps = {"web": ["db", "cache"], "db": [], "cache": [], "worker": ["db"], "lb": ["web"]}
    assert levels(deps) == [["cache", "db"], ["web", "worker"], ["lb"]]
    assert closure(deps, ["lb"]) == {"lb", "web", "db", "cache"}
    assert dependents(deps, ["db"]) == {"db", "web", "worker", "lb"}
    assert find_cycle(deps) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]
    with pytest.raises(ComposeError, match="a -> a"):
        levels({"a": ["a"]})


def test_levels_ignore_services_outside_the_selection() -> None:
    assert levels({"web": ["db"]}) == [["web"]]


# ---- labels and the config hash -----------------------------------------------------------


def test_labels(app: Project) -> None:
    web = app.services["web"]
    labels = L.container_labels(app, web, 1)
    assert labels[L.PROJECT] == "app"
    assert labels[L.SERVICE] == "web"
    assert labels[L.NUMBER] == "1"
    assert labels[L.ONEOFF] == "False"
    assert labels[L.CONFIG_HASH] == L.config_hash(web)
    assert labels[L.WORKING_DIR] == str(app.working_dir)
    assert labels[L.CONFIG_FILES] == str(app.working_dir / "compose.yaml")
    assert labels[L.DEPENDS_ON] == "db:service_healthy:false,cache:service_started:true"
    assert L.VERSION in labels
    assert L.container_labels(app, web, 2, oneoff=True)[L.ONEOFF] == "True"
    assert L.container_name(app, web, 3) == "app-web-3"


def test_service_labels_cannot_override_compose_labels(tmp_path: Path) -> None:
    p = project_from(
        tmp_path,
        "services:\n  a:\n    image: x\n    labels: {com.docker.compose.project: evil, own: yes}\n",
    )
    labels = L.container_labels(p, p.services["a"], 1)
    assert labels[L.PROJECT] == p.name and labels["own"] == "yes"


def test_hash_is_stable_and_known(tmp_path: Path) -> None:
    text = "services:\n  a:\n    image: x\n    environment: {B: '2', A: '1'}\n"
    h1 = L.config_hash(project_from(tmp_path, text).services["a"])
    # the same configuration written differently hashes the same
    same = "services:\n  a:\n    environment: [A=1, B=2]\n    image: x\n"
    assert L.config_hash(project_from(tmp_path, same).services["a"]) == h1
    # a fixed value: the hash must not depend on the run, the process or the machine
    assert h1 == L.config_hash(project_from(tmp_path, text).services["a"])
    assert len(h1) == 64 and int(h1, 16) >= 0


@pytest.mark.parametrize(
    ("change", "changes_hash"),
    [
        ("    image: y\n", True),
        ("    environment: {A: '9', B: '2'}\n", True),
        ("    command: run\n", True),
        ("    scale: 3\n", False),
        ("    deploy: {replicas: 3}\n", False),
        ("    profiles: [p]\n", False),
        ("    depends_on: [b]\n", False),
        ("    build: .\n", False),
        ("    pull_policy: always\n", False),
        ("    x-note: anything\n", False),
        ("    deploy: {resources: {limits: {memory: 64m}}}\n", True),
    ],
)
def test_what_changes_the_hash(tmp_path: Path, change: str, changes_hash: bool) -> None:
    base = "services:\n  b: {image: b}\n  a:\n    image: x\n    environment: {A: '1', B: '2'}\n"
    before = L.config_hash(project_from(tmp_path, base).services["a"])
    lines = base.splitlines(keepends=True)
    key = change.split(":")[0]
    kept = [ln for ln in lines if not ln.startswith(key + ":")]
    after_text = "".join(kept) + change
    p = project_from(tmp_path, after_text, COMPOSE_PROFILES="p")
    assert (L.config_hash(p.services["a"]) != before) is changes_hash


def test_hash_follows_the_environment(tmp_path: Path) -> None:
    text = "services:\n  a:\n    image: x\n    environment: [TOKEN]\n"
    h1 = L.config_hash(project_from(tmp_path, text, TOKEN="1").services["a"])
    h2 = L.config_hash(project_from(tmp_path, text, TOKEN="2").services["a"])
    assert h1 != h2


# ---- the planner ---------------------------------------------------------------------------


def actual(p: Project, service: str, number: int, state: str = "running", **labels: str) -> Actual:
    svc = p.services.get(service) or p.disabled.get(service)
    base = (
        L.container_labels(p, svc, number)
        if svc
        else {L.PROJECT: p.name, L.SERVICE: service, L.NUMBER: str(number), L.ONEOFF: "False"}
    )
    return Actual(f"id-{service}-{number}", f"{p.name}-{service}-{number}", {**base, **labels},
                  state)  # fmt: skip


def kinds(result: object) -> dict[str, list[tuple[str, int]]]:
    from moorage.compose.plan import Plan

    assert isinstance(result, Plan)
    return {s: [(a.kind, a.number) for a in acts] for s, acts in result.actions.items()}


def test_fresh_project_creates_everything_in_dependency_order(app: Project) -> None:
    result = plan(app, [])
    assert result.levels == [["cache", "db"], ["web", "worker"]]
    assert kinds(result) == {
        "db": [(CREATE, 1)],
        "cache": [(CREATE, 1)],
        "web": [(CREATE, 1)],
        "worker": [(CREATE, 1), (CREATE, 2)],
    }
    assert [a.name for a in result.actions["worker"]] == ["app-worker-1", "app-worker-2"]
    assert "tool" not in result.actions


def test_unchanged_project_changes_nothing(app: Project) -> None:
    running = [actual(app, s, n) for s in ("db", "cache", "web") for n in (1,)]
    running += [actual(app, "worker", 1), actual(app, "worker", 2)]
    result = plan(app, running)
    assert result.changes() == []
    assert all(a.kind == LEAVE for a in result.all())


def test_changed_stopped_and_forced(app: Project) -> None:
    found = [
        actual(app, "db", 1, **{L.CONFIG_HASH: "old"}),
        actual(app, "cache", 1, state="exited"),
        actual(app, "web", 1, state="created"),
        actual(app, "worker", 1),
        actual(app, "worker", 2, state="dead"),
    ]
    assert kinds(plan(app, found)) == {
        "db": [(RECREATE, 1)],
        "cache": [(START, 1)],
        "web": [(START, 1)],
        "worker": [(LEAVE, 1), (RECREATE, 2)],
    }
    forced = kinds(plan(app, found, PlanOptions(force_recreate=True)))
    assert all(k == RECREATE for acts in forced.values() for k, _ in acts)
    kept = kinds(plan(app, found, PlanOptions(no_recreate=True)))
    assert kept["db"] == [(LEAVE, 1)] and kept["worker"] == [(LEAVE, 1), (START, 2)]
    with pytest.raises(ComposeError, match="incompatible"):
        plan(app, found, PlanOptions(force_recreate=True, no_recreate=True))


def test_image_change_recreates(app: Project) -> None:
    found = [actual(app, "db", 1, **{L.IMAGE: "sha256:old"})]
    result = plan(app, found, PlanOptions(services=["db"], image_ids={"db": "sha256:new"}))
    assert kinds(result) == {"db": [(RECREATE, 1)]}
    assert result.actions["db"][0].reason == "image changed"


def test_scale_up_down_and_gaps(app: Project) -> None:
    found = [actual(app, "worker", 1), actual(app, "worker", 3), actual(app, "worker", 4)]
    up = plan(app, found, PlanOptions(services=["worker"], no_deps=True, scale={"worker": 4}))
    assert kinds(up) == {"worker": [(LEAVE, 1), (CREATE, 2), (LEAVE, 3), (LEAVE, 4)]}
    down = plan(app, found, PlanOptions(services=["worker"], no_deps=True, scale={"worker": 1}))
    assert kinds(down) == {"worker": [(LEAVE, 1), (REMOVE, 3), (REMOVE, 4)]}
    zero = plan(app, found, PlanOptions(services=["worker"], no_deps=True, scale={"worker": 0}))
    assert {k for k, _ in kinds(zero)["worker"]} == {REMOVE}


def test_duplicate_numbers_keep_the_running_one(app: Project) -> None:
    a = actual(app, "db", 1, state="exited")
    b = Actual("other", "db-copy", a.labels, "running")
    result = plan(app, [a, b], PlanOptions(services=["db"]))
    assert [(x.kind, x.name) for x in result.actions["db"]] == [
        (LEAVE, "db-copy"),
        (REMOVE, "app-db-1"),
    ]


def test_selection_and_no_deps(app: Project) -> None:
    assert set(plan(app, [], PlanOptions(services=["web"])).actions) == {"web", "db", "cache"}
    only = plan(app, [], PlanOptions(services=["web"], no_deps=True))
    assert set(only.actions) == {"web"} and only.levels == [["web"]]
    with pytest.raises(ComposeError, match='"tool" is not enabled by the active profiles'):
        plan(app, [], PlanOptions(services=["tool"]))
    with pytest.raises(ComposeError, match="no such service: nope"):
        plan(app, [], PlanOptions(services=["nope"]))
    with pytest.raises(ComposeError, match="no such service"):
        plan(app, [], PlanOptions(scale={"nope": 2}))


def test_orphans_other_projects_and_oneoffs(app: Project) -> None:
    orphan = actual(app, "gone", 1)
    other_project = Actual(
        "x", "x", {L.PROJECT: "other", L.SERVICE: "db", L.NUMBER: "1"}, "running"
    )
    oneoff = actual(app, "db", 1, **{L.ONEOFF: "True"})
    disabled = actual(app, "tool", 1)
    result = plan(app, [orphan, other_project, oneoff, disabled], PlanOptions(services=["db"]))
    assert result.orphans == [orphan]
    assert kinds(result) == {"db": [(CREATE, 1)]}
    assert plan(app, [orphan], PlanOptions(remove_orphans=True)).remove_orphans


def test_scaling_a_named_container_fails(tmp_path: Path) -> None:
    p = project_from(tmp_path, "services:\n  a: {image: x, container_name: fixed}\n")
    with pytest.raises(ComposeError, match="cannot be scaled to 2"):
        plan(p, [], PlanOptions(scale={"a": 2}))
    assert plan(p, []).actions["a"][0].name == "fixed"


# ---- translation to ContainerSpec ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entrypoint", "command", "fields"),
    [
        (None, None, {"entrypoint": None, "args": ()}),
        (None, "echo hi", {"entrypoint": None, "args": ("echo", "hi")}),
        ("/bin/sh -c", "echo hi", {"entrypoint": "/bin/sh", "args": ("-c", "echo", "hi")}),
        ("[]", "x", {"entrypoint": "", "args": ("x",)}),
        ("[tini, --]", None, {"entrypoint": "tini", "args": ("--",)}),
    ],
)
def test_command_fields(
    tmp_path: Path, entrypoint: str | None, command: str | None, fields: dict[str, object]
) -> None:
    text = "services:\n  a:\n    image: x\n"
    if entrypoint is not None:
        text += f"    entrypoint: {entrypoint}\n"
    if command is not None:
        text += f"    command: {command}\n"
    assert command_fields(project_from(tmp_path, text).services["a"]) == fields


SPEC = """
name: p
services:
  a:
    image: img:1
    network_mode: host
    command: ["run", "it"]
    environment: {A: "1", UNSET: null}
    working_dir: /w
    user: "1:2"
    hostname: h
    labels: {mine: "1"}
    tty: true
    stdin_open: true
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    read_only: true
    tmpfs: ["/run:size=1m"]
    volumes: [{type: tmpfs, target: /cache, tmpfs: {size: 2k, mode: 0o700}}]
    init: true
    deploy: {resources: {limits: {memory: 64m, cpus: "0.5", pids: 30}}}
    ulimits: {nofile: {soft: 10, hard: 20}, core: -1}
    sysctls: {kernel.msgmax: "65536"}
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    restart: always
    shm_size: 128m
    ports: ["8080:80"]
"""


def test_container_spec(tmp_path: Path) -> None:
    p = project_from(tmp_path, SPEC)
    spec = container_spec(p, p.services["a"], 2, image_id="sha256:abc")
    spec.validate()
    assert spec.image == "img:1" and spec.name == "p-a-2"
    assert spec.args == ("run", "it") and spec.entrypoint is None
    assert spec.env == ("A=1",)
    assert (spec.workdir, spec.user, spec.hostname) == ("/w", "1:2", "h")
    assert spec.labels["mine"] == "1" and spec.labels[L.NUMBER] == "2"
    assert spec.labels[L.IMAGE] == "sha256:abc"
    assert spec.tty and spec.open_stdin and spec.read_only and spec.init
    assert spec.cap_add == ("NET_ADMIN",) and spec.cap_drop == ("MKNOD",)
    assert spec.tmpfs == {"/run": "size=1m", "/cache": "size=2048,mode=700"}
    assert spec.resources.memory == 64 << 20
    assert spec.resources.nano_cpus == 500_000_000 and spec.resources.pids_limit == 30
    assert spec.ulimits == (
        ("RLIMIT_CORE", RLIM_INFINITY, RLIM_INFINITY),
        ("RLIMIT_NOFILE", 10, 20),
    )
    assert spec.sysctls == {"kernel.msgmax": "65536"}
    assert spec.stop_signal == "SIGINT" and spec.stop_timeout == 90
    assert spec.restart == "always" and spec.shm_size == 128 << 20
    assert spec.network_mode == "host"


def test_build_only_service_image_name(tmp_path: Path) -> None:
    p = project_from(tmp_path, "name: p\nservices:\n  web: {build: ., network_mode: none}\n")
    assert container_spec(p, p.services["web"], 1).image == "p-web"


def test_networks_ports_links_and_volumes_become_spec_fields(tmp_path: Path) -> None:
    (tmp_path / "html").mkdir()
    p = project_from(
        tmp_path,
        "name: p\n"
        "services:\n"
        "  db: {image: x, volumes: ['store:/data', '/scratch'], networks: [back]}\n"
        "  web:\n"
        "    image: x\n"
        "    links: ['db', 'db:database']\n"
        "    ports: ['127.0.0.1:8080:80', '53/udp', '9000']\n"
        "    expose: ['7000']\n"
        "    volumes: ['./html:/www:ro']\n"
        "    volumes_from: ['db:ro']\n"
        "    networks:\n"
        "      front: {aliases: [site], ipv4_address: 10.77.0.9}\n"
        "      back: {}\n"
        "  side: {image: x, network_mode: 'service:web'}\n"
        "networks: {front: {}, back: {}}\n"
        "volumes: {store: {}}\n",
    )
    db = container_spec(p, p.services["db"], 1)
    assert db.network_mode == "p_back" and db.network_aliases == ("db",)
    assert db.mounts == ("type=volume,source=p_store,target=/data", "type=volume,target=/scratch")
    web = container_spec(p, p.services["web"], 1)
    assert (web.network_mode, web.network_aliases, web.ip) == ("p_back", ("web",), "")
    assert [n for n, _ in service_networks(p, p.services["web"])] == ["p_back", "p_front"]
    assert web.publish == ("127.0.0.1:8080:80", "53/udp", "9000")
    assert web.expose == ("7000",)
    assert web.links == ("p-db-1:db", "p-db-1:database")
    assert web.mounts == (f"type=bind,source={tmp_path / 'html'},target=/www,readonly",)
    assert web.volumes_from == ("p-db-1:ro",)
    assert container_spec(p, p.services["side"], 1).network_mode == "container:p-web-1"


def test_restart_true_dependents_follow_a_replaced_dependency(app: Project) -> None:
    from moorage.compose.plan import RESTART

    base = [actual(app, s, 1) for s in ("db", "cache", "web")]
    stale_cache = [actual(app, "cache", 1, **{L.CONFIG_HASH: "old"})]
    stale_db = [actual(app, "db", 1, **{L.CONFIG_HASH: "old"})]
    others = [c for c in base if c.service not in ("cache",)]
    result = kinds(plan(app, stale_cache + others, PlanOptions(services=["web"])))
    assert result["cache"] == [(RECREATE, 1)] and result["web"] == [(RESTART, 1)]
    others = [c for c in base if c.service not in ("db",)]
    result = kinds(plan(app, stale_db + others, PlanOptions(services=["web"])))
    assert result["db"] == [(RECREATE, 1)] and result["web"] == [(LEAVE, 1)]
    # a container of web that is itself out of date is recreated, not merely restarted
    changed_web = [actual(app, "web", 1, **{L.CONFIG_HASH: "old"})]
    both = [*stale_cache, actual(app, "db", 1), *changed_web]
    assert kinds(plan(app, both, PlanOptions(services=["web"])))["web"] == [(RECREATE, 1)]
