"""pull, push, login, logout, search: the `moor` command against `moor registry serve`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.conftest import Moor, RegistryServer


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    return d


def test_seed_workflow_push_rmi_pull_run(moor: Moor, bb: str, registry: RegistryServer) -> None:
    name = f"{registry.host}/seed/bb"
    moor("tag", "bb:1", name)
    out = moor("push", name).stdout
    assert "Using default tag: latest" in out
    assert f"The push refers to repository [{name}]" in out
    assert ": Pushed" in out
    line = next(x for x in out.splitlines() if x.startswith("latest: digest: "))
    digest = line.split()[2]
    # a second push only asks (HEAD) and uploads nothing
    again = moor("push", name).stdout
    assert ": Layer already exists" in again and ": Pushed" not in again
    assert f"latest: digest: {digest}" in again

    moor("rmi", name, "bb:1")
    assert moor("images", "-q").stdout.strip() == ""
    out = moor("pull", name).stdout
    assert ": Pull complete" in out
    assert f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {name}:latest" in out
    assert out.splitlines()[-1] == f"{name}:latest"
    # the image id is the config digest, as when it was imported
    assert moor("inspect", "--format", "{{.Id}}", name).stdout.strip() == bb
    repo_digests = moor("inspect", "--format", "{{json .RepoDigests}}", name).stdout
    assert f"{name}@{digest}" in json.loads(repo_digests)
    assert moor("run", "--rm", name, "echo", "pulled-ok").stdout == "pulled-ok\n"
    again = moor("pull", name).stdout
    assert f"Status: Image is up to date for {name}:latest" in again
    time.sleep(1.1)  # --until 0s counts whole seconds
    actions = moor(
        "events", "--since", "1m", "--until", "0s", "--filter", "type=image",
        "--format", "{{.Action}} {{.Actor.ID}}",
    ).stdout.splitlines()  # fmt: skip
    assert f"push {name}:latest" in actions and f"pull {name}:latest" in actions


def test_cross_repository_mount_and_all_tags(moor: Moor, bb: str, registry: RegistryServer) -> None:
    first, second = f"{registry.host}/one/bb", f"{registry.host}/two/bb"
    moor("tag", "bb:1", first)
    moor("push", first)
    moor("tag", "bb:1", f"{second}:a")
    moor("tag", "bb:1", f"{second}:b")
    out = moor("push", "--all-tags", second).stdout
    assert "Mounted from one/bb" in out
    assert "a: digest: " in out and "b: digest: " in out
    tags = httpx.get(f"{registry.url}/v2/two/bb/tags/list").json()["tags"]
    assert tags == ["a", "b"]
    r = moor("push", "--all-tags", f"{second}:a", check=False)
    assert r.returncode != 0 and "--all-tags" in r.stderr


def test_pull_errors(moor: Moor, registry: RegistryServer) -> None:
    r = moor("pull", f"{registry.host}/nothing/here:v1", check=False)
    assert r.returncode == 1
    assert (
        r.stderr.startswith("Error") and "not found" in r.stderr and len(r.stderr.splitlines()) == 1
    )
    r = moor("pull", "127.0.0.1:1/x", check=False)
    assert r.returncode == 1 and "cannot reach registry" in r.stderr
    r = moor("push", f"{registry.host}/not/local", check=False)
    assert r.returncode == 1 and "does not exist locally" in r.stderr


def test_pull_verifies_digests(moor: Moor, bb: str, registry: RegistryServer) -> None:
    name = f"{registry.host}/tamper/bb"
    moor("tag", "bb:1", name)
    moor("push", name)
    moor("rmi", name, "bb:1")
    blobs = registry.root / "blobs" / "sha256"
    layer = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    r = moor("pull", name, check=False)
    assert r.returncode == 1 and "layer sha256:" in r.stderr
    assert "match" in r.stderr or "corrupt" in r.stderr
    assert moor("images", "-q").stdout.strip() == ""
    assert list((moor.root / "overlay").iterdir()) == []


def test_pull_selects_platform_from_an_index(moor: Moor, bb: str, registry: RegistryServer) -> None:
    name = f"{registry.host}/multi/bb"
    moor("tag", "bb:1", f"{name}:amd")
    moor("push", f"{name}:amd")
    c = httpx.Client(base_url=registry.url)
    amd = c.get("/v2/multi/bb/manifests/amd").content
    # an arm64 sibling that has no layers to speak of (it must never be chosen here)
    cfg = b'{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    c.post("/v2/multi/bb/blobs/uploads/", params={"digest": _sha(cfg)}, content=cfg)
    oci_m = "application/vnd.oci.image.manifest.v1+json"
    oci_i = "application/vnd.oci.image.index.v1+json"
    arm = json.dumps({
        "schemaVersion": 2, "mediaType": oci_m,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _sha(cfg), "size": len(cfg)},
        "layers": [],
    }).encode()  # fmt: skip
    r = c.put(f"/v2/multi/bb/manifests/{_sha(arm)}", content=arm, headers={"Content-Type": oci_m})
    assert r.status_code == 201
    index = json.dumps({"schemaVersion": 2, "mediaType": oci_i, "manifests": [
        {"mediaType": oci_m, "digest": _sha(arm), "size": len(arm),
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": oci_m, "digest": _sha(amd), "size": len(amd),
         "platform": {"os": "linux", "architecture": "amd64"}},
    ]}).encode()  # fmt: skip
    r = c.put("/v2/multi/bb/manifests/latest", content=index, headers={"Content-Type": oci_i})
    assert r.status_code == 201
    moor("rmi", f"{name}:amd", "bb:1")
    out = moor("pull", name).stdout
    assert f"Digest: {_sha(index)}" in out
    assert moor("inspect", "--format", "{{.Id}}", name).stdout.strip() == bb
    out = moor("pull", "--platform", "linux/arm64", f"{name}:latest").stdout
    assert moor("inspect", "--format", "{{.Architecture}}", name).stdout.strip() == "arm64"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _htpasswd(path: Path) -> Path:
    path.write_text(f"alice:{bcrypt.hashpw(b'secret', bcrypt.gensalt(4)).decode()}\n")
    return path


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_login_push_logout(
    moor: Moor,
    bb: str,
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    docker_config: Path,
    mode: str,
) -> None:
    args = ["--htpasswd", str(_htpasswd(tmp_path / "htpasswd"))]
    if mode == "token":
        args += ["--token-issuer", str(tmp_path / "key")]
    server = registry_factory(*args)
    name = f"{server.host}/private/bb"
    moor("tag", "bb:1", name)
    r = moor("push", name, check=False)
    assert r.returncode == 1 and "unauthorized" in r.stderr
    assert not (server.root / "repos" / "private").exists() or not list(
        (server.root / "repos" / "private").rglob("_manifests")
    )
    r = moor("login", "-u", "alice", "--password-stdin", server.host, input=b"wrong\n", check=False)
    assert r.returncode == 1 and "unauthorized" in r.stderr
    r = moor("login", "-u", "alice", "--password-stdin", server.host, input=b"secret\n")
    assert "Login Succeeded" in r.stdout
    config = json.loads((docker_config / "config.json").read_text())
    assert server.host in config["auths"]
    assert oct((docker_config / "config.json").stat().st_mode & 0o777) == "0o600"
    assert ": Pushed" in moor("push", name).stdout
    moor("rmi", name, "bb:1")
    assert "Pull complete" in moor("pull", name).stdout
    assert "search" not in moor("search", f"{server.host}/priv").stderr
    assert (
        moor("logout", server.host).stdout.strip()
        == f"Removing login credentials for {server.host}"
    )
    assert server.host not in json.loads((docker_config / "config.json").read_text())["auths"]
    r = moor("pull", name, check=False)
    assert r.returncode == 1 and "unauthorized" in r.stderr


def test_search(moor: Moor, bb: str, registry: RegistryServer) -> None:
    for repo in ("team/web", "team/db", "other/web"):
        moor("tag", "bb:1", f"{registry.host}/{repo}")
        moor("push", "-q", f"{registry.host}/{repo}")
    out = moor("search", f"{registry.host}/web").stdout.splitlines()
    assert out[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert [line.split()[0] for line in out[1:]] == [
        f"{registry.host}/other/web",
        f"{registry.host}/team/web",
    ]
    out = moor("search", "--format", "{{.Name}}", "--limit", "1", f"{registry.host}/team").stdout
    assert out == f"{registry.host}/team/db\n"


def test_push_gzips_uncompressed_layers_once(moor: Moor, bb: str, registry: RegistryServer) -> None:
    """An imported image holds an uncompressed layer: push sends gzip and remembers it."""
    import sqlite3

    name = f"{registry.host}/gz/bb"
    moor("tag", "bb:1", name)
    moor("push", name)
    m = httpx.get(f"{registry.url}/v2/gz/bb/manifests/latest").json()
    (layer,) = m["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    blob = httpx.get(f"{registry.url}/v2/gz/bb/blobs/{layer['digest']}").content
    assert blob[:2] == b"\x1f\x8b" and len(blob) == layer["size"]
    conn = sqlite3.connect(moor.root / "moorage.db")
    rows = conn.execute("SELECT blob_digest FROM layer_blobs").fetchall()
    assert rows == [(layer["digest"],)]
    # the compressed blob survives garbage collection while its layer lives
    moor("image", "prune", "-f")
    assert (moor.root / "blobs" / "sha256" / layer["digest"].split(":")[1]).exists()
    moor("rmi", name, "bb:1")
    assert not (moor.root / "blobs" / "sha256" / layer["digest"].split(":")[1]).exists()
    assert os.path.exists(moor.root)


def test_interrupted_pull_resumes(moor: Moor, bb: str, registry: RegistryServer) -> None:
    """A pull that fails on one layer keeps the layers it completed; the next pull reuses them."""
    moor("run", "--name", "ctr", bb, "sh", "-c", "echo more > /more")
    name = f"{registry.host}/resume/two"
    moor("commit", "ctr", name)
    moor("rm", "ctr")
    out = moor("push", name).stdout
    assert out.count(": Pushed") == 2
    manifest = httpx.get(f"{registry.url}/v2/resume/two/manifests/latest").json()
    small = min(manifest["layers"], key=lambda d: d["size"])
    path = registry.root / "blobs" / "sha256" / small["digest"].split(":")[1]
    good = path.read_bytes()
    path.write_bytes(good[:-8] + b"\0" * 8)  # the registry now serves a corrupt small layer
    moor("rmi", name, "bb:1")
    r = moor("pull", name, check=False)
    assert r.returncode == 1
    path.write_bytes(good)
    out = moor("pull", name).stdout
    assert "Already exists" in out and out.count("Pull complete") == 1
    assert moor("run", "--rm", name, "cat", "/more").stdout == "more\n"


def test_build_pulls_a_from_image_it_does_not_have(
    moor: Moor, bb: str, registry: RegistryServer, tmp_path: Path
) -> None:
    name = f"{registry.host}/base/bb:1"
    moor("tag", "bb:1", name)
    moor("push", name)
    moor("rmi", name, "bb:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN echo built > /built\n")
    out = moor("build", "-t", "child:1", str(ctx)).stdout
    assert f"Pulling {name}" in out and "Successfully tagged child:1" in out
    assert moor("run", "--rm", "child:1", "cat", "/built").stdout == "built\n"
