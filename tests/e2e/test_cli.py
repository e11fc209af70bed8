"""The CLI's shape: lazy imports, help text, exit codes."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Moor

PROBE = """
import os
import posix
import sys
# main() ends with posix._exit (os._exit): let the probe report first
os._exit = posix._exit = lambda code: None
sys.argv = ["moor"] + sys.argv[1:]
from moorage.cli.main import main
try:
    main()
except SystemExit:
    pass
loaded = [m for m in ("click", "rich", "aiohttp", "yaml", "sqlite3") if m in sys.modules]
print("LOADED=" + ",".join(loaded), file=sys.stderr)
"""


def _loaded(*args: str, env: dict[str, str] | None = None) -> set[str]:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=False
    )
    line = next(x for x in p.stderr.splitlines() if x.startswith("LOADED="))
    return set(filter(None, line[7:].split(",")))


def test_version_imports_nothing_heavy() -> None:
    assert _loaded("--version") == set()


def test_images_does_not_import_rich_or_servers(moor: Moor) -> None:
    loaded = _loaded("images", env=moor.env)
    assert "click" in loaded and "sqlite3" in loaded
    assert "rich" not in loaded and "aiohttp" not in loaded and "yaml" not in loaded


def test_help_lists_commands(moor: Moor) -> None:
    out = moor("--help").stdout
    for cmd in ("images", "import", "load", "save", "tag", "rmi", "history", "inspect", "system"):
        assert cmd in out
    assert "prune" in moor("image", "--help").stdout
    assert "check" in moor("system", "--help").stdout


def test_unknown_command_is_a_usage_error(moor: Moor) -> None:
    r = moor("frobnicate", check=False)
    assert r.returncode == 2 and "frobnicate" in r.stderr
