"""Merging canonical compose files key by key (compose-spec merge rules), the fig/v1 layout,
warnings, and the rendering of ``moor compose config``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.compose.canonical import FileContext, canonical_file, is_v1
from moorage.compose.errors import ComposeError
from moorage.compose.loader import ProjectOptions, load_project
from moorage.compose.merge import merge_files
from moorage.compose.render import project_document, to_yaml
from moorage.compose.yamlsrc import load_yaml

CTX = FileContext(Path("/p"))


def svc(text: str) -> dict[str, Any]:
    return canonical_file(load_yaml("services:\n  s:\n" + text, "f"), "f", CTX)


@pytest.mark.parametrize(
    ("base", "override", "key", "result"),
    [
        ("    image: a\n", "    image: b\n", "image", "b"),
        ("    command: [a, b]\n", "    command: c\n", "command", ["c"]),
        ("    entrypoint: [a]\n", "    entrypoint: [b, c]\n", "entrypoint", ["b", "c"]),
        ("    environment: [A=1]\n", "    environment: {B: 2}\n", "environment",
         {"A": "1", "B": "2"}),
        ("    environment: {A: 1}\n", "    environment: [A=2]\n", "environment", {"A": "2"}),
        ("    labels: [a=1]\n", "    labels: [a=2, b=3]\n", "labels", {"a": "2", "b": "3"}),
        ("    dns: 1.1.1.1\n", "    dns: [8.8.8.8, 1.1.1.1]\n", "dns", ["1.1.1.1", "8.8.8.8"]),
        ("    expose: [80]\n", "    expose: ['80', 81]\n", "expose", ["80", "81"]),
        ("    cap_add: [A]\n", "    cap_add: [B]\n", "cap_add", ["A", "B"]),
        ("    ports: ['80:80']\n", "    ports: ['80:80', '81:81']\n", "ports",
         [{"mode": "ingress", "target": 80, "published": "80", "protocol": "tcp"},
          {"mode": "ingress", "target": 81, "published": "81", "protocol": "tcp"}]),
        ("    ports: ['80:80']\n", "    ports: ['80:80/udp']\n", "ports",
         [{"mode": "ingress", "target": 80, "published": "80", "protocol": "tcp"},
          {"mode": "ingress", "target": 80, "published": "80", "protocol": "udp"}]),
        ("    volumes: ['a:/d']\n", "    volumes: ['b:/d:ro']\n", "volumes",
         [{"type": "volume", "source": "b", "target": "/d", "read_only": True}]),
        ("    secrets: [a]\n", "    secrets: [{source: a, target: /x}, a]\n", "secrets",
         [{"source": "a"}, {"source": "a", "target": "/x"}]),
        ("    depends_on: [a]\n", "    depends_on: {a: {condition: service_healthy}}\n",
         "depends_on", {"a": {"condition": "service_healthy", "required": True}}),
        ("    healthcheck: {test: [CMD, a], retries: 2}\n",
         "    healthcheck: {test: [CMD-SHELL, b]}\n", "healthcheck",
         {"test": ["CMD-SHELL", "b"], "retries": 2}),
        ("    build: .\n", "    build: {args: [A=1], target: t}\n", "build",
         {"context": "/p", "dockerfile": "Dockerfile", "args": {"A": "1"}, "target": "t"}),
        ("    deploy: {replicas: 2, resources: {limits: {memory: 1k}}}\n",
         "    deploy: {resources: {limits: {cpus: 1}}}\n", "deploy",
         {"replicas": 2, "resources": {"limits": {"memory": 1024, "cpus": 1.0}}}),
        ("    networks: [a]\n", "    networks: {b: {aliases: [x]}}\n", "networks",
         {"a": None, "b": {"aliases": ["x"]}}),
        ("    ulimits: {nofile: 1}\n", "    ulimits: {nofile: {soft: 1, hard: 2}}\n", "ulimits",
         {"nofile": {"soft": 1, "hard": 2}}),
    ],
)  # fmt: skip
def test_merge_table(base: str, override: str, key: str, result: Any) -> None:
    merged = merge_files([svc(base), svc(override)])
    assert merged["services"]["s"][key] == result


def test_merge_adds_services_and_top_level_entries() -> None:
    a = canonical_file(load_yaml("services: {a: {image: a}}\nvolumes: {v: {}}\n", "a"), "a", CTX)
    b = canonical_file(
        load_yaml("services: {b: {image: b}}\nvolumes: {v: {driver: x}, w: {}}\n", "b"), "b", CTX
    )
    merged = merge_files([a, b])
    assert sorted(merged["services"]) == ["a", "b"]
    assert merged["volumes"] == {"v": {"driver": "x"}, "w": {}}


def test_fig_layout_and_old_keys() -> None:
    text = (
        "web:\n  build: .\n  dockerfile: Dockerfile.dev\n  net: host\n  links: [db]\n"
        "  log_driver: json-file\n  log_opt: {max-size: 1m}\ndb:\n  image: postgres\n"
    )
    doc = canonical_file(load_yaml(text, "fig.yml"), "fig.yml", CTX)
    web = doc["services"]["web"]
    assert web["build"] == {"context": "/p", "dockerfile": "Dockerfile.dev"}
    assert web["network_mode"] == "host"
    assert web["logging"] == {"driver": "json-file", "options": {"max-size": "1m"}}
    assert doc["services"]["db"] == {"image": "postgres"}


@pytest.mark.parametrize(
    ("text", "v1"),
    [
        ("web: {image: x}\n", True),
        ("services: {web: {image: x}}\n", False),
        ("version: '2'\nservices: {}\n", False),
        ("volumes: {v: {}}\n", False),
        ("web: x\n", False),
    ],
)
def test_is_v1(text: str, v1: bool) -> None:
    assert is_v1(load_yaml(text, "f")) is v1


def test_v1_service_errors_use_the_services_path() -> None:
    with pytest.raises(ComposeError, match=r"^f:2:3: services\.web\.imgae: unknown key"):
        canonical_file(load_yaml("web:\n  imgae: x\n", "f"), "f", CTX)


def test_warnings_for_unset_variables_and_version(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "version: '3.8'\nservices:\n  a:\n    image: 'x:${TAG}'\n"
        "    environment:\n      - A=$UNSET_A\n      - B=${WITH_DEFAULT:-d}\n"
    )
    project = load_project(ProjectOptions(cwd=tmp_path, environ={}))
    assert project.warnings == (
        'The "TAG" variable is not set. Defaulting to a blank string.',
        'The "UNSET_A" variable is not set. Defaulting to a blank string.',
        f"{tmp_path / 'compose.yaml'}: the attribute `version` is obsolete, it will be ignored",
    )
    assert project.services["a"].image == "x:"


def test_render_durations_sizes_and_dollars(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "name: r\nservices:\n  a:\n    image: x\n    command: echo $$HOME\n"
        "    stop_grace_period: 90s\n    healthcheck: {test: 'true', interval: 1500ms}\n"
        '    mem_limit: 1k\n    environment: {MULTI: "a\\nb"}\n'
    )
    project = load_project(ProjectOptions(cwd=tmp_path, environ={}))
    doc = project_document(project)
    a = doc["services"]["a"]
    assert a["stop_grace_period"] == "1m30s"
    assert a["healthcheck"] == {"interval": "1.5s", "test": ["CMD-SHELL", "true"]}
    assert a["command"] == ["echo", "$$HOME"] and a["mem_limit"] == 1024
    assert list(doc) == ["name", "services", "networks"]
    text = to_yaml(doc)
    assert "MULTI: |-\n        a\n        b\n" in text
    # the output is a compose file that loads to the same project
    (tmp_path / "compose.yaml").write_text(text)
    again = load_project(ProjectOptions(cwd=tmp_path, environ={}))
    assert again.services["a"].config == project.services["a"].config


def test_every_key_survives_the_config_round_trip(tmp_path: Path) -> None:
    from moorage.compose.labels import config_hash
    from tests.unit.test_compose_loader import FULL

    (tmp_path / "compose.yaml").write_text(FULL)
    first = load_project(ProjectOptions(cwd=tmp_path, environ={}, profiles=["all"]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "compose.yaml").write_text(to_yaml(project_document(first)))
    again = load_project(ProjectOptions(cwd=out, environ={}, profiles=["all"]))
    assert again.name == first.name
    for name, service in first.services.items():
        assert again.services[name] == service
        assert config_hash(again.services[name]) == config_hash(service)
    assert again.networks == first.networks and again.secrets == first.secrets
