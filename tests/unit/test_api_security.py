"""Pure parts of the API's security: which hosts need TLS, TLS flags, auth headers."""

from __future__ import annotations

import base64
import json

import pytest

from moorage.api.distribution import credentials_of, decode_auth_config
from moorage.api.jsonstream import error_message, progress_bar
from moorage.api.server import TLSConfig, parse_host
from moorage.errors import InvalidArgument, Unsupported


def test_non_loopback_tcp_needs_tls_with_client_certificates() -> None:
    assert parse_host("tcp://127.0.0.1:2375").host == "127.0.0.1"
    assert parse_host("tcp://[::1]:2375").host == "::1"
    for host in ("tcp://0.0.0.0:2376", "tcp://10.1.2.3:2376", "tcp://:2376"):
        with pytest.raises(InvalidArgument, match="loopback only"):
            parse_host(host)
        with pytest.raises(InvalidArgument, match="loopback only"):
            parse_host(host, TLSConfig("c.pem", "k.pem"))  # TLS, but anyone may connect
        assert parse_host(host, TLSConfig("c.pem", "k.pem", "ca.pem", verify=True)).port == 2376


def test_tls_flags() -> None:
    assert TLSConfig.from_flags(tls=False, verify=False, cert=None, key=None, ca=None) is None
    with pytest.raises(InvalidArgument, match="--tls-verify needs --tls-ca"):
        TLSConfig.from_flags(tls=False, verify=True, cert="c", key="k", ca=None)
    with pytest.raises(InvalidArgument, match="TLS needs --tls-cert, --tls-key"):
        TLSConfig.from_flags(tls=True, verify=False, cert=None, key=None, ca=None)
    # a CA means client certificates are checked, as dockerd does
    cfg = TLSConfig.from_flags(tls=True, verify=False, cert="c", key="k", ca="ca")
    assert cfg == TLSConfig("c", "k", "ca", verify=True)
    with pytest.raises(InvalidArgument, match="cannot load the TLS certificate"):
        TLSConfig("/nonexistent/c.pem", "/nonexistent/k.pem").context()


def _b64(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def test_registry_auth_header() -> None:
    assert decode_auth_config("") == {}
    doc = {"username": "a", "password": "p+/?", "serveraddress": "r:5000"}
    assert decode_auth_config(_b64(doc)) == doc
    assert decode_auth_config(_b64(doc).rstrip("=")) == doc  # unpadded, as Go's RawURL
    assert credentials_of(doc) == ("a", "p+/?")
    assert credentials_of({"auth": base64.b64encode(b"u:p:w").decode()}) == ("u", "p:w")
    assert credentials_of({}) is None
    with pytest.raises(InvalidArgument, match="invalid X-Registry-Auth header"):
        decode_auth_config("!!not base64 json!!")
    with pytest.raises(InvalidArgument, match="expected a JSON object"):
        decode_auth_config(_b64([1]))
    with pytest.raises(InvalidArgument, match="must be strings"):
        credentials_of({"username": 1})
    with pytest.raises(Unsupported):
        credentials_of({"identitytoken": "tok"})


def test_stream_helpers() -> None:
    assert progress_bar(0, 100).startswith("[>" + " " * 49 + "]")
    assert progress_bar(100, 100).startswith("[" + "=" * 50 + "]")
    assert progress_bar(50, 100).endswith("50B/100B")
    assert error_message(InvalidArgument("bad")) == {
        "errorDetail": {"message": "bad"},
        "error": "bad",
    }
    from moorage.build.builder import BuildFailed

    assert error_message(BuildFailed("ran", 3))["errorDetail"] == {"message": "ran", "code": 3}
