"""Pure pieces of the registry: token signing and checking, scopes, names, credentials."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from moorage.distribution import credentials
from moorage.distribution.client import _parse_challenge, is_loopback
from moorage.registry.auth import (
    SERVICE,
    Access,
    Authorizer,
    parse_scope,
    sign_token,
    verify_token,
)
from moorage.registry.errors import RegistryError
from moorage.registry.storage import check_name

KEY = b"k" * 32


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": SERVICE, "aud": SERVICE, "sub": "u", "exp": now + 60, "nbf": now, **over}


def test_token_round_trip() -> None:
    tok = sign_token(KEY, claims(access=[]))
    assert verify_token(KEY, tok, SERVICE)["sub"] == "u"


@pytest.mark.parametrize(
    "token",
    [
        sign_token(b"x" * 32, claims()),
        sign_token(KEY, claims(exp=1)),
        sign_token(KEY, claims(iss="other")),
        sign_token(KEY, claims(aud="other")),
        "a.b",
        "!!.??.**",
    ],
)
def test_bad_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        verify_token(KEY, token, SERVICE)


def test_header_cannot_choose_the_algorithm_or_key() -> None:
    good = sign_token(KEY, claims())
    _, payload, sig = good.split(".")
    for header in ({"alg": "none"}, {"alg": "RS256"}, {"alg": "HS256", "jwk": {"k": "eA"}}):
        h = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
        with pytest.raises(ValueError):
            verify_token(KEY, f"{h}.{payload}.", SERVICE)
        if header.get("alg") != "HS256":
            with pytest.raises(ValueError):
                verify_token(KEY, f"{h}.{payload}.{sig}", SERVICE)


def test_parse_scope() -> None:
    assert parse_scope("repository:a/b:pull,push") == [
        Access("repository", "a/b", "pull"),
        Access("repository", "a/b", "push"),
    ]
    assert parse_scope("repository:localhost:5000/x:pull") == [
        Access("repository", "localhost:5000/x", "pull")
    ]
    assert parse_scope("garbage") == []


def test_acl_globs() -> None:
    a = Authorizer(users={}, acl={"bob": {"team/*": ["pull"], "bob/*": ["*"]}})
    assert a.allowed("bob", Access("repository", "team/x", "pull"))
    assert not a.allowed("bob", Access("repository", "team/x", "push"))
    assert a.allowed("bob", Access("repository", "bob/y", "delete"))
    assert not a.allowed("eve", Access("repository", "team/x", "pull"))


@pytest.mark.parametrize("name", ["a", "a/b", "a-b/c.d", "a__b"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "../a", "a/../b", "a//b", "_a", "a/", "x" * 256])
def test_bad_names(name: str) -> None:
    with pytest.raises(RegistryError) as e:
        check_name(name)
    assert e.value.code == "NAME_INVALID"


def test_challenge_parsing() -> None:
    scheme, params = _parse_challenge(
        'Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://a/token",
        "service": "reg",
        "scope": "repository:x:pull,push",
    }


@pytest.mark.parametrize(
    ("domain", "loop"),
    [("localhost:5000", True), ("127.0.0.1:5", True), ("127.9.9.9", True), ("[::1]:5000", True),
     ("example.com:5000", False), ("10.0.0.1:5000", False), ("docker.io", False)],
)  # fmt: skip
def test_loopback(domain: str, loop: bool) -> None:
    assert is_loopback(domain) is loop


def test_credentials_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text('{"credsStore": "x", "auths": {}}')
    credentials.store("localhost:5000", "u", "p:w")
    credentials.store("docker.io", "hub", "pw")
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["credsStore"] == "x"  # other settings kept
    assert set(doc["auths"]) == {"localhost:5000", "https://index.docker.io/v1/"}
    assert credentials.lookup("localhost:5000") == ("u", "p:w")
    assert credentials.lookup("docker.io") == ("hub", "pw")
    assert credentials.remove("localhost:5000")
    assert credentials.lookup("localhost:5000") is None
    assert not credentials.remove("localhost:5000")
