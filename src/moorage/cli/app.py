"""The click application: global flags, lazily loaded subcommands, one error boundary."""

from __future__ import annotations

import importlib
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import click

from moorage import __version__
from moorage.errors import MoorageError

# command name -> "module:attribute"; modules load only when their command runs
TOP_LEVEL: dict[str, str] = {
    "images": "moorage.cli.image:images_cmd",
    "import": "moorage.cli.image:import_cmd",
    "load": "moorage.cli.image:load_cmd",
    "save": "moorage.cli.image:save_cmd",
    "tag": "moorage.cli.image:tag_cmd",
    "rmi": "moorage.cli.image:rmi_cmd",
    "history": "moorage.cli.image:history_cmd",
    "inspect": "moorage.cli.image:inspect_any_cmd",
    "run": "moorage.cli.container:run_cmd",
    "create": "moorage.cli.container:create_cmd",
    "start": "moorage.cli.container:start_cmd",
    "stop": "moorage.cli.container:stop_cmd",
    "restart": "moorage.cli.container:restart_cmd",
    "kill": "moorage.cli.container:kill_cmd",
    "rm": "moorage.cli.container:rm_cmd",
    "ps": "moorage.cli.container:ps_cmd",
    "logs": "moorage.cli.container:logs_cmd",
    "wait": "moorage.cli.container:wait_cmd",
    "rename": "moorage.cli.container:rename_cmd",
    "pause": "moorage.cli.container:pause_cmd",
    "unpause": "moorage.cli.container:unpause_cmd",
    "top": "moorage.cli.container:top_cmd",
    "port": "moorage.cli.container:port_cmd",
    "exec": "moorage.cli.container:exec_cmd",
    "cp": "moorage.cli.container:cp_cmd",
    "diff": "moorage.cli.container:diff_cmd",
    "export": "moorage.cli.container:export_cmd",
    "commit": "moorage.cli.container:commit_cmd",
    "update": "moorage.cli.container:update_cmd",
    "attach": "moorage.cli.container:attach_cmd",
    "container": "moorage.cli.container:container_group",
    "image": "moorage.cli.image:image_group",
    "info": "moorage.cli.system:info_cmd",
    "version": "moorage.cli.system:version_cmd",
    "system": "moorage.cli.system:system_group",
    "registry": "moorage.cli.registry:registry_group",
    "pull": "moorage.cli.distribution:pull_cmd",
    "push": "moorage.cli.distribution:push_cmd",
    "login": "moorage.cli.distribution:login_cmd",
    "logout": "moorage.cli.distribution:logout_cmd",
    "search": "moorage.cli.distribution:search_cmd",
    "build": "moorage.cli.build:build_cmd",
    "builder": "moorage.cli.build:builder_group",
    "compose": "moorage.cli.compose:compose_group",
    "network": "moorage.cli.network:network_group",
    "volume": "moorage.cli.volume:volume_group",
    "events": "moorage.cli.ops:events_cmd",
    "stats": "moorage.cli.ops:stats_cmd",
    "healthcheck": "moorage.cli.ops:healthcheck_group",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, attr = self.lazy[cmd_name].partition(":")
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command)
            return cmd
        return super().get_command(ctx, cmd_name)


class AppContext:
    """What every command gets: the store location and, on demand, the engine."""

    def __init__(self, root: Path | None, runroot: Path | None) -> None:
        self.root = root
        self.runroot = runroot

    @cached_property
    def engine(self) -> Any:
        from moorage.engine import Engine

        return Engine(self.root, self.runroot)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@click.group(
    cls=LazyGroup,
    lazy=TOP_LEVEL,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    envvar="MOORAGE_ROOT",
    help="Store root (default /var/lib/moorage; env MOORAGE_ROOT).",
)
@click.option(
    "--runroot",
    type=click.Path(path_type=Path),
    envvar="MOORAGE_RUNROOT",
    help="Run state root (default /run/moorage; env MOORAGE_RUNROOT).",
)
@click.option(
    "--log-level",
    "-l",
    type=click.Choice(["debug", "info", "warn", "error", "fatal"]),
    default="warn",
    show_default=True,
    help="Logging level.",
)
@click.version_option(__version__, "-v", "--version", message="moor version %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, runroot: Path | None, log_level: str) -> None:
    """moor: build, ship and run containers for micro-services (Docker-compatible)."""
    if log_level != "warn":  # the default needs no logging setup (and no import of it)
        import logging

        level = {"fatal": "CRITICAL"}.get(log_level, log_level.upper())
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = AppContext(root, runroot)


def rehearse() -> None:
    """Parse a ``run`` command line without running anything (no callbacks, no store).

    The warm process's spare child does this while it waits for a command: parsing writes to
    much of click's and the command table's memory, shared with the warm process until then,
    so the copy-on-write faults of a fork (~600 of them) are taken before the command arrives
    rather than while it runs."""
    args = ["run", "--rm", "--name", "x", "-e", "A=b", "-v", "/a:/b", "-p", "1:2", "img", "true"]
    ctx = cli.make_context("moor", args, resilient_parsing=True)
    name, command, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
    if command is not None and name is not None:
        command.make_context(name, rest, parent=ctx, resilient_parsing=True)


def run(args: list[str]) -> None:
    try:
        cli.main(args=args, prog_name="moor", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except MoorageError as e:
        fail(str(e), e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
