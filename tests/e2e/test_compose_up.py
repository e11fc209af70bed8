"""``moor compose up -d/ps/logs/stop/start/rm/down`` on real containers (busybox, no network):
labels, an unchanged project left alone, recreate on change only, scale, orphans, and
refusals before anything is created."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import MOOR, Moor

PROJECT = """
services:
  db:
    image: bb:1
    network_mode: none
    command: sh -c 'echo db ready; exec sleep 1000'
    stop_grace_period: 1s
  init:
    image: bb:1
    network_mode: none
    command: echo initialised
  web:
    image: bb:1
    network_mode: none
    command: ["sh", "-c", "echo web says $$GREETING; exec sleep 1000"]
    environment:
      GREETING: ${GREETING:-hello}
    labels: {tier: front}
    depends_on:
      db: {condition: service_started}
      init: {condition: service_completed_successfully}
    scale: 2
    stop_signal: SIGKILL
"""


def compose(
    moor: Moor, d: Path, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [MOOR, "compose", "-p", "demo", *args],
        cwd=d, capture_output=True, text=True, env={**moor.env, **env}, timeout=120,
        check=False,
    )  # fmt: skip
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def containers(moor: Moor) -> dict[str, dict[str, object]]:
    ids = moor("ps", "-aq", "--no-trunc").stdout.split()
    if not ids:
        return {}
    docs = json.loads(moor("inspect", *ids).stdout)
    return {d["Name"].lstrip("/"): d for d in docs}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "compose.yaml").write_text(PROJECT)
    return tmp_path


def test_up_converges_and_down_cleans(moor: Moor, bb: str, project: Path) -> None:
    r = compose(moor, project, "up", "-d")
    assert "Container demo-web-2  Started" in r.stderr
    found = containers(moor)
    assert sorted(found) == ["demo-db-1", "demo-init-1", "demo-web-1", "demo-web-2"]
    labels = found["demo-web-2"]["Config"]["Labels"]  # type: ignore[index]
    assert labels["com.docker.compose.project"] == "demo"
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "2"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert labels["com.docker.compose.project.working_dir"] == str(project)
    assert labels["tier"] == "front"
    hashes = compose(moor, project, "config", "--hash", "web").stdout.split()
    assert labels["com.docker.compose.config-hash"] == hashes[1]
    ids = {name: doc["Id"] for name, doc in found.items()}

    # the same file again: nothing is recreated
    r = compose(moor, project, "up", "-d")
    assert "Container demo-web-1  Running" in r.stderr and "Recreate" not in r.stderr
    assert {n: d["Id"] for n, d in containers(moor).items()} == ids

    # a changed variable changes web's effective config: web alone is recreated
    r = compose(moor, project, "up", "-d", GREETING="bonjour")
    assert "Container demo-web-1  Recreated" in r.stderr and "demo-db-1  Recreate" not in r.stderr
    after = {n: d["Id"] for n, d in containers(moor).items()}
    assert after["demo-db-1"] == ids["demo-db-1"] and after["demo-web-1"] != ids["demo-web-1"]

    deadline = time.monotonic() + 10
    while "web says bonjour" not in compose(moor, project, "logs", "web").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    logs = compose(moor, project, "logs").stdout
    assert "demo-db-1    | db ready" in logs and "demo-init-1  | initialised" in logs
    # every up starts the exited one-shot container again (as docker compose v2 does)
    init_logs = compose(moor, project, "logs", "--no-log-prefix", "init").stdout
    assert init_logs == "initialised\n" * 3

    ps = compose(moor, project, "ps").stdout.splitlines()
    assert ps[0].split()[:4] == ["NAME", "IMAGE", "COMMAND", "SERVICE"]
    assert [line.split()[0] for line in ps[1:]] == ["demo-db-1", "demo-web-1", "demo-web-2"]
    assert compose(moor, project, "ps", "-a", "--services").stdout == "db\ninit\nweb\n"
    rows = [
        json.loads(x)
        for x in compose(moor, project, "ps", "--format", "json").stdout.split("\n")
        if x
    ]
    assert {r["Service"] for r in rows} == {"db", "web"} and rows[0]["Project"] == "demo"
    assert len(compose(moor, project, "ps", "-q").stdout.split()) == 3

    # scale down, then up again
    r = compose(moor, project, "up", "-d", "--scale", "web=1")
    assert "demo-web-2  Removed" in r.stderr
    assert "demo-web-2" not in containers(moor)

    compose(moor, project, "stop", "-t", "1")
    assert all(not d["State"]["Running"] for d in containers(moor).values())  # type: ignore[index]
    compose(moor, project, "start")
    assert containers(moor)["demo-db-1"]["State"]["Running"]  # type: ignore[index]

    r = compose(moor, project, "down", "-t", "1")
    assert "Container demo-db-1  Removed" in r.stderr
    assert containers(moor) == {}


def test_orphans_and_rm(moor: Moor, bb: str, project: Path) -> None:
    compose(moor, project, "up", "-d", "db", "init")
    assert sorted(containers(moor)) == ["demo-db-1", "demo-init-1"]
    (project / "compose.yaml").write_text(
        "services:\n  db: {image: bb:1, network_mode: none, command: sleep 1000}\n"
    )
    r = compose(moor, project, "up", "-d")
    assert "Found orphan containers (demo-init-1)" in r.stderr
    assert "demo-init-1" in containers(moor)
    r = compose(moor, project, "up", "-d", "--remove-orphans")
    assert "demo-init-1  Removed" in r.stderr and "demo-init-1" not in containers(moor)
    compose(moor, project, "stop", "-t", "0")
    r = compose(moor, project, "rm", "-f")
    assert "demo-db-1  Removed" in r.stderr and containers(moor) == {}


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("{image: nope:1, network_mode: none}", "no such image: nope:1"),
        ("{image: bb:1, network_mode: none, volumes: ['x:/data:zz']}", "x:/data:zz"),
        ("{image: bb:1, ports: ['99999:80']}", "99999"),
    ],
)
def test_refused_before_anything_is_created(
    moor: Moor, bb: str, tmp_path: Path, service: str, message: str
) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  ok: {{image: bb:1, network_mode: none, command: sleep 100}}\n"
        f"  bad: {service}\n"
    )
    r = compose(moor, tmp_path, "up", "-d", check=False)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr and r.stderr.count("Error:") == 1
    assert containers(moor) == {}


def test_attached_up_ls_pause_kill_restart(moor: Moor, bb: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  a: {image: bb:1, network_mode: none, command: sh -c 'echo a1; sleep 1; echo a2'}\n"
        "  b: {image: bb:1, network_mode: none, command: echo b}\n"
    )
    r = compose(moor, tmp_path, "up")  # attached: returns when every container has stopped
    lines = r.stdout.splitlines()
    assert lines.index("demo-a-1  | a1") < lines.index("demo-a-1  | a2")
    assert "demo-b-1  | b" in lines
    assert compose(moor, tmp_path, "ls").stdout.splitlines()[1:] == []
    listed = compose(moor, tmp_path, "ls", "-a").stdout.splitlines()
    assert listed[1].split()[:2] == ["demo", "exited(2)"]
    assert listed[1].split()[2] == str(tmp_path / "compose.yaml")

    (tmp_path / "compose.yaml").write_text(
        "services:\n  a: {image: bb:1, network_mode: none, command: sleep 1000}\n"
    )
    compose(moor, tmp_path, "up", "-d", "--remove-orphans")
    assert compose(moor, tmp_path, "ls", "-q").stdout == "demo\n"
    compose(moor, tmp_path, "pause")
    assert containers(moor)["demo-a-1"]["State"]["Paused"]  # type: ignore[index]
    compose(moor, tmp_path, "unpause")
    assert not containers(moor)["demo-a-1"]["State"]["Paused"]  # type: ignore[index]
    before = containers(moor)["demo-a-1"]["State"]["StartedAt"]  # type: ignore[index]
    compose(moor, tmp_path, "restart", "-t", "0")
    after = containers(moor)["demo-a-1"]["State"]  # type: ignore[index]
    assert after["Running"] and after["StartedAt"] != before
    compose(moor, tmp_path, "kill")
    assert containers(moor)["demo-a-1"]["State"]["ExitCode"] == 137  # type: ignore[index]
    compose(moor, tmp_path, "down")
    assert containers(moor) == {}


def test_failure_halfway_is_finished_by_the_next_up(moor: Moor, bb: str, tmp_path: Path) -> None:
    services = "".join(
        f"  s{i}: {{image: bb:1, network_mode: none, command: sleep 1000, stop_signal: KILL}}\n"
        for i in range(4)
    )
    (tmp_path / "compose.yaml").write_text(
        "services:\n" + services + "  top: {image: bb:1, network_mode: none, command: sleep 1000,"
        " depends_on: [s0, s1, s2, s3]}\n"
    )
    # a container that is not the project's holds the name of one of its containers
    moor("create", "--name", "demo-s2-1", "bb:1")
    r = compose(moor, tmp_path, "up", "-d", check=False)
    assert r.returncode == 1 and 'name "/demo-s2-1" is already in use' in r.stderr
    found = containers(moor)
    # the other services of that level were started (in parallel); the next level was not
    assert {"demo-s0-1", "demo-s1-1", "demo-s3-1"} <= set(found) and "demo-top-1" not in found
    moor("rm", "demo-s2-1")
    r = compose(moor, tmp_path, "up", "-d")
    assert "demo-s0-1  Running" in r.stderr and "demo-s2-1  Started" in r.stderr
    assert sorted(containers(moor)) == [f"demo-s{i}-1" for i in range(4)] + ["demo-top-1"]
    compose(moor, tmp_path, "down")
    assert containers(moor) == {}


def test_run_and_exec(moor: Moor, bb: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  db: {image: bb:1, network_mode: none, command: sleep 1000, stop_signal: KILL}\n"
        "  app:\n    image: bb:1\n    network_mode: none\n    environment: {A: from-file}\n"
        "    command: echo default\n    depends_on: [db]\n    ports: ['80:80']\n"
    )
    r = compose(moor, tmp_path, "run", "--rm", "-e", "B=given", "app", "sh", "-c",
                "echo $A $B; exit 3", check=False)  # fmt: skip
    assert r.returncode == 3 and r.stdout == "from-file given\n", r.stderr
    assert "demo-db-1  Started" in r.stderr  # its dependency was started first
    assert sorted(containers(moor)) == ["demo-db-1"]  # --rm removed the one-off container
    r = compose(moor, tmp_path, "run", "--no-deps", "app", check=False)
    assert r.returncode == 0 and r.stdout == "default\n"
    one_off = [d for n, d in containers(moor).items() if n.startswith("demo-app-run-")]
    labels = one_off[0]["Config"]["Labels"]  # type: ignore[index]
    assert labels["com.docker.compose.oneoff"] == "True"
    # up ignores one-off containers; ps shows them only with -a
    r = compose(moor, tmp_path, "up", "-d", "db")
    assert "Recreate" not in r.stderr and "Found orphan" not in r.stderr

    r = compose(moor, tmp_path, "exec", "-T", "db", "sh", "-c", "echo in db; exit 4", check=False)
    assert r.returncode == 4 and r.stdout == "in db\n"
    r = compose(moor, tmp_path, "exec", "--index", "2", "db", "true", check=False)
    assert r.returncode == 1 and "not running (container number 2)" in r.stderr
    compose(moor, tmp_path, "down")
    assert containers(moor) == {}


def test_create_and_abort_on_container_exit(moor: Moor, bb: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  long: {image: bb:1, network_mode: none, command: sh -c 'echo long; sleep 100',"
        " stop_signal: KILL}\n"
        "  short: {image: bb:1, network_mode: none, command: sh -c 'echo short; exit 5'}\n"
    )
    compose(moor, tmp_path, "create")
    assert {n: d["State"]["Status"] for n, d in containers(moor).items()} == {  # type: ignore[index]
        "demo-long-1": "created",
        "demo-short-1": "created",
    }
    r = compose(moor, tmp_path, "up", "--abort-on-container-exit", check=False)
    assert r.returncode == 5, r.stderr
    assert "demo-short-1  | short" in r.stdout
    assert "Aborting on container exit... (demo-short-1 exited)" in r.stderr
    assert not containers(moor)["demo-long-1"]["State"]["Running"]  # type: ignore[index]
    r = compose(moor, tmp_path, "up", "--exit-code-from", "long", check=False)
    assert r.returncode == 137, r.stderr  # long was stopped with SIGKILL
    assert r.stdout.count("| short") == 1  # only this run's output, not the last one's
    r = compose(moor, tmp_path, "up", "-d", "--exit-code-from", "long", check=False)
    assert r.returncode == 1 and "need attached mode" in r.stderr
    compose(moor, tmp_path, "down")


def test_images_and_top(moor: Moor, bb: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  a: {image: bb:1, network_mode: none, command: sleep 1000, stop_signal: KILL}\n"
    )
    compose(moor, tmp_path, "up", "-d")
    lines = compose(moor, tmp_path, "images").stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert lines[1].split()[:4] == ["demo-a-1", "bb", "1", bb.removeprefix("sha256:")[:12]]
    top = compose(moor, tmp_path, "top").stdout.splitlines()
    assert top[0] == "demo-a-1" and "PID" in top[1] and "sleep 1000" in top[2]
    compose(moor, tmp_path, "down")


MICRO = """
services:
  db:
    image: bb:1
    command: ["sh", "-c", "cat /data/value > /tmp/value; exec httpd -f -p 80 -h /tmp"]
    volumes: ["store:/data"]
    stop_signal: SIGKILL
  web:
    image: bb:1
    links: [db]
    ports: ["127.0.0.1:${WEB_PORT}:8000"]
    volumes: ["./cgi:/www/cgi-bin:ro"]
    command: ["httpd", "-f", "-p", "8000", "-h", "/www"]
    stop_signal: SIGKILL
volumes:
  store: {}
"""

CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\nwget -qO- http://db/value\n'


def test_linked_services_with_a_published_port_and_a_named_volume(
    moor: Moor, bb: str, tmp_path: Path
) -> None:
    """The seed's micro-service through compose: a request from the host reaches ``web`` on
    its published port, and ``web`` fetches from ``db`` by its link name; ``db`` serves what
    is in its named volume. ``down`` removes containers and the project network; ``-v`` the
    volume."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path / "proj"
    (d / "cgi").mkdir(parents=True)
    (d / "cgi" / "get").write_text(CGI)
    (d / "cgi" / "get").chmod(0o755)
    (d / "compose.yaml").write_text(MICRO)
    # up makes the named volume (empty: db serves nothing yet); fill it, restart db
    compose(moor, d, "up", "-d", WEB_PORT=str(port))
    assert "demo_store" in moor("volume", "ls", "-q").stdout.split()
    assert "demo_default" in moor("network", "ls", "--format", "{{.Name}}").stdout.split()
    moor("run", "--rm", "-v", "demo_store:/data", "bb:1", "sh", "-c", "echo kept > /data/value")
    compose(moor, d, "restart", "db", WEB_PORT=str(port))
    deadline = time.time() + 20
    body = ""
    while time.time() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/cgi-bin/get"
            with urllib.request.urlopen(url, timeout=5) as r:  # loopback only
                body = r.read().decode()
            if body.strip() == "kept":
                break
        except OSError:
            pass
        time.sleep(0.2)
    assert body.strip() == "kept"
    ps = compose(moor, d, "ps", "--format", "{{.Service}} {{.Ports}}", WEB_PORT=str(port)).stdout
    assert f"web 127.0.0.1:{port}->8000/tcp" in ps.splitlines()
    compose(moor, d, "down", "-v", WEB_PORT=str(port))
    assert moor("ps", "-aq").stdout == ""
    assert "demo_default" not in moor("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "demo_store" not in moor("volume", "ls", "-q").stdout.split()


def test_service_healthy_dependency_waits_for_the_health_check(
    moor: Moor, bb: str, tmp_path: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  db:\n"
        "    image: bb:1\n"
        "    network_mode: none\n"
        "    command: sh -c 'sleep 1; touch /tmp/ready; exec sleep 1000'\n"
        "    stop_signal: SIGKILL\n"
        "    healthcheck: {test: ['CMD', 'test', '-f', '/tmp/ready'], interval: 300ms,"
        " retries: 20}\n"
        "  web:\n"
        "    image: bb:1\n"
        "    network_mode: none\n"
        "    command: sleep 1000\n"
        "    stop_signal: SIGKILL\n"
        "    depends_on: {db: {condition: service_healthy}}\n"
    )
    compose(moor, tmp_path, "up", "-d")
    docs = containers(moor)
    db, web = docs["demo-db-1"], docs["demo-web-1"]
    assert db["State"]["Health"]["Status"] == "healthy"
    assert web["State"]["StartedAt"] > db["State"]["StartedAt"]
    # the web container started only once db's check passed, a second after db started
    from datetime import datetime

    def t(s: str) -> float:
        return datetime.fromisoformat(s[:26].rstrip("Z")).timestamp()

    assert t(web["State"]["StartedAt"]) - t(db["State"]["StartedAt"]) >= 0.9
    compose(moor, tmp_path, "down", "-t", "0")
