"""``moor compose config`` and ``version`` as a user runs them: the normalised project,
stable hashes across processes, listing flags, and one clear error line with exit 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Moor

EXAMPLES = REPO / "examples"


def compose(
    moor: Moor, cwd: Path, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    from tests.conftest import MOOR

    return subprocess.run(
        [MOOR, "compose", *args],
        cwd=cwd,
        input=(input or b"").decode(),
        capture_output=True,
        text=True,
        env=moor.env,
        timeout=60,
        check=False,
    )


def test_config_of_the_seed_fig_file(moor: Moor) -> None:
    r = compose(moor, EXAMPLES / "fig", "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["name"] == "fig"
    assert doc["services"]["web"]["links"] == ["db"]
    assert doc["services"]["web"]["ports"] == [
        {"mode": "ingress", "protocol": "tcp", "published": "8000", "target": 8000}
    ]
    assert doc["services"]["web"]["build"]["context"] == str(EXAMPLES / "fig")
    assert doc["services"]["db"]["image"] == "hagzag/pgsql"
    assert doc["networks"] == {"default": {"name": "fig_default"}}


def test_config_yaml_round_trips_with_the_same_hashes(moor: Moor, tmp_path: Path) -> None:
    d = EXAMPLES / "three-service"
    r = compose(moor, d, "config")
    assert r.returncode == 0, r.stderr
    assert "published: '8080'" in r.stdout and "condition: service_healthy" in r.stdout
    assert 'echo "$$GREETING"' in r.stdout  # a literal $ is escaped again in the output
    hashes = compose(moor, d, "config", "--hash", "*").stdout
    again = compose(moor, d, "config", "--hash", "*").stdout
    assert hashes == again and len(hashes.splitlines()) == 3
    (tmp_path / "out.yaml").write_text(r.stdout)
    copied = compose(moor, tmp_path, "-f", "out.yaml", "config", "--hash", "*").stdout
    assert copied == hashes
    piped = compose(moor, d, "-f", "-", "config", "--hash", "web", input=r.stdout.encode())
    assert piped.stdout == next(line for line in hashes.splitlines(True) if line.startswith("web"))


def test_config_listings(moor: Moor, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a: {image: a}\n  b: {image: 'b:${TAG:-1}', profiles: [extra]}\n"
        "  c: {build: ., depends_on: [a]}\nvolumes:\n  v1: {}\n  v2: {external: true}\n"
    )
    assert compose(moor, tmp_path, "config", "--services").stdout == "a\nc\n"
    assert compose(moor, tmp_path, "--profile", "extra", "config", "--services").stdout == (
        "a\nb\nc\n"
    )
    assert compose(moor, tmp_path, "config", "--volumes").stdout == "v1\nv2\n"
    assert compose(moor, tmp_path, "config", "--profiles").stdout == "extra\n"
    images = compose(moor, tmp_path, "-p", "proj", "--profile", "extra", "config", "--images")
    assert images.stdout == "a\nb:1\nproj-c\n"
    assert compose(moor, tmp_path, "config", "-q").stdout == ""
    only = json.loads(compose(moor, tmp_path, "config", "--format", "json", "c").stdout)
    assert sorted(only["services"]) == ["a", "c"]


def test_env_file_and_project_directory(moor: Moor, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "three-service", tmp_path / "app")
    (tmp_path / "prod.env").write_text("BASE_IMAGE=alpine:3\nWEB_PORT=80\n")
    r = compose(
        moor, tmp_path, "-f", "app/compose.yaml", "--env-file", "prod.env", "config",
        "--format", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["services"]["web"]["image"] == "alpine:3"
    assert doc["services"]["web"]["ports"][0]["published"] == "80"


CONFIG_ERRORS = pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  web:\n    image: x\n    ports: ['80', '99999:80']\n",
         "compose.yaml:4:19: services.web.ports[1]: invalid host port 99999"),
        ("services:\n  web:\n    image: x\n  db: [\n", "compose.yaml:5:1: invalid YAML"),
        ("services:\n  web:\n    image: ${IMG:?say which image}\n",
         "services.web.image: required variable IMG is missing a value: say which image"),
        ("services:\n  web: {image: x, depends_on: [db]}\n",
         'service "web" depends on undefined service "db"'),
        ("services:\n  a: {image: x, links: [b]}\n  b: {image: x, depends_on: [a]}\n",
         "dependency cycle between services: a -> b -> a"),
        ("services:\n  a: {image: x, ports: ['80:80']}\n  b: {image: x, ports: ['80:80']}\n",
         'service "b" publishes host port 80/tcp as "a" does'),
        ("services:\n  web:\n    image: x\n    tty: maybe\n",
         "services.web.tty: expected a boolean, got a string ('maybe')"),
        ("services:\n  web:\n    image: x\n    prots: ['80:80']\n",
         "compose.yaml:4:5: services.web.prots: unknown key 'prots'; did you mean 'ports'?"),
        ("services:\n  web:\n    image: x\n    ports: [{target: http}]\n",
         "services.web.ports[0].target"),
    ],
)  # fmt: skip


@CONFIG_ERRORS
def test_config_errors(moor: Moor, tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    r = compose(moor, tmp_path, "config")
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert expected in lines[0]
    assert r.stdout == ""


@CONFIG_ERRORS
def test_config_errors_refuse_up_before_anything_is_created(
    moor: Moor, bb: str, tmp_path: Path, text: str, expected: str
) -> None:
    volume = "    volumes: ['data:/data']\n"
    text = text.replace("image: x\n", "image: bb:1\n" + volume).replace("image: x", "image: bb:1")
    (tmp_path / "compose.yaml").write_text(text + "volumes:\n  data: {}\n")
    r = compose(moor, tmp_path, "up", "-d")
    assert r.returncode == 1 and r.stderr.count("Error: ") == 1, r.stderr
    assert expected.split(": ", 1)[-1] in r.stderr
    assert moor("ps", "-aq").stdout == "" and moor("volume", "ls", "-q").stdout == ""
    nets = moor("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [n for n in nets if n.endswith("_default")], nets


def test_no_file_and_bad_project_name(moor: Moor, tmp_path: Path) -> None:
    r = compose(moor, tmp_path, "config")
    assert r.returncode == 1 and "no configuration file provided" in r.stderr
    r = compose(moor, tmp_path, "-f", "missing.yaml", "config")
    assert r.returncode == 1
    assert r.stderr == f"Error: open {tmp_path / 'missing.yaml'}: no such file or directory\n"
    (tmp_path / "compose.yaml").write_text("services: {a: {image: x}}\n")
    r = compose(moor, tmp_path, "-p", "Bad!", "config")
    assert r.returncode == 1 and "invalid project name" in r.stderr


def test_version(moor: Moor, tmp_path: Path) -> None:
    from moorage import __version__

    assert compose(moor, tmp_path, "version").stdout == f"moor compose version {__version__}\n"
    assert compose(moor, tmp_path, "version", "--short").stdout == f"{__version__}\n"
    assert json.loads(compose(moor, tmp_path, "version", "-f", "json").stdout) == {
        "version": __version__
    }


PROBE = """
import os, posix, sys
os._exit = posix._exit = lambda code: None  # main() ends with posix._exit
sys.argv = ["moor"] + sys.argv[1:]
from moorage.cli.main import main
try:
    main()
except SystemExit:
    pass
print("LOADED=" + ",".join(m for m in ("yaml", "moorage.compose") if m in sys.modules),
      file=sys.stderr)
"""


def test_other_commands_do_not_import_compose_or_yaml(moor: Moor) -> None:
    for args in (["ps", "-a"], ["images"], ["run", "--help"]):
        p = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            capture_output=True, text=True, env=moor.env, check=False,
        )  # fmt: skip
        line = next(x for x in p.stderr.splitlines() if x.startswith("LOADED="))
        assert line == "LOADED=", (args, line)
