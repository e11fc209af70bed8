"""moor events: lifecycle events recorded durably, Docker's line and JSON shapes, filters,
live following."""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from typing import Any

from tests.conftest import Moor


def _events(moor: Moor, *args: str) -> list[dict[str, Any]]:
    until = f"{time.time() + 0.2:.3f}"
    out = moor("events", "--since", "10m", "--until", until, "--format", "json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_container_lifecycle_events(moor: Moor, bb: str) -> None:
    cid = moor("run", "-d", "--name", "ev1", "-l", "tier=web", "bb:1", "sleep", "100").stdout
    cid = cid.strip()
    moor("pause", "ev1")
    moor("unpause", "ev1")
    moor("rename", "ev1", "ev2")
    moor("kill", "ev2")
    moor("wait", "ev2")
    moor("start", "ev2")
    moor("stop", "-t", "0", "ev2")
    moor("rm", "ev2")
    evs = [e for e in _events(moor) if e["Type"] == "container"]
    actions = [e["Action"] for e in evs]
    assert actions == [
        "create", "start", "pause", "unpause", "rename", "kill", "die", "start", "die",
        "stop", "destroy",
    ]  # fmt: skip
    create = evs[0]
    assert create["status"] == "create" and create["id"] == cid and create["from"] == "bb:1"
    assert create["Actor"] == {
        "ID": cid,
        "Attributes": {"image": "bb:1", "name": "ev1", "tier": "web"},
    }
    assert create["scope"] == "local"
    assert create["time"] == create["timeNano"] // 10**9
    assert evs[4]["Actor"]["Attributes"]["oldName"] == "/ev1"
    assert evs[5]["Actor"]["Attributes"]["signal"] == "9"
    assert evs[6]["Actor"]["Attributes"]["exitCode"] == "137"
    assert evs[8]["Actor"]["Attributes"]["exitCode"] == "137"


def test_exit_code_and_line_format(moor: Moor, bb: str) -> None:
    moor("run", "--name", "ex3", "bb:1", "sh", "-c", "exit 3", check=False)
    moor("run", "--rm", "--name", "fg", "bb:1", "sh", "-c", "exit 4", check=False)
    until = f"{time.time() + 0.2:.3f}"
    lines = moor("events", "--since", "10m", "--until", until, "--filter", "event=die").stdout
    got = lines.splitlines()
    assert len(got) == 2
    stamp, kind, action, ident, rest = got[0].split(" ", 4)
    assert (kind, action, len(ident)) == ("container", "die", 64)
    assert rest == "(exitCode=3, image=bb:1, name=ex3)"
    assert stamp[10] == "T" and len(stamp.split(".")[1]) >= 9
    assert got[1].endswith("(exitCode=4, image=bb:1, name=fg)")
    # the foreground --rm run is destroyed, too
    destroyed = _events(moor, "--filter", "event=destroy", "--filter", "container=fg")
    assert len(destroyed) == 1
    moor("run", "-d", "--name", "rmf", "bb:1", "sleep", "100")
    moor("rm", "-f", "rmf")
    evs = _events(moor, "--filter", "container=rmf")
    assert [e["Action"] for e in evs] == ["create", "start", "kill", "die", "destroy"]
    assert evs[2]["Actor"]["Attributes"]["signal"] == "9"
    assert evs[3]["Actor"]["Attributes"]["exitCode"] == "137"


def test_filters(moor: Moor, bb: str) -> None:
    moor("create", "--name", "a1", "-l", "app=x", "bb:1", "true")
    moor("create", "--name", "b1", "bb:1", "true")
    moor("tag", "bb:1", "bb:2")
    assert [e["Actor"]["Attributes"]["name"] for e in _events(moor, "-f", "label=app=x")] == ["a1"]
    assert [e["Actor"]["Attributes"]["name"] for e in _events(moor, "-f", "container=b1")] == ["b1"]
    both = _events(moor, "-f", "container=a1", "-f", "container=b1")
    assert len(both) == 2
    images = _events(moor, "--filter", "type=image")
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in images] == [
        ("tag", "bb:1"),
        ("import", bb),
        ("tag", "bb:2"),
    ]
    assert images[2]["id"] == bb
    assert "from" not in images[2]
    by_image = _events(moor, "-f", "image=bb:1", "-f", "type=container")
    assert len(by_image) == 2
    r = moor("events", "--filter", "bogus=1", "--until", "0", check=False)
    assert r.returncode != 0 and "invalid filter 'bogus'" in r.stderr


def test_image_events(moor: Moor, bb: str, tmp_path: Any) -> None:
    moor("tag", "bb:1", "bb:2")
    moor("save", "-o", str(tmp_path / "bb.tar"), "bb:2")
    moor("rmi", "bb:2")
    moor("rmi", "bb:1")
    moor("load", "-i", str(tmp_path / "bb.tar"))
    evs = _events(moor, "--filter", "type=image")
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in evs] == [
        ("tag", "bb:1"),
        ("import", bb),
        ("tag", "bb:2"),
        ("save", "bb:2"),
        ("untag", "bb:2"),
        ("untag", "bb:1"),
        ("delete", bb),
        ("load", "bb:2"),
    ]


def test_template_and_until_before_since(moor: Moor, bb: str) -> None:
    moor("create", "--name", "t1", "bb:1", "true")
    until = f"{time.time() + 0.2:.3f}"
    out = moor(
        "events", "--since", "10m", "--until", until, "--format", "{{.Type}}/{{.Action}}"
    ).stdout
    assert out.splitlines() == ["image/tag", "image/import", "container/create"]
    r = moor("events", "--since", "1m", "--until", "10m", check=False)
    assert r.returncode == 1 and "--since" in r.stderr


def test_follow_live(moor: Moor, bb: str) -> None:
    import subprocess

    proc = moor.popen(
        "events", "--format", "json", "--filter", "container=live",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # let it bind its wakeup socket
        moor("create", "--name", "live", "bb:1", "true")
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=5), "no event within 5 s"
        line = proc.stdout.readline()
        ev = json.loads(line)
        assert ev["Action"] == "create" and ev["Actor"]["Attributes"]["name"] == "live"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    # its socket is gone, so a writer has nobody left to wake
    assert not [p for p in (moor.runroot / "events").glob("*.sock")]


def test_oom_event(moor: Moor, bb: str) -> None:
    # the first run eats memory until killed; the next one (same filesystem) just sleeps
    hog = "test -e /ran && exec sleep 100; touch /ran; a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done"
    moor("run", "-d", "--name", "hog", "-m", "8m", "--memory-swap", "8m", "bb:1", "sh", "-c", hog)
    assert moor("wait", "hog").stdout.strip() == "137"
    assert moor("inspect", "-f", "{{.State.OOMKilled}}", "hog").stdout.strip() == "true"
    actions = [e["Action"] for e in _events(moor, "--filter", "container=hog")]
    assert actions == ["create", "start", "oom", "die"]
    moor("start", "hog")  # a new run is not OOM-killed (yet)
    assert moor("inspect", "-f", "{{.State.OOMKilled}}", "hog").stdout.strip() == "false"
    moor("rm", "-f", "hog")


def test_network_and_volume_events(moor: Moor, bb: str) -> None:
    net = f"ev{os.getpid() % 10000}"
    moor("network", "create", net)
    moor("volume", "create", "evvol")
    cid = moor("run", "-d", "--network", net, "-v", "evvol:/d", "bb:1", "sleep", "100").stdout
    moor("rm", "-f", cid.strip())
    moor("volume", "rm", "evvol")
    moor("network", "rm", net)
    time.sleep(1.1)  # --until 0s counts whole seconds
    lines = moor(
        "events", "--since", "1m", "--until", "0s", "--format", "{{.Type}} {{.Action}}",
        "--filter", "type=network", "--filter", "type=volume",
    ).stdout.splitlines()  # fmt: skip
    for want in ("network create", "volume create", "network connect", "network disconnect",
                 "volume destroy", "network destroy"):  # fmt: skip
        assert want in lines, (want, lines)


def test_restart_events(moor: Moor, bb: str) -> None:
    """As Docker: ``restart`` (the command) ends with a ``restart`` event; a restart policy's
    restarts record ``die`` then ``start`` each time, and no ``restart``."""
    moor("run", "-d", "--name", "rc", "bb:1", "sleep", "100")
    moor("restart", "-t", "0", "rc")
    actions = [e["Action"] for e in _events(moor, "--filter", "container=rc")]
    assert actions[:2] == ["create", "start"] and actions[-2:] == ["start", "restart"]
    assert "die" in actions[2:-2]
    moor("run", "-d", "--name", "rp", "--restart", "on-failure:2", "bb:1", "sh", "-c", "exit 3")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = moor("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "rp").stdout.split()
        if state == ["2", "exited"]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not restarted twice: {state}")
    time.sleep(1.5)  # the last restart is counted before it runs: let it run and end
    evs = _events(moor, "--filter", "container=rp")
    actions = [e["Action"] for e in evs]
    assert actions == ["create", "start", "die", "start", "die", "start", "die"]
    assert {e["Actor"]["Attributes"]["exitCode"] for e in evs if e["Action"] == "die"} == {"3"}
