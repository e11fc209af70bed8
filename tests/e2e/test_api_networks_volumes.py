"""Networks, volumes, create's HostConfig/NetworkingConfig and /events through the raw API
of a real ``moor system service``: Docker's shapes, statuses and messages."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse

from tests.e2e.apiservice import Service


def _name(prefix: str = "t") -> str:
    return f"{prefix}{os.urandom(4).hex()}"


def _q(filters: dict[str, list[str]]) -> str:
    return "?filters=" + urllib.parse.quote(json.dumps(filters))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_network_endpoints(api: Service, bb: str) -> None:
    n = _name("n")
    r = api.request("POST", "/v1.41/networks/create", {
        "Name": n, "Driver": "bridge", "CheckDuplicate": True, "Internal": True,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.94.210.0/24",
                                                  "Gateway": "10.94.210.254",
                                                  "IPRange": "10.94.210.128/25"}]},
        "Labels": {"team": "a"},
    })  # fmt: skip
    assert r.status == 201, r.body
    nid = r.json()["Id"]
    assert r.json()["Warning"] == "" and len(nid) == 64
    try:
        r = api.request("POST", "/v1.41/networks/create", {"Name": n, "CheckDuplicate": True})
        assert (r.status, r.json()["message"]) == (409, f"network with name {n} already exists")
        doc = api.request("GET", f"/v1.41/networks/{n}").json()
        assert doc["Id"] == nid and doc["Name"] == n and doc["Driver"] == "bridge"
        assert doc["Internal"] is True and doc["Labels"] == {"team": "a"}
        assert doc["IPAM"]["Config"] == [{"Subnet": "10.94.210.0/24", "Gateway": "10.94.210.254",
                                          "IPRange": "10.94.210.128/25"}]  # fmt: skip
        assert api.request("GET", f"/networks/{nid[:10]}").json()["Name"] == n

        names = [d["Name"] for d in api.request("GET", "/v1.41/networks").json()]
        assert sorted(names) == sorted(["bridge", "host", "none", n])
        for flt, want in (
            ({"name": [n]}, [n]),
            ({"label": ["team=a"]}, [n]),
            ({"label": ["team=b"]}, []),
            ({"type": ["custom"]}, [n]),
            ({"driver": ["host"]}, ["host"]),
            ({"id": [nid[:12]]}, [n]),
            ({"dangling": ["true"]}, [n]),
        ):
            got = [d["Name"] for d in api.request("GET", "/v1.41/networks" + _q(flt)).json()]
            assert got == want, flt
        host = api.request("GET", "/v1.41/networks/host").json()
        assert host["Driver"] == "host" and host["Containers"] == {}
        assert api.request("GET", f"/v1.41/networks/{host['Id'][:12]}").json() == host
        bridge = api.request("GET", "/v1.41/networks/bridge").json()
        assert bridge["Name"] == "bridge"
        assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"

        # connect with an alias and a fixed address, inspect, disconnect
        cid = api.request("POST", "/v1.41/containers/create?name=c1",
                          {"Image": "bb:1", "Cmd": ["sleep", "100"]}).json()["Id"]  # fmt: skip
        r = api.request("POST", f"/v1.41/networks/{n}/connect", {
            "Container": "c1",
            "EndpointConfig": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.94.210.140"}},
        })  # fmt: skip
        assert r.status == 200, r.body
        r = api.request("POST", f"/v1.41/networks/{n}/connect", {"Container": "c1"})
        assert (r.status, r.json()["message"]) == (
            403, f"endpoint with name c1 already exists in network {n}")  # fmt: skip
        assert api.request("POST", f"/v1.41/containers/{cid}/start").status == 204
        ctr = api.request("GET", f"/v1.41/containers/{cid}/json").json()
        nets = ctr["NetworkSettings"]["Networks"]
        assert set(nets) == {"bridge", n}
        assert nets[n]["IPAddress"] == "10.94.210.140" and nets[n]["Gateway"] == "10.94.210.254"
        assert "web" in nets[n]["Aliases"] and nets[n]["MacAddress"]
        assert nets["bridge"]["IPAddress"] and nets["bridge"]["Gateway"]
        doc = api.request("GET", f"/v1.41/networks/{n}").json()
        assert doc["Containers"][cid]["IPv4Address"] == "10.94.210.140/24"
        r = api.request("DELETE", f"/v1.41/networks/{n}")
        assert r.status == 409 and "has active endpoints" in r.json()["message"]
        r = api.request("POST", f"/v1.41/networks/{n}/disconnect", {"Container": cid})
        assert r.status == 200, r.body
        assert set(api.request("GET", f"/containers/{cid}/json").json()["NetworkSettings"][
            "Networks"]) == {"bridge"}  # fmt: skip
        r = api.request("POST", f"/v1.41/networks/{n}/disconnect", {"Container": cid})
        assert r.status == 403 and "is not connected to network" in r.json()["message"]
        r = api.request("POST", f"/v1.41/networks/{n}/disconnect",
                        {"Container": "gone", "Force": True})  # fmt: skip
        assert r.status == 200
        r = api.request("POST", "/v1.41/networks/host/connect", {"Container": cid})
        assert r.status == 403
        assert api.request("DELETE", f"/v1.41/containers/{cid}?force=1").status == 204
    finally:
        r = api.request("DELETE", f"/v1.41/networks/{n}")
    assert r.status == 204, r.body
    r = api.request("GET", f"/v1.41/networks/{n}")
    assert (r.status, r.json()["message"]) == (404, f"network {n} not found")
    assert api.request("DELETE", f"/v1.41/networks/{n}").status == 404
    # prune: labels select; what is left is only the predefined ones
    a, b = _name("p"), _name("p")
    for name, label in ((a, "keep"), (b, "drop")):
        r = api.request("POST", "/networks/create", {"Name": name, "Labels": {"x": label}})
        assert r.status == 201
    r = api.request("POST", "/v1.41/networks/prune" + _q({"label": ["x=drop"]}))
    assert r.json() == {"NetworksDeleted": [b]}
    assert api.request("POST", "/v1.41/networks/prune").json() == {"NetworksDeleted": [a]}
    assert api.request("POST", "/v1.41/networks/prune").json() == {"NetworksDeleted": None}


def test_network_bad_input(api: Service) -> None:
    cases = [
        ("POST", "/networks/create", "{bad", 400, "invalid JSON"),
        ("POST", "/networks/create", {"Name": 5}, 400,
         "json: cannot unmarshal number into Go struct field NetworkCreateRequest.Name of type "
         "string"),
        ("POST", "/networks/create", {}, 400, "network name must not be empty"),
        ("POST", "/networks/create", {"Name": "host"}, 403,
         "operation is not permitted on predefined host network"),
        ("POST", "/networks/create", {"Name": "bridge"}, 403,
         "operation is not permitted on predefined bridge network"),
        ("POST", "/networks/create", {"Name": "x1", "Driver": "overlay"}, 404,
         'plugin "overlay" not found'),
        ("POST", "/networks/create", {"Name": "bad name!"}, 400, "invalid network name"),
        ("POST", "/networks/create", {"Name": "x2", "IPAM": {"Config": [{"Subnet": "nope"}]}},
         400, "nope"),
        ("POST", "/networks/create", {"Name": "x3", "IPAM": {"Config": "10.0.0.0/8"}}, 400,
         "cannot unmarshal string"),
        ("DELETE", "/networks/bridge", None, 403,
         "bridge is a pre-defined network and cannot be removed"),
        ("DELETE", "/networks/none", None, 403,
         "none is a pre-defined network and cannot be removed"),
        ("GET", "/networks/nosuch", None, 404, "network nosuch not found"),
        ("POST", "/networks/nosuch/connect", {"Container": "c"}, 404, "network nosuch not found"),
        ("POST", "/networks/bridge/connect", {"Container": "nosuch"}, 404,
         "No such container: nosuch"),
        ("POST", "/networks/bridge/connect", {}, 400, "no container specified"),
        ("POST", "/networks/bridge/connect", {"Container": "c", "EndpointConfig": []}, 400,
         "cannot unmarshal array"),
        ("GET", "/networks" + _q({"colour": ["red"]}), None, 400, "invalid filter 'colour'"),
        ("GET", "/networks?filters=notjson", None, 400, "invalid filter"),
    ]  # fmt: skip
    for method, path, body, status, message in cases:
        r = api.request(method, "/v1.41" + path, body if body is not None else None)
        assert r.status == status, (path, body, r.body)
        assert message in r.json()["message"], (path, body, r.body)
    assert api.request("GET", "/_ping").status == 200
    assert [d["Name"] for d in api.request("GET", "/networks").json()] == [
        "bridge", "host", "none"]  # fmt: skip


def test_volume_endpoints(api: Service, bb: str) -> None:
    r = api.request("POST", "/v1.41/volumes/create",
                    {"Name": "data", "Labels": {"app": "kv"}, "Driver": "local"})  # fmt: skip
    assert r.status == 201, r.body
    doc = r.json()
    assert doc["Name"] == "data" and doc["Driver"] == "local" and doc["Labels"] == {"app": "kv"}
    assert doc["Scope"] == "local" and doc["Mountpoint"].endswith("/volumes/data/_data")
    assert api.request("POST", "/volumes/create", {"Name": "data"}).status == 201  # idempotent
    anon = api.request("POST", "/volumes/create", {}).json()["Name"]
    assert len(anon) == 64
    tmp = api.request("POST", "/volumes/create",
                      {"Name": "scratch", "DriverOpts": {"type": "tmpfs", "device": "tmpfs",
                                                         "o": "size=1m"}}).json()  # fmt: skip
    assert tmp["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    listing = api.request("GET", "/v1.41/volumes").json()
    assert listing["Warnings"] == []
    assert sorted(v["Name"] for v in listing["Volumes"]) == sorted(["data", anon, "scratch"])
    assert api.request("GET", "/v1.41/volumes/data").json()["Labels"] == {"app": "kv"}

    # a container writes into it; in use: no removal, not dangling
    r = api.request("POST", "/v1.41/containers/create?name=writer", {
        "Image": "bb:1", "Cmd": ["sh", "-c", "echo kept > /data/f"],
        "HostConfig": {"Binds": ["data:/data"]}})  # fmt: skip
    assert r.status == 201, r.body
    cid = r.json()["Id"]
    assert api.request("POST", f"/containers/{cid}/start").status == 204
    assert api.request("POST", f"/containers/{cid}/wait").json()["StatusCode"] == 0
    mounts = api.request("GET", f"/containers/{cid}/json").json()["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [
        ("volume", "data", "/data")]  # fmt: skip
    r = api.request("DELETE", "/v1.41/volumes/data")
    assert r.status == 409 and "volume is in use" in r.json()["message"]
    for flt, want in (
        ({"dangling": ["false"]}, ["data"]),
        ({"dangling": ["true"]}, sorted([anon, "scratch"])),
        ({"name": ["scr"]}, ["scratch"]),
        ({"label": ["app=kv"]}, ["data"]),
        ({"label": ["app"]}, ["data"]),
        ({"driver": ["local"], "name": ["data"]}, ["data"]),
    ):
        got = sorted(v["Name"] for v in api.request("GET", "/volumes" + _q(flt)).json()["Volumes"])
        assert got == want, flt
    df = api.request("GET", "/v1.41/system/df").json()["Volumes"]
    usage = {v["Name"]: v["UsageData"] for v in df}
    assert usage["data"]["RefCount"] == 1 and usage["data"]["Size"] > 0
    assert usage[anon] == {"Size": 0, "RefCount": 0} and usage["scratch"]["Size"] == -1
    # the data outlives the container
    assert api.request("DELETE", f"/containers/{cid}").status == 204
    r = api.request("POST", "/v1.41/containers/create", {
        "Image": "bb:1", "Cmd": ["cat", "/v/f"],
        "HostConfig": {"Mounts": [{"Type": "volume", "Source": "data", "Target": "/v",
                                   "ReadOnly": True}], "AutoRemove": False}})  # fmt: skip
    cid = r.json()["Id"]
    api.request("POST", f"/containers/{cid}/start")
    assert api.request("POST", f"/containers/{cid}/wait").json()["StatusCode"] == 0
    out = api.request("GET", f"/containers/{cid}/logs?stdout=1").body
    assert out[8:] == b"kept\n"
    api.request("DELETE", f"/containers/{cid}")

    # prune (API 1.42+: anonymous ones only unless all=true; older: every unused one)
    r = api.request("POST", "/v1.43/volumes/prune")
    assert r.json()["VolumesDeleted"] == [anon]
    r = api.request("POST", "/v1.43/volumes/prune" + _q({"all": ["true"], "label!": ["app"]}))
    assert r.json()["VolumesDeleted"] == ["scratch"]
    r = api.request("POST", "/v1.41/volumes/prune")
    assert r.json()["VolumesDeleted"] == ["data"] and r.json()["SpaceReclaimed"] > 0
    assert api.request("GET", "/volumes").json() == {"Volumes": [], "Warnings": []}


def test_volume_bad_input(api: Service) -> None:
    cases = [
        ("POST", "/volumes/create", "[]", 400, "cannot unmarshal array"),
        ("POST", "/volumes/create", {"Name": ["x"]}, 400,
         "json: cannot unmarshal array into Go struct field VolumeCreateBody.Name of type string"),
        ("POST", "/volumes/create", {"Labels": {"a": 1}}, 400, "cannot unmarshal number"),
        ("POST", "/volumes/create", {"Name": "a/b"}, 400, "includes invalid characters"),
        ("POST", "/volumes/create", {"Name": "vv", "Driver": "nfs"}, 404,
         'plugin "nfs" not found'),
        ("POST", "/volumes/create", {"Name": "vv", "DriverOpts": {"colour": "red"}}, 400,
         "invalid option key"),
        ("GET", "/volumes/nosuch", None, 404, "get nosuch: no such volume"),
        ("DELETE", "/volumes/nosuch", None, 404, "get nosuch: no such volume"),
        ("GET", "/volumes" + _q({"size": ["1"]}), None, 400, "invalid filter 'size'"),
        ("GET", "/volumes" + _q({"dangling": ["maybe"]}), None, 400, "invalid filter"),
        ("POST", "/volumes/prune" + _q({"name": ["x"]}), None, 400, "invalid filter 'name'"),
    ]  # fmt: skip
    for method, path, body, status, message in cases:
        r = api.request(method, "/v1.41" + path, body)
        assert r.status == status, (path, body, r.body)
        assert message in r.json()["message"], (path, body, r.body)
    assert api.request("DELETE", "/volumes/nosuch?force=1").status == 204
    assert api.request("GET", "/volumes").json() == {"Volumes": [], "Warnings": []}


def test_create_host_config_shows_in_inspect(api: Service, bb: str, tmp_path: object) -> None:
    n = _name("n")
    assert api.request("POST", "/networks/create", {"Name": n}).status == 201
    port = _free_port()
    try:
        r = api.request("POST", "/v1.41/containers/create?name=web", {
            "Image": "bb:1", "Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"],
            "ExposedPorts": {"80/tcp": {}},
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000},
            "HostConfig": {
                "NetworkMode": n, "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                              "HostPort": str(port)}]},
                "Dns": ["10.1.2.3"], "DnsSearch": ["example.org"],
                "ExtraHosts": ["gw.example:10.1.2.4"],
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "Tmpfs": {"/scratch": "size=1m"}, "CapDrop": ["NET_RAW"],
                "Memory": 64 << 20, "PidsLimit": 64, "Binds": ["/etc:/host-etc:ro"],
                "Mounts": [{"Type": "tmpfs", "Target": "/t",
                            "TmpfsOptions": {"SizeBytes": 65536, "Mode": 0o700}}],
            },
            "Volumes": {"/anon": {}},
            "NetworkingConfig": {"EndpointsConfig": {n: {"Aliases": ["frontend"]},
                                                     "bridge": {}}},
        })  # fmt: skip
        assert r.status == 201, r.body
        cid = r.json()["Id"]
        assert api.request("POST", f"/containers/{cid}/start").status == 204
        doc = api.request("GET", f"/containers/{cid}/json").json()
        hc = doc["HostConfig"]
        assert hc["NetworkMode"] == n
        assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        assert hc["Dns"] == ["10.1.2.3"] and hc["DnsSearch"] == ["example.org"]
        assert hc["ExtraHosts"] == ["gw.example:10.1.2.4"]
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert hc["Tmpfs"] == {"/scratch": "size=1m"} and hc["CapDrop"] == ["NET_RAW"]
        assert hc["Memory"] == 64 << 20 and hc["PidsLimit"] == 64
        assert hc["Binds"] == ["/etc:/host-etc:ro"] and hc["VolumesFrom"] is None
        assert hc["Mounts"] == [{"Type": "tmpfs", "Source": "", "Target": "/t",
                                 "TmpfsOptions": {"SizeBytes": 65536, "Mode": 0o700}}]  # fmt: skip
        assert sorted(m["Destination"] for m in doc["Mounts"]) == ["/anon", "/host-etc", "/t"]
        assert doc["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
        ns = doc["NetworkSettings"]
        assert ns["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        assert set(ns["Networks"]) == {n, "bridge"}
        assert "frontend" in ns["Networks"][n]["Aliases"]
        for net in ns["Networks"].values():
            assert net["IPAddress"] and net["Gateway"] and net["MacAddress"]
        summary = api.request("GET", "/v1.41/containers/json").json()[0]
        assert {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": port,
                "Type": "tcp"} in summary["Ports"]  # fmt: skip
        assert set(summary["NetworkSettings"]["Networks"]) == {n, "bridge"}
        # the published port answers from the host
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                    reply = s.recv(4096)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n")[0]
        assert api.request("DELETE", f"/containers/{cid}?force=1").status == 204
        # unknown networks: refused before anything is made
        for body in (
            {"Image": "bb:1", "HostConfig": {"NetworkMode": "nosuchnet"}},
            {"Image": "bb:1", "HostConfig": {"NetworkMode": n},
             "NetworkingConfig": {"EndpointsConfig": {n: {}, "nosuchnet": {}}}},
        ):  # fmt: skip
            r = api.request("POST", "/v1.41/containers/create", body)
            # 400, not 404: clients take a 404 from create for a missing image and pull
            assert (r.status, r.json()["message"]) == (400, "network nosuchnet not found")
        bad = {"Image": "bb:1", "HostConfig": {"PortBindings": {"x/tcp": []}}}
        r = api.request("POST", "/v1.41/containers/create", bad)
        assert (r.status, r.json()["message"]) == (400, 'invalid port specification: "x/tcp"')
        assert api.request("GET", "/containers/json?all=1").json() == []
    finally:
        api.request("DELETE", f"/networks/{n}")


def test_events_stream_filters_and_bounds(api: Service, bb: str) -> None:
    since = time.time()
    body = {"Image": "bb:1", "Cmd": ["true"], "Labels": {"k": "v"}}
    cid = api.request("POST", "/v1.41/containers/create?name=ev1", body).json()["Id"]
    api.request("POST", f"/containers/{cid}/start")
    api.request("POST", f"/containers/{cid}/wait")
    api.request("POST", "/volumes/create", {"Name": "evvol"})
    until = time.time()
    api.request("DELETE", "/volumes/evvol")  # after until: not shown

    def events(query: str) -> list[dict[str, object]]:
        r = api.request("GET", f"/v1.41/events?since={since:.9f}&until={until:.9f}" + query)
        assert r.status == 200 and r.headers["content-type"] == "application/json"
        return [json.loads(line) for line in r.body.splitlines()]

    every = events("")
    kinds = [(e["Type"], e["Action"]) for e in every]
    for want in (("container", "create"), ("container", "start"), ("container", "die"),
                 ("volume", "create")):  # fmt: skip
        assert want in kinds, kinds
    assert ("volume", "destroy") not in kinds
    create = next(e for e in every if e["Action"] == "create" and e["Type"] == "container")
    assert create["status"] == "create" and create["id"] == cid and create["from"] == "bb:1"
    assert create["Actor"] == {"ID": cid, "Attributes": {"image": "bb:1", "name": "ev1",
                                                          "k": "v"}}  # fmt: skip
    assert create["scope"] == "local"
    assert create["time"] == create["timeNano"] // 1_000_000_000  # type: ignore[operator]
    only = events("&" + _q({"type": ["volume"]})[1:])
    assert [(e["Type"], e["Action"]) for e in only] == [("volume", "create")]
    assert "status" not in only[0]
    starts = events("&" + _q({"event": ["start"], "container": ["ev1"]})[1:])
    assert [e["Action"] for e in starts] == ["start"]
    assert events("&" + _q({"label": ["k=v"], "event": ["die"]})[1:])[0]["Action"] == "die"
    assert events("&" + _q({"image": ["bb:1"], "type": ["volume"]})[1:]) == []

    # live: a stream bounded by until gets what happens meanwhile, then ends by itself
    import threading

    got: list[bytes] = []
    live_until = time.time() + 3

    def follow() -> None:
        got.append(api.request("GET", f"/events?until={live_until:.3f}&"
                               + _q({"type": ["network"]})[1:]).body)  # fmt: skip

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.5)
    n = _name("ev")
    api.request("POST", "/networks/create", {"Name": n})
    api.request("DELETE", f"/networks/{n}")
    t.join(15)
    assert not t.is_alive()
    live = [json.loads(line) for line in got[0].splitlines()]
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in live] == [  # type: ignore[index]
        ("create", n), ("destroy", n)]  # fmt: skip
    assert time.time() >= live_until

    # a client that goes away mid-stream leaves no follower behind
    wakeups = api.moor.runroot / "events"
    before = set(os.listdir(wakeups)) if wakeups.exists() else set()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(api.socket))
    s.sendall(b"GET /v1.41/events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert len(set(os.listdir(wakeups)) - before) == 1
    s.close()
    deadline = time.monotonic() + 5
    while set(os.listdir(wakeups)) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(os.listdir(wakeups)) - before == set()

    for query, message in (
        (_q({"colour": ["x"]}), "invalid filter 'colour'"),
        (_q({"type": ["gizmo"]}), "invalid filter 'type=gizmo'"),
        ("?since=soon", "since"),
        (f"?since={until:.0f}&until={since - 10:.0f}", "`since` time must be before `until`"),
    ):
        r = api.request("GET", "/events" + query)
        assert r.status == 400 and message in r.json()["message"], (query, r.body)
