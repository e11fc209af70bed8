"""docker-py (PyPI ``docker``) through its models API against ``moor system service``:
networks with name resolution, volumes, published ports, events and stats."""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.apiservice import Service
from tests.e2e.nethelp import free_port as _free_port
from tests.e2e.nethelp import unique_name as _name

docker = pytest.importorskip("docker")


@pytest.fixture
def client(api: Service) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=api.host, version="auto", timeout=60)
    yield c
    c.close()


def test_networks_and_name_resolution(client: docker.DockerClient, bb: str) -> None:
    n = _name("net")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.94.211.0/24")])
    net = client.networks.create(n, driver="bridge", labels={"team": "a"}, ipam=ipam)
    try:
        assert net.name == n and net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.94.211.0/24"
        assert {x.name for x in client.networks.list()} == {"bridge", "host", "none", n}
        assert [x.id for x in client.networks.list(filters={"label": "team=a"})] == [net.id]
        assert [x.name for x in client.networks.list(names=[n])] == [n]
        srv = client.containers.run("bb:1", ["httpd", "-f", "-p", "80", "-h", "/etc"],
                                    name="srv", network=n, detach=True)  # fmt: skip
        srv.reload()
        ip = srv.attrs["NetworkSettings"]["Networks"][n]["IPAddress"]
        assert ip.startswith("10.94.211.")
        out = client.containers.run("bb:1", ["nslookup", "srv"], network=n, remove=True)
        assert ip.encode() in out
        out = client.containers.run("bb:1", ["wget", "-qO-", "http://srv/hostname"],
                                    network=n, remove=True)  # fmt: skip
        assert out.decode().strip() == srv.id[:12]
        other = client.containers.run("bb:1", ["sleep", "100"], name="other", detach=True)
        net.connect(other, aliases=["buddy"])
        net.reload()
        assert {c.name for c in net.containers} == {"srv", "other"}
        retry = "for i in 1 2 3 4 5 6 7 8 9 10; do ping -c1 -W1 buddy && exit; sleep 0.3; done"
        code, out = srv.exec_run(["sh", "-c", retry])
        assert code == 0, out
        with pytest.raises(docker.errors.APIError) as exc:
            net.remove()
        assert exc.value.status_code == 409
        net.disconnect(other)
        other.reload()
        assert set(other.attrs["NetworkSettings"]["Networks"]) == {"bridge"}
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("nosuchnet")
        with pytest.raises(docker.errors.APIError) as exc:
            client.networks.create("host")
        assert exc.value.status_code == 403
        srv.remove(force=True)
        other.remove(force=True)
    finally:
        for name in ("srv", "other"):
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True)
        net.remove()
    assert client.networks.list(names=[n]) == []
    spare = client.networks.create(_name("spare"))
    assert client.networks.prune()["NetworksDeleted"] == [spare.name]


def test_volumes(client: docker.DockerClient, bb: str) -> None:
    vol = client.volumes.create("kvdata", labels={"app": "kv"})
    assert vol.name == "kvdata" and vol.attrs["Labels"] == {"app": "kv"}
    binds = {"kvdata": {"bind": "/data", "mode": "rw"}}
    client.containers.run("bb:1", ["sh", "-c", "echo persisted > /data/f"], volumes=binds,
                          remove=True)  # fmt: skip
    out = client.containers.run("bb:1", ["cat", "/d/f"], volumes=["kvdata:/d:ro"], remove=True)
    assert out == b"persisted\n"
    mount = docker.types.Mount("/m", "kvdata", type="volume", read_only=True)
    out = client.containers.run("bb:1", ["cat", "/m/f"], mounts=[mount], remove=True)
    assert out == b"persisted\n"
    assert [v.name for v in client.volumes.list(filters={"label": "app=kv"})] == ["kvdata"]
    assert client.volumes.get("kvdata").attrs["Mountpoint"].endswith("/kvdata/_data")
    holder = client.containers.run("bb:1", ["sleep", "100"], detach=True,
                                   volumes=["kvdata:/data"])  # fmt: skip
    with pytest.raises(docker.errors.APIError) as exc:
        vol.remove()
    assert exc.value.status_code == 409
    holder.remove(force=True)
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("kvdata")
    client.volumes.create("spare")
    assert client.volumes.prune(filters={"all": "true"})["VolumesDeleted"] == ["spare"]


def test_published_port_events_and_stats(client: docker.DockerClient, bb: str) -> None:
    since = time.time()
    port = _free_port()
    web = client.containers.run("bb:1", ["httpd", "-f", "-p", "80", "-h", "/etc"], name="web",
                                ports={"80/tcp": ("127.0.0.1", port)}, detach=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=3) as r:
                    assert r.read().decode().strip() == web.id[:12]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        web.reload()
        assert web.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        stats = web.stats(stream=False)
        assert stats["pids_stats"]["current"] == 1 and stats["memory_stats"]["usage"] > 0
        assert "cpu_stats" in stats and stats["name"] == "/web"
    finally:
        web.remove(force=True)
    until = time.time()
    events = list(client.events(since=since, until=until, decode=True,
                                filters={"container": "web"}))  # fmt: skip
    actions = [e["Action"] for e in events]
    for want in ("create", "start", "die", "destroy"):
        assert want in actions, actions
    assert all(e["Type"] == "container" and e["id"] == web.id for e in events)
    assert events[0]["Actor"]["Attributes"]["name"] == "web"
    nets = list(client.events(since=since, until=until, decode=True,
                              filters={"type": "network", "event": "connect"}))  # fmt: skip
    assert nets and nets[0]["Actor"]["Attributes"]["container"] == web.id
