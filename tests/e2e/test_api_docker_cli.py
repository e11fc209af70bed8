"""The real docker CLI (20.10 and 28.x where installed) against ``moor system service``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import RegistryServer
from tests.e2e.apiservice import DOCKER_CLIS, Service

pytestmark = pytest.mark.skipif(not DOCKER_CLIS, reason="no docker CLI installed")


@pytest.fixture(params=DOCKER_CLIS)
def cli(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_version_and_info(api: Service, cli: str) -> None:
    server = json.loads(api.docker("version", "--format", "{{json .Server}}", cli=cli).stdout)
    assert server["Version"] == "0.1.0"
    assert server["ApiVersion"] == "1.50"
    assert server["MinAPIVersion"] == "1.24"
    info = api.docker("info", "--format", "{{.OSType}} {{.Images}} {{.Driver}}", cli=cli)
    assert info.stdout.decode().strip() == "linux 0 overlay"


def test_load_images_tag_rmi(api: Service, bb: str, tmp_path: Path, cli: str) -> None:
    archive = tmp_path / "bb.tar"
    api.moor("save", "-o", str(archive), "bb:1")
    api.moor("rmi", "bb:1")
    out = api.docker("load", "-i", str(archive), cli=cli).stdout.decode()
    assert out.strip() == "Loaded image: bb:1"
    api.docker("tag", "bb:1", "example.com/team/bb:2", cli=cli)
    rows = api.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", cli=cli)
    assert sorted(rows.stdout.decode().splitlines()) == [
        f"bb:1 {bb[7:19]}",
        f"example.com/team/bb:2 {bb[7:19]}",
    ]
    iid = api.docker("image", "inspect", "-f", "{{.Id}}", "example.com/team/bb:2", cli=cli)
    assert iid.stdout.decode().strip() == bb
    out = api.docker("rmi", "example.com/team/bb:2", cli=cli).stdout.decode()
    assert out.strip() == "Untagged: example.com/team/bb:2"
    assert api.moor("images", "-q").stdout.split() == [bb[7:19]]
    # save through the API loads back
    saved = tmp_path / "again.tar"
    api.docker("save", "-o", str(saved), "bb:1", cli=cli)
    api.moor("rmi", "bb:1")
    assert api.moor("load", "-i", str(saved)).stdout == "Loaded image: bb:1\n"


def test_run_rm_stdout_and_exit_codes(
    api: Service, bb: str, cli: str, registry: RegistryServer
) -> None:
    p = api.docker("run", "--rm", "bb:1", "echo", "hi", cli=cli)
    assert p.stdout == b"hi\n"
    p = api.docker(
        "run", "--rm", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3", cli=cli, check=False
    )
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out\n", b"err\n")
    p = api.docker("run", "--rm", "bb:1", "/nonexistent", cli=cli, check=False)
    assert p.returncode == 127
    # an image that is not here is pulled (from a loopback registry that lacks it)
    missing = f"{registry.host}/nosuch:1"
    p = api.docker("run", "--rm", missing, "true", cli=cli, check=False)
    assert p.returncode == 125
    assert f"Unable to find image '{missing}' locally" in p.stderr.decode()
    assert f"manifest for {missing} not found" in p.stderr.decode()
    p = api.docker("run", "-i", "--rm", "bb:1", "cat", cli=cli, input=b"through stdin\n")
    assert p.stdout == b"through stdin\n"
    assert api.moor("ps", "-aq").stdout == ""  # every --rm container is gone


def test_run_detached_logs_ps_inspect_stop_rm(api: Service, bb: str, cli: str) -> None:
    script = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"
    cid = api.docker("run", "-d", "--name", "ticker", "bb:1", "sh", "-c", script, cli=cli)
    cid_s = cid.stdout.decode().strip()
    assert len(cid_s) == 64
    ps = api.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.State}}", cli=cli)
    assert ps.stdout.decode().split() == [cid_s[:12], "ticker", "bb:1", "running"]
    time.sleep(0.5)
    logs = api.docker("logs", "ticker", cli=cli).stdout.decode().splitlines()
    assert logs[:3] == ["line 0", "line 1", "line 2"]
    tail = api.docker("logs", "--tail", "1", "ticker", cli=cli).stdout.decode().splitlines()
    assert len(tail) == 1 and tail[0].startswith("line ")
    # logs -f follows new lines
    follow = subprocess.Popen(
        [cli, "logs", "-f", "--tail", "0", "ticker"], env=api.docker_env, stdout=subprocess.PIPE
    )
    assert follow.stdout is not None
    first = follow.stdout.readline().decode()
    assert first.startswith("line ")
    follow.kill()
    follow.wait()
    follow.stdout.close()
    doc = json.loads(api.docker("inspect", "ticker", cli=cli).stdout)[0]
    assert doc["Id"] == cid_s and doc["State"]["Running"] is True and doc["Name"] == "/ticker"
    assert api.docker("stop", "-t", "1", "ticker", cli=cli).stdout.decode().strip() == "ticker"
    state = api.docker("inspect", "-f", "{{.State.Status}}", "ticker", cli=cli).stdout
    assert state.decode().strip() == "exited"
    ps = api.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}", cli=cli).stdout.decode()
    assert ps.startswith("ticker Exited (")
    api.docker("rm", "ticker", cli=cli)
    assert api.moor("ps", "-aq").stdout == ""
    p = api.docker("rm", "ticker", cli=cli, check=False)
    assert p.returncode == 1 and b"No such container: ticker" in p.stderr


def test_exec(api: Service, bb: str, cli: str) -> None:
    api.docker("run", "-d", "--name", "box", "bb:1", "sleep", "100", cli=cli)
    assert api.docker("exec", "box", "echo", "inside", cli=cli).stdout == b"inside\n"
    p = api.docker("exec", "box", "sh", "-c", "echo e >&2; exit 7", cli=cli, check=False)
    assert (p.returncode, p.stderr) == (7, b"e\n")
    p = api.docker("exec", "-i", "box", "cat", cli=cli, input=b"piped\n")
    assert p.stdout == b"piped\n"
    p = api.docker("exec", "box", "nosuchcommand", cli=cli, check=False)
    assert p.returncode == 127
    p = api.docker("exec", "-e", "X=1", "-w", "/tmp", "box", "sh", "-c", "echo $X $PWD", cli=cli)
    assert p.stdout == b"1 /tmp\n"
    p = api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "box", cli=cli)
    assert p.stdout == b"box 1\n"
    api.docker("rm", "-f", "box", cli=cli)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_exec_it_and_run_it_through_a_terminal(api: Service, bb: str, cli: str) -> None:
    api.docker("run", "-d", "--name", "term", "bb:1", "sleep", "100", cli=cli)
    label = f"moorage-api-{int(time.time() * 1000) % 10**9}"
    env = " ".join(
        f"{k}={v}" for k, v in api.docker_env.items() if k.startswith(("DOCKER", "HOME"))
    )

    def tmux(*args: str) -> None:
        subprocess.run(["tmux", "-L", label, *args], check=True)

    try:
        for i, (command, code) in enumerate(
            ((f"{cli} exec -it term sh", 3), (f"{cli} run -it --rm bb:1 sh", 4))
        ):
            session = f"s{i}"
            tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                 f"env {env} {command}; echo EXITED $?; sleep 30")  # fmt: skip
            _wait_screen(label, session, "/ #")
            tmux("send-keys", "-t", session, "stty size; echo $((6*7))", "Enter")
            screen = _wait_screen(label, session, "42")
            assert "30 100" in screen
            tmux("resize-window", "-t", session, "-x", "90", "-y", "20")
            time.sleep(0.3)
            tmux("send-keys", "-t", session, "stty size", "Enter")
            _wait_screen(label, session, "20 90")
            tmux("send-keys", "-t", session, f"exit {code}", "Enter")
            screen = _wait_screen(label, session, "EXITED")
            assert f"EXITED {code}" in screen
    finally:
        subprocess.run(["tmux", "-L", label, "kill-server"], check=False)
    api.docker("rm", "-f", "term", cli=cli)
    assert api.moor("ps", "-aq").stdout == ""


def _wait_screen(label: str, session: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = subprocess.run(
            ["tmux", "-L", label, "capture-pane", "-p", "-t", session],
            capture_output=True,
            text=True,
        ).stdout
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never showed; the screen:\n{screen}")


def test_cp_both_ways(api: Service, bb: str, tmp_path: Path, cli: str) -> None:
    api.docker("run", "-d", "--name", "files", "bb:1", "sleep", "100", cli=cli)
    src = tmp_path / "hello.txt"
    src.write_text("hello from the host\n")
    api.docker("cp", str(src), "files:/tmp/", cli=cli)
    p = api.docker("exec", "files", "cat", "/tmp/hello.txt", cli=cli)
    assert p.stdout == b"hello from the host\n"
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("deep\n")
    api.docker("cp", str(d), "files:/srv", cli=cli)
    assert api.docker("exec", "files", "cat", "/srv/sub/f", cli=cli).stdout == b"deep\n"
    api.docker("exec", "files", "sh", "-c", "mkdir /out && echo made > /out/x", cli=cli)
    back = tmp_path / "back"
    api.docker("cp", "files:/out", str(back), cli=cli)
    assert (back / "x").read_text() == "made\n"
    api.docker("cp", "files:/tmp/hello.txt", str(tmp_path / "copy.txt"), cli=cli)
    assert (tmp_path / "copy.txt").read_text() == "hello from the host\n"
    p = api.docker("cp", "files:/nonexistent", str(tmp_path / "x"), cli=cli, check=False)
    assert p.returncode == 1
    # the 20.10 CLI words the 404 itself; the newer one shows the daemon's message
    assert b"No such container:path: files:/nonexistent" in p.stderr or (
        b"Could not find the file /nonexistent" in p.stderr
    )
    api.docker("rm", "-f", "files", cli=cli)


def test_lifecycle_commands(api: Service, bb: str, cli: str) -> None:
    api.docker("create", "--name", "c1", "-l", "team=a", "bb:1", "sleep", "100", cli=cli)
    api.docker("start", "c1", cli=cli)
    api.docker("pause", "c1", cli=cli)
    status = api.docker("inspect", "-f", "{{.State.Status}}", "c1", cli=cli).stdout
    assert status.strip() == b"paused"
    api.docker("unpause", "c1", cli=cli)
    api.docker("rename", "c1", "c2", cli=cli)
    top = api.docker("top", "c2", cli=cli).stdout.decode()
    assert "sleep 100" in top
    api.docker("kill", "-s", "KILL", "c2", cli=cli)
    assert api.docker("wait", "c2", cli=cli).stdout.strip() == b"137"
    api.docker("restart", "-t", "1", "c2", cli=cli)
    assert api.docker("ps", "-q", "--filter", "label=team=a", cli=cli).stdout.strip()
    p = api.docker("rm", "c2", cli=cli, check=False)
    assert p.returncode == 1 and b"cannot remove a running container" in p.stderr
    api.docker("rm", "-f", "c2", cli=cli)
    # a restart policy goes on after the service recorded the exit
    api.docker("run", "-d", "--name", "rs", "--restart", "on-failure:2", "bb:1", "false", cli=cli)
    deadline = time.monotonic() + 30
    while True:
        out = api.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "rs", cli=cli)
        if out.stdout.strip() == b"2 exited" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.stdout.strip() == b"2 exited"
    time.sleep(1.5)  # the last restart was counted before it ran: let it run and end
    out = api.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "rs", cli=cli)
    assert out.stdout.strip() == b"2 exited"
    api.docker("rm", "rs", cli=cli)
    api.docker("create", "--name", "dead", "bb:1", "true", cli=cli)
    out = api.docker("container", "prune", "-f", cli=cli).stdout.decode()
    assert "Deleted Containers:" in out
    assert api.moor("ps", "-aq").stdout == ""
