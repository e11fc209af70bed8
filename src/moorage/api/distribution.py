"""Registry endpoints: create (pull, or import with ``fromSrc``), push, search and auth,
with Docker's JSON progress streams and the client's ``X-Registry-Auth``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.http import Route, filters, qint, read_json
from moorage.api.jsonstream import Emitter, Message, progress_bar, run_streamed
from moorage.api.streams import AsyncReader
from moorage.errors import InvalidArgument, MoorageError, Unsupported

Credentials = tuple[str, str]

_PULLING_FROM = re.compile(r"^(\S+): Pulling from (.+)$")


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


# ---- auth headers -------------------------------------------------------------------------


def decode_auth_config(value: str, header: str = "X-Registry-Auth") -> dict[str, Any]:
    """A base64url JSON object (padded or not, as the docker CLI and docker-py send it)."""
    value = value.strip()
    if not value:
        return {}
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        doc = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(f"invalid {header} header: not base64url-encoded JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"invalid {header} header: expected a JSON object")
    return doc


def credentials_of(doc: dict[str, Any], what: str = "X-Registry-Auth") -> Credentials | None:
    """(username, password) from an auth config: its fields, or its ``auth`` (user:pass)."""
    user, password = doc.get("username") or "", doc.get("password") or ""
    if not isinstance(user, str) or not isinstance(password, str):
        raise InvalidArgument(f"invalid {what}: username and password must be strings")
    if not user and isinstance(doc.get("auth"), str) and doc["auth"]:
        try:
            user, _, password = base64.b64decode(doc["auth"]).decode().partition(":")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(f"invalid {what}: auth is not base64 user:password") from None
    if not user and doc.get("identitytoken"):
        raise Unsupported(f"invalid {what}: identity tokens are not supported")
    return (user, password) if user else None


def request_credentials(request: web.Request) -> Credentials | None:
    return credentials_of(decode_auth_config(request.headers.get("X-Registry-Auth", "")))


def build_credentials(request: web.Request) -> dict[str, Credentials]:
    """``X-Registry-Config``: registry address -> auth config, for the FROM images a build
    pulls. Keys are normalized to registry domains."""
    from moorage.distribution.credentials import registry_domain

    doc = decode_auth_config(request.headers.get("X-Registry-Config", ""), "X-Registry-Config")
    out: dict[str, Credentials] = {}
    for server, cfg in doc.items():
        if not isinstance(cfg, dict):
            raise InvalidArgument(f"invalid X-Registry-Config: {server} is not an object")
        creds = credentials_of(cfg, "X-Registry-Config")
        if creds is not None:
            out[registry_domain(server)] = creds
    return out


# ---- progress -----------------------------------------------------------------------------


class StreamReporter:
    """The engine's transfer Reporter, as the JSON messages dockerd sends."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    def message(self, text: str) -> None:
        m = _PULLING_FROM.match(text)
        if m is not None:
            self.emitter.send({"status": f"Pulling from {m.group(2)}", "id": m.group(1)})
        else:
            self.emitter.send({"status": text})

    def status(self, key: str, text: str) -> None:
        self.emitter.send({"status": text, "progressDetail": {}, "id": key})

    def progress(self, key: str, verb: str, done: int, total: int) -> None:
        self.emitter.send(
            {
                "status": verb,
                "progressDetail": {"current": done, "total": total},
                "progress": progress_bar(done, total),
                "id": key,
            }
        )


# ---- pull / import ------------------------------------------------------------------------


def _pull_reference(image: str, tag: str) -> str:
    if not image:
        raise InvalidArgument("fromImage or fromSrc is required")
    if not tag:
        return image
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image  # the reference already names its tag or digest
    return f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"


async def create(request: web.Request) -> web.StreamResponse:
    if request.query.get("fromSrc"):
        return await _import(request)
    from moorage.oci.platform import Platform
    from moorage.oci.reference import parse_reference

    name = _pull_reference(request.query.get("fromImage", ""), request.query.get("tag", ""))
    parse_reference(name)  # a malformed name is a 400 before the stream starts
    creds = request_credentials(request)
    plat = request.query.get("platform", "")
    platform = Platform.parse(plat) if plat else None

    def work(ctx: Ctx, emitter: Emitter) -> Any:
        from moorage.distribution.client import RegistryUnauthorized
        from moorage.engine.images.transfer import pull

        try:
            return pull(
                ctx.images,
                name,
                platform=platform,
                reporter=StreamReporter(emitter),
                credentials=creds,
                stored_credentials=False,
            )
        except RegistryUnauthorized as e:
            # dockerd answers 500 here: a 401 makes the docker CLI prompt for a login
            raise MoorageError(str(e)) from None

    def finish(res: Any) -> list[Message]:
        shown = parse_reference(res.reference).familiar()
        state = "Downloaded newer image for" if res.downloaded else "Image is up to date for"
        return [{"status": f"Digest: {res.digest}"}, {"status": f"Status: {state} {shown}"}]

    return await run_streamed(request, work, finish)


async def _import(request: web.Request) -> web.StreamResponse:
    from moorage.api.images import LOAD_LIMIT
    from moorage.engine.images.importer import import_rootfs

    src = request.query["fromSrc"]
    if src != "-":
        raise Unsupported(f"importing from {src}: only fromSrc=- (the request body) is supported")
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    reference = (f"{repo}:{tag}" if tag else repo) or None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    reader = AsyncReader(request, asyncio.get_running_loop(), LOAD_LIMIT)

    def work(ctx: Ctx, emitter: Emitter) -> str:
        digest = import_rootfs(
            ctx.images.store,
            reader,  # type: ignore[arg-type]
            reference=reference,
            changes=changes,
            message=message,
        )
        return str(digest)

    return await run_streamed(request, work, lambda digest: [{"status": digest}])


# ---- push ---------------------------------------------------------------------------------


async def push(request: web.Request) -> web.StreamResponse:
    from moorage.oci.reference import parse_reference

    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    ref = parse_reference(name)
    all_tags = not tag and ref.tag is None
    if tag and ref.tag is None:
        name = f"{name}:{tag}"
    creds = request_credentials(request)

    def work(ctx: Ctx, emitter: Emitter) -> Any:
        from moorage.engine.images.transfer import push as push_image

        return push_image(
            ctx.images,
            name,
            all_tags=all_tags,
            reporter=StreamReporter(emitter),
            credentials=creds,
            stored_credentials=False,
        )

    def finish(res: Any) -> list[Message]:
        return [
            {"progressDetail": {}, "aux": {"Tag": t.tag, "Digest": str(t.digest), "Size": t.size}}
            for t in res.tags
        ]

    return await run_streamed(request, work, finish)


# ---- search and auth ----------------------------------------------------------------------


async def search(request: web.Request) -> web.StreamResponse:
    from moorage.distribution.search import search as search_registry

    term = request.query.get("term", "")
    if not term:
        raise InvalidArgument("term is required")
    limit = qint(request, "limit", 25) or 25
    if not 1 <= limit <= 100:
        raise InvalidArgument(f"limit {limit} is outside the range of [1, 100]")
    official: bool | None = None
    automated: bool | None = None
    stars = 0
    for key, value in filters(request):
        if key in ("is-official", "is-automated"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter '{key}={value}'")
            on = value.lower() in ("true", "1")
            if key == "is-official":
                official = on
            else:
                automated = on
        elif key == "stars":
            try:
                stars = max(stars, int(value))
            except ValueError:
                raise InvalidArgument(f"invalid filter 'stars={value}'") from None
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    creds = request_credentials(request)
    results = await _backend(request).run(
        lambda: search_registry(term, limit, credentials=creds, stored_credentials=False)
    )
    out = [
        {
            "name": r.name,
            "description": r.description,
            "star_count": r.star_count,
            "is_official": r.is_official,
            "is_automated": r.is_automated,
        }
        for r in results
        if r.star_count >= stars
        and (official is None or r.is_official == official)
        and (automated is None or r.is_automated == automated)
    ]
    return web.json_response(out)


async def auth(request: web.Request) -> web.StreamResponse:
    from moorage.distribution.client import RegistryClient, RegistryUnauthorized
    from moorage.distribution.credentials import registry_domain

    doc = await read_json(request)
    creds = credentials_of(doc, "auth config")
    if creds is None:
        raise InvalidArgument("Error: Non-null Username and Password Required")
    server = doc.get("serveraddress") or ""
    if not isinstance(server, str):
        raise InvalidArgument("invalid auth config: serveraddress must be a string")
    domain = registry_domain(server)

    def check() -> None:
        client = RegistryClient(domain, credentials=creds)
        try:
            client.login()
        except RegistryUnauthorized as e:
            text = str(e).removeprefix("Error response from daemon: ")
            raise RegistryUnauthorized(text) from None
        finally:
            client.close()

    await _backend(request).run(check)
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


ROUTES: list[Route] = [
    ("POST", "/images/create", create),
    ("GET", "/images/search", search),
    ("POST", "/images/{name:.+}/push", push),
    ("POST", "/auth", auth),
]
