"""``moor compose``: multi-service applications from compose files (and 2014 fig files).

The group's options (``-f``, ``-p``, ``--env-file``, ``--profile``, ``--project-directory``)
say which project; each subcommand loads it through :mod:`moorage.compose.loader`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from moorage.compose.model import Project


class ComposeOptions:
    def __init__(self, **kw: Any) -> None:
        self.files: tuple[Path, ...] = kw["files"]
        self.project_name: str | None = kw["project_name"]
        self.env_files: tuple[Path, ...] = kw["env_files"]
        self.profiles: tuple[str, ...] = kw["profiles"]
        self.project_directory: Path | None = kw["project_directory"]

    def load(self, services: tuple[str, ...] = ()) -> Project:
        from moorage.compose.loader import ProjectOptions, load_project

        stdin = sys.stdin.read() if any(str(f) == "-" for f in self.files) else None
        project = load_project(
            ProjectOptions(
                files=self.files,
                project_name=self.project_name,
                project_directory=self.project_directory,
                env_files=self.env_files,
                profiles=self.profiles,
                services=services,
                stdin_text=stdin,
            )
        )
        for warning in project.warnings:
            click.echo(f"WARN {warning}", err=True)
        return project


def _options(ctx: click.Context) -> ComposeOptions:
    opts = ctx.find_object(ComposeOptions)
    assert opts is not None
    return opts


@click.group(
    "compose",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Compose configuration files (default: compose.yaml, docker-compose.yml, fig.yml...).",
)
@click.option("-p", "--project-name", default=None, help="Project name.")
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Alternate environment files (instead of .env).",
)
@click.option("--profile", "profiles", multiple=True, help="Enable a profile.")
@click.option(
    "--project-directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Working directory of the project (default: the first file's directory).",
)
@click.pass_context
def compose_group(
    ctx: click.Context,
    files: tuple[Path, ...],
    project_name: str | None,
    env_files: tuple[Path, ...],
    profiles: tuple[str, ...],
    project_directory: Path | None,
) -> None:
    """Define and run multi-container applications (Docker Compose compatible).

    Configuration errors exit 1, as docker compose v2 does.
    """
    ctx.obj = ComposeOptions(
        files=files,
        project_name=project_name,
        env_files=env_files,
        profiles=profiles,
        project_directory=project_directory,
    )


@compose_group.command("config")
@click.argument("services", nargs=-1)
@click.option("--services", "list_services", is_flag=True, help="Print the service names.")
@click.option("--volumes", "list_volumes", is_flag=True, help="Print the volume names.")
@click.option("--profiles", "list_profiles", is_flag=True, help="Print the profile names.")
@click.option("--images", "list_images", is_flag=True, help="Print the image names.")
@click.option("--hash", "hash_of", default=None, help='Print the config hash of services ("*").')
@click.option("-q", "--quiet", is_flag=True, help="Only validate the configuration.")
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file.")
@click.pass_context
def config_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    list_services: bool,
    list_volumes: bool,
    list_profiles: bool,
    list_images: bool,
    hash_of: str | None,
    quiet: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Parse, resolve and render the compose file in canonical form."""
    from moorage.compose import render
    from moorage.compose.translate import image_name

    project = _options(ctx).load(services)
    if services:
        from dataclasses import replace

        from moorage.compose.plan import selected_services

        keep = selected_services(project, services, no_deps=False)
        project = replace(project, services={k: project.services[k] for k in keep})
    if quiet:
        return
    lines: list[str] | None = None
    if list_services:
        lines = list(project.services)
    elif list_volumes:
        lines = list(project.volumes)
    elif list_profiles:
        lines = project.all_profiles()
    elif list_images:
        lines = [image_name(project, s) for s in project.services.values()]
    elif hash_of is not None:
        from moorage.compose.labels import config_hash

        names = list(project.services) if hash_of == "*" else hash_of.split(",")
        lines = [f"{n} {config_hash(project.service(n.strip()))}" for n in names]
    if lines is not None:
        text = "".join(line + "\n" for line in lines)
    else:
        doc = render.project_document(project)
        text = render.to_json(doc) + "\n" if fmt == "json" else render.to_yaml(doc)
    if output is not None:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@compose_group.command("version")
@click.option("--short", is_flag=True, help="Print the version number only.")
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
def version_cmd(short: bool, fmt: str) -> None:
    """Show the moor compose version."""
    from moorage import __version__

    if short:
        click.echo(__version__)
    elif fmt == "json":
        import json

        click.echo(json.dumps({"version": __version__}))
    else:
        click.echo(f"moor compose version {__version__}")


# ---- running the project -------------------------------------------------------------------


def _containers(ctx: click.Context) -> Any:
    from moorage.cli.common import engine
    from moorage.engine.containers.service import ContainerService

    eng = engine(ctx)
    return ContainerService(eng.store, eng.images)


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _scale(values: tuple[str, ...]) -> dict[str, int]:
    from moorage.errors import InvalidArgument

    out = {}
    for v in values:
        name, sep, n = v.partition("=")
        if not sep or not name or not n.isdigit():
            raise InvalidArgument(f"invalid --scale {v!r}: expected SERVICE=NUMBER")
        out[name] = int(n)
    return out


def _build_services(
    ctx: click.Context, project: Any, names: list[str], *, always: bool, no_cache: bool = False
) -> None:
    """Build the images of the services in ``names`` that have a ``build`` section: those
    missing (the rest are left as they are, as compose does) or, with ``always``, all."""
    from moorage.cli.build import build_cmd
    from moorage.cli.common import engine
    from moorage.compose.translate import image_name
    from moorage.errors import NotFound

    images = engine(ctx).images
    for name in names:
        service = project.services[name]
        if service.build is None:
            continue
        tag = image_name(project, service)
        if not always:
            try:
                images.resolve(tag)
                continue
            except NotFound:
                pass
        b = service.build
        context = Path(b.context)
        if not context.is_absolute():
            context = project.working_dir / context
        _progress(f" Service {name}  Building")
        ctx.invoke(
            build_cmd,
            path=str(context),
            file=str(context / b.dockerfile) if b.dockerfile else None,
            tags=(tag,),
            build_args=tuple(k if v is None else f"{k}={v}" for k, v in b.args.items()),
            target=b.target or None,
            labels=tuple(f"{k}={v}" for k, v in b.labels.items()),
            no_cache=no_cache,
        )
        _progress(f" Service {name}  Built")


@compose_group.command("build")
@click.argument("services", nargs=-1)
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image.")
@click.pass_context
def build_cmd(ctx: click.Context, services: tuple[str, ...], no_cache: bool) -> None:
    """Build or rebuild services' images."""
    project = _options(ctx).load(services)
    names = list(services) or sorted(project.services)
    _build_services(ctx, project, names, always=True, no_cache=no_cache)


@compose_group.command("up")
@click.argument("services", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="Run containers in the background.")
@click.option("--force-recreate", is_flag=True, help="Recreate containers even if unchanged.")
@click.option("--no-recreate", is_flag=True, help="Do not recreate existing containers.")
@click.option("--no-deps", is_flag=True, help="Do not start linked services.")
@click.option("--scale", multiple=True, help="Scale SERVICE to NUM instances (SERVICE=NUM).")
@click.option("--remove-orphans", is_flag=True, help="Remove containers of removed services.")
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds.")
@click.option("--build", is_flag=True, help="Build images before starting containers.")
@click.option("--no-build", is_flag=True, help="Do not build images.")
@click.option("--wait", is_flag=True, help="Wait for services to be running|healthy (implies -d).")
@click.option(
    "--rolling",
    is_flag=True,
    help="Replace changed containers one at a time, each new one healthy before its old one "
    "stops (always so for deploy.replicas > 1).",
)
@click.option(
    "--abort-on-container-exit", is_flag=True, help="Stop all containers if any one stops."
)
@click.option(
    "--exit-code-from", default=None, help="Exit with this service's code (implies abort)."
)
@click.pass_context
def up_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    detach: bool,
    force_recreate: bool,
    no_recreate: bool,
    no_deps: bool,
    scale: tuple[str, ...],
    remove_orphans: bool,
    timeout: int | None,
    build: bool,
    no_build: bool,
    wait: bool,
    rolling: bool,
    abort_on_container_exit: bool,
    exit_code_from: str | None,
) -> None:
    """Create and start containers; attached (without -d), show their output until they
    stop, and stop them on Ctrl-C."""
    import time

    from moorage.compose import runner
    from moorage.compose.plan import PlanOptions
    from moorage.errors import InvalidArgument

    if build and no_build:
        raise InvalidArgument("--build and --no-build are incompatible")
    abort = abort_on_container_exit or exit_code_from is not None
    if abort and (detach or wait):
        raise InvalidArgument("--abort-on-container-exit and --exit-code-from need attached mode")
    project = _options(ctx).load(services)
    if exit_code_from is not None:
        project.service(exit_code_from)
    options = PlanOptions(
        services=services,
        no_deps=no_deps,
        force_recreate=force_recreate,
        no_recreate=no_recreate,
        scale=_scale(scale),
        remove_orphans=remove_orphans,
    )
    if not no_build:
        chosen = [n for level in runner.plan_levels(project, options) for n in level]
        _build_services(ctx, project, chosen, always=build)
    svc = _containers(ctx)
    started = time.time()
    runner.up(project, svc, options, timeout=timeout, progress=_progress, rolling=rolling)
    if wait:
        chosen = [n for level in runner.plan_levels(project, options) for n in level]
        runner.wait_services(project, svc, chosen, _progress)
    if detach or wait:
        return
    # attached: every container's output until they have all stopped; Ctrl-C stops them
    chosen = [n for level in runner.plan_levels(project, options) for n in level]
    records = runner.project_records(svc, project.name, chosen, oneoff=False)
    try:
        first = _show_logs(svc, records, True, "all", False, True, first_exit=abort, since=started)
    except KeyboardInterrupt:
        _progress("Gracefully stopping... (press Ctrl+C again to force)")
        runner.stop(project, svc, chosen, timeout=timeout, progress=_progress)
        return
    if not abort or first is None:
        return
    _progress(f"Aborting on container exit... ({first.name} exited)")
    runner.stop(project, svc, chosen, timeout=timeout, progress=_progress)
    if exit_code_from is not None:
        from moorage.compose.labels import SERVICE

        ours = [r for r in records if r.spec.labels.get(SERVICE) == exit_code_from]
        first = ours[0] if ours else first
    found = svc.find(first.id)
    sys.exit(found.exit_code if found is not None else 1)


@compose_group.command("create")
@click.argument("services", nargs=-1)
@click.option("--force-recreate", is_flag=True, help="Recreate containers even if unchanged.")
@click.option("--no-recreate", is_flag=True, help="Do not recreate existing containers.")
@click.option("--scale", multiple=True, help="Scale SERVICE to NUM instances (SERVICE=NUM).")
@click.option("--remove-orphans", is_flag=True, help="Remove containers of removed services.")
@click.pass_context
def create_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    force_recreate: bool,
    no_recreate: bool,
    scale: tuple[str, ...],
    remove_orphans: bool,
) -> None:
    """Create the containers of the services without starting them."""
    from moorage.compose import runner
    from moorage.compose.plan import PlanOptions

    project = _options(ctx).load(services)
    options = PlanOptions(
        services=services,
        force_recreate=force_recreate,
        no_recreate=no_recreate,
        scale=_scale(scale),
        remove_orphans=remove_orphans,
    )
    runner.up(project, _containers(ctx), options, progress=_progress, start=False)


@compose_group.command("down")
@click.option("--remove-orphans", is_flag=True, help="Remove containers of removed services.")
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds.")
@click.option("-v", "--volumes", is_flag=True, help="Remove the project's named volumes.")
@click.option("--rmi", type=click.Choice(["local", "all"]), default=None, help="Remove images.")
@click.pass_context
def down_cmd(
    ctx: click.Context, remove_orphans: bool, timeout: int | None, volumes: bool, rmi: str | None
) -> None:
    """Stop and remove containers and networks (-v: named volumes too)."""
    from moorage.compose import runner

    project = _options(ctx).load()
    svc = _containers(ctx)
    runner.down(
        project,
        svc,
        remove_orphans=remove_orphans,
        timeout=timeout,
        progress=_progress,
        volumes=volumes,
    )
    if rmi:
        _remove_images(project, svc, every=rmi == "all")


def _remove_images(project: Any, svc: Any, *, every: bool) -> None:
    """``down --rmi``: the images compose named itself (``local``: services without an
    ``image`` key), or every service's image (``all``); one missing is not an error."""
    from moorage.compose.translate import image_name
    from moorage.errors import MoorageError, NotFound

    names = dict.fromkeys(
        image_name(project, s) for s in project.services.values() if every or not s.image
    )
    for name in names:
        try:
            svc.images.resolve(name)
        except NotFound:
            continue
        _progress(f" Image {name}  Removing")
        try:
            svc.images.remove(name, collect=False)
        except MoorageError as e:
            _progress(f" Image {name}  Error {e}")
            continue
        _progress(f" Image {name}  Removed")
    svc.images.collect_garbage(blocking=False)


def _health(svc: Any, rec: Any) -> str:
    from moorage.engine.health import status

    st = status(svc.store.db.conn, rec)
    return "" if st == "none" else st


PS_TABLE = (
    "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t{{.Status}}"
    "\t{{.Ports}}"
)


@compose_group.command("ps")
@click.argument("services", nargs=-1)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.option("--services", "list_services", is_flag=True, help="Display services.")
@click.option("--format", "fmt", default=None, help="Format: table, json, or a Go template.")
@click.pass_context
def ps_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    show_all: bool,
    quiet: bool,
    list_services: bool,
    fmt: str | None,
) -> None:
    """List the project's containers."""
    import json
    import time

    from moorage.cli.container import (
        _command_text,
        _health_suffix,
        _ps_networks,
        _ps_ports,
        _status,
    )
    from moorage.compose import labels as L
    from moorage.compose.runner import project_records
    from moorage.format import format_list
    from moorage.units import since

    project = _options(ctx).load()
    for name in services:
        project.service(name)
    svc = _containers(ctx)
    records = [r for r in project_records(svc, project.name, services) if show_all or r.running]
    if list_services:
        seen = dict.fromkeys(r.spec.labels.get(L.SERVICE, "") for r in records)
        click.echo("".join(f"{s}\n" for s in seen), nl=False)
        return
    now = time.time()
    rows = []
    for rec in records:
        cmd = _command_text(svc, rec)
        rows.append(
            {
                "ID": rec.id,
                "Name": rec.name,
                "Image": rec.image_ref,
                "Command": json.dumps(cmd),
                "Project": project.name,
                "Service": rec.spec.labels.get(L.SERVICE, ""),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(rec.created)),
                "RunningFor": since(rec.created, now),
                "Status": _status(rec, now) + _health_suffix(svc, rec),
                "State": rec.state,
                "Health": _health(svc, rec),
                "ExitCode": rec.exit_code,
                "Ports": _ps_ports(svc, rec),
                "Labels": ",".join(f"{k}={v}" for k, v in rec.spec.labels.items()),
                "Networks": _ps_networks(svc, rec),
            }
        )
    click.echo(
        format_list(
            rows,
            fmt,
            default_table=PS_TABLE,
            quiet=quiet,
            quiet_field="ID",
            headers={"RunningFor": "CREATED"},
        ),
        nl=False,
    )


@compose_group.command("start")
@click.argument("services", nargs=-1)
@click.pass_context
def start_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Start the project's existing containers."""
    from moorage.compose import runner

    runner.start(_options(ctx).load(), _containers(ctx), services, progress=_progress)


@compose_group.command("stop")
@click.argument("services", nargs=-1)
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds.")
@click.pass_context
def stop_cmd(ctx: click.Context, services: tuple[str, ...], timeout: int | None) -> None:
    """Stop the project's running containers (dependents first)."""
    from moorage.compose import runner

    runner.stop(
        _options(ctx).load(), _containers(ctx), services, timeout=timeout, progress=_progress
    )


@compose_group.command("rm")
@click.argument("services", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Don't ask to confirm removal.")
@click.option("-s", "--stop", "stop_first", is_flag=True, help="Stop the containers first.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes (none yet).")
@click.pass_context
def rm_cmd(
    ctx: click.Context, services: tuple[str, ...], force: bool, stop_first: bool, volumes: bool
) -> None:
    """Remove the project's stopped containers."""
    from moorage.cli.common import confirm
    from moorage.compose import runner

    project = _options(ctx).load()
    svc = _containers(ctx)
    records = runner.removable(project, svc, services, stopped_first=stop_first)
    if not records:
        click.echo("No stopped containers", err=True)
        return
    names = ", ".join(r.name for r in records)
    if not confirm(f"Going to remove {names}", force):
        return
    for rec in records:
        if rec.running:
            _progress(f" Container {rec.name}  Stopping")
            svc.stop(rec.id)
            _progress(f" Container {rec.name}  Stopped")
        svc.remove(rec.id, force=True)
        _progress(f" Container {rec.name}  Removed")


@compose_group.command("logs")
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines from the end of each log.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--no-log-prefix", is_flag=True, help="Don't print the container name prefix.")
@click.pass_context
def logs_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    follow: bool,
    tail: str,
    timestamps: bool,
    no_log_prefix: bool,
) -> None:
    """Show the output of the project's containers, each line prefixed with its container."""
    from moorage.compose.runner import project_records

    project = _options(ctx).load()
    for name in services:
        project.service(name)
    svc = _containers(ctx)
    records = project_records(svc, project.name, services, oneoff=False)
    _show_logs(svc, records, follow, tail, timestamps, not no_log_prefix)


def _show_logs(
    svc: Any,
    records: list[Any],
    follow: bool,
    tail: str,
    timestamps: bool,
    prefixed: bool,
    first_exit: bool = False,
    since: float | None = None,
) -> Any:
    """Each container's log, lines prefixed ``name  | `` (one colour per container on a
    terminal); with ``follow``, until every container has stopped, or with ``first_exit``
    until one has (returned)."""
    import threading
    import time

    from moorage.engine.containers import logs as lg

    width = max((len(r.name) for r in records), default=0)
    n_tail = lg.parse_tail(tail)
    lock = threading.Lock()
    colours = ("cyan", "yellow", "green", "magenta", "blue", "red")
    tty = sys.stdout.isatty()

    def emit(rec: Any, index: int, entry: Any) -> None:
        data = lg.render(entry, timestamps=timestamps)
        if prefixed:
            prefix = f"{rec.name:<{width}}  | "
            if tty:
                prefix = click.style(prefix, fg=colours[index % len(colours)])
            data = prefix.encode() + data
        stream = sys.stdout.buffer if entry.stream == "stdout" else sys.stderr.buffer
        with lock:
            stream.write(data)
            stream.flush()

    if not follow:
        for i, rec in enumerate(records):
            entries = lg.read_entries(lg.log_files(svc.log_path(rec)))
            for entry in lg.select(entries, since=None, until=None, tail=n_tail):
                emit(rec, i, entry)
        return

    def watch(rec: Any, index: int) -> None:
        path = svc.log_path(rec)

        def stopped() -> bool:
            with lock:  # one store connection for every thread
                found = svc.find(rec.id)
            return found is None or not found.running

        for entry in lg.follow(lambda: lg.log_files(path), stop=stopped, tail=n_tail):
            if since is None or entry.time >= since:
                emit(rec, index, entry)

    threads = [
        threading.Thread(target=watch, args=(rec, i), daemon=True) for i, rec in enumerate(records)
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for rec, t in zip(records, threads, strict=True):
            if first_exit and not t.is_alive():
                return rec
        time.sleep(0.1)  # polling keeps Ctrl-C deliverable to the main thread
    return records[0] if first_exit and records else None


def _each_container(
    ctx: click.Context,
    services: tuple[str, ...],
    verb: str,
    done: str,
    action: Any,
    only: Any = None,
) -> None:
    """Apply ``action(svc, record)`` to the project's (selected) containers, in start order."""
    from moorage.compose.graph import levels
    from moorage.compose.labels import SERVICE
    from moorage.compose.runner import project_records

    project = _options(ctx).load()
    for name in services:
        project.service(name)
    svc = _containers(ctx)
    deps = {n: s.dependencies() for n, s in project.services.items()}
    rank = {name: i for i, level in enumerate(levels(deps)) for name in level}
    records = project_records(svc, project.name, services, oneoff=False)
    records.sort(key=lambda r: rank.get(r.spec.labels.get(SERVICE, ""), 0))
    for rec in records:
        if only is not None and not only(rec):
            continue
        _progress(f" Container {rec.name}  {verb}")
        action(svc, rec)
        _progress(f" Container {rec.name}  {done}")


@compose_group.command("restart")
@click.argument("services", nargs=-1)
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds.")
@click.pass_context
def restart_cmd(ctx: click.Context, services: tuple[str, ...], timeout: int | None) -> None:
    """Restart the project's containers."""

    def restart(svc: Any, rec: Any) -> None:
        svc.stop(rec.id, timeout)
        svc.start(rec.id)

    _each_container(ctx, services, "Restarting", "Started", restart)


@compose_group.command("kill")
@click.argument("services", nargs=-1)
@click.option("-s", "--signal", "sig", default="SIGKILL", help="Signal to send.")
@click.pass_context
def kill_cmd(ctx: click.Context, services: tuple[str, ...], sig: str) -> None:
    """Send a signal to the project's running containers."""
    _each_container(
        ctx, services, "Killing", "Killed", lambda svc, rec: svc.kill(rec.id, sig),
        only=lambda rec: rec.running,
    )  # fmt: skip


@compose_group.command("pause")
@click.argument("services", nargs=-1)
@click.pass_context
def pause_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Pause the project's running containers."""
    _each_container(
        ctx, services, "Pausing", "Paused", lambda svc, rec: svc.pause(rec.id),
        only=lambda rec: rec.state == "running",
    )  # fmt: skip


@compose_group.command("unpause")
@click.argument("services", nargs=-1)
@click.pass_context
def unpause_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Unpause the project's paused containers."""
    _each_container(
        ctx, services, "Unpausing", "Unpaused", lambda svc, rec: svc.unpause(rec.id),
        only=lambda rec: rec.state == "paused",
    )  # fmt: skip


@compose_group.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped projects too.")
@click.option("-q", "--quiet", is_flag=True, help="Only display project names.")
@click.option("--format", "fmt", default=None, help="Format: table, json, or a Go template.")
@click.pass_context
def ls_cmd(ctx: click.Context, show_all: bool, quiet: bool, fmt: str | None) -> None:
    """List the compose projects that have containers."""
    from collections import Counter

    from moorage.compose import labels as L
    from moorage.format import format_list

    projects: dict[str, Counter[str]] = {}
    files: dict[str, str] = {}
    for rec in _containers(ctx).ls():
        name = rec.spec.labels.get(L.PROJECT)
        if not name:
            continue
        projects.setdefault(name, Counter())[rec.state] += 1
        files.setdefault(name, rec.spec.labels.get(L.CONFIG_FILES, ""))
    rows = []
    for name in sorted(projects):
        states = projects[name]
        if not show_all and not states.get("running"):
            continue
        status = ", ".join(f"{state}({n})" for state, n in sorted(states.items()))
        rows.append({"Name": name, "Status": status, "ConfigFiles": files[name]})
    click.echo(
        format_list(
            rows,
            fmt,
            default_table="table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}",
            quiet=quiet,
            quiet_field="Name",
            headers={"ConfigFiles": "CONFIG FILES"},
        ),
        nl=False,
    )


@compose_group.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-T", "--no-tty", is_flag=True, help="Disable pseudo-TTY allocation.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("-u", "--user", default="", help="Run the command as this user.")
@click.option("-w", "--workdir", default="", help="Working directory inside the container.")
@click.option("--index", type=int, default=1, show_default=True, help="Container number.")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_cmd(
    ctx: click.Context,
    detach: bool,
    no_tty: bool,
    env: tuple[str, ...],
    user: str,
    workdir: str,
    index: int,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Execute a command in a running container of a service."""
    from moorage.cli.container import exec_cmd as container_exec
    from moorage.compose.labels import NUMBER
    from moorage.compose.runner import project_records
    from moorage.errors import NotFound

    project = _options(ctx).load((service,))
    project.service(service)
    records = project_records(_containers(ctx), project.name, [service], oneoff=False)
    found = [r for r in records if r.spec.labels.get(NUMBER) == str(index) and r.running]
    if not found:
        raise NotFound(f'service "{service}" is not running (container number {index})')
    ctx.invoke(
        container_exec,
        container=found[0].id,
        command=command,
        interactive=not detach,
        tty=not detach and not no_tty and sys.stdin.isatty(),
        detach=detach,
        env=env,
        user=user,
        workdir=workdir,
    )


@compose_group.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run the container in the background.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--name", default="", help="Assign a name to the container.")
@click.option("-e", "--env", multiple=True, help="Set environment variables (KEY=VALUE).")
@click.option("--entrypoint", default=None, help="Override the entrypoint of the image.")
@click.option("-u", "--user", default=None, help="Run as this user.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-T", "--no-tty", is_flag=True, help="Disable pseudo-TTY allocation.")
@click.option("--no-deps", is_flag=True, help="Don't start linked services.")
@click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host.")
@click.option("-P", "--service-ports", is_flag=True, help="Run with the service's ports published.")
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    detach: bool,
    remove: bool,
    name: str,
    env: tuple[str, ...],
    entrypoint: str | None,
    user: str | None,
    workdir: str | None,
    no_tty: bool,
    no_deps: bool,
    publish: tuple[str, ...],
    service_ports: bool,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Run a one-off command in a new container of a service (its dependencies started)."""
    import os
    import shlex
    from dataclasses import replace

    from moorage.cli.container import _run_attached, _straight
    from moorage.compose import labels as L
    from moorage.compose import runner
    from moorage.compose.plan import PlanOptions
    from moorage.compose.translate import container_spec
    from moorage.compose.values import Loc, kv_mapping

    project = _options(ctx).load((service,))
    svc_model = project.service(service)
    containers = _containers(ctx)
    deps = svc_model.dependencies()
    if deps and not no_deps:
        runner.up(project, containers, PlanOptions(services=deps), progress=_progress)
    runner.provision(project, containers, [service], _progress)  # its network, its volumes
    given = kv_mapping(list(env), Loc(("--env",)))
    environment = {
        **svc_model.environment,
        **{k: v if v is not None else os.environ.get(k) for k, v in given.items()},
    }
    # a one-off container publishes nothing unless asked (docker compose's default)
    ports = list(svc_model.ports) if service_ports else []
    if publish:
        from moorage.compose.ports import parse_ports
        from moorage.compose.typed import port_of

        ports += [port_of(p) for p in parse_ports(list(publish), Loc(("--publish",)))]
    changes: dict[str, Any] = {
        "environment": environment,
        "ports": tuple(ports),
        "restart": "no",
        "container_name": "",
    }
    if command:
        changes["command"] = command
    if entrypoint is not None:
        changes["entrypoint"] = tuple(shlex.split(entrypoint))
    if user is not None:
        changes["user"] = user
    if workdir is not None:
        changes["working_dir"] = workdir
    one_off = replace(svc_model, **changes)
    spec = container_spec(project, one_off, 1)
    tty = not detach and not no_tty and sys.stdin.isatty()
    spec = replace(
        spec,
        name=name or f"{project.name}-{service}-run-{os.urandom(6).hex()}",
        labels={**spec.labels, L.ONEOFF: "True"},
        tty=tty,
        open_stdin=not detach,
        auto_remove=remove,
    )
    rec = containers.create(spec)
    if detach:
        containers.start(rec.id)
        click.echo(rec.name)
        return
    if _straight(spec, True, ()):
        sys.exit(containers.run_foreground(rec))
    sys.exit(_run_attached(containers, rec, sig_proxy=True))


@compose_group.command("top")
@click.argument("services", nargs=-1)
@click.pass_context
def top_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Display the running processes of the project's containers."""
    from moorage.cli.container import top_cmd as container_top
    from moorage.compose.runner import project_records

    project = _options(ctx).load()
    for name in services:
        project.service(name)
    records = project_records(_containers(ctx), project.name, services, oneoff=False)
    for i, rec in enumerate(r for r in records if r.running):
        click.echo(("\n" if i else "") + rec.name)
        ctx.invoke(container_top, container=rec.id, ps_args=())


@compose_group.command("images")
@click.argument("services", nargs=-1)
@click.option("-q", "--quiet", is_flag=True, help="Only display image IDs.")
@click.option("--format", "fmt", default=None, help="Format: table, json, or a Go template.")
@click.pass_context
def images_cmd(ctx: click.Context, services: tuple[str, ...], quiet: bool, fmt: str | None) -> None:
    """List the images used by the project's containers."""
    from moorage.compose.runner import project_records
    from moorage.errors import MoorageError
    from moorage.format import format_list
    from moorage.units import human_size

    project = _options(ctx).load()
    for name in services:
        project.service(name)
    svc = _containers(ctx)
    rows = []
    for rec in project_records(svc, project.name, services):
        try:
            image = svc.image_of(rec)
        except MoorageError:  # removed meanwhile: show what the container was made from
            image = None
        repo, sep, tag = rec.image_ref.rpartition(":")
        if not sep or "/" in tag:
            repo, tag = rec.image_ref, "latest"
        rows.append(
            {
                "ContainerName": rec.name,
                "Repository": repo or rec.image_ref,
                "Tag": tag,
                "ID": rec.image_id.removeprefix("sha256:")[:12],
                "Size": human_size(image.size) if image is not None else "",
            }
        )
    click.echo(
        format_list(
            rows,
            fmt,
            default_table="table {{.ContainerName}}\t{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
            quiet=quiet,
            quiet_field="ID",
            headers={"ContainerName": "CONTAINER", "ID": "IMAGE ID"},
        ),
        nl=False,
    )


# ---- images to and from registries --------------------------------------------------------


@compose_group.command("pull")
@click.argument("services", nargs=-1)
@click.option("-q", "--quiet", is_flag=True, help="Pull without printing progress information.")
@click.option(
    "--ignore-pull-failures", is_flag=True, help="Pull what it can and ignore images that fail."
)
@click.option(
    "--ignore-buildable", is_flag=True, help="Ignore images that can be built (have a build)."
)
@click.option("--include-deps", is_flag=True, help="Also pull services declared as dependencies.")
@click.option("--tls-verify", "tls_verify", metavar="BOOL", help="Require HTTPS (see moor pull).")
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    quiet: bool,
    ignore_pull_failures: bool,
    ignore_buildable: bool,
    include_deps: bool,
    tls_verify: str | None,
) -> None:
    """Pull the images of the project's services (those with an image name).

    A service with a build section whose pull fails only gets a warning (its image can be
    built), as docker compose does; any other failure exits 1 unless --ignore-pull-failures.
    """
    from moorage.cli.common import engine
    from moorage.cli.distribution import _tls
    from moorage.cli.progress import reporter
    from moorage.compose.plan import selected_services
    from moorage.engine.images.transfer import pull
    from moorage.errors import MoorageError

    project = _options(ctx).load(services)
    names = selected_services(project, services, no_deps=not include_deps)
    images = engine(ctx).images
    verify = _tls(tls_verify)
    for name in names:
        service = project.services[name]
        if not service.image or (ignore_buildable and service.build is not None):
            if not quiet:
                _progress(f" {name} Skipped - No image to be pulled")
            continue
        if not quiet:
            _progress(f" {name} Pulling")
        try:
            pull(images, service.image, tls_verify=verify, reporter=reporter(True))
        except MoorageError as e:
            if service.build is not None:
                _progress(f" {name} Warning {e}")
                continue
            if not ignore_pull_failures:
                raise
            _progress(f" {name} Error {e}")
            continue
        if not quiet:
            _progress(f" {name} Pulled")


@compose_group.command("push")
@click.argument("services", nargs=-1)
@click.option("-q", "--quiet", is_flag=True, help="Push without printing progress information.")
@click.option(
    "--ignore-push-failures", is_flag=True, help="Push what it can and ignore images that fail."
)
@click.option("--include-deps", is_flag=True, help="Also push services declared as dependencies.")
@click.option("--tls-verify", "tls_verify", metavar="BOOL", help="Require HTTPS (see moor push).")
@click.pass_context
def push_cmd(
    ctx: click.Context,
    services: tuple[str, ...],
    quiet: bool,
    ignore_push_failures: bool,
    include_deps: bool,
    tls_verify: str | None,
) -> None:
    """Push the images of the project's services that have an image name."""
    from moorage.cli.common import engine
    from moorage.cli.distribution import _tls
    from moorage.cli.progress import reporter
    from moorage.compose.plan import selected_services
    from moorage.engine.images.transfer import push
    from moorage.errors import MoorageError

    project = _options(ctx).load(services)
    names = selected_services(project, services, no_deps=not include_deps)
    images = engine(ctx).images
    verify = _tls(tls_verify)
    for name in names:
        service = project.services[name]
        if not service.image:
            continue  # an image compose names itself stays local
        if not quiet:
            _progress(f" {name} Pushing")
        try:
            push(images, service.image, tls_verify=verify, reporter=reporter(True))
        except MoorageError as e:
            if not ignore_push_failures:
                raise
            _progress(f" {name} Error {e}")
            continue
        if not quiet:
            _progress(f" {name} Pushed")


# ---- ports, events, copies ------------------------------------------------------------------


def _service_container(ctx: click.Context, service: str, index: int) -> Any:
    """Container number ``index`` of ``service`` (its record), or a clear error."""
    from moorage.compose.labels import NUMBER
    from moorage.compose.runner import project_records
    from moorage.errors import NotFound

    project = _options(ctx).load((service,))
    project.service(service)
    records = project_records(_containers(ctx), project.name, [service], oneoff=False)
    found = [r for r in records if r.spec.labels.get(NUMBER) == str(index)]
    if not found:
        raise NotFound(f'service "{service}" has no container number {index}')
    return found[0]


@compose_group.command("port")
@click.option(
    "--protocol", type=click.Choice(["tcp", "udp", "sctp"]), default="tcp", show_default=True
)
@click.option("--index", type=int, default=1, show_default=True, help="Container number.")
@click.argument("service")
@click.argument("private_port", type=int)
@click.pass_context
def port_cmd(
    ctx: click.Context, protocol: str, index: int, service: str, private_port: int
) -> None:
    """Print the public address and port of a service's private port."""
    from moorage.errors import NotFound

    rec = _service_container(ctx, service, index)
    bound = _containers(ctx).networks.bound_ports(rec.id)
    for p in bound:
        if p["container_port"] == private_port and p["proto"] == protocol:
            click.echo(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}")
            return
    raise NotFound(f"no port {private_port}/{protocol} for container {rec.name}")


@compose_group.command("events")
@click.argument("services", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Output events as a stream of json objects.")
@click.pass_context
def events_cmd(ctx: click.Context, services: tuple[str, ...], as_json: bool) -> None:
    """Receive real time events from the project's containers (until interrupted)."""
    import json
    import signal
    from datetime import UTC, datetime

    from moorage.cli.common import engine
    from moorage.compose import labels as L
    from moorage.engine import events as ev

    project = _options(ctx).load()
    for name in services:
        project.service(name)
    store = engine(ctx).store
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for event in ev.stream(store.db.conn, store.runroot, since_ns=None, until_ns=None):
            attrs = event.attributes
            if event.type != "container" or attrs.get(L.PROJECT) != project.name:
                continue
            service = attrs.get(L.SERVICE, "")
            if services and service not in services:
                continue
            shown = {k: v for k, v in attrs.items() if not k.startswith("com.docker.compose.")}
            when = datetime.fromtimestamp(event.time_nano / 1e9, tz=UTC)
            if as_json:
                line = json.dumps(
                    {
                        "time": when.isoformat(),
                        "type": "container",
                        "service": service,
                        "id": event.actor_id,
                        "action": event.action,
                        "attributes": shown,
                    }
                )
            else:
                text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
                stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f")
                line = f"{stamp} container {event.action} {event.actor_id} ({text})"
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


@compose_group.command("cp")
@click.option("--index", type=int, default=1, show_default=True, help="Container number.")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information).")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.argument("src")
@click.argument("dest")
@click.pass_context
def cp_cmd(
    ctx: click.Context, index: int, archive: bool, follow_link: bool, src: str, dest: str
) -> None:
    """Copy files between a service container and the local filesystem (SERVICE:PATH)."""
    from moorage.cli.container import _split_container_path
    from moorage.cli.container import cp_cmd as container_cp
    from moorage.errors import InvalidArgument

    src_svc, src_path = _split_container_path(src)
    dest_svc, dest_path = _split_container_path(dest)
    if (src_svc is None) == (dest_svc is None):
        raise InvalidArgument("one of SRC and DEST must be SERVICE:PATH")
    service = src_svc or dest_svc
    assert service is not None
    rec = _service_container(ctx, service, index)
    ctx.invoke(
        container_cp,
        archive=archive,
        follow_link=follow_link,
        quiet=False,
        src=f"{rec.id}:{src_path}" if src_svc else src,
        dest=f"{rec.id}:{dest_path}" if dest_svc else dest,
    )


# ---- the developer loop -----------------------------------------------------------------------


@compose_group.command("watch")
@click.argument("services", nargs=-1)
@click.option("--no-up", is_flag=True, help="Do not build and start the services first.")
@click.pass_context
def watch_cmd(ctx: click.Context, services: tuple[str, ...], no_up: bool) -> None:
    """Watch the develop.watch paths of the services: sync changed files into their running
    containers, restart them, or rebuild and recreate them (until interrupted)."""
    import signal

    from moorage.compose import runner
    from moorage.compose import watch as w
    from moorage.compose.plan import PlanOptions
    from moorage.engine.containers.service import mounted_root
    from moorage.errors import MoorageError

    project = _options(ctx).load(services)
    watches = w.service_watches(project, services)
    svc = _containers(ctx)
    if not no_up:
        names = tuple(sw.service.name for sw in watches)
        chosen = [n for level in runner.plan_levels(project, PlanOptions(services=names))
                  for n in level]  # fmt: skip
        _build_services(ctx, project, chosen, always=False)
        runner.up(project, svc, PlanOptions(services=names), progress=_progress)

    def running(name: str) -> list[Any]:
        records = runner.project_records(svc, project.name, [name], oneoff=False)
        return [r for r in records if r.running]

    def apply(name: str, batch: w.Batch) -> None:
        if batch.rebuild:
            _progress(f'Rebuilding service "{name}" after changes were detected...')
            _build_services(ctx, project, [name], always=True)
            runner.up(project, svc, PlanOptions(services=(name,), no_deps=True),
                      progress=_progress)  # fmt: skip
            _progress(f'service "{name}" successfully built')
            return
        if batch.syncs:
            n = len(batch.syncs)
            _progress(f'Syncing service "{name}" after {n} changes were detected')
            for rec in running(name):
                with mounted_root(svc, rec) as root:
                    w.sync_files(root, batch.syncs)
        if batch.restart:
            _progress(f'Restarting service "{name}" after changes were detected')
            for rec in running(name):
                svc.stop(rec.id)
                svc.start(rec.id)

    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    from moorage.inotify import Inotify

    watcher = Inotify()
    try:
        w.watch_paths(watcher, watches)
        first = w.initial_paths(watches)
        if first:
            for name, batch in w.plan_batch(watches, first).items():
                apply(name, batch)
        _progress("Watch enabled")
        for paths in w.batches(watcher, lambda: stopping):
            for name, batch in w.plan_batch(watches, paths).items():
                try:
                    apply(name, batch)
                except MoorageError as e:  # the loop goes on: the next save may fix it
                    _progress(f'Error: service "{name}": {e}')
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
