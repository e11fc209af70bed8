"""The launcher `make setup` installs as `moor`: the interpreter starts without site."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Moor


def test_the_launcher_runs_commands_cold_and_warm(tmp_path: Path, moor: Moor, bb: str) -> None:
    launcher = tmp_path / "moor"
    subprocess.run([sys.executable, "-m", "moorage.cli.launcher", str(launcher)], check=True)
    assert launcher.read_text().splitlines()[0] == f"#!{sys.executable} -S"
    assert (launcher.stat().st_mode & 0o111) == 0o111
    assert subprocess.run([launcher, "--version"], capture_output=True).stdout.startswith(
        b"moor version "
    )
    env = {**moor.env, "MOORAGE_WARM": "0"}
    # cold: the command needs click, from site-packages, which it adds itself
    p = subprocess.run([launcher, "images", "--format", "{{.Repository}}"], env=env,
                       capture_output=True)  # fmt: skip
    assert (p.returncode, p.stdout, p.stderr) == (0, b"bb\n", b"")
    warm = {**moor.env, "MOORAGE_WARM": "1"}
    try:
        subprocess.run([launcher, "system", "warm", "--start"], env=warm, check=True,
                       capture_output=True)  # fmt: skip
        p = subprocess.run([launcher, "run", "--rm", "--network", "none", "bb:1", "echo", "hi"],
                           env=warm, capture_output=True)  # fmt: skip
        assert (p.returncode, p.stdout, p.stderr) == (0, b"hi\n", b"")
    finally:
        subprocess.run([launcher, "system", "warm", "--stop"], env=warm, capture_output=True)


def test_the_launcher_needs_its_path(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "moorage.cli.launcher"], capture_output=True)
    assert p.returncode == 2 and b"usage" in p.stderr
