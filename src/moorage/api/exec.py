"""Exec endpoints: create, start (hijacked, with or without a terminal, or detached),
inspect, resize. Each exec runs as ``runc exec`` in the foreground, its stdio relayed to the
client; a client that goes away takes its exec process with it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import tempfile
import termios
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from moorage.api.backend import Backend, Ctx
from moorage.api.createspec import _get as field_of
from moorage.api.createspec import _strings
from moorage.api.http import Route, qint, read_json
from moorage.api.streams import STDERR, STDOUT, Hijacked, frame, hijack, raw_content_type
from moorage.errors import Conflict, InvalidArgument, MoorageError, NotFound

MAX_FINISHED = 512


@dataclass
class ExecRecord:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    workdir: str
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    privileged: bool
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    runtime_pid: int = 0
    pty: int = -1
    size: tuple[int, int] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _backend(request: web.Request) -> Backend:
    b: Backend = request.app["backend"]
    return b


def _execs(request: web.Request) -> dict[str, ExecRecord]:
    e: dict[str, ExecRecord] = request.app["execs"]
    return e


def _find(request: web.Request) -> ExecRecord:
    eid = request.match_info["id"]
    rec = _execs(request).get(eid)
    if rec is None:
        raise NotFound(f"No such exec instance: {eid}")
    return rec


async def create(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    body = await read_json(request, required=False)
    where = "ExecConfig"
    ctr = await _backend(request).call(lambda ctx: ctx.containers.get(ref))
    cmd = _strings(body, where, "Cmd", slice_=True)
    if not cmd:
        raise InvalidArgument("No exec command specified")
    if not ctr.running:
        raise Conflict(f"Container {ctr.id} is not running")
    if ctr.state == "paused":
        raise Conflict(f"Container {ctr.id} is paused, unpause the container before exec")
    rec = ExecRecord(
        id=os.urandom(32).hex(),
        container_id=ctr.id,
        cmd=cmd,
        env=_strings(body, where, "Env") or [],
        user=field_of(body, where, "User", str, ""),
        workdir=field_of(body, where, "WorkingDir", str, ""),
        tty=field_of(body, where, "Tty", bool, False),
        attach_stdin=field_of(body, where, "AttachStdin", bool, False),
        attach_stdout=field_of(body, where, "AttachStdout", bool, False),
        attach_stderr=field_of(body, where, "AttachStderr", bool, False),
        privileged=field_of(body, where, "Privileged", bool, False),
    )
    size = field_of(body, where, "ConsoleSize", list)
    if size and len(size) == 2 and all(isinstance(x, int) for x in size):
        rec.size = (size[0], size[1])
    execs = _execs(request)
    if len(execs) > MAX_FINISHED:
        for k in [k for k, v in execs.items() if v.exit_code is not None][: MAX_FINISHED // 2]:
            del execs[k]
    execs[rec.id] = rec
    return web.json_response({"Id": rec.id}, status=201)


async def inspect(request: web.Request) -> web.StreamResponse:
    rec = _find(request)
    return web.json_response(
        {
            "ID": rec.id,
            "ContainerID": rec.container_id,
            "Running": rec.running,
            "ExitCode": rec.exit_code,
            "ProcessConfig": {
                "tty": rec.tty,
                "entrypoint": rec.cmd[0],
                "arguments": rec.cmd[1:],
                "privileged": rec.privileged,
                "user": rec.user,
            },
            "OpenStdin": rec.attach_stdin,
            "OpenStdout": rec.attach_stdout,
            "OpenStderr": rec.attach_stderr,
            "CanRemove": False,
            "DetachKeys": "",
            "Pid": rec.pid,
        }
    )


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def resize(request: web.Request) -> web.StreamResponse:
    rec = _find(request)
    h, w = qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    rec.size = (h, w)
    if rec.pty >= 0:
        with contextlib.suppress(OSError):
            _set_size(rec.pty, h, w)
            if rec.runtime_pid:
                os.kill(rec.runtime_pid, signal.SIGWINCH)  # runc passes the size on
    return web.Response(status=201)


def _prepare(ctx: Ctx, rec: ExecRecord, tty: bool) -> tuple[list[str], str, str]:
    """The runc command line for the exec, its process file and its pid file."""
    from moorage.engine.containers.service import exec_process

    svc = ctx.containers
    ctr = svc.get(rec.container_id)
    process = exec_process(
        svc, ctr, rec.cmd, env=rec.env, user=rec.user, workdir=rec.workdir, tty=tty
    )
    run_dir = svc.run_dir / ctr.id
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, process_file = tempfile.mkstemp(prefix="exec-", suffix=".json", dir=run_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(process, f)
    pid_file = process_file[: -len(".json")] + ".pid"
    runtime = svc.runtime(ctr)
    argv = [runtime.path, *runtime.global_args(), "exec", "--process", process_file]
    argv += ["--pid-file", pid_file]
    if tty:
        argv.append("--tty")
    return argv, process_file, pid_file


async def start(request: web.Request) -> web.StreamResponse:
    rec = _find(request)
    body = await read_json(request)
    detach = field_of(body, "ExecStartCheck", "Detach", bool, False)
    tty = field_of(body, "ExecStartCheck", "Tty", bool, rec.tty) or rec.tty
    size = field_of(body, "ExecStartCheck", "ConsoleSize", list)
    if size and len(size) == 2 and all(isinstance(x, int) for x in size):
        rec.size = (size[0], size[1])
    if rec.started:
        raise Conflict(f"Exec command {rec.id} has already run")
    backend = _backend(request)
    rec.started = True
    try:
        argv, process_file, pid_file = await backend.call(lambda ctx: _prepare(ctx, rec, tty))
    except MoorageError as e:
        if e.exit_code not in (126, 127):
            rec.started = False
            raise
        rec.exit_code = e.exit_code
        rec.done.set()
        if detach:
            raise
        conn, taken = hijack(request, raw_content_type(request, tty))
        msg = f"OCI runtime exec failed: {e}\r\n".encode()
        await conn.write(msg if tty else frame(STDOUT, msg))
        conn.close()
        return taken
    try:
        if detach:
            proc = await asyncio.create_subprocess_exec(
                *argv, "--detach", rec.container_id,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                rec.exit_code = 126
                raise MoorageError(err.decode(errors="replace").strip() or "exec failed")
            rec.pid = _read_pid(pid_file)
            rec.running = True
            return web.Response(status=200)
        conn, taken = hijack(request, raw_content_type(request, tty))
        try:
            await _run_attached(rec, argv, pid_file, conn, tty)
        finally:
            conn.close()
        return taken
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(process_file)
        if not detach:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pid_file)


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


async def _run_attached(
    rec: ExecRecord, argv: list[str], pid_file: str, conn: Hijacked, tty: bool
) -> None:
    pipe = asyncio.subprocess.PIPE
    slave = -1
    if tty:
        # runc relays between the exec's terminal and its own stdio, which is this pty: its
        # size is what runc copies (on start and on SIGWINCH)
        rec.pty, slave = os.openpty()
        rows, cols = rec.size or (24, 80)
        _set_size(rec.pty, rows, cols)
        os.set_blocking(rec.pty, False)
    stdin: int = pipe if rec.attach_stdin else asyncio.subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, rec.container_id,
            stdin=slave if tty else stdin, stdout=slave if tty else pipe,
            stderr=slave if tty else pipe,
        )  # fmt: skip
    finally:
        if slave >= 0:
            os.close(slave)
    rec.runtime_pid = proc.pid
    rec.running = True
    loop = asyncio.get_running_loop()
    master_out: asyncio.Queue[bytes] = asyncio.Queue()

    def on_master() -> None:
        try:
            data = os.read(rec.pty, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave side closed, runc is gone
            data = b""
        if not data:
            loop.remove_reader(rec.pty)
        master_out.put_nowait(data)

    if tty:
        loop.add_reader(rec.pty, on_master)

    async def pump(reader: asyncio.StreamReader | None, stream: int, wanted: bool) -> None:
        if reader is None:
            return
        while data := await reader.read(65536):
            if wanted and not await conn.write(data if tty else frame(stream, data)):
                return

    async def pump_pty() -> None:
        while data := await master_out.get():
            if rec.attach_stdout and not await conn.write(data):
                return

    async def feed() -> None:
        if tty and rec.attach_stdin:
            while (data := await conn.read()) is not None:
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(rec.pty, view) :]
                    except BlockingIOError:
                        await asyncio.sleep(0.01)
                    except OSError:
                        return
            await conn.closed.wait()
            return
        if proc.stdin is None:
            await conn.closed.wait()
            return
        while (data := await conn.read()) is not None:
            proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
        with contextlib.suppress(Exception):
            proc.stdin.close()
        await conn.closed.wait()

    outputs: asyncio.Future[Any]
    if tty:
        outputs = asyncio.gather(pump_pty())
    else:
        outputs = asyncio.gather(
            pump(proc.stdout, STDOUT, rec.attach_stdout),
            pump(proc.stderr, STDERR, rec.attach_stderr),
        )
    feeder = asyncio.ensure_future(feed())
    exited = asyncio.ensure_future(proc.wait())
    try:
        while not exited.done():
            if rec.pid == 0:
                rec.pid = _read_pid(pid_file)
            await asyncio.wait({exited, feeder}, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            if feeder.done() and conn.closed.is_set() and not exited.done():
                _kill_exec(rec, proc.pid)  # the client went away: so does its exec
                await exited
        await asyncio.wait_for(outputs, 5)
    except TimeoutError:
        pass
    finally:
        feeder.cancel()
        if not exited.done():
            _kill_exec(rec, proc.pid)
            await exited
        code = proc.returncode if proc.returncode is not None else 137
        rec.exit_code = code if code >= 0 else 128 - code
        rec.running = False
        if rec.pty >= 0:
            loop.remove_reader(rec.pty)
            os.close(rec.pty)
            rec.pty = -1
        rec.done.set()


def _kill_exec(rec: ExecRecord, runtime_pid: int) -> None:
    for pid in (rec.pid, runtime_pid):
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


ROUTES: list[Route] = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
