"""Container logs against the real conmon 2.1.6 and runc: format, follow, size limit, reopen.

Each test builds a busybox bundle in ``tmp_path``, runs ``conmon`` (which creates the
container through ``runc --root <tmp>/runc-state``), starts it with ``runc start`` and waits
for the exit file.  Containers that must pause wait for a gate file (``/tmp/goN`` in their
rootfs) that the test creates.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.engine.containers.logs import (
    LogConfig,
    LogEntry,
    conmon_log_args,
    follow,
    hold_path,
    keep_rotated,
    log_files,
    read_entries,
    render,
    request_reopen,
    rotate,
)

CONMON = "/usr/bin/conmon"
RUNC = "/usr/sbin/runc"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc)"),
    pytest.mark.skipif(
        not (os.path.exists(CONMON) and os.path.exists(RUNC) and os.path.exists("/bin/busybox")),
        reason="needs conmon, runc and busybox-static",
    ),
]

# Gate helper for container scripts: ``w go1`` waits until the test creates /tmp/go1.
WAIT = "w() { while [ ! -e /tmp/$1 ]; do sleep 0.02; done; }; "

# "line-N\n" costs 7 + 45 bytes in conmon's byte count (43 bytes of timestamp and stream,
# "F ", the text), so with a 200-byte limit a file holds three such lines.
LINE_COST = 52
LIMIT = 200


class Container:
    """One conmon-run container in a private bundle and runc state directory."""

    def __init__(self, base: Path, script: str, conmon_args: list[str] | None = None) -> None:
        self.id = "mlt" + secrets.token_hex(6)
        self.base = base
        self.bundle = base / "bundle"
        self.rootfs = self.bundle / "rootfs"
        self.state = base / "runc-state"
        self.exit_dir = base / "exits"
        self.log = base / "logs" / "ctr.log"
        self.conmon_pidfile = base / "conmon.pid"
        self.pidfile = base / "ctr.pid"
        for d in (self.rootfs / "bin", self.rootfs / "proc", self.rootfs / "tmp", self.state,
                  self.exit_dir, self.log.parent, base / "sock"):  # fmt: skip
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy2("/bin/busybox", self.rootfs / "bin" / "busybox")
        for name in ("sh", "sleep", "echo", "printf"):
            (self.rootfs / "bin" / name).symlink_to("busybox")
        config = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "env": ["PATH=/bin"],
                "cwd": "/",
            },
            "root": {"path": "rootfs"},
            "hostname": "logtest",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")]
            },
        }
        (self.bundle / "config.json").write_text(json.dumps(config))
        self.conmon_args = conmon_args or []
        self.conmon_pid: int | None = None

    @property
    def ctl(self) -> Path:
        return self.bundle / "ctl"

    @property
    def exit_file(self) -> Path:
        return self.exit_dir / self.id

    def create(self) -> None:
        """Run conmon; it returns at once and creates the container in the background."""
        with open(self.base / "conmon.err", "wb") as err:
            subprocess.run(
                [CONMON, "--api-version", "1", "-c", self.id, "-u", self.id, "-r", RUNC,
                 "-b", str(self.bundle), "-p", str(self.pidfile), "-n", self.id,
                 "--exit-dir", str(self.exit_dir), "-l", f"k8s-file:{self.log}",
                 "--conmon-pidfile", str(self.conmon_pidfile),
                 "--socket-dir-path", str(self.base / "sock"),
                 "--runtime-arg", "--root", "--runtime-arg", str(self.state),
                 *self.conmon_args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                check=True, timeout=10,
            )  # fmt: skip
        self.conmon_pid = int(self.conmon_pidfile.read_text())
        self._wait(lambda: self.pidfile.exists(), "container created")

    def start(self) -> None:
        subprocess.run([RUNC, "--root", str(self.state), "start", self.id], check=True, timeout=10)

    def gate(self, name: str) -> None:
        (self.rootfs / "tmp" / name).touch()

    def wait_exit(self) -> int:
        self._wait(self.exit_file.exists, "container exited")
        return int(self.exit_file.read_text() or "-1")

    def wait_text(self, text: bytes) -> None:
        def seen() -> bool:
            return any(e.data == text for e in read_entries(log_files(self.log)))

        self._wait(seen, f"log line {text!r}")

    def _wait(self, cond: Callable[[], bool], what: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                err = (self.base / "conmon.err").read_text(errors="replace")
                raise AssertionError(f"timed out waiting for {what}; conmon stderr: {err}")
            time.sleep(0.01)

    def _conmon_alive(self) -> bool:
        if self.conmon_pid is None:
            return False
        try:
            stat = Path(f"/proc/{self.conmon_pid}/stat").read_text()
            comm = Path(f"/proc/{self.conmon_pid}/comm").read_text().strip()
        except FileNotFoundError:
            return False
        return comm == "conmon" and stat.rsplit(")", 1)[1].split()[0] != "Z"

    def cleanup(self) -> None:
        subprocess.run(
            [RUNC, "--root", str(self.state), "delete", "-f", self.id],
            capture_output=True,
            timeout=10,
        )
        deadline = time.monotonic() + 5
        while self._conmon_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._conmon_alive() and self.conmon_pid is not None:
            os.kill(self.conmon_pid, signal.SIGKILL)  # the conmon this test started


@pytest.fixture
def make_container(tmp_path: Path) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def make(script: str, conmon_args: list[str] | None = None) -> Container:
        c = Container(tmp_path / f"c{len(made)}", script, conmon_args)
        made.append(c)
        c.create()
        return c

    yield make
    for c in made:
        c.cleanup()
    for c in made:
        shutil.rmtree(c.base, ignore_errors=True)


def lines(entries: list[LogEntry]) -> list[bytes]:
    return [e.data for e in entries]


def test_conmon_output_streams_and_partial_line(make_container: Callable[..., Container]) -> None:
    c = make_container("echo out; echo err >&2; printf partial; sleep 0.2; echo done")
    c.start()
    assert c.wait_exit() == 0
    raw = c.log.read_bytes()
    # conmon wrote the unfinished line as a P entry, in its local zone with a numeric offset
    assert re.search(rb"^\S+[+-]\d\d:\d\d stdout P partial$", raw, re.M), raw
    entries = list(read_entries(log_files(c.log)))
    by_stream = {s: [e.data for e in entries if e.stream == s] for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": [b"out\n", b"partialdone\n"], "stderr": [b"err\n"]}
    assert lines(entries)[-1] == b"partialdone\n"
    merged = entries[-1]
    assert merged.time <= max(e.time for e in entries)
    assert abs(merged.time - time.time()) < 30
    assert re.fullmatch(
        rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z partialdone\n", render(merged, timestamps=True)
    )


def test_follow_while_the_container_writes(make_container: Callable[..., Container]) -> None:
    script = (
        "i=0; while [ $i -lt 5 ]; do i=$((i+1)); printf 'a%s-' $i; sleep 0.05; echo b$i; "
        "echo e$i >&2; done"
    )
    c = make_container(script)
    got: list[tuple[LogEntry, bool]] = []
    t = threading.Thread(
        target=lambda: got.extend(
            (e, c.exit_file.exists())
            for e in follow(lambda: log_files(c.log), stop=c.exit_file.exists, poll=0.02)
        )
    )
    t.start()
    c.start()
    assert c.wait_exit() == 0
    t.join(10)
    assert not t.is_alive()
    entries = [e for e, _ in got]
    assert [e.data for e in entries if e.stream == "stdout"] == [
        f"a{i}-b{i}\n".encode() for i in range(1, 6)
    ]
    assert [e.data for e in entries if e.stream == "stderr"] == [
        f"e{i}\n".encode() for i in range(1, 6)
    ]
    # the first lines arrived while the container was still running
    assert not got[0][1]


def test_conmon_size_limit_replaces_the_file(make_container: Callable[..., Container]) -> None:
    """Evidence: conmon 2.1.6 empties the log by renaming a new file over it; no .1 is kept."""
    c = make_container("for i in 1 2 3 4 5 6 7 8; do echo line-$i; done", conmon_log_args(LIMIT))
    with open(c.log, "rb") as first:  # keep the first file's inode alive to look at it
        c.start()
        assert c.wait_exit() == 0
        # lines 1-3 filled the first file, 4-6 the second; both were discarded
        assert lines(list(read_entries(log_files(c.log)))) == [b"line-7\n", b"line-8\n"]
        assert sorted(p.name for p in c.log.parent.iterdir()) == ["ctr.log"]
        assert c.log.stat().st_size == 2 * LINE_COST
        # the first file was unlinked (replaced by rename), not truncated in place
        st = os.fstat(first.fileno())
        assert st.st_nlink == 0
        assert st.st_size == 3 * LINE_COST
        assert first.read().count(b" stdout F line-") == 3


def test_conmon_limit_with_hold_link_gives_docker_rotation(
    make_container: Callable[..., Container],
) -> None:
    """The recommended wiring: conmon's --log-size-max + keep_rotated() between writes."""
    cfg = LogConfig(max_size=LIMIT, max_file=3)
    script = WAIT + "; ".join(
        f"w go{phase}; for i in {' '.join(map(str, nums))}; do echo line-$i; done"
        for phase, nums in ((1, range(1, 5)), (2, range(5, 8)), (3, range(8, 11)))
    )
    c = make_container(script, conmon_log_args(cfg.max_size))
    keep_rotated(c.log, cfg)  # right after conmon created the log
    assert os.path.samefile(hold_path(c.log), c.log)

    followed: list[LogEntry] = []
    t = threading.Thread(
        target=lambda: followed.extend(
            follow(lambda: log_files(c.log), stop=c.exit_file.exists, poll=0.02)
        )
    )
    t.start()
    c.start()

    def contents() -> list[list[bytes]]:
        return [lines(list(read_entries([p]))) for p in log_files(c.log)]

    def ln(*nums: int) -> list[bytes]:
        return [f"line-{i}\n".encode() for i in nums]

    c.gate("go1")
    c.wait_text(b"line-4\n")
    assert contents() == [ln(1, 2, 3), ln(4)]  # the held file, then conmon's new one
    assert keep_rotated(c.log, cfg) is True
    assert log_files(c.log) == [c.log.with_name("ctr.log.1"), c.log]

    c.gate("go2")
    c.wait_text(b"line-7\n")
    assert keep_rotated(c.log, cfg) is True
    assert contents() == [ln(1, 2, 3), ln(4, 5, 6), ln(7)]

    c.gate("go3")
    assert c.wait_exit() == 0
    c.wait_text(b"line-10\n")
    assert keep_rotated(c.log, cfg) is True
    # max-file=3: ctr.log.2, ctr.log.1, ctr.log — the oldest generation is gone
    assert log_files(c.log) == [c.log.with_name("ctr.log.2"), c.log.with_name("ctr.log.1"), c.log]
    assert contents() == [ln(4, 5, 6), ln(7, 8, 9), ln(10)]
    assert all(p.stat().st_size <= LIMIT for p in log_files(c.log))

    t.join(10)
    assert not t.is_alive()
    assert lines(followed) == ln(*range(1, 11))


def test_rotate_and_reopen_without_conmon_limit(make_container: Callable[..., Container]) -> None:
    """rotate() + request_reopen(): conmon switches to a new file, nothing is lost."""
    script = WAIT + "echo a1; echo a2; w go1; echo b1; echo b2; w go2; echo c1"
    c = make_container(script)
    c.start()
    c.wait_text(b"a2\n")
    old = c.log.stat().st_ino
    rotate(c.log, 3, lambda: request_reopen(c.ctl))
    c._wait(c.log.exists, "conmon reopened the log")
    assert c.log.with_name("ctr.log.1").stat().st_ino == old
    c.gate("go1")
    c.wait_text(b"b2\n")
    rotate(c.log, 3, lambda: request_reopen(c.ctl))
    c._wait(c.log.exists, "conmon reopened the log")
    c.gate("go2")
    assert c.wait_exit() == 0
    c.wait_text(b"c1\n")
    files = log_files(c.log)
    assert [p.name for p in files] == ["ctr.log.2", "ctr.log.1", "ctr.log"]
    assert [lines(list(read_entries([p]))) for p in files] == [
        [b"a1\n", b"a2\n"],
        [b"b1\n", b"b2\n"],
        [b"c1\n"],
    ]
    c.cleanup()
    request_reopen(c.ctl)  # conmon is gone: the FIFO has no reader, nothing happens


def test_reopen_does_not_reset_conmon_byte_count(
    make_container: Callable[..., Container],
) -> None:
    """Evidence: after a reopen, conmon's --log-size-max still counts the old file's bytes,
    so rotate() must not be combined with conmon's own limit."""
    script = WAIT + "echo line-1; echo line-2; w go1; echo line-3; echo line-4"
    c = make_container(script, conmon_log_args(LIMIT))
    c.start()
    c.wait_text(b"line-2\n")
    rotate(c.log, 3, lambda: request_reopen(c.ctl))
    c._wait(c.log.exists, "conmon reopened the log")
    c.gate("go1")
    assert c.wait_exit() == 0
    c.wait_text(b"line-4\n")
    # 2 lines before the reopen + line-3 = 156 bytes counted; line-4 made it 208 > 200, so
    # conmon replaced the new file, which held only line-3: that line is lost.
    assert lines(list(read_entries(log_files(c.log)))) == [b"line-1\n", b"line-2\n", b"line-4\n"]
