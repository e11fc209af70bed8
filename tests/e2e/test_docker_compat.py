"""Side by side with a real Docker, where one runs here (start it with
../shared/tools/start-anchors); skipped otherwise, e.g. in CI."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Moor

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")


def _docker_up() -> bool:
    if not DOCKER:
        return False
    return subprocess.run([DOCKER, "info"], capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _docker_up(), reason="no Docker daemon on this machine")


def docker(*args: str) -> str:
    assert DOCKER
    return subprocess.run([DOCKER, *args], capture_output=True, check=True, text=True).stdout


@pytest.fixture
def tag() -> Iterator[str]:
    name = f"moorage-compat-{uuid.uuid4().hex[:8]}:1"
    yield name
    subprocess.run([str(DOCKER), "rmi", "-f", name], capture_output=True, check=False)


def test_docker_loads_what_moor_saves(
    moor: Moor, busybox_tar: Path, tmp_path: Path, tag: str
) -> None:
    iid = moor("import", "-c", 'CMD ["sh"]', str(busybox_tar), tag).stdout.strip()
    archive = tmp_path / "m.tar"
    moor("save", "-o", str(archive), tag)
    assert f"Loaded image: {tag}" in docker("load", "-i", str(archive))
    assert docker("image", "inspect", "-f", "{{.Id}}", tag).strip() == iid


def test_moor_loads_what_docker_saves(
    moor: Moor, busybox_tar: Path, tmp_path: Path, tag: str
) -> None:
    docker("import", "--change", 'CMD ["sh"]', str(busybox_tar), tag)
    archive = tmp_path / "d.tar"
    docker("save", "-o", str(archive), tag)
    assert moor("load", "-i", str(archive)).stdout == f"Loaded image: {tag}\n"
    theirs = json.loads(docker("image", "inspect", tag))[0]
    ours = json.loads(moor("image", "inspect", tag).stdout)[0]
    assert set(ours) == set(theirs)
    for key in ("Id", "RepoTags", "Created", "Config", "Architecture", "Os", "Size", "RootFS"):
        assert ours[key] == theirs[key], key
    fmt = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}"
    assert moor("history", "--format", fmt, tag).stdout == docker("history", "--format", fmt, tag)
    fmt = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}"
    ours = moor("images", "--format", fmt, tag.split(":")[0]).stdout
    assert ours == docker("images", "--format", fmt, tag.split(":")[0])
