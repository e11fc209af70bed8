"""Interoperability with the reference tools: the docker CLI and skopeo against
`moor registry serve`, and `moor push`/`pull` against distribution (Debian's docker-registry).

Each test skips when its tool (or the Docker daemon) is absent, so the suite passes on a fresh
machine; `.venv/bin/pytest tests/compat` on a machine with the tools runs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.conftest import Moor, RegistryServer

DOCKER = shutil.which("docker", path="/usr/bin") or shutil.which("docker")


def _docker_ok() -> bool:
    if DOCKER is None:
        return False
    try:
        p = subprocess.run([DOCKER, "info", "--format", "{{.ID}}"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


needs_docker = pytest.mark.skipif(not _docker_ok(), reason="needs the docker CLI and daemon")
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
needs_distribution = pytest.mark.skipif(
    shutil.which("docker-registry") is None, reason="needs docker-registry (distribution)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(
    *args: str, env: dict[str, str] | None = None, check: bool = True, input: bytes | None = None
) -> str:
    assert DOCKER is not None
    p = subprocess.run([DOCKER, *args], capture_output=True, timeout=300, env=env, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {p.stderr.decode()}")
    return p.stdout.decode()


@pytest.fixture
def docker_image(busybox_tar: Path) -> Iterator[Callable[[str], str]]:
    """Tag the busybox rootfs in Docker under names this test owns; removed afterwards."""
    made: list[str] = []

    def make(name: str) -> str:
        docker("import", "--change", 'CMD ["sh"]', str(busybox_tar), name)
        made.append(name)
        return name

    yield make
    for name in made:
        docker("rmi", "-f", name, check=False)


@needs_docker
def test_docker_push_pull_through_moor_registry(
    registry: RegistryServer, docker_image: Callable[[str], str]
) -> None:
    name = docker_image(f"{registry.host}/compat/docker:v1")
    out = docker("push", name)
    assert "digest: sha256:" in out
    docker("rmi", name)
    out = docker("pull", name)
    assert "Downloaded newer image" in out
    assert docker("run", "--rm", "--network", "none", name, "echo", "ok").strip() == "ok"


@needs_docker
def test_docker_login_with_the_token_flow(
    registry_factory: Callable[..., RegistryServer],
    docker_image: Callable[[str], str],
    tmp_path: Path,
) -> None:
    pw = tmp_path / "htpasswd"
    pw.write_text(f"alice:{bcrypt.hashpw(b'secret', bcrypt.gensalt(4)).decode()}\n")
    server = registry_factory("--htpasswd", str(pw), "--token-issuer", str(tmp_path / "key"))
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "dcfg")}
    name = docker_image(f"{server.host}/private/docker:v1")
    p = subprocess.run(
        [DOCKER or "docker", "push", name], capture_output=True, env=env, timeout=120
    )
    assert p.returncode != 0
    docker("login", "-u", "alice", "--password-stdin", server.host, env=env, input=b"secret")
    assert "digest: sha256:" in docker("push", name, env=env)


@needs_skopeo
def test_skopeo_copy_through_moor_registry(
    moor: Moor, bb: str, registry: RegistryServer, tmp_path: Path
) -> None:
    src = f"{registry.host}/compat/skopeo"
    moor("tag", "bb:1", src)
    moor("push", src)
    flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
    dest = f"docker://{registry.host}/compat/copied:v2"
    subprocess.run(["skopeo", "copy", *flags, f"docker://{src}:latest", dest],
                   check=True, capture_output=True)  # fmt: skip
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                          f"docker://{registry.host}/compat/copied:v2"],
                         check=True, capture_output=True).stdout  # fmt: skip
    assert json.loads(out)["Architecture"] == "amd64"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                    f"docker://{registry.host}/compat/copied:v2", f"oci:{tmp_path / 'oci'}:x"],
                   check=True, capture_output=True)  # fmt: skip
    assert (tmp_path / "oci" / "index.json").exists()
    tags = httpx.get(f"{registry.url}/v2/compat/copied/tags/list").json()["tags"]
    assert tags == ["v2"]


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'dist'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@needs_distribution
def test_moor_push_pull_against_distribution(moor: Moor, bb: str, distribution: str) -> None:
    name = f"{distribution}/compat/moor"
    moor("tag", "bb:1", name)
    assert ": Pushed" in moor("push", name).stdout
    assert ": Layer already exists" in moor("push", name).stdout
    moor("tag", "bb:1", f"{distribution}/compat/other")
    assert "Mounted from compat/moor" in moor("push", f"{distribution}/compat/other").stdout
    moor("rmi", name, f"{distribution}/compat/other", "bb:1")
    out = moor("pull", name).stdout
    assert "Pull complete" in out
    assert moor("inspect", "--format", "{{.Id}}", name).stdout.strip() == bb
    assert moor("run", "--rm", name, "echo", "ok").stdout == "ok\n"
    assert f"{distribution}/compat/moor" in moor("search", f"{distribution}/moor").stdout
