"""An OCI ``linux.seccomp`` object compiled to a classic-BPF program with libseccomp (ctypes),
for processes moorage starts in a container itself (see :mod:`moorage.runtime.enter`).

Compiled once per distinct profile and loaded per process with ``prctl(PR_SET_SECCOMP)``:
the same library runc uses, with runc's reading of the object (a rule whose action is the
default is skipped; syscall names libseccomp does not know are skipped; conditions on one
argument index more than once become one rule each, else one rule with all of them). What
runc adds on top (its ``-ENOSYS`` stub for syscalls newer than the profile) is not
reproduced: such syscalls get the profile's default action.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
from collections import Counter
from typing import Any

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_SCMP_FLTATR_CTL_NNP = 3  # do not set no_new_privs at load: we export, the child decides


class SeccompUnsupported(Exception):
    """The object asks for something this compiler does not do (the caller falls back)."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_lib: Any = None


def _libseccomp() -> Any:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            raise SeccompUnsupported(f"libseccomp is not installed: {e}") from e
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
        ]  # fmt: skip
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib = lib
    return _lib


def _action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return SCMP_ACT_ERRNO | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return SCMP_ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return SCMP_ACT_TRAP
    if name == "SCMP_ACT_TRACE":
        return SCMP_ACT_TRACE | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    raise SeccompUnsupported(f"seccomp action {name} is not supported here")


def check(seccomp: dict[str, Any]) -> None:
    """Raise :class:`SeccompUnsupported` for what :func:`compile_bpf` cannot reproduce."""
    if seccomp.get("flags"):
        raise SeccompUnsupported(f"seccomp flags {seccomp['flags']}")
    if seccomp.get("listenerPath"):
        raise SeccompUnsupported("a seccomp notify listener")
    actions = [seccomp.get("defaultAction", "")]
    actions += [r.get("action", "") for r in seccomp.get("syscalls") or []]
    for a in actions:
        _action(a, None)


_cache: dict[str, bytes] = {}


def compile_bpf(seccomp: dict[str, Any]) -> bytes:
    """The BPF program (an array of ``struct sock_filter``) for the OCI seccomp object;
    cached by the object's content."""
    key = json.dumps(seccomp, sort_keys=True)
    if key in _cache:
        return _cache[key]
    check(seccomp)
    lib = _libseccomp()
    default = _action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SeccompUnsupported("seccomp_init failed")
    try:
        if lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0) != 0:
            raise SeccompUnsupported("seccomp_attr_set(CTL_NNP) failed")
        for arch in seccomp.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                raise SeccompUnsupported(f"unknown seccomp architecture {arch}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc not in (0, -errno.EEXIST):
                raise SeccompUnsupported(f"seccomp_arch_add({arch}): {os.strerror(-rc)}")
        for rule in seccomp.get("syscalls") or []:
            action = _action(rule["action"], rule.get("errnoRet"))
            if action == default:
                continue
            for name in rule.get("names") or []:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:  # __NR_SCMP_ERROR: unknown to this libseccomp, as runc skips it
                    continue
                _add_rule(lib, ctx, action, nr, rule.get("args") or [], name)
        r, w = os.pipe()
        try:
            # a BPF program is at most 4096 instructions of 8 bytes: fits a pipe's buffer
            os.set_blocking(w, False)
            if lib.seccomp_export_bpf(ctx, w) != 0:
                raise SeccompUnsupported("seccomp_export_bpf failed")
            os.close(w)
            w = -1
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    finally:
        lib.seccomp_release(ctx)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise SeccompUnsupported("libseccomp exported no program")
    _cache[key] = program
    return program


def _add_rule(lib: Any, ctx: Any, action: int, nr: int, args: list[dict[str, Any]],
              name: str) -> None:  # fmt: skip
    conds = []
    for a in args:
        op = _OPS.get(a.get("op", ""))
        if op is None:
            raise SeccompUnsupported(f"seccomp operator {a.get('op')} ({name})")
        conds.append(_ArgCmp(int(a["index"]), op, int(a.get("value", 0)),
                             int(a.get("valueTwo", 0))))  # fmt: skip
    counts = Counter(c.arg for c in conds)
    # the same argument compared twice cannot be one rule (libseccomp refuses): one each
    groups = [[c] for c in conds] if any(n > 1 for n in counts.values()) else [conds]
    for group in groups:
        array = (_ArgCmp * max(len(group), 1))(*group)
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), array)
        if rc != 0:
            raise SeccompUnsupported(f"seccomp rule for {name}: {os.strerror(-rc)}")
