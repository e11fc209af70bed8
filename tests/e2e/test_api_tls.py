"""``moor system service`` over TCP with TLS and client certificates (certificates made in
the test with the openssl command), checked with the docker CLI and Python's ssl."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MOOR, Moor
from tests.e2e.apiservice import DOCKER_CLIS, start_service, stop_service

OPENSSL = "/usr/bin/openssl"
pytestmark = pytest.mark.skipif(not Path(OPENSSL).exists(), reason="no openssl command")


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(cwd: Path, name: str) -> None:
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)


def _ca(cwd: Path, name: str) -> None:
    _key(cwd, name)
    _run("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "1",
         "-subj", f"/CN={name}", cwd=cwd)  # fmt: skip


def _cert(cwd: Path, name: str, ca: str, ext: str) -> None:
    _key(cwd, name)
    _run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
         cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(ext)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext",
         cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _cert(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\n")  # fmt: skip
    _cert(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _cert(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")
    return d


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _client_ctx(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return ctx


def _get(port: int, ctx: ssl.SSLContext, path: str = "/_ping") -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("spelling", ["moorage", "dockerd"])
def test_tls_with_client_certificates(moor: Moor, tmp_path: Path, pki: Path, spelling: str) -> None:
    port = _free_port()
    names = {
        "moorage": ("--tls-verify", "--tls-ca", "--tls-cert", "--tls-key"),
        "dockerd": ("--tlsverify", "--tlscacert", "--tlscert", "--tlskey"),
    }[spelling]
    proc = start_service(
        moor, tmp_path / "api.sock", "--host", f"tcp://127.0.0.1:{port}", names[0],
        names[1], str(pki / "ca.pem"), names[2], str(pki / "server.pem"),
        names[3], str(pki / "server.key"),
    )  # fmt: skip
    try:
        status, body = _get(port, _client_ctx(pki, "client"))
        assert (status, body) == (200, b"OK")
        status, body = _get(port, _client_ctx(pki, "client"), "/version")
        assert json.loads(body)["ApiVersion"]
        # no client certificate, or one from another CA: the handshake fails
        for who in (None, "stranger"):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _get(port, _client_ctx(pki, who))
        # plain HTTP on the TLS port gets no API answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"OK" not in s.recv(4096)
        if DOCKER_CLIS:
            cli = DOCKER_CLIS[-1]
            env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "empty-config"),
                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # fmt: skip
            base = [cli, "--tlsverify", "--tlscacert", str(pki / "ca.pem"),
                    "-H", f"tcp://127.0.0.1:{port}"]  # fmt: skip
            ok = subprocess.run(
                [*base, "--tlscert", str(pki / "client.pem"), "--tlskey", str(pki / "client.key"),
                 "version", "--format", "{{.Server.Version}}"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert (ok.returncode, ok.stdout) == (0, "0.1.0\n"), ok.stderr
            bad = subprocess.run(
                [*base, "version", "--format", "{{.Server.Version}}"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert bad.returncode != 0 and bad.stdout.strip() == ""
    finally:
        stop_service(proc)


def test_tls_flag_errors(moor: Moor, tmp_path: Path, pki: Path) -> None:
    def service(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MOOR, "system", "service", *args],
            env=moor.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    p = service("--host", "tcp://127.0.0.1:1", "--tls-verify", "--tls-cert", "x", "--tls-key", "y")
    assert p.returncode == 1 and "--tls-verify needs --tls-ca" in p.stderr
    p = service("--host", "tcp://127.0.0.1:1", "--tls-cert", str(tmp_path / "nope.pem"),
                "--tls-key", str(tmp_path / "nope.key"))  # fmt: skip
    assert p.returncode == 1 and "cannot load the TLS certificate" in p.stderr
    # TLS without client certificates is still loopback only
    p = service("--host", "tcp://0.0.0.0:1", "--tls", "--tls-cert", str(pki / "server.pem"),
                "--tls-key", str(pki / "server.key"))  # fmt: skip
    assert p.returncode == 1 and "loopback only" in p.stderr
    p = service("--host", f"unix://{tmp_path}/s.sock", "--tls-cert", str(pki / "server.pem"),
                "--tls-key", str(pki / "server.key"))  # fmt: skip
    assert p.returncode == 1 and "no tcp:// --host" in p.stderr
