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
        return load_project(
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
