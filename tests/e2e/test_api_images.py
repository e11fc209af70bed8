"""Build, push, pull, search and login through ``moor system service``: the real docker CLI
(classic builder), docker-py, and raw requests for Docker's stream shapes and bad input."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from tests.conftest import Moor, RegistryServer
from tests.e2e.apiservice import Service

DOCKER_20 = "/usr/bin/docker"
needs_docker = pytest.mark.skipif(not Path(DOCKER_20).exists(), reason="no docker 20.10 CLI")


def _context(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _messages(body: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _stream_text(msgs: list[dict[str, object]]) -> str:
    return "".join(str(m["stream"]) for m in msgs if "stream" in m)


def _auth_header(user: str, password: str, server: str) -> str:
    doc = {"username": user, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _htpasswd(path: Path) -> Path:
    path.write_text(f"alice:{bcrypt.hashpw(b'secret', bcrypt.gensalt(4)).decode()}\n")
    return path


def _classic(api: Service) -> dict[str, str]:
    return {**api.docker_env, "DOCKER_BUILDKIT": "0"}


def _docker(
    api: Service, *args: str, input: bytes = b"", check: bool = True
) -> tuple[int, str, str]:
    import subprocess

    p = subprocess.run(
        [DOCKER_20, *args], input=input, capture_output=True, env=_classic(api), timeout=120
    )
    out, err = p.stdout.decode(), p.stderr.decode()
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}\n{out}\n{err}")
    return p.returncode, out, err


# ---- the docker CLI -----------------------------------------------------------------------


@needs_docker
def test_docker_cli_build_tag_push_pull_search(
    api: Service, bb: str, registry: RegistryServer, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "msg").write_text("built\n")
    (ctx / "Dockerfile").write_text(
        'FROM bb:1\nCOPY msg /msg\nRUN echo from-run && cat /msg > /f\nCMD ["cat", "/f"]\n'
    )
    _, out, _ = _docker(api, "build", "-t", "app:1", str(ctx))
    # the CLI ends its "Sending build context" progress with "\r\r\n", as against dockerd
    lines = [x for x in out.splitlines() if x]
    assert lines[0].startswith("Sending build context to Docker daemon")
    assert lines[1:3] == ["Step 1/4 : FROM bb:1", f" ---> {bb[7:19]}"]
    assert lines[3] == "Step 2/4 : COPY msg /msg"
    assert "Step 3/4 : RUN echo from-run && cat /msg > /f" in lines
    assert "from-run" in lines
    assert any(re.fullmatch(r" ---> Running in [0-9a-f]{12}", x) for x in lines)
    assert any(re.fullmatch(r"Removing intermediate container [0-9a-f]{12}", x) for x in lines)
    assert 'Step 4/4 : CMD ["cat", "/f"]' in lines
    m = re.fullmatch(r"Successfully built ([0-9a-f]{12})", lines[-2])
    assert m is not None and lines[-1] == "Successfully tagged app:1"
    image_id = api.moor("image", "inspect", "-f", "{{.Id}}", "app:1").stdout.strip()
    assert image_id[7:19] == m.group(1)
    assert _docker(api, "run", "--rm", "app:1")[1] == "built\n"
    # a rebuild comes from the cache
    _, again, _ = _docker(api, "build", "-q", "-t", "app:1", str(ctx))
    assert again.strip() == image_id

    name = f"{registry.host}/team/app:1"
    _docker(api, "tag", "app:1", name)
    _, out, _ = _docker(api, "push", name)
    assert f"The push refers to repository [{registry.host}/team/app]" in out
    assert re.search(r"^1: digest: sha256:[0-9a-f]{64} size: \d+$", out, re.M), out
    assert ": Pushed" in out
    _docker(api, "rmi", name, "app:1")
    _, out, _ = _docker(api, "pull", name)
    assert "1: Pulling from team/app" in out
    assert f"Status: Downloaded newer image for {name}" in out
    assert out.strip().endswith(name)
    assert api.moor("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == image_id
    _, out, _ = _docker(api, "pull", name)
    assert f"Status: Image is up to date for {name}" in out
    _, out, _ = _docker(api, "search", f"{registry.host}/team")
    assert out.splitlines()[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert out.splitlines()[1].split() == [f"{registry.host}/team/app", "0"]
    # errors: a missing image, a missing local tag
    code, _, err = _docker(api, "pull", f"{registry.host}/team/nosuch:1", check=False)
    assert code == 1 and "not found" in err
    code, _, err = _docker(api, "push", f"{registry.host}/team/nosuch:1", check=False)
    assert code == 1
    assert f"An image does not exist locally with the tag: {registry.host}/team/nosuch" in err


@needs_docker
def test_docker_cli_build_errors(api: Service, bb: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nFROBNICATE now\n")
    code, _, err = _docker(api, "build", str(ctx), check=False)
    assert code == 1 and "unknown instruction" in err.lower() and "FROBNICATE" in err.upper()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo failing; exit 3\n")
    code, out, err = _docker(api, "build", str(ctx), check=False)
    assert code == 3, (out, err)
    assert "failing" in out
    assert "The command '/bin/sh -c echo failing; exit 3' returned a non-zero code: 3" in err
    assert api.moor("ps", "-aq").stdout == ""  # the RUN container is gone
    code, _, err = _docker(api, "build", "-f", "nosuch", str(ctx), check=False)
    assert code == 1


@needs_docker
def test_docker_cli_login_and_authenticated_push(
    api: Service,
    bb: str,
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
) -> None:
    server = registry_factory("--htpasswd", str(_htpasswd(tmp_path / "htpasswd")))
    name = f"{server.host}/private/bb:1"
    _docker(api, "tag", "bb:1", name)
    code, _, err = _docker(api, "push", name, check=False)
    assert code == 1 and "unauthorized" in err
    code, _, err = _docker(
        api, "login", "-u", "alice", "--password-stdin", server.host, input=b"wrong\n", check=False
    )
    assert code == 1 and "unauthorized" in err
    _, out, _ = _docker(
        api, "login", "-u", "alice", "--password-stdin", server.host, input=b"secret\n"
    )
    assert "Login Succeeded" in out
    # the CLI keeps the credentials and sends them with X-Registry-Auth
    _, out, _ = _docker(api, "push", name)
    assert ": Pushed" in out
    _docker(api, "rmi", name)
    _, out, _ = _docker(api, "pull", name)
    assert f"Status: Downloaded newer image for {name}" in out
    # a build pulls its FROM image with the credentials the CLI sends in X-Registry-Config
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN echo child > /child\n")
    _, out, _ = _docker(api, "build", "--pull", "-t", "child:1", str(ctx))
    assert f"Pulling {name}" in out and "Successfully tagged child:1" in out
    _docker(api, "rmi", "child:1")
    _docker(api, "logout", server.host)
    _docker(api, "rmi", name)
    code, _, err = _docker(api, "pull", name, check=False)
    assert code == 1 and "unauthorized" in err
    code, _, err = _docker(api, "build", str(ctx), check=False)
    assert code == 1 and "pull access denied" in err


# ---- docker-py ----------------------------------------------------------------------------


def test_dockerpy_build_push_pull_search(
    api: Service, bb: str, registry: RegistryServer, tmp_path: Path
) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=api.host, version="auto", timeout=120)
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            'FROM bb:1\nARG WORD=none\nRUN echo "$WORD" > /word\nLABEL team=a\n'
        )
        image, logs = client.images.build(
            path=str(ctx), tag="py:1", buildargs={"WORD": "hello"}, labels={"extra": "x"}
        )
        text = "".join(str(chunk.get("stream", "")) for chunk in logs)
        assert "Step 1/5 : FROM bb:1" in text and "Successfully tagged py:1" in text
        assert image.tags == ["py:1"]
        assert image.labels == {"team": "a", "extra": "x"}
        assert client.containers.run("py:1", ["cat", "/word"], remove=True) == b"hello\n"
        with pytest.raises(docker.errors.BuildError) as exc:
            client.images.build(fileobj=io.BytesIO(b"FROM bb:1\nRUN exit 7\n"), rm=True)
        assert "returned a non-zero code: 7" in str(exc.value)
        with pytest.raises(docker.errors.APIError) as api_exc:
            client.images.build(fileobj=io.BytesIO(b"FROM bb:1\nNOPE x\n"))
        assert api_exc.value.status_code == 400

        repo = f"{registry.host}/py/app"
        assert image.tag(repo, "2") is True
        events = list(client.images.push(repo, tag="2", stream=True, decode=True))
        assert events[0] == {"status": f"The push refers to repository [{repo}]"}
        assert any(e.get("status") == "Pushed" and "id" in e for e in events)
        aux = [e["aux"] for e in events if "aux" in e]
        assert [a["Tag"] for a in aux] == ["2"] and aux[0]["Digest"].startswith("sha256:")
        client.images.remove(f"{repo}:2")
        client.images.remove("py:1")
        pulled = client.images.pull(repo, tag="2")
        assert pulled.id == image.id and f"{repo}:2" in pulled.tags
        found = client.images.search(f"{registry.host}/py")
        assert found == [
            {
                "name": f"{repo}",
                "description": "",
                "star_count": 0,
                "is_official": False,
                "is_automated": False,
            }
        ]
        with pytest.raises(docker.errors.NotFound):
            client.images.pull(f"{registry.host}/py/nosuch", tag="1")
        with pytest.raises(docker.errors.NotFound):
            client.images.push(f"{registry.host}/py/nosuch", tag="1")
    finally:
        client.close()


# ---- raw requests: stream shapes, bad input, disconnects ----------------------------------


def test_pull_stream_shape(api: Service, bb: str, registry: RegistryServer) -> None:
    name = f"{registry.host}/raw/bb"
    api.moor("tag", "bb:1", f"{name}:1")
    api.moor("push", f"{name}:1")
    api.moor("rmi", f"{name}:1", "bb:1")
    r = api.request("POST", f"/v1.41/images/create?fromImage={name}&tag=1")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    msgs = _messages(r.body)
    assert msgs[0] == {"status": "Pulling from raw/bb", "id": "1"}
    layer = [m for m in msgs if m.get("status") == "Pull complete"]
    assert len(layer) == 1 and layer[0]["progressDetail"] == {}
    assert re.fullmatch(r"[0-9a-f]{12}", str(layer[0]["id"]))
    assert msgs[-2]["status"].startswith("Digest: sha256:")  # type: ignore[union-attr]
    assert msgs[-1] == {"status": f"Status: Downloaded newer image for {name}:1"}
    statuses = [m["status"] for m in msgs if m.get("id") == layer[0]["id"]]
    assert statuses[0] == "Pulling fs layer" and statuses[-1] == "Pull complete"
    downloading = [m for m in msgs if m.get("status") == "Downloading"]
    for m in downloading:  # Docker's progressDetail and progress bar
        detail = m["progressDetail"]
        assert isinstance(detail, dict) and 0 < detail["current"] <= detail["total"]
        assert str(m["progress"]).startswith("[")
    r = api.request("POST", f"/v1.41/images/create?fromImage={name}&tag=1")
    assert _messages(r.body)[-1] == {"status": f"Status: Image is up to date for {name}:1"}
    api.moor("tag", f"{name}:1", f"{name}:2")
    r = api.request("POST", f"/images/{name}/push?tag=2")
    msgs = _messages(r.body)
    exists = [m for m in msgs if m.get("status") == "Layer already exists"]
    assert len(exists) == 1 and exists[0]["progressDetail"] == {}
    assert msgs[-2]["status"].startswith("2: digest: sha256:")  # type: ignore[union-attr]
    assert msgs[-1]["aux"]["Tag"] == "2"  # type: ignore[index]


def test_import_from_src(api: Service, busybox_tar: Path) -> None:
    r = api.request(
        "POST",
        "/images/create?fromSrc=-&repo=imported&tag=3&changes=CMD%20%5B%22sh%22%5D",
        body=busybox_tar.read_bytes(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status == 200, r.body
    digest = _messages(r.body)[-1]["status"]
    assert str(digest).startswith("sha256:")
    assert (
        api.moor("image", "inspect", "-f", "{{.Id}} {{json .Config.Cmd}}", "imported:3").stdout
        == f'{digest} ["sh"]\n'
    )


def test_build_stream_and_errors(api: Service, bb: str) -> None:
    ctx = _context({"Dockerfile": "FROM bb:1\nRUN echo one; echo two >&2\n"})
    r = api.request("POST", "/build?t=s:1&t=s:2&rm=1", body=ctx,
                    headers={"Content-Type": "application/x-tar"})  # fmt: skip
    assert r.status == 200
    msgs = _messages(r.body)
    text = _stream_text(msgs)
    assert text.startswith(f"Step 1/2 : FROM bb:1\n ---> {bb[7:19]}\nStep 2/2 : RUN echo one")
    assert "one\ntwo\n" in text
    aux = [m["aux"] for m in msgs if "aux" in m]
    assert len(aux) == 1
    image_id = str(aux[0]["ID"])  # type: ignore[index]
    assert text.endswith(
        f"Successfully built {image_id[7:19]}\nSuccessfully tagged s:1\nSuccessfully tagged s:2\n"
    )
    # quiet: the id only
    r = api.request("POST", "/build?q=1", body=ctx, headers={"Content-Type": "application/x-tar"})
    assert _stream_text(_messages(r.body)) == image_id + "\n"
    # a failing RUN: Docker's error message in the stream, with its exit code
    bad = _context({"Dockerfile": "FROM bb:1\nRUN exit 4\n"})
    r = api.request("POST", "/build", body=bad, headers={"Content-Type": "application/x-tar"})
    assert r.status == 200
    last = _messages(r.body)[-1]
    msg = "The command '/bin/sh -c exit 4' returned a non-zero code: 4"
    assert last == {"errorDetail": {"message": msg, "code": 4}, "error": msg}
    # a Dockerfile that does not parse: a 400 before any output
    r = api.request("POST", "/build", body=_context({"Dockerfile": "FROM bb:1\nWHAT x\n"}))
    assert r.status == 400 and "unknown instruction" in r.json()["message"].lower()
    # no Dockerfile, a malformed context, bad query values
    r = api.request("POST", "/build", body=_context({"other": "x"}))
    assert r.status == 400
    assert r.json() == {"message": "Cannot locate specified Dockerfile: Dockerfile"}
    # a Dockerfile that is a symlink to the service's own files is not read
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, target in (("Dockerfile", "/etc/passwd"), ("up", "/etc")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tf.addfile(link)
    for query in ("", "?dockerfile=up/passwd"):
        r = api.request("POST", "/build" + query, body=buf.getvalue())
        assert r.status == 400 and "root:" not in r.json()["message"]
        assert r.json()["message"].startswith("Cannot locate specified Dockerfile")
    # the lowercase name when there is no Dockerfile, as Docker does
    r = api.request("POST", "/build", body=_context({"dockerfile": "FROM bb:1\n"}))
    assert r.status == 200 and "Successfully built" in _stream_text(_messages(r.body))
    r = api.request("POST", "/build", body=b"this is not a tar archive" * 40)
    assert r.status == 400 and "invalid build context" in r.json()["message"]
    r = api.request("POST", "/build?buildargs=%5B1%5D", body=ctx)
    assert r.status == 400 and "buildargs" in r.json()["message"]
    r = api.request("POST", "/build?dockerfile=../x", body=ctx)
    assert r.status == 400 and "within the build context" in r.json()["message"]
    r = api.request("POST", "/build?t=UPPER:1", body=ctx)
    assert r.status == 400
    # a context whose symlink leads out of it cannot write there
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        tf.addfile(link)
        data = b"owned"
        evil = tarfile.TarInfo("out/moorage-api-escape")
        evil.size = len(data)
        tf.addfile(evil, io.BytesIO(data))
    r = api.request("POST", "/build", body=buf.getvalue())
    assert r.status == 400
    assert not Path("/tmp/moorage-api-escape").exists()
    assert api.moor("ps", "-aq").stdout == ""
    assert not list((api.moor.root / "build").glob("ctx-*"))


def test_registry_auth_and_push_errors(api: Service, bb: str, registry: RegistryServer) -> None:
    r = api.request(
        "POST", "/images/create?fromImage=x/y&tag=1", headers={"X-Registry-Auth": "%%%not"}
    )
    assert r.status == 400 and "X-Registry-Auth" in r.json()["message"]
    bad = base64.urlsafe_b64encode(b"[1, 2]").decode()
    r = api.request("POST", "/images/bb/push?tag=1", headers={"X-Registry-Auth": bad})
    assert r.status == 400
    r = api.request("POST", f"/images/{registry.host}/nosuch/push?tag=1")
    assert r.status == 404
    assert r.json() == {
        "message": f"An image does not exist locally with the tag: {registry.host}/nosuch"
    }
    r = api.request("POST", "/images/create?fromImage=team/UPPER&tag=1")
    assert r.status == 400
    r = api.request("POST", f"/images/create?fromImage={registry.host}/none/here&tag=1")
    assert r.status == 404 and "not found" in r.json()["message"]
    r = api.request("GET", "/images/search?term=x&filters=%7B%22nope%22%3A%5B%221%22%5D%7D")
    assert r.status == 400 and r.json() == {"message": "invalid filter 'nope'"}
    r = api.request("GET", "/images/search")
    assert r.status == 400


def test_auth_endpoint(
    api: Service, registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    server = registry_factory("--htpasswd", str(_htpasswd(tmp_path / "htpasswd")))
    body = {"username": "alice", "password": "secret", "serveraddress": server.host}
    r = api.request("POST", "/v1.41/auth", body=body)
    assert (r.status, r.json()) == (200, {"Status": "Login Succeeded", "IdentityToken": ""})
    r = api.request("POST", "/auth", body={**body, "password": "nope"})
    assert r.status == 401 and "unauthorized" in r.json()["message"]
    r = api.request("POST", "/auth", body={"serveraddress": server.host})
    assert r.status == 400
    # the credentials work in X-Registry-Auth, and the search with them sees the catalog
    header = _auth_header("alice", "secret", server.host)
    r = api.request(
        "GET", f"/images/search?term={server.host}/", headers={"X-Registry-Auth": header}
    )
    assert (r.status, r.json()) == (200, [])


@pytest.mark.parametrize("leave_after", [b"Step 2/2", b"started\\n"])
def test_client_disconnect_mid_build_cleans_up(api: Service, bb: str, leave_after: bytes) -> None:
    """The client leaves at the RUN's Step line (its container may not exist yet) or once
    the RUN prints (its container runs): no container stays either way."""
    ctx = _context({"Dockerfile": "FROM bb:1\nRUN echo started; sleep 60\n"})
    head = (
        "POST /build HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
        f"Content-Length: {len(ctx)}\r\n\r\n"
    ).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(api.socket))
    s.sendall(head + ctx)
    got = b""
    while leave_after not in got:  # "started\n" JSON-escaped: the output, not the Step line
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    if leave_after != b"Step 2/2":
        assert api.moor("ps", "-aq").stdout.strip() != ""  # the RUN container is there
    s.close()
    deadline = time.monotonic() + 30
    while api.moor("ps", "-aq").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # a step that was about to make its container has done so by now
    assert api.moor("ps", "-aq").stdout == ""
    # the service keeps serving
    assert api.request("GET", "/_ping").status == 200


def test_build_context_size_limit(
    moor: Moor, bb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.apiservice import start_service, stop_service

    monkeypatch.setenv("MOORAGE_API_MAX_UPLOAD", "20000")
    sock = tmp_path / "api.sock"
    proc = start_service(moor, sock)
    try:
        api = Service(sock, proc, moor, tmp_path)
        big = _context({"Dockerfile": "FROM bb:1\n", "blob": "x" * 50000})
        r = api.request("POST", "/build", body=big, headers={"Content-Type": "application/x-tar"})
        assert r.status == 400 and "larger than the limit of 20000 bytes" in r.json()["message"]
        small = _context({"Dockerfile": "FROM bb:1\n"})
        r = api.request("POST", "/build", body=small)
        assert r.status == 200 and "Successfully built" in _stream_text(_messages(r.body))
    finally:
        stop_service(proc)
    assert not list((moor.root / "build").glob("ctx-*"))


def test_moor_cli_search_still_works(moor: Moor, bb: str, registry: RegistryServer) -> None:
    moor("tag", "bb:1", f"{registry.host}/cli/bb:1")
    moor("push", f"{registry.host}/cli/bb:1")
    out = moor("search", f"{registry.host}/cli").stdout.splitlines()
    assert out[1].split() == [f"{registry.host}/cli/bb", "0"]
