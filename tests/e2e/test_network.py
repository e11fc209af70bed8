"""Networks end to end through the real `moor`: the default bridge, user networks with names,
isolation, --internal, published ports, links, connect/disconnect, bad input, and no leak
after many cycles. Traffic goes only to loopback and to containers these tests made."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import Moor
from tests.e2e.nethelp import free_port as _free_port
from tests.e2e.nethelp import http_get
from tests.e2e.nethelp import unique_name as _name


def _get(url: str, timeout: float = 5) -> str:
    return http_get(url, timeout, per_try=2, pause=0.05).decode()


# a web server for tests: busybox httpd serving /etc (so /hostname tells which container)
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/etc")


@pytest.fixture(params=["native", "netavark"])
def net_moor(request: pytest.FixtureRequest, moor: Moor, bb: str) -> Iterator[Moor]:
    """``moor`` with the network backend under test."""
    os.environ["MOORAGE_NETWORK_BACKEND"] = request.param
    try:
        yield moor
    finally:
        os.environ.pop("MOORAGE_NETWORK_BACKEND", None)


def _inspect(moor: Moor, ref: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(moor("inspect", ref).stdout)[0]
    return doc


def _our_links(ids: list[str], wait: float = 5) -> list[str]:
    """Host veth ends of these containers (the kernel destroys a removed namespace's pairs
    in its own time: wait a little for that)."""
    prefixes = tuple(f"mv{cid[:6]}" for cid in ids)
    deadline = time.monotonic() + wait
    while True:
        found = [n for n in os.listdir("/sys/class/net") if n.startswith(prefixes)]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def _iptables(word: str) -> list[str]:
    """iptables rules (both tables netavark uses) that mention ``word``."""
    out = []
    for table in ("nat", "filter"):
        p = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        out += [ln for ln in p.stdout.splitlines() if word in ln]
    return out


def _bridge(moor: Moor, network: str) -> str:
    doc = json.loads(moor("network", "inspect", network).stdout)[0]
    name: str = doc["Options"]["com.docker.network.bridge.name"]
    return name


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if "moorage-" in line}


def test_default_bridge(net_moor: Moor) -> None:
    moor = net_moor
    out = moor("run", "--rm", "--hostname", "box", "--add-host", "extra.test:10.1.2.3", "bb:1",
               "sh", "-c", "ip -4 -o addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf"
               ).stdout  # fmt: skip
    addr = out.split("inet ")[1].split("/")[0]
    assert "default via " in out
    assert f"{addr}\tbox" in out
    assert "10.1.2.3\textra.test" in out
    for line in out.splitlines():
        if line.startswith("nameserver"):
            assert not line.split()[1].startswith("127.")
    cid = moor("run", "-d", "bb:1", "sleep", "30").stdout.strip()
    ns = _inspect(moor, cid)["NetworkSettings"]
    assert isinstance(ns, dict)
    assert ns["IPAddress"].startswith("10.") and ns["Gateway"] and ns["IPPrefixLen"] == 24
    assert ns["MacAddress"].startswith("02:42:")
    assert set(ns["Networks"]) == {"moor"}
    assert ns["Networks"]["moor"]["IPAddress"] == ns["IPAddress"]
    assert moor("ps", "--format", "{{.Networks}}").stdout.strip() == "moor"
    net = json.loads(moor("network", "inspect", "moor").stdout)[0]
    assert cid in net["Containers"] and net["Driver"] == "bridge"
    assert net["IPAM"]["Config"][0]["Gateway"] == ns["Gateway"]
    moor("rm", "-f", cid)
    assert not _our_links([cid])


def test_user_network_names_isolation_internal(net_moor: Moor) -> None:
    moor = net_moor
    n1, n2, ni = _name(), _name(), _name()
    try:
        moor("network", "create", "--label", "team=a", n1)
        moor("network", "create", n2)
        moor("network", "create", "--internal", ni)
        bridges = {_bridge(moor, x) for x in (n1, n2, ni)}
        ls = moor("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.splitlines()
        assert f"{n1} bridge" in ls and "moor bridge" in ls and "host host" in ls
        assert moor("network", "ls", "-q", "-f", "label=team=a").stdout.strip() == \
            json.loads(moor("network", "inspect", n1).stdout)[0]["Id"][:12]  # fmt: skip
        web = moor("run", "-d", "--name", _name("web"), "--network", n1,
                   "--network-alias", "www", "bb:1", *HTTPD).stdout.strip()  # fmt: skip
        name = _inspect(moor, web)["Name"]
        assert isinstance(name, str)
        for host in (name.lstrip("/"), web[:12], "www"):
            out = moor("run", "--rm", "--network", n1, "bb:1",
                       "wget", "-qO-", f"http://{host}/hostname").stdout  # fmt: skip
            assert out.strip() == web[:12]
        ip1 = _inspect(moor, web)["NetworkSettings"]["Networks"][n1]["IPAddress"]  # type: ignore[index]
        # another user network cannot reach it, nor resolve its name
        r = moor("run", "--rm", "--network", n2, "bb:1", "sh", "-c",
                 f"wget -T 2 -qO- http://{ip1}/hostname || echo blocked; "
                 f"nslookup www >/dev/null 2>&1 || echo unknown", check=False)  # fmt: skip
        assert "blocked" in r.stdout and "unknown" in r.stdout
        # --internal: no route out, and nothing beyond its own bridge
        script = f"ip route; wget -T 2 -qO- http://{ip1}/hostname || echo blocked"
        r = moor("run", "--rm", "--network", ni, "bb:1", "sh", "-c", script, check=False)
        assert "default" not in r.stdout and "blocked" in r.stdout
        # names follow joins and leaves at once
        moor("stop", "-t", "0", web)
        out = moor("run", "--rm", "--network", n1, "bb:1", "sh", "-c",
                   "nslookup www >/dev/null 2>&1 && echo found || echo gone").stdout  # fmt: skip
        assert out.strip() == "gone"
        # a network with a container cannot be removed; one without can
        r = moor("network", "rm", n1, check=False)
        assert r.returncode == 1 and "active endpoints" in r.stderr
        moor("rm", web)
    finally:
        moor("network", "rm", n1, n2, ni, check=False)
    assert not {t for t in _nft_tables() if t.removeprefix("moorage-") in bridges}
    assert not [b for b in bridges if os.path.exists(f"/sys/class/net/{b}")]
    assert moor("network", "ls", "-q", "-f", f"name={n1}").stdout == ""


def test_published_ports(net_moor: Moor) -> None:
    moor = net_moor
    port = _free_port()
    cid = moor("run", "-d", "-p", f"127.0.0.1:{port}:80", "-p", "80", "-p", "8053:53/udp",
               "--expose", "9000", "bb:1", *HTTPD).stdout.strip()  # fmt: skip
    assert _get(f"http://127.0.0.1:{port}/hostname").strip() == cid[:12]
    lines = moor("port", cid).stdout.splitlines()
    assert f"80/tcp -> 127.0.0.1:{port}" in lines
    assert "53/udp -> 0.0.0.0:8053" in lines
    random_port = int(next(x for x in lines if "0.0.0.0" in x and "80/tcp" in x).rsplit(":", 1)[1])
    assert _get(f"http://127.0.0.1:{random_port}/hostname").strip() == cid[:12]
    assert moor("port", cid, "53/udp").stdout.strip() == "0.0.0.0:8053"
    ports = moor("ps", "--format", "{{.Ports}}").stdout.strip()
    assert f"127.0.0.1:{port}->80/tcp" in ports and "9000/tcp" in ports
    assert "0.0.0.0:8053->53/udp" in ports
    settings = _inspect(moor, cid)["NetworkSettings"]
    assert isinstance(settings, dict)
    assert {"HostIp": "127.0.0.1", "HostPort": str(port)} in settings["Ports"]["80/tcp"]
    assert settings["Ports"]["9000/tcp"] is None
    # from another container, through the host's address on its own bridge
    gw = settings["Gateway"]
    out = moor("run", "--rm", "bb:1", "wget", "-qO-", f"http://{gw}:{random_port}/hostname").stdout
    assert out.strip() == cid[:12]
    # the same host port again: refused before the container starts, naming the port
    r = moor("run", "-d", "--name", "second", "-p", f"127.0.0.1:{port}:80", "bb:1", *HTTPD,
             check=False)  # fmt: skip
    assert r.returncode == 125 and f"127.0.0.1:{port}" in r.stderr
    assert moor("ps", "-q", "-f", "name=second").stdout == ""
    moor("rm", "-f", cid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=1)


def test_port_in_use_on_host(net_moor: Moor) -> None:
    moor = net_moor
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = moor("run", "--rm", "-p", f"127.0.0.1:{port}:80", "bb:1", "true", check=False)
        assert r.returncode == 125
        assert f"127.0.0.1:{port}" in r.stderr and "already allocated" in r.stderr
    assert not list((moor.runroot / "netns").glob("*"))


def test_links(net_moor: Moor) -> None:
    moor = net_moor
    db = moor("run", "-d", "--name", "db", "-e", "SECRET=s3", "--expose", "6379", "bb:1",
              "httpd", "-f", "-p", "6379", "-h", "/etc").stdout.strip()  # fmt: skip
    out = moor("run", "--rm", "--name", "web", "--link", "db", "--link", "db:cache", "bb:1",
               "sh", "-c", "env | sort; cat /etc/hosts; wget -qO- http://cache:6379/hostname"
               ).stdout  # fmt: skip
    ip = _inspect(moor, db)["NetworkSettings"]["IPAddress"]  # type: ignore[index]
    env = dict(
        line.split("=", 1) for line in out.splitlines() if line.startswith(("DB_", "CACHE_"))
    )
    assert env["DB_NAME"] == "/web/db"
    assert env["CACHE_NAME"] == "/web/cache"
    assert env["DB_PORT"] == f"tcp://{ip}:6379"
    assert env["DB_PORT_6379_TCP"] == f"tcp://{ip}:6379"
    assert env["DB_PORT_6379_TCP_ADDR"] == ip
    assert env["DB_PORT_6379_TCP_PORT"] == "6379"
    assert env["DB_PORT_6379_TCP_PROTO"] == "tcp"
    assert env["DB_ENV_SECRET"] == "s3"
    assert "DB_ENV_PATH" not in env
    assert f"{ip}\tdb {db[:12]}" in out
    assert f"{ip}\tcache {db[:12]} db" in out
    assert out.strip().endswith(db[:12])
    moor("stop", "-t", "0", "db")
    r = moor("run", "--rm", "--link", "db", "bb:1", "true", check=False)
    assert r.returncode == 125 and "non running container" in r.stderr


def test_connect_disconnect_and_modes(net_moor: Moor) -> None:
    moor = net_moor
    n = _name()
    moor("network", "create", "--subnet", "10.94.200.0/24", "--ip-range", "10.94.200.128/25", n)
    try:
        a = moor("run", "-d", "--name", "ca", "--network", n, "--ip", "10.94.200.7", "bb:1",
                 *HTTPD).stdout.strip()  # fmt: skip
        assert _inspect(moor, a)["NetworkSettings"]["Networks"][n]["IPAddress"] == "10.94.200.7"  # type: ignore[index]
        b = moor("run", "-d", "--name", "cb", "bb:1", "sleep", "30").stdout.strip()
        moor("network", "connect", "--alias", "bee", n, "cb")
        nets = _inspect(moor, b)["NetworkSettings"]["Networks"]  # type: ignore[index]
        assert set(nets) == {"moor", n} and nets[n]["IPAddress"].startswith("10.94.200.1")
        out = moor("exec", "cb", "wget", "-qO-", "http://ca/hostname").stdout
        assert out.strip() == a[:12]
        out = moor("exec", "ca", "nslookup", "bee").stdout
        assert nets[n]["IPAddress"] in out
        moor("network", "disconnect", n, "cb")
        out = moor("exec", "cb", "ip", "-o", "link").stdout
        assert "eth1" not in out
        # container: mode shares a's namespace
        out = moor(
            "run", "--rm", "--network", "container:ca", "bb:1", "ip", "-4", "-o", "addr"
        ).stdout
        assert "10.94.200.7" in out
        out = moor("run", "--rm", "--network", "none", "bb:1", "ip", "-o", "link").stdout
        assert "eth0" not in out
        out = moor("run", "--rm", "--network", "host", "bb:1", "cat", "/proc/net/dev").stdout
        assert "lo:" in out and "eth0" not in out.split("lo:")[0]
        moor("rm", "-f", a, b)
    finally:
        moor("network", "rm", n, check=False)


def test_bad_input(net_moor: Moor) -> None:
    moor = net_moor
    n = _name()
    for args, words in (
        (("--network", "nosuchnet"), "network nosuchnet not found"),
        (("-p", "80:abc"), "invalid containerPort"),
        (("-p", "1-3:80-81"), "invalid ranges"),
        (("-p", "70000:80"), "invalid hostPort"),
        (("--ip", "10.0.0.9"), "user defined networks only"),
        (("--network", "none", "-p", "80:80"), "port publishing"),
        (("--link", "nosuch"), "could not get container"),
    ):
        r = moor("run", "--rm", *args, "bb:1", "true", check=False)
        assert r.returncode == 125, (args, r.stderr)
        assert words in r.stderr, (args, r.stderr)
    assert moor("ps", "-aq").stdout == ""
    moor("network", "create", "--subnet", "10.94.201.0/24", n)
    try:
        r = moor("network", "create", "--subnet", "10.94.201.128/25", _name(), check=False)
        assert r.returncode == 1 and "overlaps" in r.stderr
        host_routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        routed = next(w for w in host_routes.split() if "/" in w)
        r = moor("network", "create", "--subnet", routed, _name(), check=False)
        assert r.returncode == 1 and "overlaps" in r.stderr
        r = moor("network", "create", n, check=False)
        assert r.returncode == 1 and "already exists" in r.stderr
        r = moor("network", "create", "bad/name", check=False)
        assert r.returncode == 1 and "invalid network name" in r.stderr
        r = moor("network", "rm", "moor", check=False)
        assert r.returncode == 1 and "pre-defined" in r.stderr
        r = moor("network", "rm", "nosuchnet", check=False)
        assert r.returncode == 1 and "No such network: nosuchnet" in r.stderr
    finally:
        moor("network", "rm", n)
    assert len(moor("network", "ls", "-q").stdout.split()) == 3  # moor, host, none


def test_no_leak_after_100_cycles(net_moor: Moor) -> None:
    """run/rm cycles with a published port on a user network, by every exit path (conmon's
    exit command, stop, rm -f, rm -f after kill -9 of conmon): the host ends as it began."""
    moor = net_moor
    n = _name()
    moor("network", "create", n)
    ours = f"moorage-{_bridge(moor, n)}"  # other stores on the machine have theirs
    tables = _nft_tables() & {ours}
    subnet = json.loads(moor("network", "inspect", n).stdout)[0]["IPAM"]["Config"][0]["Subnet"]
    ids = []
    # netavark spends ~250 ms per teardown in iptables execs: fewer rounds for it
    default = "100" if os.environ.get("MOORAGE_NETWORK_BACKEND") != "netavark" else "24"
    cycles = int(os.environ.get("MOORAGE_RUN_CYCLES", default))
    try:
        for i in range(cycles):
            port = _free_port()
            cid = moor("run", "-d", "--network", n, "-p", f"127.0.0.1:{port}:80", "bb:1",
                       *(HTTPD if i % 4 else ("true",))).stdout.strip()  # fmt: skip
            ids.append(cid)
            if i % 4 == 0:
                moor("wait", cid)  # ended by itself: conmon's exit command tore it down
            elif i % 4 == 1:
                moor("stop", "-t", "0", cid)
            elif i % 4 == 3:
                os.kill(int((moor.runroot / "containers" / cid / "conmon.pid").read_text()), 9)
            moor("rm", "-f", cid)
        assert not _our_links(ids)
        assert _nft_tables() & {ours} == tables
        assert not list((moor.runroot / "netns").glob("*"))
        prefix = subnet.rsplit(".", 1)[0] + "."
        assert not [r for r in _iptables(prefix) if "dport" in r or "DNAT" in r]
        assert not _iptables(f"dnat name: {n} ")
        table = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
        for item in json.loads(table.stdout)["nftables"]:
            m = item.get("map")
            if m and m["table"] in tables and m["table"].startswith("moorage-"):
                net_id = json.loads(moor("network", "inspect", n).stdout)[0]["Id"]
                if net_id[:12] in m["table"]:
                    assert not m.get("elem"), m
        dns = moor.runroot / "network" / "aardvark" / n
        assert not dns.exists() or dns.read_text().count("\n") == 1
    finally:
        moor("network", "rm", n, check=False)


KV_STORE = """#!/bin/sh
key=$(echo "$QUERY_STRING" | sed -n 's/.*key=\\([a-zA-Z0-9_]*\\).*/\\1/p')
printf 'Content-Type: text/plain\\r\\n\\r\\n'
if [ "$REQUEST_METHOD" = POST ]; then
  head -c "$CONTENT_LENGTH" > "/data/$key"; echo stored
else
  cat "/data/$key" 2>/dev/null || echo missing
fi
"""

FRONT_END = """#!/bin/sh
key=$(echo "$QUERY_STRING" | sed -n 's/.*key=\\([a-zA-Z0-9_]*\\).*/\\1/p')
value=$(echo "$QUERY_STRING" | sed -n 's/.*value=\\([a-zA-Z0-9_]*\\).*/\\1/p')
printf 'Content-Type: text/plain\\r\\n\\r\\n'
store="http://db:$DB_PORT_80_TCP_PORT/cgi-bin/kv?key=$key"
if [ -n "$value" ]; then wget -qO- --post-data "$value" "$store" >/dev/null; fi
echo "$key=$(wget -qO- "$store") via $DB_NAME"
"""

SERVE = 'mkdir -p /www/cgi-bin /data && printf "%s" "$APP" > /www/cgi-bin/$CGI && '
SERVE += "chmod +x /www/cgi-bin/$CGI && exec httpd -f -p 80 -h /www"


def test_seed_micro_service(net_moor: Moor) -> None:
    """The seed's micro-service on one host: a key-value store, a web front end linked to
    it with its port published on 127.0.0.1, and requests from the host through both."""
    moor = net_moor
    port = _free_port()
    moor("run", "-d", "--name", "db", "--expose", "80", "-e", f"APP={KV_STORE}",
         "-e", "CGI=kv", "bb:1", "sh", "-c", SERVE)  # fmt: skip
    moor("run", "-d", "--name", "front", "--link", "db", "-p", f"127.0.0.1:{port}:80",
         "-e", f"APP={FRONT_END}", "-e", "CGI=app", "bb:1", "sh", "-c", SERVE)  # fmt: skip
    base = f"http://127.0.0.1:{port}/cgi-bin/app"
    assert _get(f"{base}?key=greeting&value=hello").strip() == "greeting=hello via /front/db"
    assert _get(f"{base}?key=greeting").strip() == "greeting=hello via /front/db"
    assert _get(f"{base}?key=other").strip() == "other=missing via /front/db"
    # the value is in the store's container, not the front end's
    assert moor("exec", "db", "cat", "/data/greeting").stdout == "hello"
    moor("rm", "-f", "front", "db")


def test_publish_all_and_ranges(net_moor: Moor) -> None:
    moor = net_moor
    base = _free_port()  # and (most likely) base + 1
    cid = moor("run", "-d", "-P", "--expose", "7000-7001", "-p",
               f"127.0.0.1:{base}-{base + 1}:80-81", "bb:1", *HTTPD).stdout.strip()  # fmt: skip
    lines = moor("port", cid).stdout.splitlines()
    assert f"80/tcp -> 127.0.0.1:{base}" in lines and f"81/tcp -> 127.0.0.1:{base + 1}" in lines
    exposed = {ln.split(" -> ")[0] for ln in lines}
    assert {"7000/tcp", "7001/tcp"} <= exposed  # -P: every exposed port, on a random one
    assert _get(f"http://127.0.0.1:{base}/hostname").strip() == cid[:12]
    bindings = _inspect(moor, cid)["HostConfig"]["PortBindings"]  # type: ignore[index]
    assert bindings["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(base)}]
    moor("rm", "-f", cid)


def test_parallel_starts_share_one_dns_server(moor: Moor, bb: str) -> None:
    """Commands that join a user network at once start one aardvark-dns, not one each, and
    nothing but network files is in its config directory (it reads them all)."""
    import concurrent.futures

    net = f"par{os.getpid() % 100000}"
    moor("network", "create", net)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(
            lambda i: moor("run", "-d", "--network", net, "bb:1", "sleep", "100").stdout.strip(),
            range(4),
        ))  # fmt: skip
    conf = moor.runroot / "network" / "aardvark"
    servers = [
        p for p in os.listdir("/proc") if p.isdigit()
        and _cmdline(int(p)).startswith(f"/usr/lib/podman/aardvark-dns --config {conf} ")
    ]  # fmt: skip
    assert len(servers) == 1
    assert sorted(f.name for f in conf.iterdir()) == ["aardvark.pid", net]
    name = moor("inspect", "-f", "{{.Name}}", ids[0]).stdout.strip().lstrip("/")
    r = moor("run", "--rm", "--network", net, "bb:1", "nslookup", name)
    assert "Address" in r.stdout
    moor("rm", "-f", *ids)
    moor("network", "rm", net)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_default_network_inspectable_before_first_use(moor: Moor) -> None:
    """`inspect moor` / `inspect bridge` on a new store: the default network, as `network ls`
    lists it, without creating its bridge on the host."""
    import json

    for name in ("moor", "bridge"):
        doc = json.loads(moor("inspect", name).stdout)
        assert [d["Name"] for d in doc] == ["moor"]
        assert doc[0]["Driver"] == "bridge"
        assert json.loads(moor("inspect", "--type", "network", name).stdout)[0]["Name"] == "moor"
    bridge = json.loads(moor("network", "inspect", "moor").stdout)[0]["Options"][
        "com.docker.network.bridge.name"
    ]
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    r = moor("inspect", "--type", "volume", "moor", check=False)
    assert r.returncode == 1 and "No such" in r.stderr
