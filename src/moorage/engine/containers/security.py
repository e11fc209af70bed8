"""Security defaults of a container: capabilities, masked paths, seccomp and ``--security-opt``.

Everything here follows Docker's behaviour (``docker run --cap-add/--cap-drop/--privileged``,
``--security-opt``, the default seccomp profile and Docker-format profile files), written as
moorage's own code and data.

The default seccomp profile is kept in Docker's *profile* format (``archMap``, rules with
``includes``/``excludes``) so that one converter turns both it and user-supplied profile files
into the OCI runtime-spec ``linux.seccomp`` object for the container's capabilities and
architecture. Syscall names that the installed libseccomp does not know are ignored by runc
(it logs them at debug level and skips the rule), so the lists may name syscalls of newer
kernels or of other architectures.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import platform
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from moorage.errors import InvalidArgument
from moorage.oci.capabilities import CAPABILITIES

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "SecurityOptions",
    "capabilities_from_mask",
    "current_bounding_set",
    "default_seccomp",
    "default_seccomp_profile",
    "kernel_runs_x32",
    "load_seccomp_file",
    "load_seccomp_profile",
    "native_arch",
    "parse_security_opts",
    "resolve_capabilities",
    "resolve_seccomp",
]

# --- capabilities ---------------------------------------------------------------------------

#: Every Linux capability in the order of their numbers (pure data, in ``moorage.oci``).
ALL_CAPABILITIES = CAPABILITIES

#: The capabilities a container gets unless told otherwise (Docker's default set and order).
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

_ALL = "ALL"


def _normalize_caps(caps: Sequence[str]) -> list[str]:
    """Upper-case, add the ``CAP_`` prefix and check each name; ``ALL`` is kept as is."""
    out: list[str] = []
    for raw in caps:
        c = raw.upper()
        if c == _ALL:
            out.append(c)
            continue
        if not c.startswith("CAP_"):
            c = "CAP_" + c
        if c not in ALL_CAPABILITIES:
            raise InvalidArgument(f"unknown capability: {json.dumps(c)}")
        out.append(c)
    return out


def resolve_capabilities(
    add: Sequence[str],
    drop: Sequence[str],
    privileged: bool,
    *,
    available: Collection[str] | None = None,
) -> list[str]:
    """The container's capability set for ``--cap-add``/``--cap-drop``/``--privileged``.

    Docker's rules: privileged containers get every capability (``add``/``drop`` are not even
    validated); names are case-insensitive with or without ``CAP_``; ``ALL`` in ``add`` gives
    every capability except those dropped; ``ALL`` in ``drop`` gives exactly the added ones;
    otherwise the defaults minus ``drop``, then ``add`` (so a capability both added and
    dropped is kept). Drops are validated before adds, as Docker does. Duplicates are removed.

    ``available`` (e.g. :func:`current_bounding_set`) limits what "every capability" means, for
    a host where moorage itself lacks some (runc cannot grant a capability its caller does
    not have); naming an unavailable capability explicitly in ``add`` is then an error.
    """
    every = [c for c in ALL_CAPABILITIES if available is None or c in available]
    if privileged:
        return every
    if not add and not drop:
        return list(DEFAULT_CAPABILITIES)
    cap_drop = _normalize_caps(drop)
    cap_add = _normalize_caps(add)
    if available is not None:
        for c in cap_add:
            if c != _ALL and c not in available:
                raise InvalidArgument(
                    f"capability {c} cannot be added: moorage itself does not have it "
                    "(it is not in its bounding set)"
                )
    if _ALL in cap_add:
        caps = [c for c in every if c not in cap_drop]
    elif _ALL in cap_drop:
        caps = cap_add
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in cap_drop] + cap_add
    return list(dict.fromkeys(caps))


def capabilities_from_mask(mask: int) -> list[str]:
    """The capability names of a bit mask such as ``CapBnd`` of ``/proc/<pid>/status``."""
    return [c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1]


def current_bounding_set(status_path: str = "/proc/self/status") -> list[str]:
    """The capabilities of this process's bounding set (reads ``/proc/self/status``)."""
    with open(status_path, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return capabilities_from_mask(int(line.split()[1], 16))
    return list(ALL_CAPABILITIES)


# --- masked and read-only paths -------------------------------------------------------------

#: Paths hidden from the container (``/dev/null`` over files, an empty read-only tmpfs over
#: directories), as Docker does unless ``--privileged`` or ``systempaths=unconfined``.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

#: Paths made read-only in the container, as Docker does.
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# --- seccomp: the default profile as data ---------------------------------------------------

ACT_ALLOW = "SCMP_ACT_ALLOW"
ACT_ERRNO = "SCMP_ACT_ERRNO"

_ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
_OPERATORS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)

# clone(2) flags that create namespaces: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
# NEWPID | NEWNET.
_CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)
_AF_VSOCK = 40
# personality(2) values a container may set: PER_LINUX, PER_LINUX32, UNAME26,
# PER_LINUX32|UNAME26, and 0xffffffff (query the current persona).
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Ordinary syscalls every container may make, grouped by what they are for. Each group is a
# whitespace-separated list so the data stays readable; 32-bit and time64 variants sit next to
# their 64-bit originals.
_ALLOWED_GROUPS: dict[str, str] = {
    "file descriptors and I/O": """
        open openat openat2 creat close close_range
        read readv pread64 preadv preadv2 write writev pwrite64 pwritev pwritev2
        lseek _llseek dup dup2 dup3 fcntl fcntl64 flock ioctl
        fsync fdatasync sync syncfs sync_file_range fallocate readahead fadvise64 fadvise64_64
        ftruncate ftruncate64 truncate truncate64
        pipe pipe2 splice tee vmsplice sendfile sendfile64 copy_file_range
    """,
    "paths and file metadata": """
        access faccessat faccessat2 chdir fchdir getcwd umask
        chmod fchmod fchmodat fchmodat2 chown chown32 fchown fchown32 fchownat lchown lchown32
        link linkat symlink symlinkat unlink unlinkat rename renameat renameat2
        mkdir mkdirat rmdir mknod mknodat readlink readlinkat getdents getdents64
        stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx
        statfs statfs64 fstatfs fstatfs64
        utime utimes utimensat utimensat_time64 futimesat
    """,
    "extended attributes": """
        getxattr lgetxattr fgetxattr getxattrat setxattr lsetxattr fsetxattr setxattrat
        listxattr llistxattr flistxattr listxattrat
        removexattr lremovexattr fremovexattr removexattrat
    """,
    "memory": """
        brk mmap mmap2 munmap mremap mprotect madvise mincore msync remap_file_pages
        mlock mlock2 mlockall munlock munlockall membarrier memfd_create memfd_secret
        pkey_alloc pkey_free pkey_mprotect process_mrelease map_shadow_stack
    """,
    "processes and threads": """
        execve execveat fork vfork exit exit_group wait4 waitid waitpid
        getpid getppid gettid getpgid getpgrp setpgid getsid setsid
        set_tid_address set_robust_list get_robust_list set_thread_area get_thread_area rseq
        futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue
        prctl capget capset seccomp restart_syscall
        getrlimit setrlimit ugetrlimit prlimit64 getrusage times getpriority setpriority
        getcpu sysinfo uname getrandom
        kill tkill tgkill pidfd_open pidfd_send_signal
    """,
    "debugging (safe with kernels 4.8 and later)": """
        ptrace process_vm_readv process_vm_writev
    """,
    "user and group ids": """
        getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
        getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
        setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
        setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid setfsgid32
        setgroups setgroups32
    """,
    "signals": """
        rt_sigaction rt_sigprocmask rt_sigpending rt_sigreturn rt_sigsuspend
        rt_sigtimedwait rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo
        sigaltstack sigprocmask sigreturn signalfd signalfd4 pause alarm
    """,
    "time and timers": """
        time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
        clock_nanosleep clock_nanosleep_time64 nanosleep adjtimex clock_adjtime clock_adjtime64
        getitimer setitimer timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64
        timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
    """,
    "scheduling": """
        sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr
        sched_getparam sched_setparam sched_getscheduler sched_setscheduler
        sched_get_priority_max sched_get_priority_min
        sched_rr_get_interval sched_rr_get_interval_time64 ioprio_get ioprio_set
    """,
    "polling and notification": """
        poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old
        epoll_pwait epoll_pwait2 eventfd eventfd2
        inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    """,
    "asynchronous I/O (io_uring is left out, as in current Docker)": """
        io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
    """,
    "sockets (socket(2) itself has its own rule)": """
        socketpair socketcall bind connect listen accept accept4 shutdown
        getsockname getpeername getsockopt setsockopt
        send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64
    """,
    "System V and POSIX IPC": """
        ipc msgget msgctl msgsnd msgrcv semget semctl semop semtimedop semtimedop_time64
        shmget shmctl shmat shmdt
        mq_open mq_unlink mq_getsetattr mq_notify
        mq_timedsend mq_timedsend_time64 mq_timedreceive mq_timedreceive_time64
    """,
    "landlock": """
        landlock_create_ruleset landlock_add_rule landlock_restrict_self
    """,
}

# Syscalls allowed only when the container has a capability (all of them for several caps).
_CAPABILITY_GATED: tuple[tuple[str, str], ...] = (
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    (
        "CAP_SYS_ADMIN",
        """
        mount umount umount2 mount_setattr move_mount open_tree fsopen fsconfig fsmount fspick
        unshare setns clone clone3 sethostname setdomainname
        bpf perf_event_open fanotify_init lookup_dcookie name_to_handle_at
        quotactl quotactl_fd syslog
        """,
    ),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "init_module finit_module delete_module"),
    ("CAP_SYS_PACCT", "acct"),
    (
        "CAP_SYS_PTRACE",
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy set_mempolicy mbind set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
)

# Syscalls that exist only on some architectures (keyed by the native arch they apply to).
_ARCH_SPECIFIC: tuple[tuple[tuple[str, ...], str], ...] = (
    (("amd64", "x32"), "arch_prctl"),
    (("amd64", "x32", "x86"), "modify_ldt"),
    (
        ("arm", "arm64"),
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
)

# Native architecture -> (seccomp architecture, the sub-architectures it can also run).
_ARCH_MAP: dict[str, tuple[str, tuple[str, ...]]] = {
    "amd64": ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "arm64": ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    "s390x": ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
    "riscv64": ("SCMP_ARCH_RISCV64", ()),
}


def _names(text: str) -> list[str]:
    return text.split()


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _build_default_profile() -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    allowed: list[str] = []
    for group in _ALLOWED_GROUPS.values():
        allowed.extend(_names(group))
    rules.append(
        {"names": allowed, "action": ACT_ALLOW, "comment": "ordinary syscalls, always allowed"}
    )
    rules.append(
        {
            "names": ["socket"],
            "action": ACT_ALLOW,
            "args": [_arg(0, _AF_VSOCK, "SCMP_CMP_NE")],
            "comment": "any socket family but AF_VSOCK (it would reach the host)",
        }
    )
    for persona in _PERSONALITIES:
        rules.append(
            {
                "names": ["personality"],
                "action": ACT_ALLOW,
                "args": [_arg(0, persona, "SCMP_CMP_EQ")],
            }
        )
    rules.append(
        {
            "names": ["clone"],
            "action": ACT_ALLOW,
            "args": [_arg(0, _CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)],
            "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]},
            "comment": "threads and processes, but no new namespaces without CAP_SYS_ADMIN",
        }
    )
    rules.append(
        {
            "names": ["clone"],
            "action": ACT_ALLOW,
            "args": [_arg(1, _CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)],
            "includes": {"arches": ["s390", "s390x"]},
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
            "comment": "s390 passes the clone flags as the second argument",
        }
    )
    rules.append(
        {
            "names": ["clone3"],
            "action": ACT_ERRNO,
            "errnoRet": errno.ENOSYS,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
            "comment": "its flags cannot be inspected: ENOSYS makes libc fall back to clone",
        }
    )
    for arches, names in _ARCH_SPECIFIC:
        rules.append(
            {"names": _names(names), "action": ACT_ALLOW, "includes": {"arches": list(arches)}}
        )
    for cap, names in _CAPABILITY_GATED:
        rules.append({"names": _names(names), "action": ACT_ALLOW, "includes": {"caps": [cap]}})
    return {
        "defaultAction": ACT_ERRNO,
        "defaultErrnoRet": errno.EPERM,
        "archMap": [
            {"architecture": arch, "subArchitectures": list(subs)}
            for arch, subs in _ARCH_MAP.values()
        ],
        "syscalls": rules,
    }


_DEFAULT_PROFILE: dict[str, Any] = _build_default_profile()


def default_seccomp_profile() -> dict[str, Any]:
    """moorage's default seccomp profile in Docker's profile format (a fresh copy).

    This is what ``docker``'s ``profiles/seccomp/default.json`` is to Docker: a file a user
    can save, edit and pass back with ``--security-opt seccomp=FILE``.
    """
    return copy.deepcopy(_DEFAULT_PROFILE)


# --- seccomp: converting a Docker-format profile to the OCI form ----------------------------

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "386": "x86",
    "i386": "x86",
    "i686": "x86",
    "armv7l": "arm",
    "armv6l": "arm",
    "armhf": "arm",
}


def native_arch(machine: str | None = None) -> str:
    """libseccomp's name of an architecture (``amd64``, ``arm64``…), default this machine's."""
    m = (machine if machine is not None else platform.machine()).lower()
    return _ARCH_ALIASES.get(m, m)


_SECCOMP_ARCH = {
    "amd64": "SCMP_ARCH_X86_64",
    "x86": "SCMP_ARCH_X86",
    "x32": "SCMP_ARCH_X32",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mipsel64n32": "SCMP_ARCH_MIPSEL64N32",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
}


_X32_SYSCALL_BIT = 0x40000000
_SYS_GETPID = 39


def kernel_runs_x32() -> bool:
    """Whether this kernel runs x32-ABI syscalls. Kernels built without ``CONFIG_X86_X32_ABI``
    (or booted without it) answer ENOSYS to all of them, so a filter for x32 (which costs
    runc ~6 ms per container to compile) guards nothing. Probed with an x32 ``getpid``, but
    only when no seccomp filter applies to us: one without x32 could kill us for it."""
    global _x32
    if _x32 is None:
        _x32 = True  # when in doubt, filter it
        if platform.machine() == "x86_64" and _unfiltered():
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _x32 = libc.syscall(_X32_SYSCALL_BIT | _SYS_GETPID) != -1
    return _x32


_x32: bool | None = None


def _unfiltered() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            return any(line.split() == ["Seccomp:", "0"] for line in f)
    except OSError:
        return False


def _unrunnable(native: str) -> frozenset[str]:
    """Sub-architectures of ``native`` this kernel cannot run (only ever judged for the
    architecture we run on)."""
    if native == "amd64" and native_arch() == "amd64" and not kernel_runs_x32():
        return frozenset({"SCMP_ARCH_X32"})
    return frozenset()


def _kernel_version(release: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release if release is not None else os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class _Bad(Exception):
    """A shape problem in a profile; becomes ``InvalidArgument`` with the profile's name."""


def _typename(v: object) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(v), "null" if v is None else type(v).__name__)


def _get(obj: Mapping[str, Any], key: str, typ: type, where: str) -> Any:
    v = obj.get(key)
    if v is None:
        return None
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if not ok:
        raise _Bad(f"{where}{key}: expected {_typename(typ())}, got {_typename(v)}")
    return v


def _str_list(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    v = _get(obj, key, list, where)
    if v is None:
        return []
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise _Bad(f"{where}{key}[{i}]: expected string, got {_typename(item)}")
    return list(v)


def _uint(obj: Mapping[str, Any], key: str, where: str, limit: int = 2**64 - 1) -> int | None:
    v = _get(obj, key, int, where)
    if v is not None and not 0 <= v <= limit:
        raise _Bad(f"{where}{key}: {v} is out of range")
    return v  # type: ignore[no-any-return]


def _min_kernel(value: str, where: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", value)
    if not m:
        raise _Bad(f'{where}minKernel: invalid kernel version "{value}" (want MAJOR.MINOR)')
    return int(m.group(1)), int(m.group(2))


def _filter_applies(
    rule: Mapping[str, Any],
    caps: Collection[str],
    arch: str,
    kernel: tuple[int, int],
    where: str,
) -> bool:
    """Docker's includes/excludes test: whether a rule is kept for this container."""
    excludes = _get(rule, "excludes", dict, where) or {}
    includes = _get(rule, "includes", dict, where) or {}
    ex_arches = _str_list(excludes, "arches", where + "excludes.")
    ex_caps = _str_list(excludes, "caps", where + "excludes.")
    ex_kernel = _get(excludes, "minKernel", str, where + "excludes.")
    in_arches = _str_list(includes, "arches", where + "includes.")
    in_caps = _str_list(includes, "caps", where + "includes.")
    in_kernel = _get(includes, "minKernel", str, where + "includes.")
    if ex_arches and arch in ex_arches:
        return False
    if any(c in caps for c in ex_caps):
        return False
    if ex_kernel is not None and kernel >= _min_kernel(ex_kernel, where + "excludes."):
        return False
    if in_arches and arch not in in_arches:
        return False
    if in_caps and not all(c in caps for c in in_caps):
        return False
    return not (in_kernel is not None and kernel < _min_kernel(in_kernel, where + "includes."))


def _convert_rule(rule: Mapping[str, Any], where: str) -> dict[str, Any]:
    name = _get(rule, "name", str, where)
    names = _str_list(rule, "names", where)
    if name and names:
        raise _Bad(f"{where}'name' and 'names' were both specified, use either 'name' or 'names'")
    if name:
        names = [name]
    if not names:
        raise _Bad(f"{where}no syscall names")
    action = _get(rule, "action", str, where)
    if action is None:
        raise _Bad(f"{where}action: missing")
    if action not in _ACTIONS:
        raise _Bad(f"{where}action: unknown action {json.dumps(action)}")
    out: dict[str, Any] = {"names": names, "action": action}
    errno_ret = _uint(rule, "errnoRet", where, 4095)
    if errno_ret is not None:
        out["errnoRet"] = errno_ret
    raw_args = _get(rule, "args", list, where) or []
    args: list[dict[str, Any]] = []
    for i, a in enumerate(raw_args):
        aw = f"{where}args[{i}]."
        if not isinstance(a, dict):
            raise _Bad(f"{where}args[{i}]: expected object, got {_typename(a)}")
        index = _uint(a, "index", aw, 5)
        op = _get(a, "op", str, aw)
        if op not in _OPERATORS:
            raise _Bad(f"{aw}op: unknown operator {json.dumps(op)}")
        args.append(
            {
                "index": index or 0,
                "value": _uint(a, "value", aw) or 0,
                "valueTwo": _uint(a, "valueTwo", aw) or 0,
                "op": op,
            }
        )
    if args:
        out["args"] = args
    return out


def _setup_seccomp(
    profile: Any,
    capabilities: Collection[str],
    arch: str,
    kernel: tuple[int, int],
    unrunnable: Collection[str] = (),
) -> dict[str, Any] | None:
    """Docker's ``setupSeccomp``: filter a Docker-format profile into the OCI form.
    ``unrunnable`` names sub-architectures of ``archMap`` that the kernel cannot run at all:
    they are left out of the filter (each one the runtime compiles costs time)."""
    if not isinstance(profile, dict):
        raise _Bad(f"expected a JSON object, got {_typename(profile)}")
    default_action = _get(profile, "defaultAction", str, "")
    syscalls = _get(profile, "syscalls", list, "")
    if not default_action and not syscalls:
        return None  # Docker: no default action and no rules means no filter at all
    if not default_action:
        raise _Bad("defaultAction: missing")
    if default_action not in _ACTIONS:
        raise _Bad(f"defaultAction: unknown action {json.dumps(default_action)}")
    out: dict[str, Any] = {"defaultAction": default_action}
    default_errno = _uint(profile, "defaultErrnoRet", "", 4095)
    if default_errno is not None:
        out["defaultErrnoRet"] = default_errno

    architectures = _str_list(profile, "architectures", "")
    arch_map = _get(profile, "archMap", list, "") or []
    if architectures and arch_map:
        raise _Bad(
            "'architectures' and 'archMap' were both specified, use either "
            "'architectures' or 'archMap'"
        )
    native = _SECCOMP_ARCH.get(arch)
    for i, entry in enumerate(arch_map):
        where = f"archMap[{i}]."
        if not isinstance(entry, dict):
            raise _Bad(f"archMap[{i}]: expected object, got {_typename(entry)}")
        main = _get(entry, "architecture", str, where)
        subs = _str_list(entry, "subArchitectures", where)
        if main is None:
            raise _Bad(f"{where}architecture: missing")
        if native is not None and main == native and not architectures:
            architectures = [main, *(a for a in subs if a not in unrunnable)]
    if architectures:
        out["architectures"] = architectures
    flags = _str_list(profile, "flags", "")
    if flags:
        out["flags"] = flags
    for key in ("listenerPath", "listenerMetadata"):
        value = _get(profile, key, str, "")
        if value:
            out[key] = value

    rules: list[dict[str, Any]] = []
    for i, rule in enumerate(syscalls or []):
        where = f"syscalls[{i}]."
        if not isinstance(rule, dict):
            raise _Bad(f"syscalls[{i}]: expected object, got {_typename(rule)}")
        if _filter_applies(rule, capabilities, arch, kernel, where):
            rules.append(_convert_rule(rule, where))
        else:
            _convert_rule(rule, where)  # still validate rules that do not apply
    out["syscalls"] = rules
    return out


def default_seccomp(capabilities: Sequence[str], arch: str = "amd64") -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object of the default profile for a container (one object
    per capability set and architecture, shared by every caller: never changed).

    ``capabilities`` is the container's (bounding) capability set: syscalls gated by a
    capability are allowed only when it is there (``mount`` with ``CAP_SYS_ADMIN``,
    ``reboot`` with ``CAP_SYS_BOOT``…). ``arch`` is the native architecture (``amd64``,
    ``arm64``; ``x86_64``/``aarch64`` accepted too). The default profile assumes a kernel of
    4.8 or later (Debian 12 ships 6.1), where ``ptrace`` cannot bypass seccomp.
    """
    # The default profile has no minKernel conditions, so the kernel version does not matter.
    native = native_arch(arch)
    key = (frozenset(capabilities), native)
    result = _DEFAULT_FILTERS.get(key)
    if result is None:
        result = _setup_seccomp(_DEFAULT_PROFILE, key[0], native, (0, 0), _unrunnable(native))
        assert result is not None
        _DEFAULT_FILTERS[key] = result
    return result


#: default_seccomp's results (shared: not to be changed), made once per process; the warm
#: process makes the default one ahead (``moorage.cli.warm.preload``)
_DEFAULT_FILTERS: dict[tuple[frozenset[str], str], dict[str, Any]] = {}


def load_seccomp_profile(
    text: str | bytes,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
    arch: str | None = None,
    *,
    kernel: str | None = None,
) -> dict[str, Any] | None:
    """A Docker-format seccomp profile (JSON text) in the OCI form, for these capabilities.

    Rules are filtered by their ``includes``/``excludes`` (capabilities, architectures and
    ``minKernel``, the latter against ``kernel`` or this machine's release). ``None`` means
    no filter at all: Docker treats a profile with neither ``defaultAction`` nor ``syscalls``
    as unconfined. Bad JSON or a bad shape -> :class:`InvalidArgument`
    ("decoding seccomp profile failed: ...").
    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}") from None
    try:
        native = native_arch(arch)
        return _setup_seccomp(
            data, frozenset(capabilities), native, _kernel_version(kernel), _unrunnable(native)
        )
    except _Bad as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}") from None


def load_seccomp_file(
    path: Path,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
    arch: str | None = None,
    *,
    kernel: str | None = None,
) -> dict[str, Any] | None:
    """:func:`load_seccomp_profile` of a file (``--security-opt seccomp=FILE``).

    A file that cannot be read -> ``opening seccomp profile (FILE) failed: ...``; a problem
    with its content -> ``decoding seccomp profile failed: FILE: ...``.
    """
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise InvalidArgument(
            f"opening seccomp profile ({path}) failed: {reason[:1].lower()}{reason[1:]}"
        ) from None
    try:
        return load_seccomp_profile(text, capabilities, arch, kernel=kernel)
    except InvalidArgument as e:
        detail = e.message.removeprefix("decoding seccomp profile failed: ")
        raise InvalidArgument(f"decoding seccomp profile failed: {path}: {detail}") from None


# --- --security-opt -------------------------------------------------------------------------

SeccompSetting: TypeAlias = Literal["default", "unconfined"] | Path


@dataclass(frozen=True)
class SecurityOptions:
    """The parsed ``--security-opt`` values of a container.

    ``seccomp`` is ``"default"``, ``"unconfined"`` or the path of a Docker-format profile.
    ``apparmor`` is the profile name given, if any (moorage does not load AppArmor profiles).
    ``systempaths_unconfined`` (``systempaths=unconfined``) turns off the masked and
    read-only paths, as in Docker.
    """

    no_new_privileges: bool = False
    seccomp: SeccompSetting = "default"
    label_disable: bool = False
    apparmor: str | None = None
    systempaths_unconfined: bool = False


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_LABEL_KEYS = ("user", "role", "type", "level", "filetype")


def parse_security_opts(opts: Sequence[str]) -> SecurityOptions:
    """Parse ``--security-opt`` values the way ``docker run`` does.

    Accepted: ``no-new-privileges``, ``no-new-privileges=BOOL``, ``seccomp=unconfined``,
    ``seccomp=default`` (or ``builtin``), ``seccomp=FILE``, ``label=disable`` (and the SELinux
    ``label=user:…``/``role:``/``type:``/``level:``/``filetype:`` forms, accepted and ignored:
    moorage has no SELinux support), ``apparmor=PROFILE``, ``systempaths=unconfined``. The old
    ``key:value`` form is accepted too. The file of ``seccomp=FILE`` is not read here.
    """
    nnp = False
    seccomp: SeccompSetting = "default"
    label_disable = False
    apparmor: str | None = None
    systempaths = False
    for opt in opts:
        if opt == "no-new-privileges":
            nnp = True
            continue
        if "=" in opt:
            key, _, value = opt.partition("=")
        elif ":" in opt:
            key, _, value = opt.partition(":")
        else:
            raise InvalidArgument(f"invalid --security-opt: {json.dumps(opt)}")
        if value == "":
            raise InvalidArgument(f"invalid --security-opt: {json.dumps(opt)}")
        if key == "no-new-privileges":
            if value in _TRUE:
                nnp = True
            elif value in _FALSE:
                nnp = False
            else:
                raise InvalidArgument(f"invalid --security-opt: {json.dumps(opt)}")
        elif key == "seccomp":
            if value == "unconfined":
                seccomp = "unconfined"
            elif value in ("default", "builtin"):
                seccomp = "default"
            else:
                seccomp = Path(value)
        elif key == "label":
            if value == "disable":
                label_disable = True
            elif value == "nested" or (
                value.partition(":")[0] in _LABEL_KEYS and value.partition(":")[2]
            ):
                pass
            else:
                raise InvalidArgument(
                    f"invalid --security-opt: bad label option {json.dumps(value)}, valid "
                    "options 'disable' or 'user, role, level, type, filetype' followed by ':' "
                    "and a value"
                )
        elif key == "apparmor":
            apparmor = value
        elif key == "systempaths" and value == "unconfined":
            systempaths = True
        else:
            raise InvalidArgument(f"invalid --security-opt: {json.dumps(opt)}")
    return SecurityOptions(nnp, seccomp, label_disable, apparmor, systempaths)


def resolve_seccomp(
    options: SecurityOptions,
    capabilities: Sequence[str],
    privileged: bool,
    arch: str | None = None,
) -> dict[str, Any] | None:
    """The container's OCI ``linux.seccomp`` object, or ``None`` for no filter.

    As Docker: ``seccomp=unconfined`` and ``--privileged`` mean no filter; a profile file is
    loaded and filtered for ``capabilities``; otherwise the default profile.
    """
    if privileged or options.seccomp == "unconfined":
        return None
    if isinstance(options.seccomp, Path):
        return load_seccomp_file(options.seccomp, capabilities, arch)
    return default_seccomp(capabilities, native_arch(arch))
