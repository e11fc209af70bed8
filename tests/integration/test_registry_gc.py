"""`moor registry gc`: mark and sweep beside a serving registry and pushes in flight."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path

import httpx

from tests.conftest import MOOR, RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(c: httpx.Client, name: str, data: bytes) -> str:
    r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha(data)}, content=data)
    assert r.status_code == 201, r.text
    return sha(data)


def manifest(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(x), "size": len(x)} for x in layers],
    }).encode()  # fmt: skip


def put_manifest(
    c: httpx.Client, name: str, ref: str, data: bytes, mt: str = OCI_MANIFEST
) -> httpx.Response:
    return c.put(f"/v2/{name}/manifests/{ref}", content=data, headers={"Content-Type": mt})


def gc(root: Path, *args: str) -> str:
    p = subprocess.run([MOOR, "registry", "gc", "--root", str(root), *args],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout


def age_everything(root: Path) -> None:
    for dirpath, dirs, names in os.walk(root):
        for n in names + dirs:
            os.utime(os.path.join(dirpath, n), (1000, 1000))


def blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.partition(":")[2]


def test_sweeps_only_unreferenced_old_blobs(registry: RegistryServer) -> None:
    root = registry.root
    with httpx.Client(base_url=registry.url) as c:
        config, layer = b"{}", b"layer"
        push_blob(c, "app", config)
        push_blob(c, "app", layer)
        m = manifest(config, [layer])
        assert put_manifest(c, "app", "v1", m).status_code == 201
        orphan = push_blob(c, "app", b"orphan")
        age_everything(root)
        fresh = push_blob(c, "app", b"fresh orphan")
        out = gc(root, "--dry-run", "--grace", "60")
        assert f"would remove blob {orphan}" in out
        assert blob_path(root, orphan).exists()
        out = gc(root, "--grace", "60")
        assert f"removed blob {orphan}" in out and fresh not in out
        assert not blob_path(root, orphan).exists()
        assert blob_path(root, fresh).exists()
        assert c.head(f"/v2/app/blobs/{orphan}").status_code == 404
        r = c.get("/v2/app/manifests/v1")
        assert r.status_code == 200 and r.content == m
        for d in (sha(config), sha(layer)):
            assert c.get(f"/v2/app/blobs/{d}").status_code == 200


def test_keeps_manifests_an_index_references(registry: RegistryServer) -> None:
    root = registry.root
    with httpx.Client(base_url=registry.url) as c:
        config, layer = b'{"a":1}', b"arm layer"
        push_blob(c, "multi", config)
        push_blob(c, "multi", layer)
        m = manifest(config, [layer])
        assert put_manifest(c, "multi", sha(m), m).status_code == 201
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha(m), "size": len(m),
             "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()  # fmt: skip
        assert put_manifest(c, "multi", "latest", index, OCI_INDEX).status_code == 201
        # the child's own revision is deleted: only the index still names it
        assert c.delete(f"/v2/multi/manifests/{sha(m)}").status_code == 202
        age_everything(root)
        gc(root, "--grace", "0")
        for d in (sha(m), sha(config), sha(layer)):
            assert blob_path(root, d).exists(), d
        assert c.get("/v2/multi/manifests/latest").content == index


def test_racing_pushes_never_lose_a_blob(registry: RegistryServer) -> None:
    """GC with no grace at all, in a loop, while images are pushed: a push may be refused
    (its blob was swept before the manifest came), but a manifest that was accepted always
    has every blob it names."""
    root = registry.root
    stop = threading.Event()
    accepted: list[tuple[str, bytes]] = []
    refused = 0

    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            push_all()
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    def push_all() -> None:
        nonlocal refused
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            for i in range(40):
                config, layer = f'{{"n":{i}}}'.encode(), os.urandom(20_000)
                push_blob(c, "race", config)
                push_blob(c, "race", layer)
                m = manifest(config, [layer])
                r = put_manifest(c, "race", f"t{i}", m)
                if r.status_code == 201:
                    accepted.append((f"t{i}", m))
                else:
                    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
                    refused += 1

    t = threading.Thread(target=pusher)
    t.start()
    runs = 0
    while not stop.is_set() and runs < 200:
        gc(root, "--grace", "0")
        runs += 1
    t.join(60)
    assert not errors, errors
    gc(root, "--grace", "0")
    assert runs >= 1 and accepted
    with httpx.Client(base_url=registry.url) as c:
        for tag, m in accepted:
            assert c.get(f"/v2/race/manifests/{tag}").content == m
            doc = json.loads(m)
            for desc in [doc["config"], *doc["layers"]]:
                r = c.get(f"/v2/race/blobs/{desc['digest']}")
                assert r.status_code == 200 and sha(r.content) == desc["digest"]


def test_abandoned_uploads_go_recent_ones_stay(registry: RegistryServer) -> None:
    with httpx.Client(base_url=registry.url) as c:
        old = c.post("/v2/up/blobs/uploads/").headers["Location"]
        c.patch(old, content=b"abandoned")
        age_everything(registry.root)
        recent = c.post("/v2/up/blobs/uploads/").headers["Location"]
        out = gc(registry.root, "--grace", "0")
        assert f"removed upload {old.rsplit('/', 1)[1]}" in out
        assert c.get(old).status_code == 404
        assert c.get(recent).status_code == 204
