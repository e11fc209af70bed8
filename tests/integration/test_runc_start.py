"""``RuncLike.start`` starts a created runc container through its exec fifo (no ``runc start``
process): the container runs, runc itself then reports it running, a dead init is an error,
and a container without a fifo falls back to ``runc start``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.runtime import RuntimeFailure
from moorage.runtime.runc import RuncLike

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc)"),
    pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is not installed"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed"),
]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuncLike]:
    rt = RuncLike("runc", RUNC, tmp_path / "state")
    yield rt
    for entry in rt.state_root.iterdir() if rt.state_root.exists() else []:
        subprocess.run([RUNC, *rt.global_args(), "delete", "--force", entry.name],
                       capture_output=True)  # fmt: skip


def _create(rt: RuncLike, tmp_path: Path, script: str) -> tuple[str, Path]:
    bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:6]}"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
    for applet in ("sh", "echo", "sleep"):
        os.symlink("busybox", bundle / "rootfs" / "bin" / applet)
    subprocess.run([RUNC, "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", script]
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"mtest-{uuid.uuid4().hex[:10]}"
    out = (tmp_path / f"{cid}.out").open("wb")
    subprocess.run(
        [RUNC, *rt.global_args(), "create", "--bundle", str(bundle), cid],
        check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
    )  # fmt: skip
    return cid, tmp_path / f"{cid}.out"


def _status(rt: RuncLike, cid: str) -> str:
    state = rt.state(cid)
    assert state is not None
    return str(state["status"])


def test_start_through_the_fifo_runs_the_container(runtime: RuncLike, tmp_path: Path) -> None:
    cid, out = _create(runtime, tmp_path, "echo started; sleep 30")
    assert _status(runtime, cid) == "created"
    assert (runtime.state_root / cid / "exec.fifo").exists()
    runtime.start(cid)
    assert not (runtime.state_root / cid / "exec.fifo").exists()
    assert _status(runtime, cid) == "running"
    deadline = time.monotonic() + 10
    while out.read_bytes() != b"started\n" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out.read_bytes() == b"started\n"
    with pytest.raises(RuntimeFailure):  # as runc: a running container cannot start again
        runtime.start(cid)


def test_start_of_a_container_whose_init_died_fails(runtime: RuncLike, tmp_path: Path) -> None:
    cid, _ = _create(runtime, tmp_path, "echo never")
    state = runtime.state(cid)
    assert state is not None
    os.kill(int(state["pid"]), signal.SIGKILL)
    with pytest.raises(RuntimeFailure, match=r"already dead|not running|stopped"):
        runtime.start(cid)


def test_without_a_fifo_it_is_runc_start(runtime: RuncLike, tmp_path: Path) -> None:
    cid, _ = _create(runtime, tmp_path, "sleep 30")
    assert runtime._start_through_fifo("no-such-container") is False
    (runtime.state_root / cid / "exec.fifo").rename(tmp_path / "moved.fifo")
    # runc itself now thinks it is running (that is how it tells): its start refuses
    with pytest.raises(RuntimeFailure) as err:
        runtime.start(cid)
    assert "already dead" not in str(err.value)  # runc's own refusal, not the fifo path's
