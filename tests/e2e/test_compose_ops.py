"""``moor compose pull/push/port/events/cp``, ``run -p`` and ``down --rmi`` as a user runs
them: real containers, a real `moor registry serve` on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import MOOR, Moor, RegistryServer
from tests.e2e.test_compose_up import compose, containers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_push_pull_and_down_rmi(
    moor: Moor, bb: str, registry: RegistryServer, tmp_path: Path
) -> None:
    name = f"{registry.host}/app/web:1"
    moor("tag", "bb:1", name)
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nLABEL built=yes\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        f"  web: {{image: '{name}', network_mode: none, command: sleep 1000, stop_signal: KILL}}\n"
        "  local: {build: ., network_mode: none, command: sleep 1000, stop_signal: KILL}\n"
    )
    r = compose(moor, tmp_path, "push")
    assert " web Pushing" in r.stderr and " web Pushed" in r.stderr and "local" not in r.stderr
    moor("rmi", name)
    r = compose(moor, tmp_path, "pull")
    assert " web Pulled" in r.stderr and " local Skipped - No image to be pulled" in r.stderr
    moor("image", "inspect", name)
    assert compose(moor, tmp_path, "pull", "-q").stderr == ""

    # an image the registry lacks: exit 1 with the error, or a warning only when asked
    (tmp_path / "compose.override.yaml").write_text(
        f"services:\n  gone: {{image: '{registry.host}/app/gone:1', network_mode: none}}\n"
    )
    r = compose(moor, tmp_path, "pull", check=False)
    assert r.returncode == 1 and "app/gone" in r.stderr and r.stderr.count("Error:") == 1
    r = compose(moor, tmp_path, "pull", "--ignore-pull-failures")
    assert " gone Error" in r.stderr and " web Pulled" in r.stderr
    (tmp_path / "compose.override.yaml").unlink()

    compose(moor, tmp_path, "up", "-d")
    assert "demo-local" in moor("images", "--format", "{{.Repository}}").stdout.split()
    r = compose(moor, tmp_path, "down", "--rmi", "local")
    assert "Image demo-local  Removed" in r.stderr and name not in r.stderr
    repos = moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "demo-local:latest" not in repos and name in repos
    compose(moor, tmp_path, "up", "-d", "--no-build", "web")
    compose(moor, tmp_path, "down", "--rmi", "all")
    repos = moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert name not in repos and "bb:1" in repos
    assert containers(moor) == {}


def test_port_events_cp_and_run_publish(moor: Moor, bb: str, tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  web:\n"
        "    image: bb:1\n"
        "    command: httpd -f -p 80\n"
        "    stop_signal: KILL\n"
        f"    ports: ['127.0.0.1:{port}:80']\n"
        "  side: {image: bb:1, network_mode: none, command: sleep 1000, stop_signal: KILL}\n"
    )
    events = subprocess.Popen(
        [MOOR, "compose", "-p", "demo", "events", "--json", "web"],
        cwd=tmp_path, env=moor.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1)  # the follower is listening
        compose(moor, tmp_path, "up", "-d")
        seen = []
        deadline = time.time() + 30
        while time.time() < deadline:
            assert events.stdout is not None
            doc = json.loads(events.stdout.readline())
            seen.append(doc)
            if doc["action"] == "start":
                break
        assert [d["action"] for d in seen][-2:] == ["create", "start"], seen
        assert {d["service"] for d in seen} == {"web"}
        assert seen[-1]["attributes"]["name"] == "demo-web-1"
        assert not any(k.startswith("com.docker.compose") for k in seen[-1]["attributes"])
    finally:
        events.terminate()
        events.wait(10)

    assert compose(moor, tmp_path, "port", "web", "80").stdout == f"127.0.0.1:{port}\n"
    r = compose(moor, tmp_path, "port", "web", "81", check=False)
    assert r.returncode == 1 and "no port 81/tcp" in r.stderr
    r = compose(moor, tmp_path, "port", "--protocol", "udp", "web", "80", check=False)
    assert r.returncode == 1
    r = compose(moor, tmp_path, "port", "--index", "2", "web", "80", check=False)
    assert r.returncode == 1 and "no container number 2" in r.stderr
    r = compose(moor, tmp_path, "port", "nope", "80", check=False)
    assert r.returncode == 1 and "no such service: nope" in r.stderr

    (tmp_path / "note.txt").write_text("hello from the host\n")
    compose(moor, tmp_path, "cp", "note.txt", "side:/tmp/note.txt")
    r = compose(moor, tmp_path, "exec", "-T", "side", "cat", "/tmp/note.txt")
    assert r.stdout == "hello from the host\n"
    compose(moor, tmp_path, "cp", "side:/tmp/note.txt", "back.txt")
    assert (tmp_path / "back.txt").read_text() == "hello from the host\n"

    r = compose(moor, tmp_path, "run", "-d", "-p", f"127.0.0.1:{other}:80", "web")
    one_off = r.stdout.strip()
    assert moor("port", one_off, "80").stdout == f"127.0.0.1:{other}\n"
    compose(moor, tmp_path, "down")  # one-off containers too, as docker compose
    assert containers(moor) == {}
    # --service-ports: the one-off container publishes what the service does
    r = compose(moor, tmp_path, "run", "-d", "--service-ports", "web")
    assert moor("port", r.stdout.strip(), "80").stdout == f"127.0.0.1:{port}\n"
    compose(moor, tmp_path, "down")
    assert containers(moor) == {}


def test_down_after_a_failure_halfway_removes_what_up_made(
    moor: Moor, bb: str, tmp_path: Path
) -> None:
    services = "".join(
        f"  s{i}: {{image: bb:1, command: sleep 1000, stop_signal: KILL, volumes: ['v:/v']}}\n"
        for i in range(3)
    )
    (tmp_path / "compose.yaml").write_text(
        "services:\n" + services + "  top: {image: bb:1, command: sleep 1000, depends_on: [s0]}\n"
        "volumes:\n  v: {}\n"
    )
    moor("create", "--name", "demo-s1-1", "bb:1")  # not the project's: up fails on its name
    r = compose(moor, tmp_path, "up", "-d", check=False)
    assert r.returncode == 1 and "demo-s1-1" in r.stderr
    assert {"demo-s0-1", "demo-s2-1"} <= set(containers(moor))
    compose(moor, tmp_path, "down", "-v")
    assert sorted(containers(moor)) == ["demo-s1-1"]  # only the stranger is left
    assert "demo_default" not in moor("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert moor("volume", "ls", "-q").stdout == ""
    moor("rm", "demo-s1-1")
