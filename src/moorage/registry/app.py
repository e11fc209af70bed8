"""aiohttp handlers for the OCI Distribution Spec v1.1 (and Docker's registry API v2)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from moorage.oci import mediatypes as mt
from moorage.registry.auth import Access, Authorizer, Unauthorized
from moorage.registry.errors import RegistryError
from moorage.registry.storage import (
    MAX_MANIFEST_SIZE,
    MAX_PAGE,
    RegistryStorage,
    check_name,
    parse_digest,
)

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
_CHUNK = 1 << 20

_ROUTES = [
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uid>[^/]*)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<ref>[^/]+)")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<ref>[^/]+)")),
]
_WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})


class Registry:
    """The handlers; one instance per server process."""

    def __init__(
        self,
        storage: RegistryStorage,
        authorizer: Authorizer,
        *,
        read_only: bool = False,
        delete: bool = False,
    ) -> None:
        self.storage = storage
        self.auth = authorizer
        self.read_only = read_only
        self.delete_enabled = delete

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MANIFEST_SIZE + 1)
        app.router.add_route("*", "/v2", self.dispatch)
        app.router.add_route("*", "/v2/{tail:.*}", self.dispatch)
        if self.auth.token_key is not None:
            app.router.add_get("/token", self.token)
        return app

    # ---- plumbing ------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except Unauthorized as e:
            return _error(e, {"WWW-Authenticate": e.challenge})
        except RegistryError as e:
            return _error(e)

    def _authorize(self, request: web.Request, wanted: list[Access]) -> None:
        if self.auth.open:
            return
        host_url = f"{request.scheme}://{request.host}"
        self.auth.authorize(request.headers.get("Authorization"), host_url, wanted)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        method = request.method
        if method in _WRITE_METHODS and self.read_only:
            raise RegistryError("UNSUPPORTED", "the registry is in read-only mode")
        if tail in ("", "/"):
            self._authorize(request, [])
            return web.json_response({}, headers=API_HEADERS)
        if tail == "_catalog":
            self._authorize(request, [Access("registry", "catalog", "*")])
            return self.catalog(request)
        for kind, rx in _ROUTES:
            m = rx.fullmatch(tail)
            if m is None:
                continue
            name = check_name(m["name"])
            action = "pull" if method in ("GET", "HEAD") else "push"
            if method == "DELETE":
                action = "delete"
            wanted = [Access("repository", name, action)]
            if kind == "upload" and method == "POST" and "mount" in request.query:
                source = request.query.get("from", "")
                if source:
                    check_name(source)
                    wanted.append(Access("repository", source, "pull"))
            if method == "DELETE" and kind in ("blob", "manifest") and not self.delete_enabled:
                raise RegistryError("UNSUPPORTED", "deletion is disabled (start with --delete)")
            self._authorize(request, wanted)
            handler = getattr(self, f"{kind}_{method.lower()}", None)
            if handler is None:
                raise RegistryError("UNSUPPORTED", f"{method} is not supported here")
            response: web.StreamResponse = await handler(request, name, m.groupdict())
            return response
        raise RegistryError("NAME_UNKNOWN", "no such endpoint")

    # ---- blobs -------------------------------------------------------------------------------

    async def blob_head(self, request: web.Request, name: str, m: dict[str, Any]) -> web.Response:
        d = parse_digest(m["ref"])
        size = self.storage.blob_size(name, d)
        self.storage.touch_blob(name, d)
        headers = {
            **API_HEADERS,
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(d),
            "Accept-Ranges": "bytes",
        }
        return web.Response(status=200, headers=headers)

    async def blob_get(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.StreamResponse:
        d = parse_digest(m["ref"])
        size = self.storage.blob_size(name, d)
        headers = {
            **API_HEADERS,
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(d),
            "Accept-Ranges": "bytes",
            "Cache-Control": "max-age=31536000",
            "ETag": f'"{d}"',
        }
        if "Range" not in request.headers:
            data = self.storage.small_blob(d, size)
            if data is not None:
                return web.Response(body=data, headers=headers)
        path = self.storage.driver.local_path(self.storage.blob_key(d))
        if path is None:
            raise RegistryError("UNSUPPORTED", "this storage driver cannot serve blobs")
        del headers["ETag"]
        return web.FileResponse(path, headers=headers, chunk_size=_CHUNK)

    async def blob_delete(self, request: web.Request, name: str, m: dict[str, Any]) -> web.Response:
        self.storage.delete_blob(name, parse_digest(m["ref"]))
        return web.Response(status=202, headers=API_HEADERS)

    # ---- uploads -----------------------------------------------------------------------------

    def _upload_headers(self, name: str, uid: str, size: int) -> dict[str, str]:
        return {
            **API_HEADERS,
            "Location": f"/v2/{name}/blobs/uploads/{uid}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": uid,
            "Content-Length": "0",
        }

    def _created(self, name: str, d: str) -> web.Response:
        headers = {
            **API_HEADERS,
            "Location": f"/v2/{name}/blobs/{d}",
            "Docker-Content-Digest": d,
            "Content-Length": "0",
        }
        return web.Response(status=201, headers=headers)

    async def _receive(self, request: web.Request, up: Any) -> None:
        w, hasher = self.storage.begin_append(up)
        try:
            async for chunk in request.content.iter_chunked(_CHUNK):
                w.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
        finally:
            self.storage.end_append(up, w, hasher)

    async def upload_post(self, request: web.Request, name: str, m: dict[str, Any]) -> web.Response:
        if m["uid"]:
            raise RegistryError("UNSUPPORTED", "POST to an upload is not supported")
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source:
            mounted = parse_digest(mount)
            if self.storage.mount_blob(name, mounted, source):
                return self._created(name, str(mounted))
        digest = request.query.get("digest")
        want = parse_digest(digest) if digest is not None else None
        up = self.storage.start_upload(name)
        if want is not None:
            await self._finish(request, up, want)
            return self._created(name, str(want))
        return web.Response(status=202, headers=self._upload_headers(name, up.uid, 0))

    async def _finish(self, request: web.Request, up: Any, d: Any) -> None:
        try:
            await self._receive(request, up)
            length = request.headers.get("Content-Length")
            if request.method == "POST" and length is not None and int(length) != up.size:
                raise RegistryError("SIZE_INVALID")
        except BaseException:
            self.storage.cancel_upload(up)
            raise
        # fsync and rename off the event loop: other transfers keep flowing meanwhile
        await asyncio.to_thread(self.storage.finish_upload, up, d)

    async def upload_patch(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        up = self.storage.get_upload(name, m["uid"])
        content_range = request.headers.get("Content-Range")
        if content_range is not None:
            cr = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)", content_range.strip())
            if cr is None:
                raise RegistryError("RANGE_INVALID", f"bad Content-Range {content_range[:100]!r}")
            start, end = int(cr[1]), int(cr[2])
            length = request.headers.get("Content-Length")
            if (
                start != up.size
                or end < start
                or (length is not None and int(length) != end - start + 1)
            ):
                return _error(
                    RegistryError(
                        "RANGE_INVALID",
                        f"chunk {start}-{end} does not continue the upload at {up.size}",
                    ),
                    self._upload_headers(name, up.uid, up.size),
                )
        await self._receive(request, up)
        return web.Response(status=202, headers=self._upload_headers(name, up.uid, up.size))

    async def upload_put(self, request: web.Request, name: str, m: dict[str, Any]) -> web.Response:
        up = self.storage.get_upload(name, m["uid"])
        digest = request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "digest parameter is required")
        d = parse_digest(digest)
        content_range = request.headers.get("Content-Range")
        if content_range is not None:
            cr = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)", content_range.strip())
            if cr is None or int(cr[1]) != up.size:
                raise RegistryError("RANGE_INVALID", "chunk does not continue the upload")
        await self._finish(request, up, d)
        return self._created(name, str(d))

    async def upload_get(self, request: web.Request, name: str, m: dict[str, Any]) -> web.Response:
        up = self.storage.get_upload(name, m["uid"])
        return web.Response(status=204, headers=self._upload_headers(name, up.uid, up.size))

    async def upload_delete(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        up = self.storage.get_upload(name, m["uid"])
        self.storage.cancel_upload(up)
        return web.Response(status=204, headers=API_HEADERS)

    # ---- manifests -------------------------------------------------------------------------

    def _manifest(self, request: web.Request, name: str, ref: str) -> Any:
        stored = self.storage.get_manifest(name, ref)
        accept = _accepted(request)
        if accept and stored.media_type not in accept:
            raise RegistryError(
                "MANIFEST_UNKNOWN",
                f"manifest is {stored.media_type}, which the Accept header does not allow",
            )
        headers = {
            **API_HEADERS,
            "Content-Type": stored.media_type,
            "Docker-Content-Digest": str(stored.digest),
            "ETag": f'"{stored.digest}"',
        }
        return stored, headers

    async def manifest_get(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        stored, headers = self._manifest(request, name, m["ref"])
        return web.Response(body=stored.data, headers=headers)

    async def manifest_head(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        stored, headers = self._manifest(request, name, m["ref"])
        headers["Content-Length"] = str(len(stored.data))
        return web.Response(status=200, headers=headers)

    async def manifest_put(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        length = request.content_length
        if length is not None and length > MAX_MANIFEST_SIZE:
            raise RegistryError(
                "MANIFEST_INVALID", f"manifest is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        data = await request.content.read(MAX_MANIFEST_SIZE + 1)
        if len(data) > MAX_MANIFEST_SIZE or not request.content.at_eof():
            raise RegistryError(
                "MANIFEST_INVALID", f"manifest is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        content_type = request.headers.get("Content-Type")
        res = self.storage.put_manifest(name, m["ref"], data, content_type)
        headers = {
            **API_HEADERS,
            "Location": f"/v2/{name}/manifests/{res.digest}",
            "Docker-Content-Digest": str(res.digest),
            "Content-Length": "0",
        }
        if res.subject is not None:
            headers["OCI-Subject"] = str(res.subject)
        return web.Response(status=201, headers=headers)

    async def manifest_delete(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        self.storage.delete_manifest(name, m["ref"])
        return web.Response(status=202, headers=API_HEADERS)

    # ---- listing -------------------------------------------------------------------------

    async def tags_get(self, request: web.Request, name: str, m: dict[str, Any]) -> web.Response:
        tags = self.storage.tags(name)
        page, link = _paginate(request, tags, f"/v2/{name}/tags/list")
        headers = dict(API_HEADERS)
        if link:
            headers["Link"] = link
        return web.json_response({"name": name, "tags": page}, headers=headers)

    def catalog(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            raise RegistryError("UNSUPPORTED", f"{request.method} is not supported here")
        page, link = _paginate(request, self.storage.repositories(), "/v2/_catalog")
        headers = dict(API_HEADERS)
        if link:
            headers["Link"] = link
        return web.json_response({"repositories": page}, headers=headers)

    async def referrers_get(
        self, request: web.Request, name: str, m: dict[str, Any]
    ) -> web.Response:
        subject = parse_digest(m["ref"])
        artifact_type = request.query.get("artifactType")
        found = self.storage.referrers(name, subject, artifact_type)
        headers = {**API_HEADERS}
        if artifact_type is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
        return web.Response(
            body=json.dumps(body).encode(), content_type=mt.OCI_INDEX, headers=headers
        )

    # ---- token issuer --------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        try:
            body = self.auth.issue(
                request.headers.get("Authorization"),
                request.query.getall("scope", []),
                request.query.get("service", ""),
            )
        except Unauthorized as e:
            return _error(e, {"WWW-Authenticate": e.challenge})
        except RegistryError as e:
            return _error(e)
        return web.json_response(body)


def _accepted(request: web.Request) -> set[str]:
    """Manifest media types the client accepts; empty when it accepts anything."""
    types: set[str] = set()
    for header in request.headers.getall("Accept", []):
        for part in header.split(","):
            t = part.split(";", 1)[0].strip()
            if t in ("*/*", "application/*"):
                return set()
            if mt.is_manifest(t) or mt.is_index(t):
                types.add(t)
    return types


def _paginate(request: web.Request, items: list[str], path: str) -> tuple[list[str], str | None]:
    raw_n = request.query.get("n")
    last = request.query.get("last")
    if last:
        import bisect

        items = items[bisect.bisect_right(items, last) :]
    if raw_n is None:
        return items, None
    if not raw_n.isdigit() or len(raw_n) > 12:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid n={raw_n[:30]!r}")
    n = min(int(raw_n), MAX_PAGE)
    page = items[:n]
    if len(items) > n and page:
        return page, f'<{path}?n={n}&last={quote(page[-1])}>; rel="next"'
    return page, None


def _error(e: RegistryError, extra: dict[str, str] | None = None) -> web.Response:
    headers = {**API_HEADERS, **(extra or {})}
    headers.pop("Content-Length", None)
    return web.Response(
        status=e.status, body=e.body(), content_type="application/json", headers=headers
    )
