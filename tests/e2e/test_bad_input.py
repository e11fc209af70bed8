"""Bad input: one clear line on stderr, Docker's exit code, and the store left as it was."""

from __future__ import annotations

import io
import os
import random
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import Moor, store_state
from tests.e2e.test_load_save import docker_archive


def _fails(moor: Moor, *args: str, input: bytes | None = None, code: int = 1) -> str:
    before = store_state(moor.root)
    r = moor(*args, input=input, check=False)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert store_state(moor.root) == before
    return lines[0]


def test_corrupt_archive(moor: Moor, bb: str) -> None:
    msg = _fails(moor, "load", input=os.urandom(5000))
    assert "invalid image archive" in msg


def test_truncated_archive(moor: Moor, bb: str) -> None:
    data = docker_archive(["t:1"])
    msg = _fails(moor, "load", input=data[: len(data) // 2])
    assert "invalid image archive" in msg


def test_archive_without_manifest(moor: Moor, bb: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    msg = _fails(moor, "load", input=buf.getvalue())
    assert "neither manifest.json" in msg


def test_config_digest_mismatch(moor: Moor, bb: str) -> None:
    msg = _fails(moor, "load", input=docker_archive(["t:1"], tamper_config=True))
    assert "does not match its digest" in msg


def test_missing_input_file(moor: Moor, bb: str, tmp_path: Path) -> None:
    msg = _fails(moor, "load", "-i", str(tmp_path / "nope.tar"))
    assert "nope.tar" in msg
    msg = _fails(moor, "import", str(tmp_path / "nope.tar"))
    assert "no such file" in msg


@pytest.mark.parametrize(
    "args",
    [
        ("image", "inspect", "nope"),
        ("rmi", "nope"),
        ("tag", "nope", "x:1"),
        ("save", "-o", "/dev/null", "nope"),
        ("history", "nope"),
    ],
)
def test_unknown_image(moor: Moor, bb: str, args: tuple[str, ...]) -> None:
    msg = _fails(moor, *args)
    assert "No such image: nope" in msg


def test_inspect_unknown_object(moor: Moor, bb: str) -> None:
    assert _fails(moor, "inspect", "nope") == "Error: No such object: nope"
    assert moor("inspect", "nope", check=False).stdout == "[]\n"  # as Docker


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("Bad/Name", "must be lowercase"),
        ("a:b:c", "invalid reference format"),
        ("x:" + "t" * 200, "invalid reference format"),
        ("a..b", "invalid reference format"),
        ("a" * 64, "64-byte hexadecimal"),
    ],
)
def test_invalid_reference(moor: Moor, bb: str, target: str, needle: str) -> None:
    msg = _fails(moor, "tag", "bb:1", target)
    assert needle in msg


def test_import_invalid_reference(moor: Moor, bb: str, busybox_tar: Path) -> None:
    assert "must be lowercase" in _fails(moor, "import", str(busybox_tar), "UPPER")


def test_import_bad_change(moor: Moor, bb: str, busybox_tar: Path) -> None:
    assert "FROB" in _fails(moor, "import", "-c", "FROB x", str(busybox_tar), "x:1")


def test_import_hostile_layer(moor: Moor, bb: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("etc")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path / "outside")
        tf.addfile(link)
        ti = tarfile.TarInfo("etc/passwd")
        ti.size = 4
        tf.addfile(ti, io.BytesIO(b"evil"))
    (tmp_path / "outside").mkdir()
    _fails(moor, "import", "-", "evil:1", input=buf.getvalue())
    assert list((tmp_path / "outside").iterdir()) == []


def test_decompression_bomb_is_refused(moor: Moor, bb: str, tmp_path: Path) -> None:
    import gzip

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("zeros")
        ti.size = 50 << 20
        tf.addfile(ti, io.BytesIO(bytes(50 << 20)))
    bomb = gzip.compress(buf.getvalue(), compresslevel=1)
    before = store_state(moor.root)
    env_moor = Moor(moor.root, moor.runroot)
    os.environ["MOORAGE_MAX_LAYER_SIZE"] = str(10 << 20)
    try:
        r = env_moor("import", "-", "bomb:1", input=bomb, check=False)
    finally:
        del os.environ["MOORAGE_MAX_LAYER_SIZE"]
    assert r.returncode == 1 and "size limit" in r.stderr
    assert store_state(moor.root) == before


def test_rmi_of_image_in_use(moor: Moor, bb: str) -> None:
    import sqlite3

    conn = sqlite3.connect(moor.root / "moorage.db")
    conn.execute(
        "INSERT INTO containers(id, name, image_id, created) VALUES (?, ?, ?, ?)",
        ("c" * 64, "web", bb, time.time()),
    )
    conn.commit()
    conn.close()
    msg = _fails(moor, "rmi", "bb:1")
    assert "container cccccccccccc is using its referenced image" in msg
    msg = _fails(moor, "rmi", bb)
    assert "being used by stopped container" in msg
    # the image's content survives a prune too
    moor("image", "prune", "-a", "-f")
    assert moor("images", "-q", "--no-trunc").stdout.split() == [bb]
    assert moor("system", "check").stdout.strip() == "No problems found"


def test_usage_error_exit_code(moor: Moor) -> None:
    r = moor("images", "--bogus", check=False)
    assert r.returncode == 2 and "--bogus" in r.stderr


def test_kill_9_during_load_leaves_a_usable_store(moor: Moor, tmp_path: Path) -> None:
    # a 60 MB single-layer image, so a load takes long enough to be killed midway
    rootfs = tmp_path / "big.tar"
    with tarfile.open(rootfs, "w") as tf:
        for i in range(3):
            ti = tarfile.TarInfo(f"data/blob{i}")
            ti.size = 20 << 20
            tf.addfile(ti, io.BytesIO(os.urandom(20 << 20)))
    moor("import", str(rootfs), "big:1")
    archive = tmp_path / "big-image.tar"
    moor("save", "-o", str(archive), "big:1")
    moor("rmi", "big:1")
    rng = random.Random(7)
    for _ in range(6):
        p = moor.popen("load", "-i", str(archive))
        time.sleep(rng.uniform(0.02, 0.4))
        p.kill()
        p.wait()
        assert moor("images", "--format", "{{.Repository}}").stdout in ("", "big\n")
        r = moor("system", "check", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    assert moor("load", "-i", str(archive)).stdout == "Loaded image: big:1\n"
    assert moor("system", "check").returncode == 0
    moor("rmi", "big:1")
    moor("system", "prune", "-f")
    time.sleep(0)  # nothing half-written may remain visible as an image or layer
    assert moor("images", "-q").stdout == ""


def test_layer_that_does_not_match_its_diff_id(moor: Moor, bb: str) -> None:
    import hashlib
    import json

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        ti = tarfile.TarInfo("f")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    cfg = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(b"something else").hexdigest()],
            },
        }
    ).encode()
    name = hashlib.sha256(cfg).hexdigest() + ".json"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, data in (
            ("l/layer.tar", layer.getvalue()),
            (name, cfg),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": name, "RepoTags": ["t:1"], "Layers": ["l/layer.tar"]}]
                ).encode(),
            ),
        ):
            ti = tarfile.TarInfo(member)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert "diff id mismatch" in _fails(moor, "load", input=buf.getvalue())


@pytest.mark.parametrize(
    "args",
    [("start", "nosuch"), ("start", "-a", "nosuch"), ("stop", "nosuch"), ("rm", "nosuch")],
)
def test_unknown_container_exits_1_as_docker(moor: Moor, args: tuple[str, ...]) -> None:
    r = moor(*args, check=False)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
