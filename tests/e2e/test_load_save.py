"""save and load: docker-archive and OCI layouts, round trips, and archives made by hand."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.conftest import Moor


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            _add(tf, name, data)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _config(diff_ids: list[str], cmd: list[str] | None = None) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05.123456789Z",
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "hand"} for _ in diff_ids],
    }
    return json.dumps(doc).encode()


def docker_archive(tags: list[str], *, tamper_config: bool = False) -> bytes:
    """A legacy docker-archive as Docker 20.10 writes it, with a symlinked duplicate layer."""
    l1 = _layer({"etc/hello": b"hello\n"})
    l2 = _layer({"etc/world": b"world\n"})
    cfg = _config([_sha(l1), _sha(l2), _sha(l1)])
    cfg_name = _sha(cfg) + ".json"
    if tamper_config:
        cfg = cfg.replace(b"sh", b"xx")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        _add(tf, "aaa/layer.tar", l1)
        _add(tf, "aaa/VERSION", b"1.0")
        _add(tf, "bbb/layer.tar", l2)
        link = tarfile.TarInfo("ccc/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../aaa/layer.tar"
        tf.addfile(link)
        _add(tf, cfg_name, cfg)
        manifest = [
            {
                "Config": cfg_name,
                "RepoTags": tags,
                "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
            }
        ]
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    return buf.getvalue()


def oci_archive(ref_name: str) -> bytes:
    """An OCI layout with a gzip layer behind a multi-platform index."""
    layer = _layer({"hi": b"there\n"})
    gz = gzip.compress(layer)
    cfg = _config([_sha(layer)], cmd=["cat", "/hi"])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{_sha(cfg)}",
                "size": len(cfg),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{_sha(gz)}",
                    "size": len(gz),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "0" * 64,
                    "size": 2,
                    "platform": {"os": "linux", "architecture": "s390x"},
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{_sha(manifest)}",
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    top = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": f"sha256:{_sha(index)}",
                    "size": len(index),
                    "annotations": {"org.opencontainers.image.ref.name": ref_name},
                }
            ],
        }
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        _add(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for blob in (gz, cfg, manifest, index):
            _add(tf, f"blobs/sha256/{_sha(blob)}", blob)
        _add(tf, "index.json", top)
    return buf.getvalue()


def test_save_load_round_trip(moor: Moor, bb: str, tmp_path: Path) -> None:
    moor("tag", "bb:1", "localhost:5000/redis_hagzag")
    archive = tmp_path / "out.tar"
    moor("save", "-o", str(archive), "bb:1", "localhost:5000/redis_hagzag")
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(names)
    assert manifest[0]["Config"] == f"blobs/sha256/{bb[7:]}"
    assert sorted(manifest[0]["RepoTags"]) == ["bb:1", "localhost:5000/redis_hagzag:latest"]
    moor("rmi", "-f", bb)
    assert moor("images", "-q").stdout == ""
    out = moor("load", "-i", str(archive)).stdout.splitlines()
    assert sorted(out) == ["Loaded image: bb:1", "Loaded image: localhost:5000/redis_hagzag:latest"]
    assert moor("images", "-q", "--no-trunc").stdout.split() == [bb, bb]
    assert moor("system", "check").stdout.strip() == "No problems found"


def test_save_to_stdout_and_load_from_stdin(moor: Moor, bb: str, tmp_path: Path) -> None:
    data = moor("save", "bb:1").stdout_bytes
    other = Moor(tmp_path / "r2", tmp_path / "run2")
    assert other("load", input=data).stdout == "Loaded image: bb:1\n"
    assert other("images", "-q", "--no-trunc").stdout.strip() == bb


def test_oci_archive_format(moor: Moor, bb: str, tmp_path: Path) -> None:
    archive = tmp_path / "oci.tar"
    moor("save", "--format", "oci-archive", "-o", str(archive), "bb:1")
    with tarfile.open(archive) as tf:
        names = set(tf.getnames())
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert "manifest.json" not in names and "oci-layout" in names
    ann = index["manifests"][0]["annotations"]
    assert ann["org.opencontainers.image.ref.name"] == "1"
    assert ann["io.containerd.image.name"] == "docker.io/library/bb:1"
    moor("rmi", "bb:1")
    assert moor("load", "-i", str(archive)).stdout == "Loaded image: bb:1\n"


def test_load_legacy_docker_archive_with_symlinked_layer(moor: Moor) -> None:
    out = moor("load", input=docker_archive(["hand:made", "hand:two"])).stdout.splitlines()
    assert out == ["Loaded image: hand:made", "Loaded image: hand:two"]
    doc = json.loads(moor("image", "inspect", "hand:made").stdout)[0]
    assert len(doc["RootFS"]["Layers"]) == 3 and doc["Created"].startswith("2024-01-02")
    assert doc["Config"]["Cmd"] == ["sh"]
    hist = moor("history", "--format", "{{.CreatedBy}}", "hand:made").stdout.split()
    assert hist == ["hand", "hand", "hand"]
    # loading it again is a no-op that says the same
    assert moor("load", input=docker_archive(["hand:made"])).stdout == "Loaded image: hand:made\n"


def test_load_oci_layout_selects_host_platform(moor: Moor) -> None:
    out = moor("load", input=oci_archive("example.com/app:v1")).stdout
    assert out == "Loaded image: example.com/app:v1\n"
    assert (
        moor("inspect", "-f", "{{json .Config.Cmd}}", "example.com/app:v1").stdout
        == '["cat","/hi"]\n'
    )


def test_load_oci_layout_with_bare_tag_name_is_untagged(moor: Moor) -> None:
    out = moor("load", input=oci_archive("v1")).stdout
    assert out.startswith("Loaded image ID: sha256:")


def test_load_replacing_a_tag_says_so(moor: Moor, bb: str) -> None:
    out = moor("load", input=docker_archive(["bb:1"])).stdout.splitlines()
    assert out[0] == (
        f"The image bb:1 already exists, renaming the old one with ID {bb} to empty string"
    )
    assert out[1] == "Loaded image: bb:1"
    assert len(moor("images", "-q", "-f", "dangling=true").stdout.split()) == 1


def test_an_image_of_many_layers_runs(moor: Moor, busybox_tar: Path) -> None:
    """Past ~40 layers their paths no longer fit in mount(2)'s one page of options: short
    links name them instead. 150 layers (Docker's own limit is 127), each adding a file and
    overwriting /etc/who, the top one winning."""
    base = busybox_tar.read_bytes()
    layers = [base] + [
        _layer({f"layers/{i}": f"{i}\n".encode(), "etc/who": f"layer {i}\n".encode()})
        for i in range(1, 150)
    ]
    cfg = _config([_sha(layer) for layer in layers], cmd=["sh"])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i, layer in enumerate(layers):
            _add(tf, f"l{i}/layer.tar", layer)
        _add(tf, "config.json", cfg)
        manifest = [
            {
                "Config": "config.json",
                "RepoTags": ["tall:1"],
                "Layers": [f"l{i}/layer.tar" for i in range(len(layers))],
            }
        ]
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    moor("load", input=buf.getvalue())
    out = moor("run", "--rm", "tall:1", "sh", "-c", "cat /etc/who; ls /layers | wc -l").stdout
    assert out.split() == ["layer", "149", "149"]
