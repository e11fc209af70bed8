"""The compose config pipeline end to end on files: discovery, .env, merge, extends,
profiles, project names, the typed model and the project-wide checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.compose.errors import ComposeError
from moorage.compose.loader import (
    ProjectOptions,
    find_files,
    load_project,
    normalize_project_name,
)
from moorage.compose.model import Dependency, Mount, Port, Project

REPO = Path(__file__).resolve().parents[2]


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def load(d: Path, *files: str, env: dict[str, str] | None = None, **kw: Any) -> Project:
    return load_project(
        ProjectOptions(files=[Path(f) for f in files], cwd=d, environ=env or {}, **kw)
    )


def fails(d: Path, text: str, env: dict[str, str] | None = None) -> str:
    write(d, "compose.yaml", text)
    with pytest.raises(ComposeError) as e:
        load(d, env=env)
    return str(e.value)


# ---- discovery and project names -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml", "fig.yml",
     "fig.yaml"],
)  # fmt: skip
def test_default_file_names(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, "services:\n  a:\n    image: x\n")
    assert find_files(tmp_path) == [tmp_path / name]


def test_default_file_order_and_override_and_parents(tmp_path: Path) -> None:
    write(tmp_path, "docker-compose.yml", "services: {a: {image: old}}\n")
    write(tmp_path, "compose.yaml", "services: {a: {image: new}}\n")
    write(tmp_path, "compose.override.yaml", "services: {a: {environment: [X=1]}}\n")
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    assert find_files(sub) == [tmp_path / "compose.yaml", tmp_path / "compose.override.yaml"]
    project = load(sub)
    assert project.services["a"].image == "new"
    assert project.services["a"].environment == {"X": "1"}
    assert project.working_dir == tmp_path


def test_no_file(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no configuration file provided"):
        find_files(tmp_path)


@pytest.mark.parametrize(
    ("dirname", "name"),
    [("My App", "myapp"), ("_x.y-z", "xy-z"), ("Web_2", "web_2"), ("--a", "a")],
)
def test_project_name_from_directory(tmp_path: Path, dirname: str, name: str) -> None:
    d = tmp_path / dirname
    write(d, "compose.yaml", "services: {a: {image: x}}\n")
    assert load(d).name == name
    assert normalize_project_name(dirname) == name


def test_project_name_precedence(tmp_path: Path) -> None:
    write(tmp_path / "dir", "compose.yaml", "name: fromfile\nservices: {a: {image: x}}\n")
    d = tmp_path / "dir"
    assert load(d).name == "fromfile"
    assert load(d, env={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    write(d, ".env", "COMPOSE_PROJECT_NAME=fromdotenv\n")
    assert load(d).name == "fromdotenv"
    assert load(d, env={"COMPOSE_PROJECT_NAME": "fromenv"}, project_name="flag").name == "flag"
    with pytest.raises(ComposeError, match="invalid project name 'Bad Name' \\(from -p\\)"):
        load(d, project_name="Bad Name")


# ---- the seed's fig file and the examples ---------------------------------------------------


def test_seed_fig_file_loads() -> None:
    d = REPO / "examples" / "fig"
    project = load(d, env={})
    assert sorted(project.services) == ["db", "web"]
    web, db = project.services["web"], project.services["db"]
    assert web.build is not None and web.build.context == str(d)
    assert web.build.dockerfile == "Dockerfile"
    assert web.links == ("db",)
    assert web.ports == (Port(target=8000, published="8000"),)
    assert db.image == "hagzag/pgsql"
    assert web.dependencies() == ["db"]
    assert project.networks["default"].name == "fig_default"


def test_three_service_example_loads_with_dotenv() -> None:
    d = REPO / "examples" / "three-service"
    project = load(d, env={})
    assert project.name == "threeservice"
    assert sorted(project.services) == ["db", "web", "worker"]
    web = project.services["web"]
    assert web.image == "busybox:latest"
    assert web.ports == (Port(target=8000, published="8080"),)
    assert web.environment == {"GREETING": "hello from moorage", "DB_HOST": "db"}
    assert web.depends_on == {"db": Dependency(condition="service_healthy")}
    assert web.command == ("httpd", "-f", "-p", "8000", "-h", "/www")
    assert web.stop_grace_period == 5
    db = project.services["db"]
    assert db.volumes == (Mount(type="volume", source="dbdata", target="/data"),)
    assert db.healthcheck is not None
    assert db.healthcheck.test == ("CMD", "test", "-f", "/data/ready")
    assert db.healthcheck.interval == 1 and db.healthcheck.retries == 10
    worker = project.services["worker"]
    assert worker.command is not None and '"$GREETING"' in worker.command[2]
    assert worker.deploy is not None and worker.deploy.limits.memory == 64 << 20
    assert worker.deploy.limits.cpus == 0.5
    assert project.volumes["dbdata"].name == "threeservice_dbdata"
    assert project.volumes["shared"].labels == {"example": "three-service"}
    # the shell's environment wins over .env
    assert load(d, env={"WEB_PORT": "9999"}).services["web"].ports[0].published == "9999"


def test_three_service_needs_its_variable(tmp_path: Path) -> None:
    src = (REPO / "examples" / "three-service" / "compose.yaml").read_text()
    write(tmp_path, "compose.yaml", src)
    with pytest.raises(ComposeError) as e:
        load(tmp_path)
    assert "services.db.image: required variable BASE_IMAGE is missing a value" in str(e.value)
    assert str(e.value).startswith(f"{tmp_path / 'compose.yaml'}:7:")


# ---- .env and --env-file ---------------------------------------------------------------------


def test_env_file_option_replaces_dotenv(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "services: {a: {image: 'x:${TAG}'}}\n")
    write(tmp_path, ".env", "TAG=dot\n")
    write(tmp_path, "one.env", "TAG=one\nOTHER=1\n")
    write(tmp_path, "two.env", "TAG=two-${OTHER}\n")
    assert load(tmp_path).services["a"].image == "x:dot"
    project = load(tmp_path, env_files=[Path("one.env"), Path("two.env")])
    assert project.services["a"].image == "x:two-1"


def test_service_env_file_and_bare_keys(tmp_path: Path) -> None:
    write(tmp_path, "app.env", "A=from-file\nB=from-file\n")
    write(
        tmp_path,
        "compose.yaml",
        "services:\n  a:\n    image: x\n    env_file: app.env\n"
        "    environment: [B=override, FROM_SHELL, NOT_SET]\n",
    )
    project = load(tmp_path, env={"FROM_SHELL": "sh"})
    assert project.services["a"].environment == {"A": "from-file", "B": "override",
                                                 "FROM_SHELL": "sh"}  # fmt: skip
    assert "env_file" not in project.services["a"].config


def test_optional_env_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "compose.yaml",
        "services:\n  a:\n    image: x\n    env_file:\n      - path: missing.env\n"
        "        required: false\n",
    )
    assert load(tmp_path).services["a"].environment == {}
    write(tmp_path, "compose.yaml", "services:\n  a:\n    image: x\n    env_file: missing.env\n")
    with pytest.raises(ComposeError, match=r"missing\.env not found"):
        load(tmp_path)


# ---- merging several files -------------------------------------------------------------------


BASE = """
services:
  web:
    image: web:1
    command: ["run", "base"]
    environment: {A: "1", B: "1"}
    labels: [x=1]
    ports: ["8000:80", "9000:90"]
    expose: ["1"]
    volumes: ["data:/data", "./a:/a"]
    cap_add: [NET_ADMIN]
    healthcheck: {test: ["CMD", "true"], interval: 10s}
    depends_on: [db]
  db:
    image: db:1
volumes:
  data: {}
"""

OVERRIDE = """
services:
  web:
    image: web:2
    command: run override
    environment: [B=2, C=3]
    labels: {y: "2"}
    ports: ["8000:80", "127.0.0.1:7000:70"]
    expose: ["1", "2"]
    volumes: ["other:/data", "./b:/b"]
    cap_add: [SYS_TIME, NET_ADMIN]
    healthcheck: {test: ["CMD", "false"], retries: 3}
    depends_on: {cache: {condition: service_started}}
  cache:
    image: cache:1
volumes:
  other: {}
"""


def test_merge_rules(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", OVERRIDE)
    web = load(tmp_path, "a.yaml", "b.yaml").services["web"]
    assert web.image == "web:2"
    assert web.command == ("run", "override")  # overridden, not appended
    assert web.environment == {"A": "1", "B": "2", "C": "3"}
    assert web.labels == {"x": "1", "y": "2"}
    assert [(p.host_ip, p.published, p.target) for p in web.ports] == [
        ("", "8000", 80),
        ("", "9000", 90),
        ("127.0.0.1", "7000", 70),
    ]
    assert web.expose == ("1", "2")
    assert [(m.source, m.target) for m in web.volumes] == [
        ("other", "/data"),  # same target: the override's mount replaces the base's
        (str(tmp_path / "a"), "/a"),
        (str(tmp_path / "b"), "/b"),
    ]
    assert web.cap_add == ("NET_ADMIN", "SYS_TIME")
    assert web.healthcheck is not None
    assert web.healthcheck.test == ("CMD", "false")
    assert web.healthcheck.interval == 10 and web.healthcheck.retries == 3
    assert list(web.depends_on) == ["db", "cache"]


def test_override_paths_are_relative_to_the_project_directory(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "services: {a: {image: x}}\n")
    write(tmp_path, "sub/extra.yaml", "services: {a: {volumes: ['./data:/data']}}\n")
    project = load(tmp_path, "compose.yaml", "sub/extra.yaml")
    assert project.services["a"].volumes[0].source == str(tmp_path / "data")


# ---- extends ---------------------------------------------------------------------------------


def test_extends_same_file_and_other_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "common/base.yaml",
        "services:\n  base:\n    image: base:1\n    environment: {LEVEL: base, KEEP: k}\n"
        "    volumes: ['./conf:/conf']\n",
    )
    write(
        tmp_path,
        "compose.yaml",
        "services:\n"
        "  mid:\n    extends: {file: common/base.yaml, service: base}\n"
        "    environment: {LEVEL: mid}\n"
        "  top:\n    extends: mid\n    command: go\n",
    )
    project = load(tmp_path)
    top = project.services["top"]
    assert top.image == "base:1"
    assert top.environment == {"LEVEL": "mid", "KEEP": "k"}
    assert top.command == ("go",)
    # a relative path in the other file is relative to that file
    assert top.volumes[0].source == str(tmp_path / "common" / "conf")
    assert "extends" not in top.config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services:\n  a:\n    extends: nope\n", "cannot extend service 'nope'"),
        (
            "services:\n  a:\n    extends: b\n    image: x\n  b:\n    extends: a\n",
            "extends cycle",
        ),
    ],
)
def test_extends_errors(tmp_path: Path, text: str, message: str) -> None:
    assert message in fails(tmp_path, text)


# ---- profiles --------------------------------------------------------------------------------

PROFILES = """
services:
  app: {image: app}
  debug: {image: dbg, profiles: [debug]}
  tools: {image: t, profiles: [tools, debug]}
"""


@pytest.mark.parametrize(
    ("profiles", "env", "enabled"),
    [
        ([], {}, ["app"]),
        (["debug"], {}, ["app", "debug", "tools"]),
        (["tools"], {}, ["app", "tools"]),
        ([], {"COMPOSE_PROFILES": "tools"}, ["app", "tools"]),
        (["tools"], {"COMPOSE_PROFILES": "debug"}, ["app", "tools"]),
        (["*"], {}, ["app", "debug", "tools"]),
        (["x,debug"], {}, ["app", "debug", "tools"]),
    ],
)
def test_profiles(
    tmp_path: Path, profiles: list[str], env: dict[str, str], enabled: list[str]
) -> None:
    write(tmp_path, "compose.yaml", PROFILES)
    project = load(tmp_path, env=env, profiles=profiles)
    assert sorted(project.services) == enabled
    assert sorted(project.disabled) == sorted({"app", "debug", "tools"} - set(enabled))
    assert project.all_profiles() == ["debug", "tools"]


def test_service_named_explicitly_is_enabled(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", PROFILES)
    assert "tools" in load(tmp_path, services=["tools"]).services
    with pytest.raises(ComposeError, match="no such service: nope"):
        load(tmp_path, services=["nope"])


def test_dependency_on_a_disabled_service(tmp_path: Path) -> None:
    text = "services:\n  a: {image: a, depends_on: [b]}\n  b: {image: b, profiles: [x]}\n"
    assert "which no active profile enables" in fails(tmp_path, text)


# ---- the whole typed model ---------------------------------------------------------------------

FULL = """
services:
  full:
    image: img
    build:
      context: ./ctx
      dockerfile: Containerfile
      args: [A=1, B]
      target: prod
      labels: {l: v}
    entrypoint: /bin/sh -c
    command: ["echo", "hi"]
    environment: {N: 1, T: true}
    networks:
      front:
        aliases: [f1, f2]
        ipv4_address: 172.20.0.5
      back:
    links: ["other:alias"]
    external_links: [outside]
    depends_on:
      other: {condition: service_completed_successfully, restart: true}
    healthcheck: {test: curl -f http://localhost, start_period: 1m30s, timeout: 3s}
    restart: on-failure:3
    labels: {a: b}
    container_name: the-full
    hostname: h
    user: "1000:1000"
    working_dir: /srv
    init: true
    tty: true
    stdin_open: "yes"
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    cap_add: [SYS_ADMIN]
    cap_drop: [ALL]
    privileged: false
    read_only: true
    tmpfs: /run
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    mem_limit: 1g
    cpus: 1.5
    pids_limit: 100
    deploy:
      replicas: 1
      resources:
        limits: {cpus: "0.25", memory: 256M, pids: 50}
        reservations: {memory: 64m}
    secrets: [token, {source: cert, target: /run/cert, mode: "0440"}]
    configs: [{source: conf, target: /etc/app.conf}]
    expose: ["9000"]
    profiles: [all]
  other:
    image: other
    network_mode: none
    scale: 2
networks:
  front:
    driver: bridge
    ipam: {config: [{subnet: 172.20.0.0/16}]}
  back:
    external: true
secrets:
  token: {environment: TOKEN}
  cert: {file: ./cert.pem}
configs:
  conf: {file: ./app.conf}
"""


def test_every_key_is_typed(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", FULL)
    project = load(tmp_path, profiles=["all"])
    s = project.services["full"]
    assert s.build is not None
    assert (s.build.context, s.build.dockerfile, s.build.target) == (
        str(tmp_path / "ctx"),
        "Containerfile",
        "prod",
    )
    assert s.build.args == {"A": "1", "B": None} and s.build.labels == {"l": "v"}
    assert s.entrypoint == ("/bin/sh", "-c") and s.command == ("echo", "hi")
    assert s.environment == {"N": "1", "T": "true"}
    assert s.networks["front"].aliases == ("f1", "f2")
    assert s.networks["front"].ipv4_address == "172.20.0.5"
    assert "back" in s.networks
    assert s.links == ("other:alias",) and s.external_links == ("outside",)
    assert s.depends_on["other"] == Dependency("service_completed_successfully", True, True)
    assert s.healthcheck is not None
    assert s.healthcheck.test == ("CMD-SHELL", "curl -f http://localhost")
    assert s.healthcheck.start_period == 90 and s.healthcheck.timeout == 3
    assert s.restart == "on-failure:3"
    assert (s.container_name, s.hostname, s.user, s.working_dir) == (
        "the-full",
        "h",
        "1000:1000",
        "/srv",
    )
    assert s.init and s.tty and s.stdin_open and s.read_only and not s.privileged
    assert s.stop_signal == "SIGINT" and s.stop_grace_period == 90
    assert s.cap_add == ("SYS_ADMIN",) and s.cap_drop == ("ALL",)
    assert s.tmpfs == ("/run",)
    assert s.ulimits == {"nofile": (1024, 2048), "nproc": (512, 512)}
    assert s.mem_limit == 1 << 30 and s.cpus == 1.5 and s.pids_limit == 100
    assert s.deploy is not None
    assert s.deploy.limits.cpus == 0.25 and s.deploy.limits.memory == 256 << 20
    assert s.deploy.limits.pids == 50 and s.deploy.reservations.memory == 64 << 20
    assert [(r.source, r.target, r.mode) for r in s.secrets] == [
        ("token", "", None),
        ("cert", "/run/cert", 0o440),
    ]
    assert s.configs[0].target == "/etc/app.conf"
    assert s.expose == ("9000",) and s.profiles == ("all",)
    other = project.services["other"]
    assert other.network_mode == "none" and other.replicas == 2 and not other.networks
    assert project.networks["front"].name == f"{project.name}_front"
    assert project.networks["front"].ipam == {"config": [{"subnet": "172.20.0.0/16"}]}
    assert project.networks["back"].external and project.networks["back"].name == "back"
    assert project.secrets["cert"].file == str(tmp_path / "cert.pem")
    assert project.secrets["token"].environment == "TOKEN"
    assert "default" not in project.networks


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  web:\n    imgae: x\n", ":3:5: services.web.imgae: unknown key 'imgae'; "
         "did you mean 'image'?"),
        ("services:\n  web:\n    image: x\n    ports: [80, 'x:80']\n",
         ":4:17: services.web.ports[1]: invalid host port 'x'"),
        ("services:\n  web:\n    image: x\n    privileged: sometimes\n",
         ":4:5: services.web.privileged: expected a boolean, got a string ('sometimes')"),
        ("services:\n  web:\n    image: [x]\n",
         ":3:5: services.web.image: expected a string, got a list"),
        ("services:\n  web:\n    image: x\n    restart: sometimes\n",
         "services.web.restart: invalid restart policy: unknown policy 'sometimes'"),
        ("services:\n  web:\n    image: x\n    environment: A=1\n",
         "services.web.environment: expected a mapping or a list of KEY=VALUE strings"),
        ("services:\n  web:\n    image: x\n    depends_on: {db: {condition: ready}}\n",
         "services.web.depends_on.db.condition: invalid condition 'ready'"),
        ("services:\n  web:\n    image: x\n    healthcheck: {test: [RUN, x]}\n",
         "services.web.healthcheck.test: a healthcheck test list starts with NONE, CMD"),
        ("services:\n  web:\n    image: x\n    healthcheck: {test: true}\n",
         "services.web.healthcheck.test: expected a command string or a list"),
        ("services:\n  web:\n    image: x\n    stop_grace_period: soon\n",
         "services.web.stop_grace_period: expected a duration"),
        ("services:\n  web:\n    image: x\n    ulimits: {nofile: {soft: 10, hard: 5}}\n",
         "services.web.ulimits.nofile: the soft limit (10) is above the hard limit (5)"),
        ("services:\n  web:\n    image: x\n    ulimits: {files: 5}\n",
         "services.web.ulimits.files: unknown ulimit 'files'"),
        ("services:\n  web:\n    image: x\n    container_name: 'bad name'\n",
         "services.web.container_name: invalid container name 'bad name'"),
        ("services:\n  'we b':\n    image: x\n", "invalid service name 'we b'"),
        ("services:\n  web:\n    image: x\n    working_dir: rel\n",
         "must be an absolute path"),
        ("services:\n  web:\n    image: x\nnetwork:\n  n: {}\n",
         ":4:1: network: unknown key 'network'; did you mean 'networks'?"),
        ("services: [web]\n", "services: expected a mapping, got a list"),
        ("- a\n", "expected a mapping at the top of the file"),
        ("services:\n  web:\n    image: x\ninclude: [other.yaml]\n", "include is not supported"),
        ("services:\n  web: {build: {context: ., dockerflie: D}}\n",
         "services.web.build.dockerflie: unknown key 'dockerflie'; did you mean 'dockerfile'?"),
        ("services:\n  web:\n    image: x\n    deploy: {replicas: many}\n",
         "services.web.deploy.replicas: expected an integer"),
        ("services:\n  web: {image: x}\nsecrets:\n  s: {}\n",
         "secrets.s: a secret needs exactly one of file, environment"),
        ("services:\n  web: {image: x}\nvolumes:\n  v: {external: true, driver: local}\n",
         "volumes.v: an external volume cannot also set driver"),
        ("services:\n  web:\n    command: x\n", "has neither an image nor a build context"),
    ],
)  # fmt: skip
def test_bad_files_name_path_and_place(tmp_path: Path, text: str, expected: str) -> None:
    message = fails(tmp_path, text)
    assert expected in message
    if expected.startswith(":"):
        assert message.startswith(str(tmp_path / "compose.yaml") + expected.split(" ")[0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  web: {image: x, depends_on: [db]}\n",
         ':2:19: services.web.depends_on: service "web" depends on undefined service "db"'),
        ("services:\n  web: {image: x, links: [db:d]}\n",
         'service "web" links to undefined service "db"'),
        ("services:\n  web: {image: x, network_mode: 'service:vpn'}\n",
         'uses the network of undefined service "vpn"'),
        ("services:\n  web: {image: x, volumes_from: [store]}\n",
         'takes volumes from undefined service "store"'),
        ("services:\n  web: {image: x, networks: [front]}\n",
         'service "web" refers to undefined network front'),
        ("services:\n  web: {image: x, volumes: ['data:/data']}\n",
         'service "web" refers to undefined volume data'),
        ("services:\n  web: {image: x, secrets: [s]}\n",
         'service "web" refers to undefined secret s'),
        ("services:\n  web: {image: x, network_mode: host, networks: [n]}\nnetworks: {n: {}}\n",
         "network_mode and networks cannot be combined"),
        ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n"
         "  c: {image: x, links: [a]}\n",
         "dependency cycle between services: a -> b -> c -> a"),
        ("services:\n  a: {image: x, depends_on: [a]}\n",
         "dependency cycle between services: a -> a"),
        ("services:\n  a: {image: x, ports: ['8080:80']}\n  b: {image: x, ports: ['8080:81']}\n",
         'services.b.ports: service "b" publishes host port 8080/tcp as "a" does'),
        ("services:\n  a: {image: x, ports: ['8080:80', '127.0.0.1:8080:81']}\n",
         'service "a" publishes host port 8080/tcp twice'),
        ("services:\n  a: {image: x, scale: 2, ports: ['8080:80']}\n",
         "has 2 replicas: each needs its own host port"),
        ("services:\n  a: {image: x, scale: 2, deploy: {replicas: 3}}\n",
         "services.a.scale: scale (2) and deploy.replicas (3) disagree"),
        ("services:\n  a: {image: x, container_name: cc}\n  b: {image: x, container_name: cc}\n",
         'services.b.container_name: container name "cc" is already used by service "a"'),
        ("services:\n  a: {image: x, container_name: cc, deploy: {replicas: 3}}\n",
         "has a container_name, so it cannot have 3 replicas"),
    ],
)  # fmt: skip
def test_bad_projects(tmp_path: Path, text: str, expected: str) -> None:
    message = fails(tmp_path, text)
    assert expected in message


def test_ports_that_do_not_clash(tmp_path: Path) -> None:
    write(
        tmp_path,
        "compose.yaml",
        "services:\n"
        "  a: {image: x, ports: ['8080:80', '8080:80/udp', '127.0.0.1:9000:90']}\n"
        "  b: {image: x, ports: ['127.0.0.2:9000:90']}\n"
        "  d: {image: x, ports: ['80'], scale: 3}\n"
        "  c: {image: x, ports: ['7000-7002:80'], scale: 3}\n",
    )
    assert sorted(load(tmp_path).services) == ["a", "b", "c", "d"]


def test_error_in_second_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services: {web: {image: x}}\n")
    write(tmp_path, "b.yaml", "services:\n  web:\n    ports: ['99999:1']\n")
    with pytest.raises(ComposeError) as e:
        load(tmp_path, "a.yaml", "b.yaml")
    assert str(e.value).startswith(f"{tmp_path / 'b.yaml'}:3:")
    assert "services.web.ports[0]" in str(e.value)


def test_compose_file_variable_stdin_and_project_directory(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services: {a: {image: a}}\n")
    write(tmp_path, "b.yaml", "services: {b: {image: b}}\n")
    env = {"COMPOSE_FILE": "a.yaml:b.yaml"}
    assert sorted(load(tmp_path, env=env).services) == ["a", "b"]
    project = load_project(
        ProjectOptions(
            files=[Path("-")],
            cwd=tmp_path,
            environ={},
            project_directory=Path("sub"),
            stdin_text="services:\n  s:\n    image: x\n    volumes: ['./data:/d']\n",
        )
    )
    assert project.working_dir == tmp_path / "sub" and project.name == "sub"
    assert project.services["s"].volumes[0].source == str(tmp_path / "sub" / "data")


def test_empty_file_and_empty_service(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "")
    assert load(tmp_path).services == {}
    assert "neither an image nor a build" in fails(tmp_path, "services:\n  a:\n")


# ---- develop.watch ---------------------------------------------------------------------------


def test_develop_watch_rules(tmp_path: Path) -> None:
    from moorage.compose.labels import config_hash
    from moorage.compose.model import WatchRule

    write(
        tmp_path,
        "compose.yaml",
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n"
        "        - {path: ./src, action: sync, target: /app, ignore: ['*.tmp', node_modules/]}\n"
        "        - {path: requirements.txt, action: rebuild}\n"
        "        - {path: conf, action: sync+restart, target: /etc/app, initial_sync: true}\n",
    )
    web = load(tmp_path).services["web"]
    assert web.watch == (
        WatchRule(str(tmp_path / "src"), "sync", "/app", ("*.tmp", "node_modules/")),
        WatchRule(str(tmp_path / "requirements.txt"), "rebuild"),
        WatchRule(str(tmp_path / "conf"), "sync+restart", "/etc/app", initial_sync=True),
    )
    # watch rules make no container: changing them recreates nothing
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: x\n")
    assert config_hash(load(tmp_path).services["web"]) == config_hash(web)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{path: src, action: copy, target: /app}",
         "services.web.develop.watch[0].action: invalid watch action 'copy': expected one of "
         "sync, rebuild, sync+restart, restart"),
        ("{path: src, action: sync}",
         "services.web.develop.watch[0]: a sync rule needs a target"),
        ("{action: rebuild}", "services.web.develop.watch[0]: a watch rule needs a path"),
        ("{path: src, action: sync, target: app}",
         "services.web.develop.watch[0].target: target 'app' must be absolute"),
        ("{path: src, action: sync, target: /app, ignores: [x]}",
         "services.web.develop.watch[0].ignores: unknown key 'ignores'; did you mean 'ignore'?"),
    ],
)  # fmt: skip
def test_develop_watch_errors(tmp_path: Path, rule: str, expected: str) -> None:
    text = f"services:\n  web:\n    image: x\n    develop:\n      watch:\n        - {rule}\n"
    assert expected in fails(tmp_path, text)
