"""The pure part of ``moor compose watch``: which rule a changed path falls under, what a
burst of changes asks of each service."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.compose.loader import ProjectOptions, load_project
from moorage.compose.model import Project
from moorage.compose.watch import initial_paths, plan_batch, service_watches
from moorage.errors import InvalidArgument


def project(d: Path, text: str) -> Project:
    (d / "compose.yaml").write_text(text)
    return load_project(ProjectOptions(files=[], cwd=d, environ={}))


WATCHED = """
services:
  web:
    build: .
    develop:
      watch:
        - {path: ./src, action: sync, target: /app, ignore: ['*.log', 'cache/']}
        - {path: ./src/conf.ini, action: sync+restart, target: /etc/conf.ini}
        - {path: ./package.json, action: rebuild}
  db: {image: x}
"""


def test_rules_globs_and_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("src/private\n")
    p = project(tmp_path, WATCHED)
    watches = service_watches(p, ())
    assert [sw.service.name for sw in watches] == ["web"]
    src = tmp_path / "src"
    batch = plan_batch(
        watches,
        [
            str(src / "a.py"),
            str(src / "pkg" / "b.py"),
            str(src / "a.py"),  # twice in one burst: once
            str(src / "x.log"),  # the rule's glob, relative to its path
            str(src / "cache" / "c"),  # a directory pattern covers what is below it
            str(src / "private" / "k"),  # .dockerignore of the build context
            str(src / ".a.py.swp"),  # an editor's file
            str(tmp_path / "elsewhere.txt"),
        ],
    )["web"]
    assert batch.syncs == {str(src / "a.py"): "/app/a.py", str(src / "pkg/b.py"): "/app/pkg/b.py"}
    assert not batch.restart and not batch.rebuild
    # the first rule that takes a path wins, as in docker compose
    batch = plan_batch(watches, [str(src / "conf.ini")])["web"]
    assert batch.syncs == {str(src / "conf.ini"): "/app/conf.ini"} and not batch.restart
    assert plan_batch(watches, [str(tmp_path / "package.json")])["web"].rebuild
    assert plan_batch(watches, [str(tmp_path / "README")]) == {}


def test_sync_restart_of_a_file_rule_and_initial_sync(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a").write_text("x")
    p = project(
        tmp_path,
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n"
        "        - {path: app.ini, action: sync+restart, target: /etc/app.ini}\n"
        "        - {path: conf, action: sync, target: /conf, initial_sync: true}\n",
    )
    watches = service_watches(p, ("web",))
    batch = plan_batch(watches, [str(tmp_path / "app.ini")])["web"]
    assert batch.syncs == {str(tmp_path / "app.ini"): "/etc/app.ini"} and batch.restart
    assert initial_paths(watches) == [str(tmp_path / "conf" / "a")]


def test_nothing_to_watch_and_rebuild_without_build(tmp_path: Path) -> None:
    p = project(tmp_path, "services:\n  web: {image: x}\n")
    with pytest.raises(InvalidArgument, match="none of the selected services"):
        service_watches(p, ())
    p = project(
        tmp_path,
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n"
        "        - {path: ., action: rebuild}\n",
    )
    with pytest.raises(InvalidArgument, match="needs a build section"):
        service_watches(p, ())
