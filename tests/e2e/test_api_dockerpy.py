"""docker-py (PyPI ``docker``) through its models API against ``moor system service``."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import RegistryServer
from tests.e2e.apiservice import Service

docker = pytest.importorskip("docker")


@pytest.fixture
def client(api: Service) -> docker.DockerClient:
    c = docker.DockerClient(base_url=api.host, version="auto", timeout=60)
    yield c
    c.close()


def test_system(client: docker.DockerClient, bb: str) -> None:
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] == "1.50" and v["Components"][0]["Name"] == "Engine"
    info = client.info()
    assert info["Images"] == 1 and info["OSType"] == "linux"
    df = client.df()
    assert [i["Id"] for i in df["Images"]] == [bb]


def test_images(client: docker.DockerClient, bb: str, tmp_path: Path) -> None:
    images = client.images.list()
    assert [i.id for i in images] == [bb]
    img = client.images.get("bb:1")
    assert img.tags == ["bb:1"] and img.attrs["Config"]["Cmd"] == ["sh"]
    assert img.tag("bb", "copy") is True
    assert sorted(client.images.get(bb).tags) == ["bb:1", "bb:copy"]
    assert [i.id for i in client.images.list(filters={"reference": "bb:copy"})] == [bb]
    assert client.images.list(filters={"dangling": True}) == []
    hist = img.history()
    assert hist[0]["Id"] == bb and isinstance(hist[0]["Created"], int)
    data = b"".join(img.save(named=True))
    client.images.remove("bb:copy")
    client.images.remove("bb:1")
    assert client.images.list() == []
    loaded = client.images.load(data)
    assert [i.id for i in loaded] == [bb]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nosuch:1")
    pruned = client.images.prune()
    assert pruned["ImagesDeleted"] is None


def test_containers_run(client: docker.DockerClient, bb: str, registry: RegistryServer) -> None:
    out = client.containers.run("bb:1", ["echo", "hello"], remove=True)
    assert out == b"hello\n"
    with pytest.raises(docker.errors.ContainerError) as exc:
        client.containers.run("bb:1", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert exc.value.exit_status == 3
    # not here: pulled, from a loopback registry that lacks it
    with pytest.raises(docker.errors.NotFound, match=r"manifest for .* not found"):
        client.containers.run(f"{registry.host}/nosuch:1", "true", remove=True)
    assert client.containers.list(all=True) == []


def test_container_model(client: docker.DockerClient, bb: str) -> None:
    c = client.containers.run(
        "bb:1", ["sh", "-c", "echo started; sleep 100"], detach=True, name="pyc",
        labels={"app": "x"}, environment={"K": "V"}, working_dir="/tmp",
    )  # fmt: skip
    assert c.name == "pyc"
    c.reload()
    assert c.status == "running" and c.labels == {"app": "x"}
    assert [x.name for x in client.containers.list(filters={"label": "app=x"})] == ["pyc"]
    deadline = time.monotonic() + 10
    while b"started" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.logs() == b"started\n"
    code, out = c.exec_run(["sh", "-c", "echo $K $PWD"])
    assert (code, out) == (0, b"V /tmp\n")
    code, out = c.exec_run("sh -c 'exit 4'")
    assert code == 4
    code, out = c.exec_run("nosuchcommand")
    assert code == 127
    top = c.top()
    assert any("sleep 100" in " ".join(p) for p in top["Processes"])
    # put_archive / get_archive: docker cp through the API
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("note.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    assert c.put_archive("/tmp", buf.getvalue()) is True
    stream, stat = c.get_archive("/tmp/note.txt")
    assert stat["name"] == "note.txt" and stat["size"] == 5
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
        f = tf.extractfile("note.txt")
        assert f is not None and f.read() == b"hello"
    assert {"Path": "/tmp/note.txt", "Kind": 1} in c.diff()
    st = c.stats(stream=False)
    assert st["memory_stats"]["usage"] > 0 and st["pids_stats"]["current"] >= 1
    assert st["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.rename("pyc2")
    c.stop(timeout=1)
    assert c.wait()["StatusCode"] == 137
    c.reload()
    assert c.status == "exited"
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("pyc2")


def test_create_start_wait_remove(client: docker.DockerClient, bb: str) -> None:
    c = client.containers.create("bb:1", ["sh", "-c", "exit 9"], auto_remove=False)
    c.start()
    assert c.wait(condition="not-running")["StatusCode"] == 9
    assert client.containers.prune()["ContainersDeleted"] == [c.id]
