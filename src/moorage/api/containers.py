"""Container endpoints: create, list, inspect, start/stop/restart/kill/pause/unpause, wait,
remove, logs, attach, resize, top, changes, export, archive (docker cp), rename, update,
prune, stats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.createspec import parse_create
from moorage.api.http import NotModified, Route, filters, log, qbool, qint, read_json
from moorage.api.monitor import Monitor, Watch
from moorage.api.streams import (
    STDERR,
    STDOUT,
    AsyncReader,
    AsyncWriter,
    Hijacked,
    frame,
    hijack,
    raw_content_type,
    stream_no,
)
from moorage.engine.containers.listing import STATUSES
from moorage.engine.containers.service import ContainerRecord
from moorage.errors import Conflict, InvalidArgument, MoorageError, NotFound

ARCHIVE_LIMIT = int(os.environ.get("MOORAGE_API_MAX_UPLOAD", str(64 << 30)))
_CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


def _monitor(request: web.Request) -> Monitor:
    m: Monitor = request.app["monitor"]
    return m


async def _get(request: web.Request) -> ContainerRecord:
    ref = request.match_info["id"]
    return await _backend(request).call(lambda ctx: ctx.containers.get(ref))


# ---- create, list, inspect ----------------------------------------------------------------


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, required=True)
    spec, extra = parse_create(body, request.query.get("name", ""))

    def run(ctx: Ctx) -> ContainerRecord:
        from moorage.engine.network import modes

        svc = ctx.containers
        # before anything is made; a 400, not Docker's 404 at start: the docker CLI and
        # docker-py take a 404 from create for a missing image and try to pull it
        wanted = [ep.network for ep in extra]
        if modes.is_user_defined(spec.network_mode):
            wanted.insert(0, modes.network_name(spec.network_mode))
        for net in wanted:
            if net != "bridge" and svc.networks.find(net) is None:
                raise InvalidArgument(f"network {net} not found")
        rec = svc.create(spec)
        try:
            for ep in extra:
                svc.networks.connect(ep.network, rec, svc, aliases=ep.aliases, ip=ep.ip)
        except BaseException:
            with contextlib.suppress(MoorageError):
                svc.remove(rec.id, force=True, anonymous_volumes=True)
            raise
        return rec

    rec = await _backend(request).call(run)
    return web.json_response({"Id": rec.id, "Warnings": []}, status=201)


def _public_networks(networks: dict[str, Any]) -> dict[str, Any]:
    """The default network under Docker's name for it."""
    from moorage.api.networks import public_name

    return {public_name(k): v for k, v in networks.items()}


@dataclass
class Attached:
    """Every container's endpoints and mounts, read in two queries for a listing."""

    endpoints: dict[str, list[Any]] = field(default_factory=dict)
    mounts: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, ctx: Ctx) -> Attached:
        conn = ctx.containers.store.db.conn
        out = cls()
        for r in conn.execute(
            "SELECT e.container_id, e.ip, e.mac, e.ports, n.id AS network_id, n.name,"
            " n.gateway, n.subnet FROM endpoints e JOIN networks n ON n.id = e.network_id"
            " ORDER BY e.container_id, e.position"
        ):
            out.endpoints.setdefault(r["container_id"], []).append(r)
        for r in conn.execute("SELECT * FROM container_mounts ORDER BY container_id, position"):
            out.mounts.setdefault(r["container_id"], []).append(r)
        return out


def _summary_networks(rec: ContainerRecord, rows: list[Any]) -> dict[str, Any]:
    from moorage.api.networks import public_name
    from moorage.engine.network import modes
    from moorage.engine.network.service import endpoint_id

    mode = rec.spec.network_mode
    if not modes.is_bridge_mode(mode):
        return {} if mode.startswith("container:") else {mode: {"NetworkID": "",
                "EndpointID": "", "Gateway": "", "IPAddress": "", "MacAddress": ""}}  # fmt: skip
    out = {}
    for r in rows:
        ip = r["ip"] or ""
        out[public_name(r["name"])] = {
            "IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": r["network_id"],
            "EndpointID": endpoint_id(rec.id, r["network_id"]) if ip else "",
            "Gateway": r["gateway"] if ip else "", "IPAddress": ip,
            "IPPrefixLen": int(r["subnet"].partition("/")[2] or 0) if ip else 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": (r["mac"] or "") if ip else "", "DriverOpts": None,
        }  # fmt: skip
    return out


def _summary_ports(
    rec: ContainerRecord, rows: list[Any], image_config: dict[str, Any]
) -> list[Any]:
    from moorage.engine.network.service import exposed_ports

    bound = [p for r in rows if r["ip"] for p in json.loads(r["ports"] or "[]")]
    out: list[dict[str, Any]] = []
    done = set()
    for p in bound if rec.running else []:
        out.append({"IP": p["host_ip"] or "0.0.0.0", "PrivatePort": p["container_port"],
                    "PublicPort": p["host_port"], "Type": p["proto"]})  # fmt: skip
        done.add(f"{p['container_port']}/{p['proto']}")
    for key in exposed_ports(rec.spec, image_config):
        if key not in done:
            port, _, proto = key.partition("/")
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def summary(
    ctx: Ctx,
    rec: ContainerRecord,
    *,
    now: float,
    configs: dict[str, Any] | None = None,
    attached: Attached | None = None,
) -> dict[str, Any]:
    from moorage.engine.containers.listing import command_text, status_text

    if attached is None:
        attached = Attached.read(ctx)

    svc = ctx.containers
    command = command_text(svc, rec, configs)
    image_config: dict[str, Any] = {}
    if configs is not None and rec.image_id in configs:
        image_config = configs[rec.image_id] or {}
    else:
        with contextlib.suppress(MoorageError, OSError):
            image_config = svc.images.config(svc.image_of(rec)).get("config") or {}
    endpoints = attached.endpoints.get(rec.id, [])
    return {
        "Id": rec.id,
        "Names": ["/" + rec.name],
        "Image": rec.image_ref,
        "ImageID": rec.image_id,
        "Command": command,
        "Created": int(rec.created),
        "Ports": _summary_ports(rec, endpoints, image_config),
        "Labels": dict(rec.spec.labels),
        "State": rec.state,
        "Status": status_text(rec, now),
        "HostConfig": {"NetworkMode": rec.spec.network_mode},
        "NetworkSettings": {"Networks": _summary_networks(rec, endpoints)},
        "Mounts": svc.volumes.mount_docs(attached.mounts.get(rec.id, [])),
    }


async def list_containers(request: web.Request) -> web.StreamResponse:
    show_all = qbool(request, "all")
    limit = qint(request, "limit", -1) or -1
    size = qbool(request, "size")
    wanted = filters(request)
    for key, value in wanted:  # refused even when no container is there to test them on
        if key not in ("status", "name", "id", "label", "ancestor", "exited"):
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "status" and value not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}'")

    def run(ctx: Ctx) -> list[dict[str, Any]]:
        from moorage.engine.containers.listing import matches

        svc = ctx.containers
        records = svc.ls()
        if limit > 0:
            show = records
        elif not show_all and not any(k == "status" for k, _ in wanted):
            show = [r for r in records if r.running]
        else:
            show = records
        show = [r for r in show if matches(svc, r, wanted)]
        if limit > 0:
            show = show[:limit]
        now = time.time()
        out = []
        configs: dict[str, Any] = {}
        attached = Attached.read(ctx) if show else Attached()
        for r in show:
            doc = summary(ctx, r, now=now, configs=configs, attached=attached)
            if size:
                from moorage.store.snapshots import dir_usage

                rw = dir_usage(svc.overlay(r.id) / "diff")
                doc["SizeRw"] = rw
                doc["SizeRootFs"] = rw + svc.image_of(r).size
            out.append(doc)
        return out

    return web.json_response(await _backend(request).call(run))


async def inspect(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers.service import inspect as inspect_doc

    ref = request.match_info["id"]
    size = qbool(request, "size")

    def run(ctx: Ctx) -> dict[str, Any]:
        svc = ctx.containers
        rec = svc.get(ref)
        doc = inspect_doc(svc, rec)
        # the log is readable through /logs as a json-file one is; clients (docker-py's
        # run) only read logs of the drivers they know
        log_config = doc["HostConfig"]["LogConfig"]
        if log_config.get("Type") == "k8s-file":
            log_config["Type"] = "json-file"
        settings = doc["NetworkSettings"]
        settings["Networks"] = _public_networks(settings["Networks"])
        if size:
            from moorage.store.snapshots import dir_usage

            doc["SizeRw"] = dir_usage(svc.overlay(rec.id) / "diff")
            doc["SizeRootFs"] = doc["SizeRw"] + svc.image_of(rec).size
        return doc

    return web.json_response(await _backend(request).call(run))


# ---- lifecycle ----------------------------------------------------------------------------


async def start(request: web.Request) -> web.StreamResponse:
    rec = await _get(request)
    if rec.state == "running":
        raise NotModified("container already started")
    if rec.state == "paused":
        raise Conflict(f"cannot start a paused container {rec.name}, try unpause instead")
    try:
        await _monitor(request).start(rec.id)
    except MoorageError:
        if rec.spec.auto_remove:  # as Docker: an AutoRemove container that cannot start goes
            with contextlib.suppress(MoorageError):
                await _backend(request).call(lambda ctx: ctx.containers.remove(rec.id, force=True))
        raise
    return web.Response(status=204)


async def stop(request: web.Request) -> web.StreamResponse:
    rec = await _get(request)
    t = qint(request, "t")
    if not rec.running:
        raise NotModified("container already stopped")
    await _backend(request).call(lambda ctx: ctx.containers.stop(rec.id, t))
    return web.Response(status=204)


async def restart(request: web.Request) -> web.StreamResponse:
    rec = await _get(request)
    t = qint(request, "t")
    await _backend(request).call(lambda ctx: ctx.containers.stop(rec.id, t))
    watch = _monitor(request).watches.get(rec.id)
    if watch is not None:  # let its watcher record the exit before we start again
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(watch.done), 10)
    await _monitor(request).start(rec.id)
    await _backend(request).call(lambda ctx: ctx.containers.record_restart(rec.id))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    sig = request.query.get("signal") or "KILL"
    await _backend(request).call(lambda ctx: ctx.containers.kill(ref, sig))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    await _backend(request).call(lambda ctx: ctx.containers.pause(ref))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    await _backend(request).call(lambda ctx: ctx.containers.unpause(ref))
    return web.Response(status=204)


async def remove(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    force, volumes = qbool(request, "force"), qbool(request, "v")
    await _backend(request).call(
        lambda ctx: ctx.containers.remove(ref, force=force, anonymous_volumes=volumes)
    )
    return web.Response(status=204)


async def rename(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    name = request.query.get("name", "")
    if not name:
        raise InvalidArgument("Neither old nor new names may be empty")
    await _backend(request).call(lambda ctx: ctx.containers.rename(ref, name))
    return web.Response(status=204)


async def update(request: web.Request) -> web.StreamResponse:
    from moorage.api.createspec import _get as field
    from moorage.engine.containers.service import update as update_container

    ref = request.match_info["id"]
    body = await read_json(request)
    changes: dict[str, Any] = {}
    for key, attr in (
        ("Memory", "memory"),
        ("MemorySwap", "memory_swap"),
        ("NanoCpus", "nano_cpus"),
        ("CpuShares", "cpu_shares"),
        ("PidsLimit", "pids_limit"),
    ):
        v = field(body, "UpdateConfig", key, int)
        if v is not None and (v != 0 or key == "PidsLimit"):
            changes[attr] = v
    restart_doc = field(body, "UpdateConfig", "RestartPolicy", dict)
    restart_policy = None
    if restart_doc:
        policy = field(restart_doc, "RestartPolicy", "Name", str, "") or "no"
        retries = field(restart_doc, "RestartPolicy", "MaximumRetryCount", int, 0)
        restart_policy = f"{policy}:{retries}" if policy == "on-failure" and retries else policy

    def run(ctx: Ctx) -> None:
        svc = ctx.containers
        update_container(svc, svc.get(ref), changes, restart_policy)

    await _backend(request).call(run)
    return web.json_response({"Warnings": []})


async def prune(request: web.Request) -> web.StreamResponse:
    for key, _ in filters(request):
        if key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{key}'")
    removed = await _backend(request).call(lambda ctx: ctx.containers.prune())
    return web.json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": 0})


# ---- wait ---------------------------------------------------------------------------------


async def wait(request: web.Request) -> web.StreamResponse:
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f'invalid condition: "{condition}"')
    ref = request.match_info["id"]
    watch: Watch | None = None
    try:
        rec: ContainerRecord | None = await _get(request)
    except NotFound:
        # the client may ask only after the container ran and its watcher removed it
        watch = _monitor(request).watches.get(ref)
        if watch is None:
            log.warning("wait: %s not found and not watched", ref)
            raise
        rec = None
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    error: dict[str, str] | None = None
    try:
        if rec is not None:
            code = await _wait_for(request, rec, condition)
        else:
            assert watch is not None
            code = await asyncio.shield(watch.done)
    except Exception as e:  # the head is sent: the error goes in the body, as Docker's
        log.warning("wait for %s: %s", ref, e)
        code, error = -1, {"Message": str(e)}
    with contextlib.suppress(ConnectionError):
        await resp.write(json.dumps({"StatusCode": code, "Error": error}).encode() + b"\n")
        await resp.write_eof()
    return resp


async def _wait_for(request: web.Request, rec: ContainerRecord, condition: str) -> int:
    backend, monitor = _backend(request), _monitor(request)
    first_finish = rec.finished_at
    code = rec.exit_code
    cid = rec.id
    began = time.monotonic()

    def current() -> Watch | None:
        # a finished watch from an earlier run says nothing about this one
        w = monitor.watches.get(cid)
        return w if w is not None and (w.created >= began or not w.done.done()) else None

    while True:
        if condition == "not-running" and not rec.running:
            return rec.exit_code
        watch = current()
        if watch is not None:
            code = await asyncio.shield(watch.done)
            if condition != "removed" or watch.removed:
                return code
        else:
            await asyncio.sleep(0.05)
        found = await backend.call(lambda ctx: _find_quietly(ctx, cid))
        if found is None:
            watch = current()
            if watch is not None:  # its watcher removed it: the code comes with the watch
                return await asyncio.shield(watch.done)
            return code
        rec = found
        code = rec.exit_code
        if condition == "next-exit" and rec.state == "exited" and rec.finished_at != first_finish:
            return code


def _find_quietly(ctx: Ctx, cid: str) -> ContainerRecord | None:
    """The container, or None when gone, even when it goes while we look."""
    try:
        return ctx.containers.find(cid)
    except NotFound:
        return None


# ---- logs ---------------------------------------------------------------------------------


async def logs(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import logs as lg

    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow, timestamps = qbool(request, "follow"), qbool(request, "timestamps")
    now = time.time()
    since_q, until_q = request.query.get("since", ""), request.query.get("until", "")
    t_since = lg.parse_since(since_q, now) if since_q not in ("", "0") else None
    t_until = lg.parse_until(until_q, now) if until_q not in ("", "0") else None
    n_tail = lg.parse_tail(request.query.get("tail", "all"))
    rec = await _get(request)
    backend = _backend(request)
    tty = rec.spec.tty
    path = await backend.call(lambda ctx: ctx.containers.log_path(rec))
    resp = web.StreamResponse(headers={"Content-Type": raw_content_type(request, tty)})
    await resp.prepare(request)

    def encode(entry: Any) -> bytes:
        if not (want_out if entry.stream == "stdout" else want_err):
            return b""
        data = lg.render(entry, timestamps=timestamps)
        return data if tty else frame(stream_no(entry.stream), data)

    if not follow:
        entries = await backend.run(
            lambda: lg.select(
                lg.read_entries(lg.log_files(path)), since=t_since, until=t_until, tail=n_tail
            )
        )
        with contextlib.suppress(ConnectionError):
            await resp.write(b"".join(encode(e) for e in entries))
            await resp.write_eof()
        return resp

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
    gone = threading.Event()
    log_cfg = lg.parse_log_opts(list(rec.spec.log_opts))

    def produce() -> None:
        ctx = backend.ctx()

        def stopped() -> bool:
            if gone.is_set():
                return True
            found = ctx.containers.find(rec.id)
            return found is None or not found.running

        def files() -> list[Path]:
            lg.keep_rotated(path, log_cfg)
            return lg.log_files(path)

        try:
            for entry in lg.follow(files, stop=stopped, tail=n_tail):
                if gone.is_set():
                    break
                if t_since is not None and entry.time < t_since:
                    continue
                if t_until is not None and entry.time > t_until:
                    break
                asyncio.run_coroutine_threadsafe(queue.put(entry), loop).result()
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=produce, daemon=True, name="moorage-api-logs").start()
    try:
        while (entry := await queue.get()) is not None:
            data = encode(entry)
            if data:
                await resp.write(data)
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        gone.set()
        while not queue.empty():  # unblock the producer
            queue.get_nowait()
    return resp


# ---- attach -------------------------------------------------------------------------------


async def attach(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import attach as att
    from moorage.engine.containers import logs as lg

    rec = await _get(request)
    want_stream, want_logs = qbool(request, "stream"), qbool(request, "logs")
    want_in = qbool(request, "stdin") and rec.spec.open_stdin
    wanted = {STDOUT: qbool(request, "stdout"), STDERR: qbool(request, "stderr")}
    if not (want_stream or want_logs):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    if rec.state == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    backend = _backend(request)
    tty = rec.spec.tty
    # registered before the upgrade is answered: a client sends start as soon as it has the
    # answer (the docker CLI does), and a start that came first would find nobody waiting
    early = _monitor(request).want_attach(rec.id) if want_stream and not rec.running else None
    try:
        conn, taken = hijack(request, raw_content_type(request, tty))
    except BaseException:
        if early is not None:
            _monitor(request).drop_attach(rec.id, early)
        raise

    def encode(stream: int, data: bytes) -> bytes:
        if not wanted.get(stream):
            return b""
        return data if tty else frame(stream, data)

    try:
        if want_logs:
            path = await backend.call(lambda ctx: ctx.containers.log_path(rec))
            entries = await backend.run(lambda: list(lg.read_entries(lg.log_files(path))))
            out = b"".join(encode(stream_no(e.stream), e.data) for e in entries)
            if out and not await conn.write(out):
                return taken
        if not want_stream:
            return taken
        try:
            sock = await _attach_socket(request, rec, conn, early)
        except (MoorageError, OSError):  # the start failed: its caller reports why
            return taken
        if sock is None:
            return taken
        await _relay(sock, conn, encode, stdin=want_in, tty=tty)
    finally:
        if early is not None:
            _monitor(request).drop_attach(rec.id, early)
        conn.close()
    del att
    return taken


async def _attach_socket(
    request: web.Request,
    rec: ContainerRecord,
    conn: Hijacked,
    fut: asyncio.Future[socket.socket] | None,
) -> socket.socket | None:
    """conmon's attach socket: now if it runs, else once it is started (through us: before
    it runs, ``fut`` registered for that; by another command: as soon as we see it
    running). None when it ran and ended without us (nothing left to relay)."""
    from moorage.engine.containers import attach as att

    backend, monitor = _backend(request), _monitor(request)
    layout_sock = await backend.call(
        lambda ctx: ctx.containers.layout(rec.id).attach_socket(rec.id)
    )
    if rec.running or fut is None:
        return await backend.run(lambda: att.connect(layout_sock))
    try:
        while True:
            closed: asyncio.Future[Any] = asyncio.ensure_future(conn.closed.wait())
            pending: set[asyncio.Future[Any]] = {fut, closed}
            await asyncio.wait(pending, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if fut.done():
                return fut.result()
            if conn.closed.is_set():
                return None
            found = await backend.call(lambda ctx: ctx.containers.find(rec.id))
            if found is None:
                return None
            if found.running:
                return await backend.run(lambda: att.connect(layout_sock))
            if found.finished_at != rec.finished_at:
                return None  # started and ended by someone else between two looks
    finally:
        monitor.drop_attach(rec.id, fut)
        if not fut.done():
            fut.cancel()


async def _relay(
    sock: socket.socket, conn: Hijacked, encode: Any, *, stdin: bool, tty: bool
) -> None:
    """conmon's packets to the client, the client's bytes to conmon, until either ends; the
    client leaving detaches (our socket closes), the container goes on."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    async def output() -> None:
        while True:
            data = await loop.sock_recv(sock, 8193)
            if not data:
                return
            kind = STDERR if data[0] == 3 else STDOUT
            out = encode(kind, data[1:])
            if out and not await conn.write(out):
                return

    async def input_() -> None:
        while True:
            data = await conn.read()
            if data is None:
                if stdin and not tty:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                if conn.closed.is_set():
                    return
                await conn.closed.wait()
                return
            if stdin:
                await loop.sock_sendall(sock, data)

    out_task = asyncio.ensure_future(output())
    in_task = asyncio.ensure_future(input_())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (out_task, in_task):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        sock.close()


async def resize(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import attach as att

    rec = await _get(request)
    h, w = qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    winsz = await _backend(request).call(lambda ctx: ctx.containers.layout(rec.id).winsz)
    if not rec.running:
        raise Conflict(f"Container {rec.id} is not running")
    with contextlib.suppress(OSError):
        att.resize(winsz, h, w)
    return web.Response(status=200)


# ---- processes, files ---------------------------------------------------------------------


async def top(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers.listing import top as top_table

    ref = request.match_info["id"]
    ps_args = shlex.split(request.query.get("ps_args", ""))

    def run(ctx: Ctx) -> dict[str, Any]:
        svc = ctx.containers
        titles, rows = top_table(svc, svc.get(ref), ps_args)
        return {"Titles": titles, "Processes": rows}

    return web.json_response(await _backend(request).call(run))


async def changes(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers.service import container_diff

    ref = request.match_info["id"]

    def run(ctx: Ctx) -> list[dict[str, Any]] | None:
        svc = ctx.containers
        diff = container_diff(svc, svc.get(ref))
        return [{"Path": p, "Kind": _CHANGE_KINDS[k]} for k, p in diff] or None

    return web.json_response(await _backend(request).call(run))


async def _stream_tar(
    request: web.Request, produce: Any, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Run ``produce(ctx, prepare, writer)`` in the pool: it calls ``prepare(extra_headers)``
    once it knows the request is good, then writes the tar to ``writer``."""
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar", **(headers or {})})
    writer = AsyncWriter(resp, loop)

    def prepare(extra: dict[str, str]) -> None:
        resp.headers.update(extra)
        asyncio.run_coroutine_threadsafe(resp.prepare(request), loop).result()

    try:
        await _backend(request).call(lambda ctx: produce(ctx, prepare, writer))
    except ConnectionError:
        return resp
    await resp.write_eof()
    return resp


async def export(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import fsops
    from moorage.engine.containers.service import mounted_root

    ref = request.match_info["id"]

    def produce(ctx: Ctx, prepare: Any, writer: AsyncWriter) -> None:
        svc = ctx.containers
        with mounted_root(svc, svc.get(ref)) as root:
            prepare({})
            fsops.export_rootfs(root, writer)  # type: ignore[arg-type]
            writer.flush()

    return await _stream_tar(request, produce)


def _stat_header(stat: Any) -> dict[str, str]:
    raw = json.dumps(dict(stat), separators=(",", ":")).encode()
    return {"X-Docker-Container-Path-Stat": base64.b64encode(raw).decode()}


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    return path


def _not_found(path: str, rec_id: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {rec_id}")


async def archive_head(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import fsops
    from moorage.engine.containers.service import mounted_root

    ref, path = request.match_info["id"], _path(request)

    def run(ctx: Ctx) -> Any:
        svc = ctx.containers
        rec = svc.get(ref)
        with mounted_root(svc, rec) as root:
            try:
                return fsops.stat_path(root, path)
            except NotFound:
                raise _not_found(path, rec.id) from None

    stat = await _backend(request).call(run)
    return web.Response(status=200, headers=_stat_header(stat))


async def archive_get(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import fsops
    from moorage.engine.containers.service import mounted_root

    ref, path = request.match_info["id"], _path(request)

    def produce(ctx: Ctx, prepare: Any, writer: AsyncWriter) -> None:
        svc = ctx.containers
        rec = svc.get(ref)
        with mounted_root(svc, rec) as root:
            try:
                stat = fsops.stat_path(root, path)
            except NotFound:
                raise _not_found(path, rec.id) from None
            prepare(_stat_header(stat))
            fsops.copy_from_container(root, path, writer)  # type: ignore[arg-type]
            writer.flush()

    return await _stream_tar(request, produce)


async def archive_put(request: web.Request) -> web.StreamResponse:
    from moorage.engine.containers import fsops
    from moorage.engine.containers.service import mounted_root

    ref, path = request.match_info["id"], _path(request)
    copy_uid_gid = qbool(request, "copyUIDGID")
    reader = AsyncReader(request, asyncio.get_running_loop(), ARCHIVE_LIMIT)

    def run(ctx: Ctx) -> None:
        svc = ctx.containers
        rec = svc.get(ref)
        with mounted_root(svc, rec) as root:
            fsops.copy_to_container(root, path, reader, copy_uid_gid=copy_uid_gid)  # type: ignore[arg-type]

    await _backend(request).call(run)
    return web.Response(status=200)


# ---- stats --------------------------------------------------------------------------------


def _system_cpu_ns() -> int:
    """The host's CPU time (all CPUs, all states) in ns, from /proc/stat, as Docker's."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def _sample(ctx: Ctx, rec: ContainerRecord) -> dict[str, Any]:
    """The runtime's cgroup statistics (``runc events --stats``); {} when not running."""
    import subprocess

    if not rec.running:
        return {}
    runtime = ctx.containers.runtime(rec)
    p = subprocess.run(
        [runtime.path, *runtime.global_args(), "events", "--stats", rec.id],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    if p.returncode != 0:
        return {}
    try:
        data: dict[str, Any] = json.loads(p.stdout).get("data") or {}
    except ValueError:
        return {}
    return data


def _cpu_doc(raw: dict[str, Any], system: int) -> dict[str, Any]:
    usage = (raw.get("cpu") or {}).get("usage") or {}
    percpu = usage.get("percpu") or []
    throttling = (raw.get("cpu") or {}).get("throttling") or {}
    return {
        "cpu_usage": {
            "total_usage": usage.get("total", 0),
            "percpu_usage": percpu or None,
            "usage_in_kernelmode": usage.get("kernel", 0),
            "usage_in_usermode": usage.get("user", 0),
        },
        "system_cpu_usage": system,
        "online_cpus": len(percpu) or os.cpu_count() or 1,
        "throttling_data": {
            "periods": throttling.get("periods", 0),
            "throttled_periods": throttling.get("throttled_periods", 0),
            "throttled_time": throttling.get("throttled_time", 0),
        },
    }


def _stats_doc(
    rec: ContainerRecord, raw: dict[str, Any], pre: dict[str, Any], pre_system: int
) -> dict[str, Any]:
    from moorage.engine.system import _mem_total

    memory = raw.get("memory") or {}
    mem_usage = memory.get("usage") or {}
    limit = mem_usage.get("limit", 0)
    pids = raw.get("pids") or {}
    empty = not raw
    return {
        "id": rec.id,
        "name": "/" + rec.name,
        "read": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {} if empty else {"current": pids.get("current", 0),
                                        **({"limit": pids["limit"]} if pids.get("limit") else {})},
        "blkio_stats": {},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_doc(raw, 0 if empty else _system_cpu_ns()),
        "precpu_stats": _cpu_doc(pre, pre_system),
        "memory_stats": {} if empty else {
            "usage": mem_usage.get("usage", 0),
            "max_usage": mem_usage.get("max", 0),
            "limit": min(limit, _mem_total()) if limit else _mem_total(),
            "stats": memory.get("raw") or {},
        },
        "networks": {},
    }  # fmt: skip


async def stats(request: web.Request) -> web.StreamResponse:
    """CPU, memory and pids from the container's cgroups (through the runtime); no block I/O
    or network figures yet."""
    rec = await _get(request)
    backend = _backend(request)
    stream = qbool(request, "stream", True) and not qbool(request, "one-shot")
    raw = await backend.call(lambda ctx: _sample(ctx, rec))
    if not stream:
        return web.json_response(_stats_doc(rec, raw, {}, 0))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    pre: dict[str, Any] = {}
    pre_system = 0
    with contextlib.suppress(ConnectionError):
        while True:
            doc = _stats_doc(rec, raw, pre, pre_system)
            await resp.write(json.dumps(doc).encode() + b"\n")
            pre, pre_system = raw, doc["cpu_stats"]["system_cpu_usage"]
            await asyncio.sleep(1)
            found = await backend.call(lambda ctx: ctx.containers.find(rec.id))
            if found is None:
                break
            raw = await backend.call(lambda ctx, r=found: _sample(ctx, r))  # type: ignore[misc]
    return resp


ROUTES: list[Route] = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_containers),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("POST", "/containers/{id}/wait", wait),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/update", update),
    ("POST", "/containers/{id}/attach", attach),
    ("POST", "/containers/{id}/resize", resize),
    ("GET", "/containers/{id}/logs", logs),
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/changes", changes),
    ("GET", "/containers/{id}/export", export),
    ("GET", "/containers/{id}/stats", stats),
    ("HEAD", "/containers/{id}/archive", archive_head),
    ("GET", "/containers/{id}/archive", archive_get),
    ("PUT", "/containers/{id}/archive", archive_put),
    ("DELETE", "/containers/{id}", remove),
]
