"""Registry auth: htpasswd basic, the token flow with its built-in issuer, per-repo rights."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx
import pytest

from moorage.registry.auth import sign_token
from tests.conftest import RegistryServer


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def htpasswd(path: Path, users: dict[str, str]) -> Path:
    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}" for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def code_of(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return htpasswd(tmp_path / "htpasswd", {"alice": "secret", "bob": "hunter2"})


def test_open_registry_says_so(registry: RegistryServer) -> None:
    assert "serving openly" in registry.banner


def test_basic_auth(registry_factory: Callable[..., RegistryServer], users: Path) -> None:
    server = registry_factory("--htpasswd", str(users))
    blobs = server.root / "blobs"
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/v2/")
        assert r.status_code == 401 and code_of(r) == "UNAUTHORIZED"
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        r = c.post("/v2/x/blobs/uploads/", params={"digest": sha(b"d")}, content=b"d")
        assert r.status_code == 401
        assert not blobs.exists() or os.listdir(blobs / "sha256") == []
        r = c.get("/v2/", auth=("alice", "wrong"))
        assert r.status_code == 401
        r = c.post(
            "/v2/x/blobs/uploads/",
            params={"digest": sha(b"d")},
            content=b"d",
            auth=("alice", "secret"),
        )
        assert r.status_code == 201


def test_acl_limits_push(
    registry_factory: Callable[..., RegistryServer], users: Path, tmp_path: Path
) -> None:
    acl = tmp_path / "acl.yaml"
    acl.write_text("alice: {'*': [pull, push]}\nbob: {'team/*': [pull]}\n")
    server = registry_factory("--htpasswd", str(users), "--acl", str(acl))
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v2/team/app/blobs/uploads/", params={"digest": sha(b"d")}, content=b"d",
                   auth=("alice", "secret"))  # fmt: skip
        assert r.status_code == 201
        assert c.head(f"/v2/team/app/blobs/{sha(b'd')}", auth=("bob", "hunter2")).status_code == 200
        r = c.post("/v2/team/app/blobs/uploads/", auth=("bob", "hunter2"))
        assert r.status_code == 403 and code_of(r) == "DENIED"
        r = c.head(f"/v2/other/blobs/{sha(b'd')}", auth=("bob", "hunter2"))
        assert r.status_code == 403


def _token(c: httpx.Client, scope: str, auth: tuple[str, str]) -> httpx.Response:
    return c.get("/token", params={"service": "moorage-registry", "scope": scope}, auth=auth)


def test_token_flow(
    registry_factory: Callable[..., RegistryServer], users: Path, tmp_path: Path
) -> None:
    acl = tmp_path / "acl.yaml"
    acl.write_text("alice: {'*': [pull, push]}\nbob: {'*': [pull]}\n")
    key = tmp_path / "token.key"
    server = registry_factory(
        "--htpasswd", str(users), "--acl", str(acl), "--token-issuer", str(key)
    )
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v2/app/blobs/uploads/", params={"digest": sha(b"d")}, content=b"d")
        assert r.status_code == 401
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer realm=")
        assert 'service="moorage-registry"' in challenge
        assert 'scope="repository:app:push"' in challenge
        assert _token(c, "repository:app:pull,push", ("alice", "nope")).status_code == 401
        tok = _token(c, "repository:app:pull,push", ("alice", "secret")).json()["token"]
        bearer = {"Authorization": f"Bearer {tok}"}
        r = c.post("/v2/app/blobs/uploads/", params={"digest": sha(b"d")}, content=b"d",
                   headers=bearer)  # fmt: skip
        assert r.status_code == 201
        # the token is for "app" only
        r = c.post("/v2/other/blobs/uploads/", headers=bearer)
        assert r.status_code == 401
        # bob asks for push and gets a token that grants pull only
        tok = _token(c, "repository:app:pull,push", ("bob", "hunter2")).json()["token"]
        claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
        assert claims["access"] == [{"type": "repository", "name": "app", "actions": ["pull"]}]
        bob = {"Authorization": f"Bearer {tok}"}
        assert c.head(f"/v2/app/blobs/{sha(b'd')}", headers=bob).status_code == 200
        assert c.post("/v2/app/blobs/uploads/", headers=bob).status_code == 401


def test_forged_tokens_are_refused(
    registry_factory: Callable[..., RegistryServer], users: Path, tmp_path: Path
) -> None:
    key = tmp_path / "token.key"
    server = registry_factory("--htpasswd", str(users), "--token-issuer", str(key))
    now = int(time.time())
    claims = {
        "iss": "moorage-registry", "sub": "mallory", "aud": "moorage-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "access": [{"type": "repository", "name": "app", "actions": ["pull", "push"]}],
    }  # fmt: skip

    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    other_key = os.urandom(32)
    forged = [
        sign_token(other_key, claims),  # signed by a key the registry does not have
        # a token carrying its own key in the header
        b64(
            {
                "alg": "HS256",
                "jwk": {"kty": "oct", "k": base64.urlsafe_b64encode(other_key).decode()},
            }
        )
        + "."
        + sign_token(other_key, claims).split(".", 1)[1],
        b64({"alg": "none"}) + "." + b64(claims) + ".",
        sign_token(key.read_bytes(), {**claims, "exp": now - 1}),  # expired
        sign_token(key.read_bytes(), {**claims, "aud": "elsewhere"}),
        "garbage",
    ]
    with httpx.Client(base_url=server.url) as c:
        for tok in forged:
            r = c.post("/v2/app/blobs/uploads/", headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 401, tok
        good = sign_token(key.read_bytes(), claims)
        r = c.post("/v2/app/blobs/uploads/", headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 202


def test_tls(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = registry_factory("--tls-cert", str(cert), "--tls-key", str(key))
    import ssl

    ctx = ssl.create_default_context(cafile=str(cert))
    r = httpx.get(f"https://127.0.0.1:{server.port}/v2/", verify=ctx)
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/v2/", timeout=5)
