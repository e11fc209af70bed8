"""The default seccomp profile, capabilities and masked paths, enforced by the real runc.

A tiny busybox root filesystem, an OCI config made from moorage's security defaults, and
``runc run``: ordinary commands work; namespaces, mounts, /proc/sys writes and the masked
paths do not. A second container with CAP_SYS_ADMIN shows the capability-gated rules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from moorage.engine.containers.security import (
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    default_seccomp,
    native_arch,
)

RUNC = shutil.which("runc")
BUSYBOX = "/bin/busybox"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc)"),
    pytest.mark.skipif(RUNC is None, reason="runc is not installed"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed"),
]

APPLETS = ("sh", "echo", "cat", "unshare", "mount", "mkdir", "true", "grep", "wc", "ls", "stat")

# Each check prints NAME=<exit status>; the test compares them.
SCRIPT = """
echo ok
echo echo=$?
grep -q '^Seccomp:[[:space:]]*2' /proc/self/status; echo seccomp_mode=$?
unshare -U true 2>/dev/null; echo unshare_user=$?
unshare -m true 2>/dev/null; echo unshare_mount=$?
mkdir -p /mnt; mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?
cat /proc/kcore >/dev/null 2>&1 && [ -s /proc/kcore ]; echo kcore_readable=$?
echo x 2>/dev/null >/proc/sys/kernel/hostname; echo write_proc_sys=$?
echo h 2>/dev/null >/proc/sysrq-trigger; echo write_sysrq=$?
[ -z "$(ls -A /sys/firmware 2>/dev/null)" ]; echo firmware_empty=$?
[ ! -e /proc/keys ] || [ "$(stat -c %t:%T /proc/keys)" = "1:3" ]; echo keys_masked=$?
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Path]:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def _config(args: Sequence[str], caps: Sequence[str]) -> dict[str, Any]:
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "seccomp-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_seccomp(caps, native_arch()),
        },
    }


def _run(bundle: Path, caps: Sequence[str]) -> dict[str, int]:
    """Run SCRIPT in a container; the NAME=STATUS lines it printed."""
    assert RUNC is not None
    (bundle / "config.json").write_text(json.dumps(_config(["/bin/sh", "-c", SCRIPT], caps)))
    state = bundle / "runc-state"
    cid = f"moorage-seccomp-{uuid.uuid4().hex[:12]}"
    try:
        p = subprocess.run(
            [RUNC, "--root", str(state), "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
    finally:
        subprocess.run(
            [RUNC, "--root", str(state), "delete", "-f", cid],
            capture_output=True,
            timeout=30,
        )
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"runc run failed ({p.returncode}): {p.stderr.decode()}\n{out}"
    lines = out.splitlines()
    assert lines[0] == "ok", out
    results = {}
    for line in lines[1:]:
        name, _, status = line.partition("=")
        results[name] = int(status)
    return results


def test_default_profile_in_runc(bundle: Path) -> None:
    r = _run(bundle, DEFAULT_CAPABILITIES)
    assert r["echo"] == 0
    assert r["seccomp_mode"] == 0, "the process runs under a seccomp filter"
    assert r["unshare_user"] != 0
    assert r["unshare_mount"] != 0
    assert r["mount"] != 0
    assert r["kcore_readable"] != 0, "/proc/kcore is masked or absent"
    assert r["write_proc_sys"] != 0
    assert r["write_sysrq"] != 0
    assert r["firmware_empty"] == 0, "/sys/firmware is masked"
    assert r["keys_masked"] == 0, "/proc/keys is /dev/null"


def test_cap_sys_admin_opens_the_gated_syscalls(bundle: Path) -> None:
    r = _run(bundle, [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    assert r["echo"] == 0
    assert r["unshare_mount"] == 0
    assert r["mount"] == 0
    # still read-only and masked: those are mounts, not seccomp
    assert r["write_proc_sys"] != 0
    assert r["firmware_empty"] == 0
