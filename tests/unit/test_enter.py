"""The direct path's pure parts: what it refuses (so the runtime runs those probes), the
seccomp compiler, capability masks and cgroup files."""

from __future__ import annotations

import os
from typing import Any

import pytest

from moorage.engine.containers.security import DEFAULT_CAPABILITIES, default_seccomp
from moorage.runtime import enter, seccompbpf


def _config(**process: Any) -> dict[str, Any]:
    return {
        "process": {"args": ["true"], "user": {"uid": 0, "gid": 0}, **process},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")]},
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="the direct path is for root")
def test_unsupported_names_what_the_runtime_must_do() -> None:
    assert enter.unsupported(_config()) is None
    assert enter.unsupported(_config(terminal=True)) == "a terminal"
    assert enter.unsupported(_config(apparmorProfile="p")) == "process.apparmorProfile"
    assert enter.unsupported(_config(selinuxLabel="l")) == "process.selinuxLabel"
    user_ns = _config()
    user_ns["linux"]["namespaces"].append({"type": "user"})
    assert enter.unsupported(user_ns) == "a user namespace"
    notify = _config()
    notify["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}
    assert enter.unsupported(notify) == "a seccomp notify listener"
    flags = _config()
    flags["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["X"]}
    assert "seccomp flags" in str(enter.unsupported(flags))
    rl = _config(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])
    assert enter.unsupported(rl) == "rlimit RLIMIT_BOGUS"


def test_seccomp_compiles_to_bpf_once() -> None:
    profile = default_seccomp(list(DEFAULT_CAPABILITIES))
    program = seccompbpf.compile_bpf(profile)
    assert len(program) % 8 == 0 and 100 < len(program) // 8 <= 4096
    assert seccompbpf.compile_bpf(profile) is program  # cached by content
    small = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
            # the same argument twice: one rule per condition, as runc
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # the default: skipped
        ],
    }  # fmt: skip
    assert len(seccompbpf.compile_bpf(small)) < len(program)
    with pytest.raises(seccompbpf.SeccompUnsupported, match="SCMP_ACT_NOTIFY"):
        seccompbpf.compile_bpf({"defaultAction": "SCMP_ACT_NOTIFY"})
    with pytest.raises(seccompbpf.SeccompUnsupported, match="operator"):
        seccompbpf.compile_bpf({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]}]})  # fmt: skip


def test_capability_masks_and_cgroup_files() -> None:
    assert enter._cap_mask(["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]) == 1 | 1 << 5 | 1 << 21
    assert enter._cap_mask(["CAP_NOT_A_CAP"]) == 0
    files = enter.cgroup_procs_files(os.getpid())
    assert files and all(f.endswith("/cgroup.procs") and os.path.exists(f) for f in files)
    assert enter.exit_status(3 << 8) == 3
    assert enter.exit_status(9) == 137  # killed by SIGKILL


def test_reports_of_the_intermediate() -> None:
    from moorage.engine import health
    from moorage.runtime import enterproc

    assert enterproc.OUTPUT_LIMIT == health.MAX_OUTPUT  # the output kept, as Docker
    r = enter.parse_report(b"S12 256 1764112345.25\nout\nput")
    assert r == enter.Report("S", 12, 256, 1764112345.25, b"out\nput")
    assert enter.parse_report(b"T3 0 1.5\n") == enter.Report("T", 3, 0, 1.5, b"")
    assert enter.parse_report(b"G4\ngone") == enter.Report("G", 4, 0, 0.0, b"gone")
    assert enter.parse_report(b"E5\nno such plan").output == b"no such plan"
    cfg = health.HealthConfig(test=("CMD", "x"), timeout=2 * 10**9)
    entry = health.report_result(r, 1764112345.0, 0.0, cfg.timeout)
    assert entry["ExitCode"] == 1 and entry["Output"] == "out\nput"
    assert entry["End"] == "2025-11-25T23:12:25.250000000Z"  # when the check ended
    killed = health.report_result(enter.parse_report(b"T3 0 1.5\n"), 1.0, 9.0, cfg.timeout)
    assert killed["ExitCode"] == -1 and killed["Output"] == "Health check exceeded timeout (2s)"
