"""Log drivers, the default bound on a container's log, and logs across restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import Moor


def _log_config(moor: Moor, name: str) -> dict[str, object]:
    doc = json.loads(moor("inspect", "-f", "{{json .HostConfig.LogConfig}}", name).stdout)
    assert isinstance(doc, dict)
    return doc


def test_default_cap_and_overrides(moor: Moor, bb: str) -> None:
    moor("create", "--name", "dflt", "bb:1", "true")
    assert _log_config(moor, "dflt") == {
        "Type": "k8s-file", "Config": {"max-size": "10m", "max-file": "3"}
    }  # fmt: skip
    moor("create", "--name", "unb", "--log-opt", "max-size=-1", "bb:1", "true")
    assert _log_config(moor, "unb")["Config"] == {}
    moor("create", "--name", "own", "--log-opt", "max-size=1m", "bb:1", "true")
    assert _log_config(moor, "own")["Config"] == {"max-size": "1m"}  # Docker: one file
    env = {**moor.env, "MOORAGE_LOG_MAX_SIZE": "2m", "MOORAGE_LOG_MAX_FILE": "5"}
    import subprocess

    from tests.conftest import MOOR

    subprocess.run([MOOR, "create", "--name", "envd", "bb:1", "true"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    assert _log_config(moor, "envd")["Config"] == {"max-size": "2m", "max-file": "5"}


def test_json_file_and_none(moor: Moor, bb: str) -> None:
    moor("run", "--name", "jf", "--log-driver", "json-file", "bb:1", "echo", "hello")
    assert moor("logs", "jf").stdout == "hello\n"
    assert _log_config(moor, "jf")["Type"] == "json-file"
    cid = moor("run", "--name", "nolog", "--log-driver", "none", "bb:1", "echo", "hello").stdout
    assert cid == "hello\n"  # attached: still relayed
    r = moor("logs", "nolog", check=False)
    assert r.returncode == 1
    assert 'configured logging driver "none" does not support reading' in r.stderr
    ud = moor.root / "containers" / moor("inspect", "-f", "{{.Id}}", "nolog").stdout.strip()
    assert not list(ud.glob("ctr.log*"))


def test_unknown_or_absent_driver(moor: Moor, bb: str) -> None:
    r = moor("run", "--log-driver", "syslog", "bb:1", "true", check=False)
    assert r.returncode == 125 and "unsupported log driver 'syslog'" in r.stderr
    if not Path("/run/systemd/journal/socket").exists():
        r = moor("run", "--log-driver", "journald", "bb:1", "true", check=False)
        assert r.returncode == 125 and "journald" in r.stderr
    assert moor("ps", "-aq").stdout == ""


def test_logs_show_every_run(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "again", "--restart", "on-failure:2", "bb:1", "sh", "-c",
         "echo run; exit 1")  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = moor("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "again").stdout.split()
        if st == ["2", "exited"]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not restarted twice: {st}")
    assert moor("logs", "again").stdout == "run\nrun\nrun\n"
    moor("start", "again")
    moor("wait", "again")
    assert moor("logs", "--tail", "2", "again").stdout == "run\nrun\n"
    assert moor("logs", "again").stdout.count("run") == 4


def test_flood_stays_within_rotation_limits(moor: Moor, bb: str) -> None:
    script = "yes 0123456789abcdef | head -n 1700000; echo last"
    opts = ["--log-opt", "max-size=200k", "--log-opt", "max-file=2"]
    cid = moor("run", "-d", *opts, "bb:1", "sh", "-c", script).stdout.strip()
    moor("wait", cid)
    ud = moor.root / "containers" / cid
    files = list(ud.glob("ctr.log*"))
    # at most max-file generations plus the held one, each within max-size (+ one entry)
    assert len(files) <= 3
    assert all(f.stat().st_size <= 200_000 + 9000 for f in files)
    assert moor("logs", "--tail", "1", cid).stdout == "last\n"
