"""A registry API v2 client: scheme and auth discovery, retries, resumable blob transfer.

Docker treats loopback registries (localhost, 127.0.0.0/8, ::1) as insecure: it tries HTTPS
without verifying the certificate and falls back to plain HTTP. ``tls_verify=False`` does the
same for any host.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode, urljoin

import httpx

from moorage import __version__
from moorage.errors import DigestMismatch, InvalidArgument, MoorageError, NotFound
from moorage.oci import mediatypes as mt
from moorage.oci.digest import Digest

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)
_RETRIES = 4
_CHUNK = 1 << 20
_MAX_MANIFEST = 4 * 2**20

Progress = Callable[[int], None]


class RegistryUnauthorized(MoorageError):
    http_status = 401


class RegistryDenied(MoorageError):
    http_status = 403


class RegistryUnavailable(MoorageError):
    http_status = 502


def is_loopback(domain: str) -> bool:
    host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 or "]" in domain else domain
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_host(domain: str) -> str:
    return "registry-1.docker.io" if domain == "docker.io" else domain


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: Digest


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _error_text(resp: httpx.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        if errors:
            e = errors[0]
            return f"{str(e.get('code', '')).lower().replace('_', ' ')}: {e.get('message', '')}"
    except (ValueError, AttributeError):
        pass
    return f"{resp.status_code} {resp.reason_phrase}"


class RegistryClient:
    def __init__(
        self,
        domain: str,
        *,
        tls_verify: bool | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.domain = domain
        self.host = api_host(domain)
        self.insecure = tls_verify is False or (tls_verify is None and is_loopback(domain))
        self.credentials = credentials
        self._http = httpx.Client(
            verify=not self.insecure,
            timeout=httpx.Timeout(120, connect=15),
            follow_redirects=True,
            headers={"User-Agent": f"moorage/{__version__}"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._base: str | None = None
        self._tokens: dict[str, str] = {}
        self._challenge: tuple[str, dict[str, str]] | None = None

    def close(self) -> None:
        self._http.close()

    # ---- connection and auth ---------------------------------------------------------------

    @property
    def base(self) -> str:
        if self._base is None:
            self.ping()
        assert self._base is not None
        return self._base

    def ping(self) -> None:
        """Find the scheme and the auth challenge from ``GET /v2/``."""
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                resp = self._send("GET", url, auth=False)
            except httpx.HTTPError as e:
                last = e
                continue
            self._base = f"{scheme}://{self.host}"
            if resp.status_code == 401:
                self._challenge = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            elif resp.status_code >= 400:
                raise RegistryUnavailable(
                    f"registry {self.domain} answered {resp.status_code} on /v2/"
                )
            return
        raise RegistryUnavailable(f"cannot reach registry {self.domain}: {last}")

    def login(self) -> None:
        """Check the credentials: a token (or /v2/ with basic auth) must be granted."""
        self.ping()
        if self._challenge is None:
            return
        scheme, params = self._challenge
        if scheme == "bearer":
            self._token(params, "")
            return
        resp = self._send("GET", f"{self.base}/v2/", auth=True, scope="")
        if resp.status_code == 401:
            raise RegistryUnauthorized(
                f"Error response from daemon: login to {self.domain} failed: unauthorized: "
                "incorrect username or password"
            )

    def _basic_header(self) -> str | None:
        if self.credentials is None:
            return None
        user, password = self.credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryUnavailable(
                f"registry {self.domain} sent a Bearer challenge without realm"
            )
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for s in scope.split():
            query.append(("scope", s))
        if self.credentials is not None:
            query.append(("account", self.credentials[0]))
        headers = {}
        basic = self._basic_header()
        if basic:
            headers["Authorization"] = basic
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        resp = self._http.get(url, headers=headers)
        if resp.status_code in (401, 403):
            why = "incorrect username or password" if basic else "authentication required"
            raise RegistryUnauthorized(f"unauthorized: {why}")
        if resp.status_code != 200:
            raise RegistryUnavailable(f"token endpoint {realm} answered {resp.status_code}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RegistryUnavailable(f"token endpoint {realm} sent no token")
        self._tokens[scope] = token
        return token

    def _auth_header(self, scope: str) -> str | None:
        if self._challenge is None:
            return None
        scheme, params = self._challenge
        if scheme == "bearer":
            return "Bearer " + (self._tokens.get(scope) or self._token(params, scope))
        return self._basic_header()

    def _send(
        self,
        method: str,
        url: str,
        *,
        auth: bool = True,
        scope: str = "",
        headers: dict[str, str] | None = None,
        stream: bool = False,
        content: Any = None,
        retry: bool = True,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        attempt = 0
        while True:
            if auth:
                a = self._auth_header(scope)
                if a:
                    hdrs["Authorization"] = a
            try:
                req = self._http.build_request(method, url, headers=hdrs, content=content)
                resp = self._http.send(req, stream=stream)
            except (httpx.TransportError, httpx.TimeoutException):
                attempt += 1
                if not retry or attempt >= _RETRIES or not auth:
                    raise
                time.sleep(0.25 * 2**attempt)
                continue
            if resp.status_code == 401 and auth and self._challenge is not None:
                new = resp.headers.get("WWW-Authenticate")
                resp.close()
                if attempt >= 1 or not new:
                    raise RegistryUnauthorized(
                        f"unauthorized: authentication required ({self.domain})"
                    )
                self._challenge = _parse_challenge(new)
                self._tokens.pop(scope, None)
                attempt += 1
                continue
            if resp.status_code == 401 and auth and self._challenge is None:
                self._challenge = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                resp.close()
                attempt += 1
                if attempt > 1:
                    raise RegistryUnauthorized("unauthorized: authentication required")
                continue
            if resp.status_code in (502, 503, 504, 429) and retry and attempt < _RETRIES:
                resp.close()
                attempt += 1
                time.sleep(0.25 * 2**attempt)
                continue
            return resp

    def _check(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code < 400:
            return
        if not resp.is_stream_consumed:
            resp.read()
        text = _error_text(resp)
        if resp.status_code == 404:
            raise NotFound(f"{what}: {text}")
        if resp.status_code == 401:
            raise RegistryUnauthorized(f"{what}: {text}")
        if resp.status_code == 403:
            raise RegistryDenied(f"{what}: denied: {text}")
        raise RegistryUnavailable(f"{what}: {text}")

    # ---- manifests -------------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        scope = f"repository:{repo}:pull"
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        resp = self._send("GET", url, scope=scope, headers={"Accept": MANIFEST_ACCEPT})
        self._check(resp, f"manifest for {self.domain}/{repo}:{reference} not found")
        data = resp.content
        if len(data) > _MAX_MANIFEST:
            raise InvalidArgument(f"manifest of {repo}:{reference} is larger than 4 MiB")
        digest = Digest.of(data)
        if reference.startswith("sha256:") and Digest.parse(reference) != digest:
            raise DigestMismatch(f"manifest {reference} does not match its content ({digest})")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, media_type, digest)

    def put_manifest(self, repo: str, tag: str, data: bytes, media_type: str) -> Digest:
        scope = f"repository:{repo}:pull,push"
        url = f"{self.base}/v2/{repo}/manifests/{tag}"
        resp = self._send(
            "PUT", url, scope=scope, headers={"Content-Type": media_type}, content=data
        )
        self._check(resp, f"cannot put manifest {repo}:{tag}")
        return Digest.of(data)

    def tags(self, repo: str) -> list[str]:
        out: list[str] = []
        for page in self._pages(f"/v2/{repo}/tags/list?n=1000", f"repository:{repo}:pull"):
            out.extend(page.get("tags") or [])
        return out

    def catalog(self, limit: int = 10000) -> list[str]:
        out: list[str] = []
        for page in self._pages("/v2/_catalog?n=1000", "registry:catalog:*"):
            out.extend(page.get("repositories") or [])
            if len(out) >= limit:
                break
        return out[:limit]

    def _pages(self, path: str, scope: str) -> Iterator[dict[str, Any]]:
        url: str | None = self.base + path
        for _ in range(1000):
            if url is None:
                return
            resp = self._send("GET", url, scope=scope)
            self._check(resp, f"cannot list {path.split('?')[0]}")
            yield resp.json()
            link = resp.headers.get("Link")
            m = re.match(r"<([^>]+)>", link or "")
            url = urljoin(self.base, m.group(1)) if m else None

    # ---- blobs -------------------------------------------------------------------------------

    def get_blob(self, repo: str, digest: Digest) -> bytes:
        scope = f"repository:{repo}:pull"
        resp = self._send("GET", f"{self.base}/v2/{repo}/blobs/{digest}", scope=scope)
        self._check(resp, f"blob {digest}")
        data = resp.content
        if Digest.of(data) != digest:
            raise DigestMismatch(f"blob {digest} does not match its content")
        return data

    def blob_stream(self, repo: str, digest: Digest, size: int, progress: Progress) -> BlobStream:
        return BlobStream(self, repo, digest, size, progress)

    def has_blob(self, repo: str, digest: Digest) -> bool:
        scope = f"repository:{repo}:pull,push"
        resp = self._send("HEAD", f"{self.base}/v2/{repo}/blobs/{digest}", scope=scope)
        if resp.status_code == 404:
            return False
        self._check(resp, f"blob {digest}")
        return True

    def mount_blob(self, repo: str, digest: Digest, source: str) -> str | None:
        """Cross-repository mount: True-ish (None) when mounted, else an upload URL to use."""
        scope = f"repository:{repo}:pull,push repository:{source}:pull"
        url = f"{self.base}/v2/{repo}/blobs/uploads/?" + urlencode(
            {"mount": str(digest), "from": source}
        )
        resp = self._send("POST", url, scope=scope)
        if resp.status_code == 201:
            return None
        self._check(resp, f"cannot mount blob {digest}")
        return urljoin(self.base, resp.headers["Location"])

    def upload_blob(
        self,
        repo: str,
        digest: Digest,
        size: int,
        opener: Callable[[], IO[bytes]],
        progress: Progress,
        upload_url: str | None = None,
    ) -> None:
        """Upload in one streamed PATCH then PUT; an interrupted PATCH resumes at the offset
        the registry reports."""
        scope = f"repository:{repo}:pull,push"
        if upload_url is None:
            resp = self._send("POST", f"{self.base}/v2/{repo}/blobs/uploads/", scope=scope)
            self._check(resp, f"cannot start upload of {digest}")
            upload_url = urljoin(self.base, resp.headers["Location"])
        offset = 0
        for attempt in range(_RETRIES + 1):
            try:
                upload_url = self._patch(upload_url, scope, opener, offset, size, progress)
                break
            except (httpx.TransportError, httpx.TimeoutException):
                if attempt >= _RETRIES:
                    raise
                time.sleep(0.25 * 2**attempt)
                status = self._send("GET", upload_url, scope=scope)
                self._check(status, f"upload of {digest} was lost")
                rng = status.headers.get("Range", "0-0")
                offset = int(rng.rsplit("-", 1)[1]) + 1 if rng != "0-0" else 0
                upload_url = urljoin(self.base, status.headers.get("Location", upload_url))
        sep = "&" if "?" in upload_url else "?"
        resp = self._send(
            "PUT",
            upload_url + sep + urlencode({"digest": str(digest)}),
            scope=scope,
            headers={"Content-Length": "0"},
            content=b"",
        )
        self._check(resp, f"cannot finish upload of {digest}")

    def _patch(
        self,
        url: str,
        scope: str,
        opener: Callable[[], IO[bytes]],
        offset: int,
        size: int,
        progress: Progress,
    ) -> str:
        def body() -> Iterator[bytes]:
            with opener() as f:
                f.seek(offset)
                while chunk := f.read(_CHUNK):
                    yield chunk
                    progress(len(chunk))

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size - offset),
        }
        if offset:
            headers["Content-Range"] = f"{offset}-{size - 1}"
        resp = self._send("PATCH", url, scope=scope, headers=headers, content=body(), retry=False)
        self._check(resp, "blob upload failed")
        return urljoin(self.base, str(resp.headers.get("Location", url)))


class BlobStream:
    """A blob as a readable stream that resumes with ``Range`` after a broken connection."""

    def __init__(
        self, client: RegistryClient, repo: str, digest: Digest, size: int, progress: Progress
    ) -> None:
        self._client = client
        self._url = f"{client.base}/v2/{repo}/blobs/{digest}"
        self._scope = f"repository:{repo}:pull"
        self.digest = digest
        self.size = size
        self.offset = 0
        self._progress = progress
        self._resp: httpx.Response | None = None
        self._it: Iterator[bytes] | None = None
        self._buf = b""
        self._retries = 0

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        resp = self._client._send("GET", self._url, scope=self._scope, headers=headers, stream=True)
        self._client._check(resp, f"blob {self.digest}")
        if self.offset and resp.status_code != 206:
            resp.close()
            raise RegistryUnavailable(f"registry cannot resume blob {self.digest}")
        self._resp = resp
        self._it = resp.iter_raw(_CHUNK)

    def _next(self) -> bytes:
        while True:
            if self._it is None:
                self._open()
            assert self._it is not None
            try:
                return next(self._it, b"")
            except (httpx.TransportError, httpx.TimeoutException):
                self._retries += 1
                if self._retries > _RETRIES:
                    raise
                self.close()
                time.sleep(0.25 * 2**self._retries)

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            if self.offset >= self.size:
                return b""
            self._buf = self._next()
            if not self._buf:
                if self.offset < self.size:
                    raise DigestMismatch(
                        f"blob {self.digest} ended at {self.offset} of {self.size} bytes"
                    )
                return b""
            self.offset += len(self._buf)
            self._progress(len(self._buf))
            if self.offset > self.size:
                raise DigestMismatch(f"blob {self.digest} is larger than its {self.size} bytes")
        if n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp = None
        self._it = None
