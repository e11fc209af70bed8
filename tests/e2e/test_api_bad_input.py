"""Bad requests get Docker's statuses and messages, and the service keeps serving."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

from tests.conftest import MOOR, Moor
from tests.e2e.apiservice import Service, start_service, stop_service


def _create(api: Service, body: object, name: str = "") -> tuple[int, dict[str, object]]:
    q = f"?name={name}" if name else ""
    r = api.request("POST", "/v1.41/containers/create" + q, body if isinstance(body, str)
                    else json.dumps(body))  # fmt: skip
    return r.status, r.json()


def test_versions_and_unknown_paths(api: Service) -> None:
    r = api.request("GET", "/v1.12/version")
    assert r.status == 400
    assert r.json()["message"] == (
        "client version 1.12 is too old. Minimum supported API version is 1.24, please "
        "upgrade your client to a newer version"
    )
    r = api.request("GET", "/v1.99/version")
    assert r.status == 400
    assert r.json()["message"] == (
        "client version 1.99 is too new. Maximum supported API version is 1.50"
    )
    for path in ("/v1.41/version", "/v1.24/version", "/version", "/v1.50/_ping"):
        assert api.request("GET", path).status == 200, path
    r = api.request("GET", "/v1.41/nothing/here")
    assert (r.status, r.json()) == (404, {"message": "page not found"})
    r = api.request("HEAD", "/_ping")
    assert r.status == 200 and r.body == b""
    assert r.headers["api-version"] == "1.50"
    assert r.headers["docker-experimental"] == "false"
    assert r.headers["ostype"] == "linux"


def test_malformed_and_mistyped_create(api: Service, bb: str) -> None:
    status, doc = _create(api, "{not json")
    assert status == 400 and "invalid JSON" in str(doc["message"])
    status, doc = _create(api, "[1, 2]")
    assert status == 400 and "cannot unmarshal array" in str(doc["message"])
    status, doc = _create(api, {"Image": "bb:1", "Env": "A=1"})
    assert (status, doc["message"]) == (
        400,
        "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.Env "
        "of type []string",
    )
    status, doc = _create(api, {"Image": "bb:1", "Tty": "yes"})
    assert status == 400 and "Tty of type bool" in str(doc["message"])
    status, doc = _create(api, {"Image": "bb:1", "HostConfig": {"Memory": "lots"}})
    assert status == 400 and "HostConfig.Memory of type int64" in str(doc["message"])
    status, doc = _create(api, {"Image": "bb:1", "HostConfig": {"NetworkMode": "nosuchnet"}})
    # 400: the docker CLI and docker-py take a 404 from create for a missing image and pull
    assert status == 400 and "network nosuchnet not found" in str(doc["message"])
    status, doc = _create(api, {"Image": "nosuch:1"})
    assert status == 404 and "No such image: nosuch:1" in str(doc["message"])
    status, doc = _create(api, {"Image": "bb:1", "Cmd": ["true"]}, name="bad/name")
    assert status == 400 and "Invalid container name" in str(doc["message"])
    status, doc = _create(api, {})
    assert status == 400
    # unknown fields are ignored, as Docker does
    status, doc = _create(api, {"Image": "bb:1", "Cmd": ["true"], "NoSuchField": {"x": 1}}, "ok")
    assert status == 201 and len(str(doc["Id"])) == 64
    status, doc = _create(api, {"Image": "bb:1", "Cmd": ["true"]}, name="ok")
    assert status == 409 and 'The container name "/ok" is already in use' in str(doc["message"])
    # nothing half-made was left behind
    assert api.moor("ps", "-a", "--format", "{{.Names}}").stdout == "ok\n"


def test_oversized_body(api: Service, bb: str) -> None:
    big = json.dumps({"Image": "bb:1", "Env": ["X=" + "y" * (5 << 20)]})
    r = api.request("POST", "/containers/create", big)
    assert r.status == 413 and "too large" in r.json()["message"]
    assert api.request("GET", "/_ping").status == 200


def test_unknown_objects_and_state_errors(api: Service, bb: str) -> None:
    for method, path in (
        ("GET", "/containers/nosuch/json"),
        ("POST", "/containers/nosuch/start"),
        ("DELETE", "/containers/nosuch"),
        ("GET", "/containers/nosuch/logs?stdout=1"),
        ("POST", "/containers/nosuch/exec"),
        ("GET", "/exec/nosuch/json"),
    ):
        r = api.request(method, path, "{}" if method == "POST" else None)
        assert r.status == 404, (method, path, r.body)
        assert "No such" in r.json()["message"]
    r = api.request("GET", "/images/nosuch:1/json")
    assert (r.status, r.json()["message"]) == (404, "No such image: nosuch:1")
    r = api.request("DELETE", "/images/nosuch:1")
    assert r.status == 404
    cid = api.moor("create", "--name", "idle", "bb:1", "true").stdout.strip()
    r = api.request("POST", f"/containers/{cid}/kill")
    assert r.status == 409 and "is not running" in r.json()["message"]
    assert api.request("POST", f"/containers/{cid}/stop").status == 304
    r = api.request("POST", f"/containers/{cid}/wait?condition=sometime")
    assert r.status == 400
    r = api.request("POST", f"/containers/{cid}/kill?signal=NOPE")
    assert r.status in (400, 409)
    r = api.request("GET", "/containers/json?filters=notjson")
    assert r.status == 400
    r = api.request("GET", '/containers/json?filters={"color":["red"]}')
    assert (r.status, r.json()["message"]) == (400, "invalid filter 'color'")
    r = api.request("GET", f"/containers/{cid}/logs")
    assert r.status == 400 and "at least one stream" in r.json()["message"]


def test_a_client_that_goes_away_mid_stream(api: Service, bb: str) -> None:
    """A follower, an attached client and an exec client vanish: the service keeps serving,
    nothing stays attached and the exec's process ends."""
    cid = api.moor("run", "-d", "bb:1", "sleep", "100").stdout.strip()
    socks = []
    for request in (
        f"GET /containers/{cid}/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"POST /containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
        # the classic hijack, without an upgrade
        f"POST /containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 0\r\n\r\n",
    ):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(api.socket))
        s.sendall(request.encode())
        head = s.recv(200)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED" if "Upgrade" in request
                               else b"HTTP/1.1 200 OK")  # fmt: skip
        socks.append(s)
    r = api.request("POST", f"/containers/{cid}/exec", {"Cmd": ["sleep", "77"],
                    "AttachStdout": True})  # fmt: skip
    eid = r.json()["Id"]
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(api.socket))
    body = b"{}"
    s.sendall(
        f"POST /exec/{eid}/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert s.recv(100).startswith(b"HTTP/1.1 101")
    deadline = time.monotonic() + 10
    while api.request("GET", f"/exec/{eid}/json").json()["Pid"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    socks.append(s)
    for s in socks:
        s.close()
    deadline = time.monotonic() + 10
    while api.request("GET", f"/exec/{eid}/json").json()["Running"]:
        assert time.monotonic() < deadline, "the exec outlived its client"
        time.sleep(0.05)
    ps = subprocess.run(["pgrep", "-f", "sleep 77"], capture_output=True, text=True).stdout
    assert ps == ""
    assert api.request("GET", "/containers/json").json()[0]["Id"] == cid
    api.moor("rm", "-f", cid)


def test_socket_mode_idle_exit_and_loopback_only(moor: Moor, tmp_path: Path) -> None:
    sock = tmp_path / "idle.sock"
    proc = start_service(moor, sock, "--time", "1")
    try:
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0
        proc.wait(15)  # idle for a second: it ends by itself
        assert proc.returncode == 0
        assert not sock.exists()
    finally:
        stop_service(proc)
    p = subprocess.run(
        [MOOR, "system", "service", "--host", "tcp://0.0.0.0:23750"],
        env=moor.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode == 1 and "loopback only" in p.stderr


def test_tcp_on_loopback(moor: Moor, tmp_path: Path) -> None:
    import http.client

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sock = tmp_path / "both.sock"
    proc = start_service(moor, sock, "--host", f"tcp://127.0.0.1:{port}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1.41/_ping")
        assert conn.getresponse().read() == b"OK"
        conn.close()
    finally:
        stop_service(proc)
    assert os.path.exists(sock) is False
