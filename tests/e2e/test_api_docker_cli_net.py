"""The real docker CLI (20.10 and 28.x where installed) against ``moor system service``:
networks with name resolution, volumes, published ports, events and stats."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.apiservice import DOCKER_CLIS, Service
from tests.e2e.nethelp import free_port as _free_port
from tests.e2e.nethelp import http_get as _get
from tests.e2e.nethelp import unique_name as _name

pytestmark = pytest.mark.skipif(not DOCKER_CLIS, reason="no docker CLI installed")


@pytest.fixture(params=DOCKER_CLIS)
def cli(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_network_create_and_name_resolution(api: Service, bb: str, cli: str) -> None:
    n = _name("net")
    nid = api.docker("network", "create", "--label", "team=a", n, cli=cli).stdout.decode().strip()
    assert len(nid) == 64
    try:
        ls = api.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}", cli=cli)
        assert sorted(ls.stdout.decode().splitlines()) == sorted(
            ["bridge bridge", "host host", "none null", f"{n} bridge"])  # fmt: skip
        ls = api.docker("network", "ls", "-q", "--filter", "label=team=a", cli=cli)
        assert ls.stdout.decode().split() == [nid[:12]]
        api.docker("run", "-d", "--name", "srv", "--network", n, "--network-alias", "web",
                   "bb:1", "httpd", "-f", "-p", "80", "-h", "/etc", cli=cli)  # fmt: skip
        api.docker("run", "-d", "--name", "peer", "--network", n, "bb:1", "sleep", "100", cli=cli)
        # names, aliases from a --rm container on the same network
        p = api.docker("run", "--rm", "--network", n, "bb:1", "nslookup", "srv", cli=cli)
        ip = json.loads(api.docker("inspect", "srv", cli=cli).stdout)[0]["NetworkSettings"][
            "Networks"][n]["IPAddress"]  # fmt: skip
        assert ip and ip in p.stdout.decode()
        p = api.docker("run", "--rm", "--network", n, "bb:1", "ping", "-c1", "-W5", "peer",
                       cli=cli)  # fmt: skip
        assert b"1 packets received" in p.stdout
        p = api.docker("exec", "peer", "wget", "-qO-", "http://web/hostname", cli=cli)
        srv_id = api.docker("inspect", "-f", "{{.Id}}", "srv", cli=cli).stdout.decode().strip()
        assert p.stdout.decode().strip() == srv_id[:12]
        doc = json.loads(api.docker("network", "inspect", n, cli=cli).stdout)[0]
        assert doc["Name"] == n and doc["Labels"] == {"team": "a"}
        assert {c["Name"] for c in doc["Containers"].values()} == {"srv", "peer"}
        fmt = "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
        assert api.docker("inspect", "-f", fmt, "srv", cli=cli).stdout.decode().split() == [n]
        # in use: no removal; connect and disconnect a container on the default network
        p = api.docker("network", "rm", n, cli=cli, check=False)
        assert p.returncode == 1 and b"has active endpoints" in p.stderr
        api.docker("run", "-d", "--name", "third", "bb:1", "sleep", "100", cli=cli)
        api.docker("network", "connect", "--alias", "late", n, "third", cli=cli)
        # aardvark-dns reloads its records on a signal: give it a moment
        retry = "for i in 1 2 3 4 5 6 7 8 9 10; do ping -c1 -W1 late && exit; sleep 0.3; done"
        p = api.docker("exec", "peer", "sh", "-c", retry, cli=cli)
        assert b"1 packets received" in p.stdout
        api.docker("network", "disconnect", n, "third", cli=cli)
        out = api.docker("inspect", "-f", fmt, "third", cli=cli).stdout.decode().split()
        assert out == ["bridge"]
        p = api.docker("network", "inspect", "nosuchnet", cli=cli, check=False)
        assert p.returncode == 1 and b"nosuchnet" in p.stderr
        p = api.docker("run", "--rm", "--network", "nosuchnet", "bb:1", "true", cli=cli,
                       check=False)  # fmt: skip
        assert p.returncode == 125 and b"network nosuchnet not found" in p.stderr
        api.docker("rm", "-f", "srv", "peer", "third", cli=cli)
    finally:
        api.docker("rm", "-f", "srv", "peer", "third", cli=cli, check=False)
        api.docker("network", "rm", n, cli=cli, check=False)
    assert n not in api.docker("network", "ls", cli=cli).stdout.decode()
    spare = _name("spare")
    api.docker("network", "create", spare, cli=cli)
    out = api.docker("network", "prune", "-f", cli=cli).stdout.decode()
    assert out.splitlines()[:2] == ["Deleted Networks:", spare]
    api.docker("volume", "create", "dfvol", cli=cli)
    df = api.docker("system", "df", "-v", cli=cli).stdout.decode()
    assert any(line.split()[:2] == ["dfvol", "0"] for line in df.splitlines()), df


def test_volume_create_mount_and_persist(api: Service, bb: str, cli: str) -> None:
    assert api.docker("volume", "create", "--label", "app=kv", "kvdata", cli=cli).stdout == (
        b"kvdata\n")  # fmt: skip
    api.docker("run", "--rm", "-v", "kvdata:/data", "bb:1", "sh", "-c",
               "echo persisted > /data/f", cli=cli)  # fmt: skip
    p = api.docker("run", "--rm", "--mount", "type=volume,source=kvdata,target=/d,readonly",
                   "bb:1", "cat", "/d/f", cli=cli)  # fmt: skip
    assert p.stdout == b"persisted\n"
    p = api.docker("run", "--rm", "-v", "kvdata:/d:ro", "bb:1", "touch", "/d/x", cli=cli,
                   check=False)  # fmt: skip
    assert p.returncode == 1 and b"Read-only file system" in p.stderr
    ls = api.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}", cli=cli)
    assert ls.stdout == b"local kvdata\n"
    doc = json.loads(api.docker("volume", "inspect", "kvdata", cli=cli).stdout)[0]
    assert doc["Labels"] == {"app": "kv"} and doc["Mountpoint"].endswith("/kvdata/_data")
    api.docker("run", "-d", "--name", "holder", "-v", "kvdata:/data", "bb:1", "sleep", "100",
               cli=cli)  # fmt: skip
    p = api.docker("volume", "rm", "kvdata", cli=cli, check=False)
    assert p.returncode == 1 and b"volume is in use" in p.stderr
    api.docker("rm", "-f", "holder", cli=cli)
    assert api.docker("volume", "rm", "kvdata", cli=cli).stdout == b"kvdata\n"
    p = api.docker("volume", "inspect", "kvdata", cli=cli, check=False)
    assert p.returncode == 1 and b"no such volume" in p.stderr.lower()
    api.docker("volume", "create", "spare", cli=cli)
    out = api.docker("volume", "prune", "-f", "--filter", "all=true", cli=cli, check=False)
    if out.returncode != 0:  # the 20.10 CLI knows no all= filter: its prune takes them all
        out = api.docker("volume", "prune", "-f", cli=cli)
    assert b"spare" in out.stdout
    assert api.docker("volume", "ls", "-q", cli=cli).stdout == b""


def test_published_port_reachable_from_host(api: Service, bb: str, cli: str) -> None:
    port = _free_port()
    api.docker("run", "-d", "--name", "pub", "-p", f"127.0.0.1:{port}:80", "bb:1",
               "httpd", "-f", "-p", "80", "-h", "/etc", cli=cli)  # fmt: skip
    try:
        cid = api.docker("inspect", "-f", "{{.Id}}", "pub", cli=cli).stdout.decode().strip()
        assert _get(f"http://127.0.0.1:{port}/hostname").decode().strip() == cid[:12]
        assert api.docker("port", "pub", cli=cli).stdout.decode().strip() == (
            f"80/tcp -> 127.0.0.1:{port}")  # fmt: skip
        ps = api.docker("ps", "--format", "{{.Names}} {{.Ports}}", cli=cli).stdout.decode()
        assert ps.strip() == f"pub 127.0.0.1:{port}->80/tcp"
        p = api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "pub", cli=cli)
        assert p.stdout == b"pub 1\n"
        # -P: a free host port for the exposed one
        api.docker("run", "-d", "--name", "puball", "--expose", "80", "-P", "bb:1",
                   "httpd", "-f", "-p", "80", "-h", "/etc", cli=cli)  # fmt: skip
        line = api.docker("port", "puball", "80", cli=cli).stdout.decode().splitlines()[0]
        host_port = int(line.rsplit(":", 1)[1])
        assert _get(f"http://127.0.0.1:{host_port}/hostname")
        p = api.docker("run", "--rm", "-p", "127.0.0.1:notaport:80", "bb:1", "true", cli=cli,
                       check=False)  # fmt: skip
        assert p.returncode == 125
    finally:
        api.docker("rm", "-f", "pub", "puball", cli=cli, check=False)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2)


def test_events(api: Service, bb: str, cli: str) -> None:
    since = time.time()
    api.docker("run", "--name", "evt", "--label", "kind=probe", "bb:1", "true", cli=cli)
    api.docker("rm", "evt", cli=cli)
    api.docker("volume", "create", "evvol", cli=cli)
    until = time.time()
    fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
    p = api.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                   "--filter", "container=evt", "--format", fmt, cli=cli)  # fmt: skip
    lines = p.stdout.decode().splitlines()
    for want in ("container create evt", "container start evt", "container die evt",
                 "container destroy evt"):  # fmt: skip
        assert want in lines, lines
    assert all(line.startswith("container ") for line in lines)
    p = api.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                   "--filter", "type=volume", cli=cli)  # fmt: skip
    out = p.stdout.decode().splitlines()
    assert len(out) == 1 and " volume create evvol " in out[0] and "(driver=local)" in out[0]
    p = api.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                   "--filter", "label=kind=probe", "--filter", "event=die", "--format",
                   "{{json .}}", cli=cli)  # fmt: skip
    ev = json.loads(p.stdout)
    assert ev["Action"] == "die" and ev["status"] == "die" and ev["from"] == "bb:1"
    assert ev["Actor"]["Attributes"]["exitCode"] == "0"
    # live, bounded by --until in the future: ends by itself with what happened meanwhile
    live_until = time.time() + 3
    follow = api.docker_popen("events", "--until", f"{live_until:.3f}", "--filter",
                              "type=volume", "--format", "{{.Action}} {{.Actor.ID}}",
                              cli=cli)  # fmt: skip
    time.sleep(1)
    api.docker("volume", "rm", "evvol", cli=cli)
    out_b, _ = follow.communicate(timeout=20)
    assert out_b.decode().splitlines() == ["destroy evvol"]
    p = api.docker("events", "--filter", "colour=red", "--until", "0s", cli=cli, check=False)
    assert p.returncode != 0 and b"colour" in p.stderr
