"""docker-compose 1.29 (Debian's ``docker-compose``) against ``moor system service``: the
seed's example project up, ps, logs, a request through the published port to ``db``, down.

The images are built with ``moor build`` beforehand and named in the compose files (the
images build endpoint of the API is not used here); the rest is the seed's fig.yml: ``web``
linked to ``db`` and published on 127.0.0.1:${WEB_PORT} (compose 1.29 refuses the seed's
``${WEB_PORT:-8000}`` in a version 1 file: defaults came with the version 2 format).
``db`` says a word on stdout first (the seed's httpd logs nothing) so that ``logs`` has
something to show. A second variant in the version 2 format runs the same on the project's
own network with a named volume."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.apiservice import Service
from tests.e2e.nethelp import free_port as _free_port
from tests.e2e.nethelp import http_get

COMPOSE = shutil.which("docker-compose") or ""
pytestmark = pytest.mark.skipif(not COMPOSE, reason="docker-compose is not installed")

DB_COMMAND = "sh -c 'echo db ready; exec httpd -f -v -p 80 -h /www'"
FIG_V1 = f"""\
web:
  image: seed_web
  links:
    - db
  ports:
    - "127.0.0.1:${{WEB_PORT}}:8000"
db:
  image: seed_db
  command: {DB_COMMAND}
"""
FIG_V2 = f"""\
version: "2.4"
services:
  web:
    image: seed_web
    depends_on: [db]
    ports:
      - "127.0.0.1:${{WEB_PORT:-8000}}:8000"
  db:
    image: seed_db
    command: {DB_COMMAND}
    volumes:
      - data:/data
volumes:
  data: {{}}
"""


def _get(url: str, timeout: float = 15) -> str:
    return http_get(url, timeout, per_try=5, pause=0.2).decode()


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_compose_up_ps_logs_down(api: Service, bb: str, tmp_path: Path, variant: str) -> None:
    api.moor("tag", "bb:1", "busybox")
    for name in ("db", "web"):
        api.moor("build", "-q", "-t", f"seed_{name}", str(REPO / "examples" / "seed" / name))
    project = tmp_path / "seed"
    project.mkdir()
    (project / "docker-compose.yml").write_text(FIG_V1 if variant == "v1" else FIG_V2)
    port = _free_port()
    env = {**api.docker_env, "WEB_PORT": str(port)}

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([COMPOSE, "-p", "seed", *args], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        if check and p.returncode != 0:
            raise AssertionError(f"docker-compose {args} exited {p.returncode}: {p.stderr}")
        return p

    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        rows = {line.split()[0]: line for line in ps.splitlines()[2:]}
        assert set(rows) == {"seed_web_1", "seed_db_1"}, ps
        assert " Up " in rows["seed_db_1"] and " Up " in rows["seed_web_1"]
        assert f"127.0.0.1:{port}->8000/tcp" in rows["seed_web_1"]
        assert compose("ps", "-q").stdout.split() == [
            api.moor("inspect", "-f", "{{.Id}}", n).stdout.strip()
            for n in sorted(rows, key=lambda n: ps.index(n))
        ]
        # web asks db (by its link or network name) on each request: db counts in /data
        first = _get(f"http://127.0.0.1:{port}/cgi-bin/index")
        assert "this page was seen 1 times." in first, first
        assert "this page was seen 2 times." in _get(f"http://127.0.0.1:{port}/cgi-bin/index")
        logs = compose("logs", "--no-color", "db").stdout
        assert "db ready" in logs and "seed_db_1" in logs, logs
        if variant == "v2":
            nets = api.moor("network", "ls", "--format", "{{.Name}}").stdout.split()
            assert "seed_default" in nets
            assert "seed_data" in api.moor("volume", "ls", "-q").stdout.split()
        compose("down", "-v")
    finally:
        compose("down", "-v", check=False)
    assert api.moor("ps", "-aq").stdout == ""
    assert api.moor("volume", "ls", "-q").stdout == ""
    assert api.moor("network", "ls", "--format", "{{.Name}}").stdout.split() == [
        "host", "moor", "none"]  # fmt: skip
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/index", timeout=2)
