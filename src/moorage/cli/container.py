"""Container commands: run, create, start, stop, restart, kill, rm, ps, logs, wait, inspect,
rename, pause, unpause, top, exec, cp, diff, export, port, container prune/cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from moorage import later
from moorage.cli.common import confirm, each, engine, error, parse_filters
from moorage.errors import InvalidArgument, MoorageError, NotFound
from moorage.units import human_size, since

MAX_PARALLEL_RM = 16  # `rm` of several containers: each removal is mostly waiting (exit, conmon)

PS_TABLE = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)
PS_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED"}


def _engine_error(e: MoorageError) -> NoReturn:
    """run/create/start -a/exec: 125 when the engine failed, 126/127 for the command."""
    error(str(e))
    sys.exit(e.exit_code if e.exit_code in (126, 127) else 125)


def _service(ctx: click.Context) -> Any:
    from moorage.engine.containers.service import ContainerService

    eng = engine(ctx)
    return ContainerService(eng.store, eng.images)


def _detach_keys(ctx: click.Context, param: click.Parameter, value: str) -> bytes:
    from moorage.engine.containers.attach import parse_detach_keys

    try:
        return parse_detach_keys(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_detach_keys_option = click.option(
    "--detach-keys",
    default="ctrl-p,ctrl-q",
    callback=_detach_keys,
    help="Override the key sequence for detaching a container.",
)


# ---- create / run -------------------------------------------------------------------------


def _create_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--name", default="", help="Assign a name to the container."),
        click.option("-e", "--env", multiple=True, help="Set environment variables."),
        click.option(
            "--env-file",
            multiple=True,
            type=click.Path(path_type=Path),
            help="Read in a file of environment variables.",
        ),
        click.option("-w", "--workdir", default="", help="Working directory inside the container."),
        click.option(
            "-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])."
        ),
        click.option("--group-add", multiple=True, help="Add additional groups to join."),
        click.option("-h", "--hostname", default="", help="Container host name."),
        click.option("-l", "--label", multiple=True, help="Set meta data on a container."),
        click.option(
            "--label-file",
            multiple=True,
            type=click.Path(path_type=Path),
            help="Read in a line delimited file of labels.",
        ),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        click.option(
            "-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached."
        ),
        click.option(
            "--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image."
        ),
        click.option(
            "--privileged", is_flag=True, help="Give extended privileges to this container."
        ),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities."),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities."),
        click.option("--security-opt", multiple=True, help="Security options."),
        click.option(
            "--read-only", is_flag=True, help="Mount the container's root filesystem as read only."
        ),
        click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory (PATH[:OPTIONS])."),
        click.option("--init", is_flag=True, help="Run an init inside the container (catatonit)."),
        click.option("-m", "--memory", default=None, help="Memory limit."),
        click.option(
            "--memory-swap",
            default=None,
            help="Swap limit equal to memory plus swap: -1 for unlimited.",
        ),
        click.option("--cpus", default=None, help="Number of CPUs."),
        click.option(
            "-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)."
        ),
        click.option(
            "--pids-limit",
            type=int,
            default=0,
            help="Tune container pids limit (-1 for unlimited).",
        ),
        click.option("--ulimit", multiple=True, help="Ulimit options (e.g. nofile=1024:2048)."),
        click.option("--shm-size", default=None, help="Size of /dev/shm (default 64m)."),
        click.option("--sysctl", multiple=True, help="Sysctl options (namespaced only)."),
        click.option("--stop-signal", default=None, help="Signal to stop the container."),
        click.option(
            "--stop-timeout",
            type=int,
            default=None,
            help="Timeout (in seconds) to stop a container.",
        ),
        click.option(
            "--network",
            "--net",
            "network",
            default="bridge",
            help="Connect a container to a network: bridge (default), NAME, none, host, "
            "container:NAME.",
        ),
        click.option("--network-alias", multiple=True, help="Add a network-scoped alias."),
        click.option("--ip", default="", help="IPv4 address (e.g. 10.91.0.5)."),
        click.option("--dns", multiple=True, help="Set custom DNS servers."),
        click.option("--dns-search", multiple=True, help="Set custom DNS search domains."),
        click.option("--dns-option", multiple=True, help="Set DNS options."),
        click.option(
            "--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)."
        ),
        click.option("--link", multiple=True, help="Add link to another container (NAME[:ALIAS])."),
        click.option(
            "-p", "--publish", multiple=True, help="Publish a container's port(s) to the host."
        ),
        click.option(
            "-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports."
        ),
        click.option("--expose", multiple=True, help="Expose a port or a range of ports."),
        click.option("-v", "--volume", multiple=True, help="Bind mount a volume."),
        click.option("--mount", multiple=True, help="Attach a filesystem mount to the container."),
        click.option(
            "--volumes-from", multiple=True, help="Mount volumes from the specified container(s)."
        ),
        click.option(
            "--restart",
            default="no",
            help="Restart policy: no, on-failure[:N], always, unless-stopped.",
        ),
        click.option(
            "--rm",
            "auto_remove",
            is_flag=True,
            help="Automatically remove the container when it exits.",
        ),
        click.option("--log-opt", multiple=True, help="Log driver options (max-size, max-file)."),
        click.option(
            "--log-driver",
            default="k8s-file",
            help="Logging driver: k8s-file, json-file, none, journald (where it runs).",
        ),
        click.option(
            "--runtime", default="runc", help="Runtime to use for this container (runc, crun)."
        ),
        *_health_options(),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _health_options() -> list[Callable[..., Any]]:
    return [
        click.option("--health-cmd", default=None, help="Command to run to check health."),
        click.option("--health-interval", default=None, help="Time between running the check."),
        click.option("--health-timeout", default=None, help="Maximum time to allow one check."),
        click.option("--health-retries", type=int, default=None,
                     help="Consecutive failures needed to report unhealthy."),
        click.option("--health-start-period", default=None,
                     help="Start period for the container to initialize before failures count."),
        click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified "
                     "HEALTHCHECK."),
    ]  # fmt: skip


def _spec(image: str, command: tuple[str, ...], o: dict[str, Any]) -> Any:
    from moorage.engine.containers import parse as p
    from moorage.engine.containers.spec import ContainerSpec, Resources

    _check_log_driver(o["log_driver"])
    memory = p.parse_bytes(o["memory"], "memory") if o["memory"] else 0
    swap = p.parse_memory_swap(o["memory_swap"]) if o["memory_swap"] else 0
    tmpfs = dict(p.parse_tmpfs(t) for t in o["tmpfs"])
    sysctls = dict(p.parse_sysctl(s, network_host=o["network"] == "host") for s in o["sysctl"])
    security_opt = tuple(_absolute_seccomp(s) for s in o["security_opt"])
    return ContainerSpec(
        image=image,
        name=o["name"],
        entrypoint=o["entrypoint"],
        args=command,
        env=tuple(p.parse_env(o["env"], o["env_file"])),
        workdir=o["workdir"],
        user=o["user"],
        group_add=o["group_add"],
        hostname=o["hostname"],
        labels=p.parse_labels(o["label"], o["label_file"]),
        tty=o["tty"],
        open_stdin=o["interactive"],
        privileged=o["privileged"],
        cap_add=o["cap_add"],
        cap_drop=o["cap_drop"],
        security_opt=security_opt,
        read_only=o["read_only"],
        tmpfs=tmpfs,
        init=o["init"],
        resources=Resources(
            memory=memory,
            memory_swap=swap,
            nano_cpus=p.parse_cpus(o["cpus"]) if o["cpus"] else 0,
            cpu_shares=o["cpu_shares"],
            pids_limit=o["pids_limit"],
        ),
        ulimits=tuple(p.parse_ulimit(u) for u in o["ulimit"]),
        shm_size=p.parse_bytes(o["shm_size"], "shm-size") if o["shm_size"] else 64 << 20,
        sysctls=sysctls,
        stop_signal=o["stop_signal"],
        stop_timeout=o["stop_timeout"],
        network_mode=o["network"] or "bridge",
        network_aliases=o["network_alias"],
        ip=o["ip"],
        dns=o["dns"],
        dns_search=o["dns_search"],
        dns_options=o["dns_option"],
        extra_hosts=o["add_host"],
        links=o["link"],
        publish=o["publish"],
        publish_all=o["publish_all"],
        expose=o["expose"],
        volumes=o["volume"],
        mounts=o["mount"],
        volumes_from=o["volumes_from"],
        restart=o["restart"],
        auto_remove=o["auto_remove"],
        log_opts=o["log_opt"],
        runtime=o["runtime"],
        healthcheck=_health_config(o),
        log_driver=o["log_driver"],
    )


def _check_log_driver(driver: str) -> None:
    if driver not in ("k8s-file", "json-file", "none", "journald"):
        raise InvalidArgument(
            f"unsupported log driver {driver!r}: use k8s-file, json-file, none or journald"
        )
    if driver == "journald" and not os.path.exists("/run/systemd/journal/socket"):
        raise InvalidArgument("the journald log driver needs systemd-journald, not running here")


def _health_config(o: dict[str, Any]) -> Any:
    keys = ("health_cmd", "health_interval", "health_timeout", "health_retries",
            "health_start_period", "no_healthcheck")  # fmt: skip
    if not any(o.get(k) is not None and o.get(k) is not False for k in keys):
        return None  # nothing asked: no need to load the health module
    from moorage.engine.health import from_options

    return from_options(o)


def _absolute_seccomp(opt: str) -> str:
    for sep in ("=", ":"):
        key, s, value = opt.partition(sep)
        if s and key == "seccomp" and value != "unconfined":
            return f"seccomp={os.path.abspath(value)}"
    return opt


@click.command("create", context_settings={"allow_interspersed_args": False})
@_create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create_cmd(ctx: click.Context, /, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a new container."""
    try:
        rec = _service(ctx).create(_spec(image, command, o))
    except MoorageError as e:
        _engine_error(e)
    click.echo(rec.id)


@click.command("run", context_settings={"allow_interspersed_args": False})
@_create_options
@click.option(
    "-d", "--detach", is_flag=True, help="Run container in background and print container ID."
)
@click.option(
    "-a", "--attach", "attach_streams", multiple=True, help="Attach to STDIN, STDOUT or STDERR."
)
@click.option(
    "--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals to the process."
)
@_detach_keys_option
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    /,
    image: str,
    command: tuple[str, ...],
    detach: bool,
    attach_streams: tuple[str, ...],
    sig_proxy: bool,
    detach_keys: bytes,
    **o: Any,
) -> None:
    """Create and run a new container from an image."""
    later.hold()  # removing a --rm container's files waits for the answer (warm start)
    svc = _service(ctx)
    try:
        spec = _spec(image, command, o)
        rec = svc.create(spec)
    except MoorageError as e:
        _engine_error(e)
    if detach:
        try:
            svc.start(rec.id)
        except MoorageError as e:
            with contextlib.suppress(MoorageError):
                if spec.auto_remove:
                    svc.remove(rec.id, force=True, anonymous_volumes=True)
            _engine_error(e)
        click.echo(rec.id)
        return
    if _straight(spec, sig_proxy, attach_streams):
        try:
            sys.exit(svc.run_foreground(rec))
        except MoorageError as e:
            _engine_error(e)
    sys.exit(
        _run_attached(
            svc, rec, sig_proxy=sig_proxy, streams=attach_streams, detach_keys=detach_keys
        )
    )


def _straight(spec: Any, sig_proxy: bool, streams: tuple[str, ...]) -> bool:
    """Whether a foreground run can skip conmon and run on our stdio: a ``--rm`` container
    keeps no log, so only a terminal (the runtime would have to own ours), a terminal as
    its stdin (it runs in a process group of its own) or a choice of streams need conmon."""
    if not spec.auto_remove or spec.tty or not sig_proxy or streams:
        return False
    return not (spec.open_stdin and os.isatty(0))


def _run_attached(
    svc: Any,
    rec: Any,
    *,
    sig_proxy: bool,
    streams: tuple[str, ...] = (),
    detach_keys: bytes = b"",
) -> int:
    """Start ``rec`` attached to our stdio; returns the container's exit code (0 when the
    detach keys were typed: the container runs on)."""
    from moorage.engine.containers import attach as att
    from moorage.engine.containers.sigproxy import proxy_signals
    from moorage.store.locks import flocked

    spec = rec.spec
    lock = svc.attached_lock(rec.id)
    lock.parent.mkdir(parents=True, exist_ok=True)
    sock_box: list[Any] = []
    wanted = {s.lower() for s in streams} or {"stdout", "stderr"} | (
        {"stdin"} if spec.open_stdin else set()
    )

    def on_created(path: Path) -> None:
        sock_box.append(att.connect(path))

    with flocked(lock, exclusive=True):
        try:
            if rec.running:  # start -a of a running container: just attach
                on_created(svc.layout(rec.id).attach_socket(rec.id))
            else:
                svc.start(rec.id, attach=on_created)
        except MoorageError as e:
            if spec.auto_remove:
                with contextlib.suppress(MoorageError):
                    svc.remove(rec.id, force=True, anonymous_volumes=True)
            _engine_error(e)
        except OSError as e:
            _engine_error(MoorageError(f"cannot attach to {rec.name}: {e.strerror}"))
        if not sock_box:  # started by another command meanwhile
            sock_box.append(att.connect(svc.layout(rec.id).attach_socket(rec.id)))
        sock = sock_box[0]
        runtime = svc.runtime(rec)

        def send(signum: int) -> None:
            with contextlib.suppress(MoorageError):
                runtime.kill(rec.id, signum)

        terminal = (
            att.raw_terminal(svc.layout(rec.id).winsz) if spec.tty else contextlib.nullcontext()
        )
        proxy = proxy_signals(send) if sig_proxy and not spec.tty else contextlib.nullcontext()
        devnull = open(os.devnull, "wb")  # noqa: SIM115
        with terminal, proxy, devnull:
            detached = att.relay(
                sock,
                stdin=sys.stdin.buffer if "stdin" in wanted and spec.open_stdin else None,
                stdout=sys.stdout.buffer if "stdout" in wanted else devnull,
                stderr=sys.stderr.buffer if "stderr" in wanted else devnull,
                detach_keys=detach_keys,
            )
        if detached:  # conmon's exit command will see to its end: we no longer hold the lock
            return 0
        code = _exit_code(svc, rec)
        svc.cleanup(rec.id)
    if spec.auto_remove:
        with contextlib.suppress(MoorageError):
            svc.remove(rec.id, force=True, anonymous_volumes=True)
    elif spec.restart not in ("", "no"):
        _hand_over_restart(svc, rec.id)
    return code


def _hand_over_restart(svc: Any, cid: str) -> None:
    """An attached run ends here, but its restart policy goes on (as with Docker's daemon):
    conmon's exit command was skipped while we were attached, so start it ourselves."""
    import subprocess

    subprocess.Popen(
        svc.cleanup_command(cid),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _exit_code(svc: Any, rec: Any) -> int:
    exit_file = svc.layout(rec.id).exit_file(rec.id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            return int(exit_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            time.sleep(0.005)
    found = svc.find(rec.id)
    return int(found.exit_code) if found else 125


# ---- lifecycle ----------------------------------------------------------------------------


@click.command("start")
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@_detach_keys_option
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start_cmd(
    ctx: click.Context,
    attach: bool,
    interactive: bool,
    detach_keys: bytes,
    containers: tuple[str, ...],
) -> None:
    """Start one or more stopped containers."""
    svc = _service(ctx)
    if attach or interactive:
        if len(containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        try:
            rec = svc.get(containers[0])
        except MoorageError as e:
            error(str(e))  # Docker: 1 for a container that is not there, as without -a
            sys.exit(1)
        sys.exit(_run_attached(svc, rec, sig_proxy=True, detach_keys=detach_keys))
    each(containers, lambda c: svc.start(c))


@click.command("attach")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option(
    "--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process."
)
@_detach_keys_option
@click.argument("container")
@click.pass_context
def attach_cmd(
    ctx: click.Context, no_stdin: bool, sig_proxy: bool, detach_keys: bytes, container: str
) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    svc = _service(ctx)
    try:
        rec = svc.get(container)
    except MoorageError as e:
        error(str(e))
        sys.exit(1)
    if not rec.running:
        error("You cannot attach to a stopped container, start it first")
        sys.exit(1)
    if rec.state == "paused":
        error("You cannot attach to a paused container, unpause it first")
        sys.exit(1)
    streams = ("stdout", "stderr") if no_stdin else ()
    sys.exit(_run_attached(svc, rec, sig_proxy=sig_proxy, streams=streams, detach_keys=detach_keys))


@click.command("stop")
@click.option(
    "-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it."
)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop_cmd(ctx: click.Context, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    svc = _service(ctx)
    each(containers, lambda c: svc.stop(c, timeout))


@click.command("restart")
@click.option(
    "-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it."
)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def restart_cmd(ctx: click.Context, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    svc = _service(ctx)

    def restart(c: str) -> None:
        svc.stop(c, timeout)
        svc.start(c)
        svc.record_restart(c)

    each(containers, restart)


@click.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send to the container.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill_cmd(ctx: click.Context, sig: str, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    svc = _service(ctx)
    each(containers, lambda c: svc.kill(c, sig))


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    later.hold()
    svc = _service(ctx)
    if len(containers) < 2:
        each(containers, lambda c: svc.remove(c, force=force, anonymous_volumes=volumes))
        return
    # as the docker CLI does: removed in parallel (mostly waiting for exits), reported in order
    from concurrent.futures import ThreadPoolExecutor

    def remove(ref: str) -> None:
        with svc.separate() as mine:
            mine.remove(ref, force=force, anonymous_volumes=volumes)

    try:
        with ThreadPoolExecutor(max_workers=min(len(containers), MAX_PARALLEL_RM)) as pool:
            futures = {ref: pool.submit(remove, ref) for ref in dict.fromkeys(containers)}
            each(containers, lambda c: futures[c].result())
    finally:
        svc.sweep_orphans()


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    svc = _service(ctx)
    failed = False
    for c in containers:
        try:
            click.echo(svc.wait(c))
        except MoorageError as e:
            error(str(e))
            failed = True
    if failed:
        sys.exit(1)


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    svc = _service(ctx)
    each(containers, svc.pause)


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    svc = _service(ctx)
    each(containers, svc.unpause)


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename_cmd(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    _service(ctx).rename(container, new_name)


@click.command("cleanup", hidden=True)
@click.argument("container")
@click.pass_context
def cleanup_cmd(ctx: click.Context, container: str) -> None:
    """Record a container's exit and release its resources (conmon's exit command)."""
    _service(ctx).cleanup(container, restart=True)


# ---- ps, logs, inspect --------------------------------------------------------------------


def _status(rec: Any, now: float) -> str:
    from moorage.engine.containers.listing import status_text

    return status_text(rec, now)


def _health_suffix(svc: Any, rec: Any) -> str:
    from moorage.engine.health import ps_suffix

    return ps_suffix(svc.store.db.conn, rec)


def _command_text(svc: Any, rec: Any) -> str:
    from moorage.engine.containers.listing import command_text

    return command_text(svc, rec)


def _ps_ports(svc: Any, rec: Any) -> str:
    from moorage.engine.network.ports import ps_ports
    from moorage.engine.network.service import exposed_ports

    bound = svc.networks.bound_ports(rec.id) if rec.running else []
    try:
        config = svc.images.config(svc.image_of(rec)).get("config") or {}
    except MoorageError:
        config = {}
    return ps_ports(bound, exposed_ports(rec.spec, config) if rec.running else [])


def _ps_networks(svc: Any, rec: Any) -> str:
    from moorage.engine.network import modes

    if not modes.is_bridge_mode(rec.spec.network_mode):
        return str(rec.spec.network_mode)
    return ",".join(n.name for _, n in svc.networks.endpoints(rec.id))


def _ps_match(svc: Any, rec: Any, filters: list[tuple[str, str]]) -> bool:
    from moorage.engine.containers.listing import matches

    return matches(svc, rec, filters)


@click.command("ps")
@click.option(
    "-a",
    "--all",
    "show_all",
    is_flag=True,
    help="Show all containers (default shows just running).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers.")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container.")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided."
)
@click.option("--format", "fmt", help="Format: table, json, or a Go template.")
@click.pass_context
def ps_cmd(
    ctx: click.Context, show_all: bool, quiet: bool, last: int, latest: bool, size: bool,
    no_trunc: bool, filters: tuple[str, ...], fmt: str | None,
) -> None:  # fmt: skip
    """List containers."""
    svc = _service(ctx)
    parsed = parse_filters(filters)
    if latest:
        last = 1
    records = svc.ls()
    if last >= 0:
        show_all = True
    if not show_all and not any(k == "status" for k, _ in parsed):
        records = [r for r in records if r.running]
    records = [r for r in records if _ps_match(svc, r, parsed)]
    if last >= 0:
        records = records[:last]
    now = time.time()
    rows = []
    for rec in records:
        cmd = _command_text(svc, rec)
        quoted = (
            json.dumps(cmd)
            if no_trunc
            else json.dumps(cmd[:19] + "…" if len(cmd) > 20 else cmd, ensure_ascii=False)
        )
        row = {
            "ID": rec.id if no_trunc else rec.short_id,
            "Image": rec.image_ref,
            "Command": quoted,
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(rec.created)),
            "RunningFor": since(rec.created, now),
            "Status": _status(rec, now) + _health_suffix(svc, rec),
            "State": rec.state,
            "Ports": _ps_ports(svc, rec),
            "Names": rec.name,
            "Labels": ",".join(f"{k}={v}" for k, v in rec.spec.labels.items()),
            "Mounts": "",
            "Networks": _ps_networks(svc, rec),
        }
        if size:
            from moorage.store.snapshots import dir_usage

            rw = dir_usage(svc.overlay(rec.id) / "diff")
            row["Size"] = (
                f"{human_size(rw, 3)} (virtual {human_size(rw + svc.image_of(rec).size, 3)})"
            )
        rows.append(row)
    from moorage.format import format_list

    table = PS_TABLE + ("\t{{.Size}}" if size else "")
    click.echo(
        format_list(
            rows, fmt, default_table=table, quiet=quiet, quiet_field="ID", headers=PS_HEADERS
        ),
        nl=False,
    )


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option(
    "--tail", "-n", "tail", default="all", help="Number of lines to show from the end of the logs."
)
@click.option("--since", default=None, help="Show logs since timestamp or relative (e.g. 42m).")
@click.option("--until", default=None, help="Show logs before a timestamp or relative (e.g. 42m).")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--details", is_flag=True, help="Accepted for compatibility.")
@click.argument("container")
@click.pass_context
def logs_cmd(
    ctx: click.Context, follow: bool, tail: str, since: str | None, until: str | None,
    timestamps: bool, details: bool, container: str,
) -> None:  # fmt: skip
    """Fetch the logs of a container."""
    from moorage.engine.containers import logs as lg

    svc = _service(ctx)
    rec = svc.get(container)
    if rec.spec.log_driver in ("none", "journald"):
        raise InvalidArgument(
            f'configured logging driver "{rec.spec.log_driver}" does not support reading'
        )
    now = time.time()
    t_since = lg.parse_since(since, now) if since else None
    t_until = lg.parse_until(until, now) if until else None
    n_tail = lg.parse_tail(tail)
    path = svc.log_path(rec)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def emit(entry: Any) -> None:
        stream = out if entry.stream == "stdout" else err
        stream.write(lg.render(entry, timestamps=timestamps))
        stream.flush()

    if not follow:
        for entry in lg.select(
            lg.read_entries(lg.log_files(path)), since=t_since, until=t_until, tail=n_tail
        ):
            emit(entry)
        return

    def stopped() -> bool:
        found = svc.find(rec.id)
        return found is None or not found.running

    log_cfg = lg.parse_log_opts(list(rec.spec.log_opts))

    def files() -> list[Path]:
        lg.keep_rotated(path, log_cfg)
        return lg.log_files(path)

    for entry in lg.follow(files, stop=stopped, tail=n_tail):
        if t_since is not None and entry.time < t_since:
            continue
        if t_until is not None and entry.time > t_until:
            break
        emit(entry)


def inspect_containers(
    ctx: click.Context, names: tuple[str, ...], fmt: str | None, kind: str | None
) -> None:
    """``inspect``: containers first, then images, volumes, networks (unless --type says
    which), as Docker looks them up."""
    from moorage.engine.containers.service import inspect

    svc = _service(ctx)
    found: list[Any] = []
    missing: list[str] = []
    for name in names:
        doc = None
        if kind in (None, "container"):
            rec = svc.find(name)
            if rec is not None:
                doc = inspect(svc, rec)
        if doc is None and kind in (None, "image"):
            img = svc.images.find(name)
            if img is not None:
                doc = svc.images.inspect(img)
        if doc is None and kind in (None, "volume"):
            vol = svc.volumes.find(name)
            if vol is not None:
                doc = svc.volumes.inspect(vol)
        if doc is None and kind in (None, "network"):
            net = svc.networks.find(name)
            if net is None and name in ("bridge", "moor"):
                net = svc.networks.default()  # made on first use, as `network ls` shows it
            if net is not None:
                doc = svc.networks.inspect(net)
        if doc is None:
            missing.append(name)
        else:
            found.append(doc)
    if found or fmt is None:  # as Docker: "[]" even when nothing was found
        from moorage.format import format_inspect

        click.echo(format_inspect(found, fmt), nl=False)
    what = kind or "object"
    for name in missing:
        error(f"No such {what}: {name}")
    if missing:
        sys.exit(1)


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format: json or a Go template.")
@click.option("-s", "--size", is_flag=True, help="Accepted for compatibility.")
@click.pass_context
def container_inspect_cmd(
    ctx: click.Context, names: tuple[str, ...], fmt: str | None, size: bool
) -> None:
    """Display detailed information on one or more containers."""
    inspect_containers(ctx, names, fmt, "container")


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Accepted: until=, label=")
@click.pass_context
def container_prune_cmd(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped containers."""
    later.hold()
    if not confirm("WARNING! This will remove all stopped containers.", force):
        return
    removed = _service(ctx).prune()
    if removed:
        click.echo("Deleted Containers:\n" + "\n".join(removed) + "\n")
    click.echo("Total reclaimed space: 0B")


@click.command("top")
@click.argument("container")
@click.argument("ps_args", nargs=-1)
@click.pass_context
def top_cmd(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    from moorage.engine.containers.listing import top

    svc = _service(ctx)
    header, table = top(svc, svc.get(container), list(ps_args))
    from moorage.format import render_table

    click.echo(render_table(header, table), nl=False)


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_context
def port_cmd(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    svc = _service(ctx)
    rec = svc.get(container)
    bound = sorted(svc.networks.bound_ports(rec.id),
                   key=lambda p: (p["container_port"], p["proto"]))  # fmt: skip
    if private_port:
        port, _, proto = private_port.partition("/")
        proto = proto or "tcp"
        found = [p for p in bound if str(p["container_port"]) == port and p["proto"] == proto]
        if not found:
            raise NotFound(f"No public port '{port}/{proto}' published for {container}")
        for p in found:
            click.echo(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}")
        return
    for p in bound:
        click.echo(f"{p['container_port']}/{p['proto']} -> {p['host_ip'] or '0.0.0.0'}:"
                   f"{p['host_port']}")  # fmt: skip


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option(
    "-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])."
)
@click.option("-w", "--workdir", default="", help="Working directory inside the container.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_cmd(
    ctx: click.Context,
    /,
    container: str,
    command: tuple[str, ...],
    interactive: bool,
    tty: bool,
    detach: bool,
    env: tuple[str, ...],
    user: str,
    workdir: str,
) -> None:
    """Execute a command in a running container."""
    import subprocess
    import tempfile

    from moorage.engine.containers.parse import parse_env
    from moorage.engine.containers.service import exec_process

    svc = _service(ctx)
    try:
        rec = svc.get(container)
        if tty and not detach and not sys.stdin.isatty():
            raise InvalidArgument("the input device is not a TTY")
        process = exec_process(
            svc, rec, list(command), env=parse_env(env, []), user=user, workdir=workdir,
            tty=tty and not detach,
        )  # fmt: skip
    except MoorageError as e:
        _engine_error(e)
    runtime = svc.runtime(rec)
    with tempfile.NamedTemporaryFile("w", dir=svc.run_dir / rec.id, suffix=".json") as f:
        json.dump(process, f)
        f.flush()
        argv = [runtime.path, *runtime.global_args(), "exec", "--process", f.name]
        if detach:
            argv.append("--detach")
        elif tty:
            argv.append("--tty")
        argv.append(rec.id)
        stdin = None if interactive or tty else subprocess.DEVNULL
        if detach:
            # runc's errors through a file: the detached process keeps a pipe open forever
            with tempfile.TemporaryFile() as errors:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=errors, check=False)  # fmt: skip
                if p.returncode != 0:
                    errors.seek(0)
                    error(errors.read().decode(errors="replace").strip())
                    sys.exit(126)
            return
        proc = subprocess.Popen(argv, stdin=stdin)
        with contextlib.suppress(KeyboardInterrupt):
            proc.wait()
        sys.exit(proc.wait())


def _split_container_path(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` or a local path (a path with a slash before any colon is local)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


@click.command("cp")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information).")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.option("-q", "--quiet", is_flag=True, help="Accepted for compatibility.")
@click.argument("src")
@click.argument("dest")
@click.pass_context
def cp_cmd(
    ctx: click.Context, archive: bool, follow_link: bool, quiet: bool, src: str, dest: str
) -> None:
    """Copy files/folders between a container and the local filesystem (- for a tar stream)."""
    import io
    import tempfile

    from moorage.engine.containers import fsops
    from moorage.engine.containers.service import mounted_root

    svc = _service(ctx)
    src_ctr, src_path = _split_container_path(src)
    dest_ctr, dest_path = _split_container_path(dest)
    if (src_ctr is None) == (dest_ctr is None):
        raise InvalidArgument("copying between containers or between local paths is not supported: "
                              "one of SRC and DEST must be CONTAINER:PATH")  # fmt: skip
    if src_ctr is not None:
        rec = svc.get(src_ctr)
        with mounted_root(svc, rec) as root:
            if dest_path == "-":
                fsops.copy_from_container(root, src_path, sys.stdout.buffer)
                return
            with tempfile.TemporaryFile() as buf:
                st = fsops.copy_from_container(root, src_path, buf)
                buf.seek(0)
                is_dir = bool(st["mode"] & (1 << 31))
                host_target, rename = fsops.host_destination(
                    dest_path, src_is_dir=is_dir, src_ends_with_dot=src_path.endswith("/.")
                )
                fsops.tar_to_host(buf, host_target, rename_to=rename)
        return
    assert dest_ctr is not None
    rec = svc.get(dest_ctr)
    with mounted_root(svc, rec) as root:
        if src_path == "-":
            fsops.copy_to_container(root, dest_path, sys.stdin.buffer, copy_uid_gid=archive)
            return
        if not os.path.lexists(src_path):
            raise NotFound(f"stat {src_path}: no such file or directory")
        is_dir = os.path.isdir(src_path)
        target, rename = fsops.container_destination(
            root, dest_path, src_is_dir=is_dir, src_ends_with_dot=src_path.endswith("/.")
        )
        data = io.BytesIO()
        fsops.host_to_tar(src_path, data, follow_link=follow_link, rename_to=rename)
        data.seek(0)
        fsops.copy_to_container(root, target, data, copy_uid_gid=archive)


@click.command("diff")
@click.argument("container")
@click.pass_context
def diff_cmd(ctx: click.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem."""
    from moorage.engine.containers.service import container_diff

    svc = _service(ctx)
    for kind, path in container_diff(svc, svc.get(container)):
        click.echo(f"{kind} {path}")


@click.command("export")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT.")
@click.argument("container")
@click.pass_context
def export_cmd(ctx: click.Context, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from moorage.engine.containers import fsops
    from moorage.engine.containers.service import mounted_root

    svc = _service(ctx)
    rec = svc.get(container)
    if output is None and sys.stdout.isatty():
        raise InvalidArgument(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
        )
    with mounted_root(svc, rec) as root:
        if output is None:
            fsops.export_rootfs(root, sys.stdout.buffer)
            return
        tmp = output + ".moor-tmp"
        try:
            with open(tmp, "wb") as f:
                fsops.export_rootfs(root, f)
            os.replace(tmp, output)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


@click.command("commit")
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith").')
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction.")
@click.option(
    "-p/--pause", "--pause/--no-pause", default=True, help="Pause container during commit."
)
@click.argument("container")
@click.argument("reference", required=False)
@click.pass_context
def commit_cmd(
    ctx: click.Context, author: str, message: str, changes: tuple[str, ...], pause: bool,
    container: str, reference: str | None,
) -> None:  # fmt: skip
    """Create a new image from a container's changes."""
    from moorage.engine.containers.service import commit

    svc = _service(ctx)
    rec = svc.get(container)
    image_id = commit(
        svc, rec, reference=reference, author=author, message=message,
        changes=list(changes), pause=pause,
    )  # fmt: skip
    click.echo(image_id)


@click.command("update")
@click.option("-m", "--memory", default=None, help="Memory limit.")
@click.option("--memory-swap", default=None, help="Swap limit equal to memory plus swap.")
@click.option("--cpus", default=None, help="Number of CPUs.")
@click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight).")
@click.option("--pids-limit", type=int, default=None, help="Tune container pids limit.")
@click.option("--restart", default=None, help="Restart policy to apply when a container exits.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def update_cmd(
    ctx: click.Context, memory: str | None, memory_swap: str | None, cpus: str | None,
    cpu_shares: int | None, pids_limit: int | None, restart: str | None,
    containers: tuple[str, ...],
) -> None:  # fmt: skip
    """Update configuration (resources, restart policy) of one or more containers."""
    from moorage.engine.containers import parse as p
    from moorage.engine.containers.service import update

    svc = _service(ctx)
    changes: dict[str, Any] = {}
    if memory is not None:
        changes["memory"] = p.parse_bytes(memory, "memory")
    if memory_swap is not None:
        changes["memory_swap"] = p.parse_memory_swap(memory_swap)
    if cpus is not None:
        changes["nano_cpus"] = p.parse_cpus(cpus)
    if cpu_shares is not None:
        changes["cpu_shares"] = cpu_shares
    if pids_limit is not None:
        changes["pids_limit"] = pids_limit
    if restart is not None:
        p.parse_restart(restart)
    each(containers, lambda c: update(svc, svc.get(c), changes, restart))


@click.group("container")
def container_group() -> None:
    """Manage containers."""


for _name, _cmd in {
    "run": run_cmd, "create": create_cmd, "start": start_cmd, "stop": stop_cmd,
    "restart": restart_cmd, "kill": kill_cmd, "rm": rm_cmd, "wait": wait_cmd, "ps": ps_cmd,
    "ls": ps_cmd, "list": ps_cmd, "logs": logs_cmd, "inspect": container_inspect_cmd,
    "rename": rename_cmd, "pause": pause_cmd, "unpause": unpause_cmd, "top": top_cmd,
    "port": port_cmd, "prune": container_prune_cmd, "cleanup": cleanup_cmd,
    "exec": exec_cmd, "cp": cp_cmd, "diff": diff_cmd, "export": export_cmd,
    "commit": commit_cmd, "update": update_cmd, "attach": attach_cmd,
}.items():  # fmt: skip
    container_group.add_command(_cmd, _name)
