"""The HTTP edge shared by every resource module: the one place that maps moorage errors to
statuses and Docker's ``{"message": ...}`` body, API version checks, request parsing."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from moorage import __version__
from moorage.api import MAX_API_VERSION, MIN_API_VERSION
from moorage.errors import InvalidArgument, MoorageError

log = logging.getLogger("moorage.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

JSON_BODY_LIMIT = 4 << 20  # create/exec/update bodies; archives and tars are streamed

_VERSION_RE = re.compile(r"^\d+\.\d+$")


class NotModified(MoorageError):
    """start of a running container, stop of a stopped one: Docker's 304, no body."""

    http_status = 304


def _version_key(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


def error_response(status: int, message: str) -> web.Response:
    if status == 304:
        return web.Response(status=304)
    return web.json_response({"message": message}, status=status)


def status_of(e: MoorageError) -> int:
    """moorage.errors -> HTTP: NotFound 404, Conflict/AlreadyExists 409, InvalidArgument 400,
    Unsupported 501, anything else 500 (each class carries its own ``http_status``)."""
    return e.http_status


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Each route at its bare path and under ``/v{version}``."""
    for method, path, handler in routes:
        for prefix in ("", "/v{api_version}"):
            app.router.add_route(method, prefix + path, handler)


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API version negotiation and error mapping, for every request."""
    version = request.match_info.get("api_version")
    if version is not None:
        if not _VERSION_RE.match(version):
            return error_response(404, "page not found")
        if _version_key(version) < _version_key(MIN_API_VERSION):
            return error_response(
                400,
                f"client version {version} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version",
            )
        if _version_key(version) > _version_key(MAX_API_VERSION):
            return error_response(
                400,
                f"client version {version} is too new. Maximum supported API version is "
                f"{MAX_API_VERSION}",
            )
    request["api_version"] = version or MAX_API_VERSION
    try:
        return await handler(request)
    except MoorageError as e:
        return error_response(status_of(e), str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 404:
            return error_response(404, "page not found")
        if e.status == 413:
            return error_response(413, "request body too large")
        return error_response(e.status, e.reason if not e.text else e.text)
    except ConnectionError:
        raise
    except Exception as e:  # a bug: answer 500 and keep serving
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {e}")


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = MAX_API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = f"Moorage/{__version__} (linux)"


def api_at_least(request: web.Request, version: str) -> bool:
    return _version_key(str(request["api_version"])) >= _version_key(version)


# ---- request parsing ----------------------------------------------------------------------


async def read_json(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}`` unless ``required``."""
    if request.content_length is not None and request.content_length > JSON_BODY_LIMIT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=JSON_BODY_LIMIT, actual_size=request.content_length
        )
    raw = await request.content.read(JSON_BODY_LIMIT + 1)
    if len(raw) > JSON_BODY_LIMIT:
        raise web.HTTPRequestEntityTooLarge(max_size=JSON_BODY_LIMIT, actual_size=len(raw))
    if not raw.strip():
        if required:
            raise InvalidArgument("config cannot be empty in order to create a container")
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(
            f"json: cannot unmarshal {json_type(doc)} into Go value of type struct"
        )
    return doc


def json_type(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker's boolean query values: absent -> default; "", 0, false, no -> False."""
    v = request.query.get(name)
    if v is None:
        return default
    return v.strip().lower() not in ("", "0", "false", "no")


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r} is not an integer") from None


def filters(request: web.Request) -> list[tuple[str, str]]:
    """``filters={"key":["v"]}`` or ``{"key":{"v":true}}`` -> [(key, v), ...]."""
    raw = request.query.get("filters")
    if not raw:
        return []
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filter: {raw!r} is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: list[tuple[str, str]] = []
    for key, values in doc.items():
        if isinstance(values, dict):
            out += [(str(key).lower(), str(v)) for v, on in values.items() if on]
        elif isinstance(values, list):
            out += [(str(key).lower(), str(v)) for v in values]
        else:
            raise InvalidArgument(f"invalid filter: values of {key!r} must be a list")
    return out
