"""Operating commands: events, stats, healthcheck, system boot and the health supervisor."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from moorage.cli.common import engine, error, parse_filters
from moorage.errors import InvalidArgument


def _service(ctx: click.Context) -> Any:
    from moorage.engine.containers.service import ContainerService

    eng = engine(ctx)
    return ContainerService(eng.store, eng.images)


# ---- events -------------------------------------------------------------------------------


@click.command("events")
@click.option("--since", default=None, help="Show all events created since timestamp.")
@click.option("--until", default=None, help="Stream events until this timestamp.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided."
)
@click.option("--format", "fmt", default=None, help="Format: json or a Go template.")
@click.pass_context
def events_cmd(
    ctx: click.Context, since: str | None, until: str | None, filters: tuple[str, ...],
    fmt: str | None,
) -> None:  # fmt: skip
    """Get real time events from moorage (past ones with --since; stops at --until)."""
    from moorage.engine import events as ev
    from moorage.engine.containers.logs import parse_since, parse_until

    wanted: dict[str, list[str]] = {}
    for key, value in parse_filters(filters):
        if key not in ev.FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        wanted.setdefault(key, []).append(value)
    now = time.time()
    since_ns = int(parse_since(since, now) * 1e9) if since else None
    until_ns = int(parse_until(until, now) * 1e9) if until else None
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise InvalidArgument("`--since` time must be before `--until` time")
    template = None
    if fmt and fmt.strip() != "json":
        from moorage.format import Template

        template = Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    from moorage.format import to_json

    store = engine(ctx).store
    out = sys.stdout
    import signal

    # ended by a signal: unwind, so the follower's socket is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for event in ev.stream(store.db.conn, store.runroot, since_ns=since_ns, until_ns=until_ns):
            if not ev.matches(event, wanted):
                continue
            if template is not None:
                line = template.render(event.to_json())
            elif fmt:
                line = to_json(event.to_json())
            else:
                line = event.line()
            out.write(line + "\n")
            out.flush()
    except KeyboardInterrupt:
        return


@click.command("boot")
@click.pass_context
def boot_cmd(ctx: click.Context) -> None:
    """Start the containers a host restart stopped: `always`, and `unless-stopped` ones not
    stopped by a user (what contrib/moorage-boot.service runs)."""
    from moorage.engine.supervisor import boot

    for line in boot(_service(ctx)):
        click.echo(line)


@click.command("supervisor", hidden=True)
@click.pass_context
def supervisor_cmd(ctx: click.Context) -> None:
    """Run the health-check supervisor in the foreground (normally started on demand)."""
    from moorage.engine.supervisor import main

    eng = engine(ctx)
    sys.exit(main(eng.root, eng.runroot))


# ---- healthcheck --------------------------------------------------------------------------


@click.group("healthcheck")
def healthcheck_group() -> None:
    """Manage health checks on containers."""


@healthcheck_group.command("run")
@click.argument("container")
@click.pass_context
def healthcheck_run_cmd(ctx: click.Context, container: str) -> None:
    """Run the health check of a container once: exit 0 if it passed, 1 if it failed."""
    from moorage.engine import health
    from moorage.engine.events import container_event
    from moorage.errors import Conflict, MoorageError

    svc = _service(ctx)
    try:  # as podman: 125 when the check could not be run at all
        rec = svc.get(container)
        cfg = health.effective(rec.spec.healthcheck)
        if cfg is None:
            raise Conflict(f"container {rec.name} has no defined healthcheck")
        if rec.state != "running":
            raise Conflict(f"container {rec.name} is not running")
        layout = svc.layout(rec.id)
        health.write_probe_process(layout.bundle, layout.run_dir, cfg)
        runtime = svc.runtime(rec)
        args = runtime.global_args()
        plan, _ = health.probe_method(layout.bundle, cfg, rec.pid)
        result = health.run_probe(runtime.path, args, rec.id, layout.run_dir, cfg, plan)
    except MoorageError as e:
        error(str(e))
        sys.exit(125)
    with svc.store.db.transaction() as conn:
        before, after = health.apply_result(conn, rec.id, cfg, rec.started_at, result)
    if before != after:
        container_event(svc.store, rec, f"health_status: {after}")
    if result["ExitCode"] != 0:
        click.echo("unhealthy")
        sys.exit(1)
    click.echo("healthy")


# ---- stats --------------------------------------------------------------------------------

STATS_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
    "{{.BlockIO}}\t{{.PIDs}}"
)
STATS_HEADERS = {
    "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}  # fmt: skip
SAMPLE_GAP = 0.25
"""Seconds between the two readings of a one-shot ``stats`` (CPU % needs two)."""


@click.command("stats")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers.")
@click.option("--no-stream", is_flag=True, help="Print one reading and exit.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", help="Format: table, json, prometheus or a Go template.")
@click.argument("containers", nargs=-1)
@click.pass_context
def stats_cmd(
    ctx: click.Context, show_all: bool, no_stream: bool, no_trunc: bool, fmt: str | None,
    containers: tuple[str, ...],
) -> None:  # fmt: skip
    """Display a live stream of container(s) resource usage statistics."""
    from moorage.engine import stats as st
    from moorage.format import format_list

    svc = _service(ctx)
    if containers:
        records = [(c, svc.get(c)) for c in containers]
    else:
        records = [("", r) for r in svc.ls() if show_all or r.running]
    host_mem = st.mem_total()

    cgroups: dict[int, dict[str, str]] = {}

    def read() -> list[Any]:
        host_cpu = st.host_cpu_ns()
        out = []
        for _, r in records:
            pid = r.pid if r.running else 0
            if pid and pid not in cgroups:
                cgroups[pid] = st.cgroup_paths(pid, svc.userdata(r.id))
            out.append(st.sample(
                pid, bundle=None, host_network=r.spec.network_mode == "host",
                host_mem=host_mem, host_cpu=host_cpu, paths=cgroups.get(pid),
            ))  # fmt: skip
        return out

    if fmt and fmt.strip() == "prometheus":
        click.echo(st.read_prometheus(svc, [r for _, r in records]), nl=False)
        return
    tty = sys.stdout.isatty()
    prev: list[Any] = read()
    time.sleep(SAMPLE_GAP)
    try:
        while True:
            cur = read()
            rows = [
                st.row(r, p, c, no_trunc=no_trunc, given=given)
                for (given, r), p, c in zip(records, prev, cur, strict=True)
            ]
            text = format_list(rows, fmt, default_table=STATS_TABLE, headers=STATS_HEADERS)
            if tty and not no_stream:
                text = "\033[2J\033[H" + text
            sys.stdout.write(text)
            sys.stdout.flush()
            if no_stream:
                return
            prev = cur
            time.sleep(1.0)
            if not containers:  # new containers appear, ended ones go
                known = {r.id: s for (_, r), s in zip(records, prev, strict=True)}
                records = [("", r) for r in svc.ls() if show_all or r.running]
                prev = [known.get(r.id) for _, r in records]
    except KeyboardInterrupt:
        return
