"""Capabilities, masked paths, seccomp profiles and --security-opt, with Docker's behaviour."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from moorage.engine.containers.security import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    SecurityOptions,
    capabilities_from_mask,
    current_bounding_set,
    default_seccomp,
    default_seccomp_profile,
    kernel_runs_x32,
    load_seccomp_file,
    load_seccomp_profile,
    native_arch,
    parse_security_opts,
    resolve_capabilities,
    resolve_seccomp,
)
from moorage.errors import InvalidArgument

# --- capabilities ---------------------------------------------------------------------------


def test_capability_lists() -> None:
    assert len(ALL_CAPABILITIES) == 41
    assert ALL_CAPABILITIES[0] == "CAP_CHOWN"
    assert ALL_CAPABILITIES[21] == "CAP_SYS_ADMIN"
    assert ALL_CAPABILITIES[24] == "CAP_SYS_RESOURCE"
    assert ALL_CAPABILITIES[-1] == "CAP_CHECKPOINT_RESTORE"
    assert len(set(ALL_CAPABILITIES)) == len(ALL_CAPABILITIES)
    assert len(DEFAULT_CAPABILITIES) == 14
    assert set(DEFAULT_CAPABILITIES) <= set(ALL_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    assert "CAP_NET_ADMIN" not in DEFAULT_CAPABILITIES


D = list(DEFAULT_CAPABILITIES)


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], D),
        (["NET_ADMIN"], [], [*D, "CAP_NET_ADMIN"]),
        (["cap_net_admin"], [], [*D, "CAP_NET_ADMIN"]),
        (["Sys_Admin"], [], [*D, "CAP_SYS_ADMIN"]),
        ([], ["chown"], [c for c in D if c != "CAP_CHOWN"]),
        ([], ["CAP_CHOWN", "MKNOD"], [c for c in D if c not in ("CAP_CHOWN", "CAP_MKNOD")]),
        # added and dropped: drop first, then add -> kept (at the end)
        (["CHOWN"], ["CHOWN"], [*[c for c in D if c != "CAP_CHOWN"], "CAP_CHOWN"]),
        # adding one already there does not duplicate it
        (["CHOWN"], [], D),
        (["ALL"], [], list(ALL_CAPABILITIES)),
        (["all"], ["SYS_ADMIN"], [c for c in ALL_CAPABILITIES if c != "CAP_SYS_ADMIN"]),
        ([], ["ALL"], []),
        (["NET_BIND_SERVICE", "KILL"], ["all"], ["CAP_NET_BIND_SERVICE", "CAP_KILL"]),
        # ALL in both: add ALL wins, minus nothing named
        (["ALL"], ["ALL"], list(ALL_CAPABILITIES)),
    ],
)
def test_resolve_capabilities(add: list[str], drop: list[str], expected: list[str]) -> None:
    assert resolve_capabilities(add, drop, False) == expected


def test_privileged_gets_everything_without_validation() -> None:
    assert resolve_capabilities([], [], True) == list(ALL_CAPABILITIES)
    assert resolve_capabilities(["BOGUS"], ["ALL"], True) == list(ALL_CAPABILITIES)


@pytest.mark.parametrize(
    ("add", "drop", "message"),
    [
        (["FOO"], [], 'unknown capability: "CAP_FOO"'),
        (["cap_foo"], [], 'unknown capability: "CAP_FOO"'),
        ([], ["nope"], 'unknown capability: "CAP_NOPE"'),
        # drops are validated first, as Docker
        (["BAD1"], ["BAD2"], 'unknown capability: "CAP_BAD2"'),
    ],
)
def test_resolve_capabilities_errors(add: list[str], drop: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        resolve_capabilities(add, drop, False)
    assert str(e.value) == message


def test_resolve_capabilities_available() -> None:
    avail = [c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    assert resolve_capabilities([], [], True, available=avail) == avail
    assert resolve_capabilities(["ALL"], [], False, available=avail) == avail
    assert resolve_capabilities([], [], False, available=avail) == D
    with pytest.raises(InvalidArgument, match="CAP_SYS_RESOURCE"):
        resolve_capabilities(["SYS_RESOURCE"], [], False, available=avail)


def test_capabilities_from_mask(tmp_path: Path) -> None:
    assert capabilities_from_mask(0) == []
    assert capabilities_from_mask(0b101) == ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]
    assert capabilities_from_mask(0x000001FFFEFFFFFF) == [
        c for c in ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"
    ]
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t0000000000200001\n")
    assert current_bounding_set(str(status)) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert set(current_bounding_set()) <= set(ALL_CAPABILITIES)


def test_masked_and_readonly_paths() -> None:
    assert "/proc/kcore" in MASKED_PATHS
    assert "/sys/firmware" in MASKED_PATHS
    assert len(MASKED_PATHS) == 11
    assert READONLY_PATHS == (
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    )
    assert all(p.startswith("/") for p in MASKED_PATHS + READONLY_PATHS)


# --- the default seccomp profile ------------------------------------------------------------

BLOCKED_TEXT = """
keyctl add_key request_key mount umount2 unshare kexec_load kexec_file_load bpf
perf_event_open open_by_handle_at init_module finit_module delete_module reboot swapon swapoff
acct settimeofday clock_settime pivot_root userfaultfd iopl ioperm lookup_dcookie
quotactl nfsservctl vm86 vm86old create_module get_kernel_syms query_module uselib ustat sysfs
_sysctl name_to_handle_at fanotify_init move_mount fsopen fsmount fsconfig fspick open_tree
setns sethostname setdomainname clone3 kcmp process_madvise pidfd_getfd syslog vhangup mbind
set_mempolicy io_uring_setup io_uring_enter io_uring_register
"""
BLOCKED = BLOCKED_TEXT.split()


def _unconditional_allowed(seccomp: dict[str, Any]) -> set[str]:
    return {
        n
        for r in seccomp["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }


def _all_allowed(seccomp: dict[str, Any]) -> set[str]:
    return {n for r in seccomp["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}


def test_default_seccomp_structure() -> None:
    sc = default_seccomp(DEFAULT_CAPABILITIES)
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO"
    assert sc["defaultErrnoRet"] == errno.EPERM == 1
    x32 = ["SCMP_ARCH_X32"] if kernel_runs_x32() else []
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", *x32]
    assert json.loads(json.dumps(sc)) == sc  # plain JSON data
    for rule in sc["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}
        assert rule["names"] and all(isinstance(n, str) and n for n in rule["names"])
        assert rule["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO")
        for a in rule.get("args", []):
            assert set(a) == {"index", "value", "valueTwo", "op"}
            assert 0 <= a["index"] <= 5
    main = sc["syscalls"][0]["names"]
    assert len(main) > 300
    assert len(main) == len(set(main)), "duplicate names in the allow list"
    for common in ("read", "write", "openat", "execve", "exit_group", "futex", "epoll_wait"):
        assert common in main


def test_default_seccomp_blocks_dangerous_syscalls() -> None:
    allowed = _unconditional_allowed(default_seccomp(DEFAULT_CAPABILITIES))
    assert sorted(set(BLOCKED) & allowed) == []
    # chroot is allowed by Docker because CAP_SYS_CHROOT is a default capability
    assert "chroot" in allowed
    # ptrace is safe with seccomp on kernels >= 4.8
    assert {"ptrace", "process_vm_readv", "process_vm_writev"} <= allowed
    # without any capability, chroot goes too
    assert "chroot" not in _all_allowed(default_seccomp([]))


def test_default_seccomp_conditional_rules() -> None:
    rules = default_seccomp(DEFAULT_CAPABILITIES)["syscalls"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in rules:
        for n in r["names"]:
            by_name.setdefault(n, []).append(r)
    (clone,) = by_name["clone"]
    assert clone["args"] == [
        {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    (clone3,) = by_name["clone3"]
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == errno.ENOSYS
    (socket,) = by_name["socket"]
    assert socket["args"] == [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]
    personas = sorted(r["args"][0]["value"] for r in by_name["personality"])
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" for r in by_name["personality"])
    assert "arch_prctl" in by_name and "modify_ldt" in by_name
    assert "set_tls" not in by_name  # an arm syscall


@pytest.mark.parametrize(
    ("cap", "syscalls"),
    [
        (
            "CAP_SYS_ADMIN",
            "mount umount2 unshare setns sethostname setdomainname bpf perf_event_open "
            "fanotify_init move_mount fsopen fsmount fsconfig fspick open_tree "
            "name_to_handle_at quotactl lookup_dcookie clone clone3 syslog",
        ),
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_MODULE", "init_module finit_module delete_module"),
        ("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise"),
        ("CAP_SYS_TIME", "settimeofday clock_settime stime"),
        ("CAP_SYS_NICE", "mbind set_mempolicy get_mempolicy"),
        ("CAP_SYSLOG", "syslog"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
        ("CAP_SYS_RAWIO", "iopl ioperm"),
        ("CAP_SYS_PACCT", "acct"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ("CAP_SYS_CHROOT", "chroot"),
        ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ],
)
def test_capability_gated_syscalls(cap: str, syscalls: str) -> None:
    without = [c for c in DEFAULT_CAPABILITIES if c != cap]
    base = _unconditional_allowed(default_seccomp(without))
    granted = _unconditional_allowed(default_seccomp([*without, cap]))
    for name in syscalls.split():
        assert name not in base, name
        assert name in granted, name


def test_sys_admin_lifts_clone_restrictions() -> None:
    sc = default_seccomp([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    clone_rules = [r for r in sc["syscalls"] if "clone" in r["names"]]
    assert all("args" not in r for r in clone_rules)
    assert not any(r["action"] == "SCMP_ACT_ERRNO" for r in sc["syscalls"])


def test_default_seccomp_arm64() -> None:
    sc = default_seccomp(DEFAULT_CAPABILITIES, "arm64")
    assert sc["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    names = _all_allowed(sc)
    assert "set_tls" in names and "arm_fadvise64_64" in names
    assert "arch_prctl" not in names and "modify_ldt" not in names
    assert default_seccomp(DEFAULT_CAPABILITIES, "aarch64") == sc
    assert default_seccomp(DEFAULT_CAPABILITIES, "x86_64") == default_seccomp(DEFAULT_CAPABILITIES)


def test_native_arch() -> None:
    assert native_arch("x86_64") == "amd64"
    assert native_arch("aarch64") == "arm64"
    assert native_arch("amd64") == "amd64"
    assert native_arch() in ("amd64", "arm64", "x86", "arm", "s390x", "ppc64le", "riscv64")


def test_default_profile_round_trips_through_the_loader(tmp_path: Path) -> None:
    profile = default_seccomp_profile()
    assert profile is not default_seccomp_profile()  # a copy each time
    f = tmp_path / "default.json"
    f.write_text(json.dumps(profile, indent=2))
    for caps in (DEFAULT_CAPABILITIES, [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], ()):
        assert load_seccomp_file(f, caps, "amd64") == default_seccomp(caps, "amd64")


# --- Docker-format profile files ------------------------------------------------------------

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basic"},
        {"name": "exit", "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["mount"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["new_thing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["old_thing"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}


def _load(profile: Any, caps: list[str], arch: str = "amd64", kernel: str = "6.1.0") -> Any:
    return load_seccomp_profile(json.dumps(profile), caps, arch, kernel=kernel)


def test_load_profile_filters_and_converts() -> None:
    sc = _load(PROFILE, list(DEFAULT_CAPABILITIES))
    assert sc == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["exit"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
            {"names": ["new_thing"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }


def test_load_profile_caps_arch_kernel() -> None:
    admin = _load(PROFILE, [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    names = [n for r in admin["syscalls"] for n in r["names"]]
    assert "mount" in names and "clone" not in names
    arm = _load(PROFILE, list(DEFAULT_CAPABILITIES), "arm64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in [n for r in arm["syscalls"] for n in r["names"]]
    old = _load(PROFILE, list(DEFAULT_CAPABILITIES), kernel="4.4.0-generic")
    old_names = [n for r in old["syscalls"] for n in r["names"]]
    assert "new_thing" not in old_names and "old_thing" in old_names
    # an arch missing from archMap: no architectures (libseccomp uses the native one)
    assert "architectures" not in _load(PROFILE, list(DEFAULT_CAPABILITIES), "s390x")


def test_load_profile_architectures_and_extras() -> None:
    sc = _load(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "listenerPath": "/run/x.sock",
            "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_KILL"}],
        },
        [],
    )
    assert sc == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "listenerPath": "/run/x.sock",
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_KILL"}],
    }


def test_empty_profile_means_unconfined() -> None:
    assert _load({}, []) is None
    assert _load({"syscalls": []}, []) is None


@pytest.mark.parametrize(
    ("profile", "problem"),
    [
        ([], "expected a JSON object, got array"),
        ({"defaultAction": 3}, "defaultAction: expected string, got number"),
        ({"defaultAction": "SCMP_ACT_NOPE"}, 'unknown action "SCMP_ACT_NOPE"'),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}, "defaultAction"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}, "syscalls: expected array"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": ["read"]}, "syscalls[0]: expected"),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]},
            "syscalls[0].action: missing",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]},
            "syscalls[0].no syscall names",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}],
            },
            "'name' and 'names' were both specified",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": [1], "action": "SCMP_ACT_ALLOW"}],
            },
            "syscalls[0].names[0]: expected string, got number",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 9}]}],
            },
            "args[0].index: 9 is out of range",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"op": "SCMP_CMP_X"}]}
                ],
            },
            'unknown operator "SCMP_CMP_X"',
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ALLOW",
                        "includes": {"minKernel": "four"},
                    }
                ],
            },
            'invalid kernel version "four"',
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
            },
            "'architectures' and 'archMap' were both specified",
        ),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "out of range"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": True}, "expected number"),
    ],
)
def test_load_profile_bad_shape(profile: Any, problem: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        _load(profile, list(DEFAULT_CAPABILITIES))
    assert str(e.value).startswith("decoding seccomp profile failed: ")
    assert problem in str(e.value)


def test_load_seccomp_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(InvalidArgument) as e:
        load_seccomp_file(missing)
    assert str(e.value) == f"opening seccomp profile ({missing}) failed: no such file or directory"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgument) as e:
        load_seccomp_file(bad)
    assert str(e.value).startswith(f"decoding seccomp profile failed: {bad}: ")
    shape = tmp_path / "shape.json"
    shape.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": 5}')
    with pytest.raises(InvalidArgument, match=r"shape\.json: syscalls: expected array"):
        load_seccomp_file(shape)


# --- --security-opt -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ([], SecurityOptions()),
        (["no-new-privileges"], SecurityOptions(no_new_privileges=True)),
        (["no-new-privileges=true"], SecurityOptions(no_new_privileges=True)),
        (["no-new-privileges:true"], SecurityOptions(no_new_privileges=True)),
        (["no-new-privileges", "no-new-privileges=false"], SecurityOptions()),
        (["no-new-privileges=1"], SecurityOptions(no_new_privileges=True)),
        (["seccomp=unconfined"], SecurityOptions(seccomp="unconfined")),
        (["seccomp:unconfined"], SecurityOptions(seccomp="unconfined")),
        (["seccomp=default"], SecurityOptions()),
        (["seccomp=builtin"], SecurityOptions()),
        (["seccomp=/etc/p.json"], SecurityOptions(seccomp=Path("/etc/p.json"))),
        (["seccomp:prof.json"], SecurityOptions(seccomp=Path("prof.json"))),
        (["label=disable"], SecurityOptions(label_disable=True)),
        (["label:disable"], SecurityOptions(label_disable=True)),
        (["label=type:svirt_t"], SecurityOptions()),
        (["apparmor=unconfined"], SecurityOptions(apparmor="unconfined")),
        (["apparmor=docker-default"], SecurityOptions(apparmor="docker-default")),
        (["systempaths=unconfined"], SecurityOptions(systempaths_unconfined=True)),
        (
            ["no-new-privileges", "seccomp=unconfined", "label=disable", "apparmor=x"],
            SecurityOptions(True, "unconfined", True, "x"),
        ),
    ],
)
def test_parse_security_opts(opts: list[str], expected: SecurityOptions) -> None:
    assert parse_security_opts(opts) == expected


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        ("foo", 'invalid --security-opt: "foo"'),
        ("foo=bar", 'invalid --security-opt: "foo=bar"'),
        ("seccomp=", 'invalid --security-opt: "seccomp="'),
        ("apparmor", 'invalid --security-opt: "apparmor"'),
        ("no-new-privileges=maybe", 'invalid --security-opt: "no-new-privileges=maybe"'),
        ("systempaths=confined", 'invalid --security-opt: "systempaths=confined"'),
        ("label=bogus", 'invalid --security-opt: bad label option "bogus"'),
    ],
)
def test_parse_security_opts_errors(opt: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_security_opts([opt])
    assert str(e.value).startswith(message)


def test_resolve_seccomp(tmp_path: Path) -> None:
    caps = list(DEFAULT_CAPABILITIES)
    assert resolve_seccomp(SecurityOptions(), caps, False, "amd64") == default_seccomp(caps)
    assert resolve_seccomp(SecurityOptions(), caps, True, "amd64") is None
    assert resolve_seccomp(SecurityOptions(seccomp="unconfined"), caps, False) is None
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"defaultAction": "SCMP_ACT_LOG"}))
    got = resolve_seccomp(SecurityOptions(seccomp=f), caps, False, "amd64")
    assert got == {"defaultAction": "SCMP_ACT_LOG", "syscalls": []}


def test_subarchitectures_the_kernel_cannot_run_are_left_out() -> None:
    from moorage.engine.containers.security import _DEFAULT_PROFILE, _setup_seccomp

    caps = frozenset(DEFAULT_CAPABILITIES)
    full = _setup_seccomp(_DEFAULT_PROFILE, caps, "amd64", (6, 1))
    lean = _setup_seccomp(_DEFAULT_PROFILE, caps, "amd64", (6, 1), {"SCMP_ARCH_X32"})
    assert full is not None and lean is not None
    assert full["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert lean["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert lean["syscalls"] == full["syscalls"]


def test_x32_probe_agrees_with_the_kernel() -> None:
    import ctypes
    import os
    import platform

    from moorage.engine.containers.security import _unfiltered

    if platform.machine() != "x86_64" or not _unfiltered():
        pytest.skip("x32 is an x86_64 ABI; under a seccomp filter the probe is not made")
    # an x32 getpid either answers our pid or fails with ENOSYS: the probe must say which
    libc = ctypes.CDLL(None, use_errno=True)
    answered = libc.syscall(0x40000000 | 39) == os.getpid()
    assert kernel_runs_x32() is answered
