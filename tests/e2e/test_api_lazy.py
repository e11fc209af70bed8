"""The API server loads only for ``moor system service``."""

from __future__ import annotations

from tests.conftest import Moor
from tests.e2e.test_cli import _loaded


def test_run_and_system_help_do_not_import_the_api(moor: Moor, bb: str) -> None:
    assert "aiohttp" not in _loaded("run", "--rm", "bb:1", "true", env=moor.env)
    assert "aiohttp" not in _loaded("system", "--help", env=moor.env)
    out = moor("system", "service", "--help").stdout
    assert "--host" in out and "--time" in out and "loopback only" in out
